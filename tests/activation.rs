//! systemd socket activation against the real binary, passed the way
//! systemd passes sockets: listening sockets at descriptors 3, 4, ...,
//! `LISTEN_FDS`, `LISTEN_PID` set to the server's own pid (a shell sets it
//! to `$$` and `exec`s the server, which keeps the pid), `LISTEN_FDNAMES`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use common::Client;

/// A server started by "systemd": `sockets` at descriptors 3, 4, ...,
/// `env` added to its environment, and `LISTEN_PID` its own pid. Returns
/// the child and the lines it printed on stdout (up to `lines`).
fn activated(
    sockets: &[&TcpListener],
    env: &[(&str, &str)],
    args: &[&str],
    lines: usize,
) -> (Child, Vec<String>) {
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$; export LISTEN_PID; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_loopchat-server"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: only dup and fcntl between fork and exec (async-signal-safe).
    // The sockets are first moved above any target number so that placing
    // one cannot overwrite another; placed ones lose FD_CLOEXEC.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = Vec::with_capacity(fds.len());
            for &fd in &fds {
                let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, &h) in high.iter().enumerate() {
                let target = 3 + i as RawFd;
                if libc::dup2(h, target) < 0 || libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn the server");
    let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut got = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        got.push(line.trim_end().to_string());
    }
    (child, got)
}

/// One socket passed as systemd does: the server serves on it instead of
/// binding `--listen` (given the very same address, which a bind would
/// find in use), and two users chat through it.
#[test]
fn a_socket_passed_by_systemd_is_served() {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let listen = addr.to_string();
    let (mut child, lines) = activated(
        &[&socket],
        &[("LISTEN_FDS", "1")],
        &["--listen", &listen],
        1,
    );
    assert_eq!(lines, [format!("listening on {addr}")]);
    drop(socket); // the server holds its own copy
    let mut alice = Client::connect(addr);
    alice.expect("* Welcome to loopchat! What shall I call you?");
    alice.send("alice");
    alice.line_where(|l| l.starts_with("* Welcome, alice!"));
    let mut bob = Client::connect(addr);
    bob.expect("* Welcome to loopchat! What shall I call you?");
    bob.send("bob");
    bob.line_where(|l| l.starts_with("* Welcome, bob!"));
    alice.line_where(|l| l == "* bob has entered the room");
    alice.send("hi bob");
    bob.expect("[alice] hi bob");
    let _ = child.kill();
    let _ = child.wait();
}

/// Two named sockets (`LISTEN_FDNAMES=irc:main`, the IRC one first): `main`
/// is the main port, `irc` an IRC-only listener; and variables meant for
/// another pid are ignored (the server binds `--listen`).
#[test]
fn named_sockets_map_to_main_and_irc_and_other_pids_are_ignored() {
    let irc = TcpListener::bind("127.0.0.1:0").unwrap();
    let main = TcpListener::bind("127.0.0.1:0").unwrap();
    let (irc_addr, main_addr) = (irc.local_addr().unwrap(), main.local_addr().unwrap());
    let (mut child, lines) = activated(
        &[&irc, &main],
        &[("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "irc:main")],
        &["--listen", "127.0.0.1:0"],
        2,
    );
    assert_eq!(
        lines,
        [
            format!("listening on {main_addr}"),
            format!("irc listening on {irc_addr}")
        ]
    );
    let mut line_user = Client::connect(main_addr);
    line_user.expect("* Welcome to loopchat! What shall I call you?");
    let mut ivan = Client::connect(irc_addr);
    ivan.send_raw(b"NICK ivan\r\nUSER ivan 0 * :Ivan\r\n");
    ivan.line_where(|l| l.contains(" 001 ivan "));
    let _ = child.kill();
    let _ = child.wait();

    // LISTEN_PID of another process: not for us, so --listen is bound.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loopchat-server"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut other = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(other.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = other.kill();
    let _ = other.wait();
    let bound: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    assert_ne!(bound.port(), 0);
    assert_ne!(bound, main_addr);
}

/// A socket named `tls` is a TLS listener (it needs a certificate: without
/// one the server refuses to start, exit 1). The TLS itself is
/// tests/tls.rs's.
#[cfg(feature = "tls")]
#[test]
fn a_socket_named_tls_is_a_tls_listener() {
    let main = TcpListener::bind("127.0.0.1:0").unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").unwrap();
    let (main_addr, tls_addr) = (main.local_addr().unwrap(), tls.local_addr().unwrap());
    let env = [("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "main:tls")];
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tls_support/test-cert.pem"
    );
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tls_support/test-key.pem"
    );
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    let (mut child, lines) = activated(&[&main, &tls], &env, &args, 2);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        lines,
        [
            format!("listening on {main_addr}"),
            format!("tls listening on {tls_addr}")
        ]
    );

    let (mut child, lines) = activated(&[&main, &tls], &env, &["--listen", "127.0.0.1:0"], 1);
    assert!(lines.is_empty(), "{lines:?}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
}
