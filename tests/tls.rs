//! TLS against the real binary (feature `tls`): every transport inside it
//! (lines with `openssl s_client`, HTTPS, `wss://`, IRC), a plain-text
//! client on a TLS-only port, a bad certificate at start-up, and the
//! certificate reloaded on SIGHUP while a TLS user stays connected. The
//! certificates are made at test time by `openssl req` (Debian's
//! `openssl`, installed by .ci/run); the Python clients are in
//! tests/tls_support/tls_client.py (Python's `ssl`, i.e. OpenSSL).
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::child::ChildLines;
use common::{LINE_TIMEOUT, TestServer};

const CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/tls_support/tls_client.py"
);

/// Whether `openssl` runs; outside CI a missing one skips the test.
fn have_openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI must run the TLS tests: install openssl"
    );
    if !ok {
        eprintln!("SKIPPED: no openssl");
    }
    ok
}

/// A fresh temporary folder for this test's certificate files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loopchat-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Writes a new self-signed P-256 certificate and its key to `cert`, `key`.
fn make_cert(cert: &Path, key: &Path) {
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "openssl req failed");
}

/// The SHA-256 of `cert`'s DER form, as `tls_client.py` prints it.
fn fingerprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().rsplit('=').next().unwrap_or("");
    hex.replace(':', "").to_lowercase()
}

/// A server with `--tls-listen` and the certificate in `dir`.
fn tls_server(dir: &Path, extra: &[&str]) -> (TestServer, SocketAddr) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !cert.exists() {
        make_cert(&cert, &key);
    }
    let cert = cert.to_str().expect("utf-8 path").to_string();
    let key = key.to_str().expect("utf-8 path").to_string();
    let mut args = vec![
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let server = TestServer::start(&args);
    let tls = server.tls_addr().expect("a tls listening line");
    (server, tls)
}

/// `tls_client.py lines` to `addr`; returns it and the certificate's
/// fingerprint.
fn python_lines(addr: SocketAddr) -> (ChildLines, String) {
    let mut p = ChildLines::spawn(Command::new("python3").args([
        CLIENT,
        "lines",
        &addr.ip().to_string(),
        &addr.port().to_string(),
    ]));
    let open = p.next();
    let fp = open
        .strip_prefix("OPEN ")
        .unwrap_or_else(|| panic!("expected OPEN, got {open:?}"))
        .to_string();
    (p, fp)
}

/// One HTTPS request with `tls_client.py get`; the whole response.
fn https_get(addr: SocketAddr, path: &str) -> String {
    let out = Command::new("python3")
        .args([
            CLIENT,
            "get",
            &addr.ip().to_string(),
            &addr.port().to_string(),
            path,
        ])
        .output()
        .expect("run tls_client.py get");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl s_client -quiet`, the classic TLS line client, chats with a
/// plain TCP user in the same room; one thread throughout.
#[test]
fn s_client_chats_with_a_plain_user() {
    if !have_openssl() {
        return;
    }
    let dir = temp_dir("s_client");
    let (server, tls) = tls_server(&dir, &[]);
    let mut bob = server.join("bob");
    let mut alice = ChildLines::spawn(Command::new("openssl").args([
        "s_client",
        "-quiet",
        "-connect",
        &tls.to_string(),
    ]));
    alice.send("alice");
    alice.until(|l| l.starts_with("* Welcome, alice!"));
    bob.expect("* alice has entered the room");
    alice.send("hi bob, over TLS");
    bob.expect("[alice] hi bob, over TLS");
    bob.send("hi alice, in plain text");
    alice.until(|l| l == "[bob] hi alice, in plain text");
    assert_eq!(server.threads(), 1, "TLS must not add a thread");
}

/// HTTPS on the TLS port and, by its first byte, on the main port.
#[test]
fn https_on_both_ports() {
    if !have_openssl() {
        return;
    }
    let dir = temp_dir("https");
    let (server, tls) = tls_server(&dir, &[]);
    for addr in [tls, server.addr] {
        let response = https_get(addr, "/healthz");
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n") && response.ends_with("\r\n\r\nok\n"),
            "{addr}: {response:?}"
        );
        // The page's script is larger than rustls's 16 KiB buffer: it
        // must come whole, not as a closed connection.
        let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/web/app.js"))
            .expect("web/app.js");
        let response = https_get(addr, "/app.js");
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n") && response.ends_with(&script),
            "{addr}: {} bytes: {:?}",
            response.len(),
            response.get(..200)
        );
    }
    // Plain HTTP still works on the main port.
    let mut c = TcpStream::connect(server.addr).expect("connect");
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    c.set_read_timeout(Some(LINE_TIMEOUT)).expect("timeout");
    let _ = c.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response:?}");
}

/// An IRC client over TLS (the first line sniffed inside TLS, as on the
/// main port) talks to a line user.
#[test]
fn irc_over_tls() {
    if !have_openssl() {
        return;
    }
    let dir = temp_dir("irc");
    let (server, tls) = tls_server(&dir, &[]);
    let (mut ivan, _) = python_lines(tls);
    ivan.send("NICK ivan");
    ivan.send("USER ivan 0 * :Ivan");
    ivan.until(|l| l.starts_with("LINE :loopchat 001 ivan "));
    ivan.send("JOIN #lobby");
    ivan.until(|l| l.starts_with("LINE :loopchat 366 ivan #lobby "));
    let mut bob = server.join("bob");
    ivan.until(|l| l.contains("JOIN #lobby") && l.contains("bob"));
    ivan.send("PRIVMSG #lobby :hello from TLS IRC");
    bob.expect("[ivan] hello from TLS IRC");
    bob.send("hi ivan");
    ivan.until(|l| l.ends_with("PRIVMSG #lobby :hi ivan"));
    assert_eq!(server.threads(), 1);
}

/// `wss://` on both ports, with Python's `websockets`; a WebSocket user
/// and a line user chat.
#[test]
fn wss_on_both_ports() {
    if !have_openssl() {
        return;
    }
    let python = std::env::var("LOOPCHAT_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run wss:// ({python} lacks websockets)"
        );
        eprintln!("SKIPPED: {python} has no websockets");
        return;
    }
    let dir = temp_dir("wss");
    let (server, tls) = tls_server(&dir, &[]);
    let mut bob = server.join("bob");
    for (nick, addr) in [("wendy", tls), ("walt", server.addr)] {
        let mut w = ChildLines::spawn(Command::new(&python).args([
            CLIENT,
            "wss",
            &format!("wss://localhost:{}/ws", addr.port()),
        ]));
        assert_eq!(w.next(), "OPEN");
        w.until(|l| l == "MSG * Welcome to loopchat! What shall I call you?");
        w.send(nick);
        w.until(|l| l.starts_with(&format!("MSG * Welcome, {nick}!")));
        bob.expect(&format!("* {nick} has entered the room"));
        w.send("hello over wss");
        bob.expect(&format!("[{nick}] hello over wss"));
        bob.send(&format!("hi {nick}"));
        w.until(|l| l == format!("MSG [bob] hi {nick}"));
        w.send("/quit");
        w.until(|l| l.starts_with("CLOSED"));
        bob.line_where(|l| l.contains(&format!("{nick} has left")));
    }
}

/// A plain-text client on a TLS-only port gets an alert and a clean close
/// (EOF, not a hang), and the server goes on.
#[test]
fn plain_text_on_a_tls_port_is_closed() {
    if !have_openssl() {
        return;
    }
    let dir = temp_dir("plain");
    let (server, tls) = tls_server(&dir, &[]);
    let mut c = TcpStream::connect(tls).expect("connect");
    c.set_read_timeout(Some(LINE_TIMEOUT)).expect("timeout");
    c.write_all(b"alice\n").expect("write");
    let started = Instant::now();
    let mut got = Vec::new();
    let read = c.read_to_end(&mut got);
    assert!(read.is_ok(), "expected EOF, got {read:?}");
    assert!(started.elapsed() < LINE_TIMEOUT);
    // A TLS alert record (content type 21), or nothing at all.
    assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
    // The server still serves, and counts it (this scrape's own
    // handshake is the one completed).
    let _bob = server.join("bob");
    let metrics = https_get(server.addr, "/metrics");
    assert!(
        metrics.contains("\nloopchat_tls_failures_total 1\n")
            && metrics.contains("\nloopchat_tls_handshakes_total 1\n"),
        "{metrics}"
    );
}

/// A certificate that cannot be used stops the server at start-up with
/// exit status 1 and one line saying why.
#[test]
fn a_bad_certificate_exits_1() {
    if !have_openssl() {
        return;
    }
    let dir = temp_dir("bad");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, "not a certificate\n").expect("write");
    std::fs::write(&key, "not a key\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .expect("run loopchat-server");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("loopchat-server: ") && err.contains("certificate"),
        "{err}"
    );
}

/// SIGHUP reloads the certificate: a TLS user stays connected and keeps
/// chatting, new connections see the new certificate; a broken file at
/// reload keeps the one in force.
#[test]
fn sighup_reloads_the_certificate() {
    if !have_openssl() {
        return;
    }
    let dir = temp_dir("reload");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    make_cert(&cert, &key);
    let first = fingerprint(&cert);
    let (server, tls) = tls_server(&dir, &[]);
    let (mut alice, fp) = python_lines(tls);
    assert_eq!(fp, first);
    alice.send("alice");
    alice.until(|l| l.starts_with("LINE * Welcome, alice!"));

    make_cert(&cert, &key);
    let second = fingerprint(&cert);
    assert_ne!(first, second);
    server.signal(libc::SIGHUP);
    assert!(
        server.wait_until(LINE_TIMEOUT, |s| s
            .log()
            .contains("TLS certificate reloaded")),
        "{}",
        server.log()
    );
    let (mut bob, fp) = python_lines(tls);
    assert_eq!(fp, second, "a new connection gets the new certificate");
    bob.send("bob");
    bob.until(|l| l.starts_with("LINE * Welcome, bob!"));
    alice.until(|l| l == "LINE * bob has entered the room");
    alice.send("still here");
    bob.until(|l| l == "LINE [alice] still here");

    // A broken file: the old certificate stays, and the log says why.
    std::fs::write(&cert, "garbage\n").expect("write");
    server.signal(libc::SIGHUP);
    assert!(
        server.wait_until(LINE_TIMEOUT, |s| s
            .log()
            .contains("keeping the old certificate")),
        "{}",
        server.log()
    );
    let (_carol, fp) = python_lines(tls);
    assert_eq!(fp, second);
    alice.send("and still");
    bob.until(|l| l == "LINE [alice] and still");
    assert_eq!(server.threads(), 1);
}

/// A TLS client that says nothing after the handshake is greeted as a line
/// user, like a silent `nc` (the greeting hold starts after the handshake).
#[test]
fn a_silent_tls_user_is_greeted() {
    if !have_openssl() {
        return;
    }
    let dir = temp_dir("silent");
    let (server, tls) = tls_server(&dir, &[]);
    for addr in [tls, server.addr] {
        let (mut c, _) = python_lines(addr);
        assert_eq!(
            c.next(),
            "LINE * Welcome to loopchat! What shall I call you?"
        );
    }
}

/// A TLS user that stops reading is cut at `--max-sendq` like any slow
/// reader (without a last line: its records cannot be skipped), the room
/// is told, and the others chat on.
#[test]
fn a_slow_tls_reader_is_cut() {
    if !have_openssl() {
        return;
    }
    let dir = temp_dir("slow");
    let (server, tls) = tls_server(&dir, &["--max-sendq", "64k", "--max-rate", "0"]);
    let mut bob = server.join("bob");
    let mut slow = ChildLines::spawn(Command::new("python3").args([
        CLIENT,
        "stall",
        &tls.ip().to_string(),
        &tls.port().to_string(),
        "slow",
    ]));
    assert_eq!(slow.next(), "OPEN");
    bob.expect("* slow has entered the room");
    // Far more than the socket buffers of both ends can hold.
    let line = format!("{}\n", "x".repeat(400));
    let deadline = Instant::now() + LINE_TIMEOUT;
    let mut cut = false;
    while !cut && Instant::now() < deadline {
        bob.send_raw(line.repeat(1000).as_bytes());
        cut = server.log().contains("(slow) disconnected");
    }
    assert!(cut, "{}", server.log());
    bob.line_where(|l| l.starts_with("* slow has left the room"));
    let _carol = server.join("carol");
    // (After "nobody received that" for the flood's last lines.)
    bob.line_where(|l| l == "* carol has entered the room");
    assert_eq!(server.threads(), 1);
}

/// weechat-headless (GnuTLS, a third TLS implementation) joins over TLS,
/// certificate check off, and says a line a plain user reads. The server
/// options are given in both spellings: `ssl` before WeeChat 4.0, `tls`
/// after (the unknown one is ignored).
#[test]
fn weechat_over_tls() {
    let have = Command::new("weechat-headless")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run weechat over TLS (weechat-headless)"
        );
        eprintln!("SKIPPED: no weechat-headless");
        return;
    }
    if !have_openssl() {
        return;
    }
    let dir = temp_dir("weechat");
    let (server, tls) = tls_server(&dir, &[]);
    let mut bob = server.join("bob");
    let wdir = dir.join("weechat");
    std::fs::create_dir_all(&wdir).expect("weechat dir");
    let port = tls.port();
    let commands = [
        format!(
            "/server add t 127.0.0.1/{port} -ssl -tls -nicks=wee -username=wee \
             -realname=wee -autojoin=#lobby"
        ),
        "/set irc.server.t.ssl_verify off".to_string(),
        "/set irc.server.t.tls_verify off".to_string(),
        "/connect t".to_string(),
        "/wait 2 /msg -server t #lobby hello from weechat over TLS".to_string(),
    ]
    .join(";");
    let weechat = ChildLines::spawn(
        Command::new("weechat-headless")
            .arg("--dir")
            .arg(&wdir)
            .arg("-r")
            .arg(commands),
    );
    bob.line_where(|l| l == "* wee has entered the room");
    bob.line_where(|l| l == "[wee] hello from weechat over TLS");
    drop(weechat);
    bob.line_where(|l| l.starts_with("* wee has left the room"));
    assert_eq!(server.threads(), 1);
}
