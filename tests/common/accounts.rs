//! Helpers for tests of servers with `--accounts FILE`: a fresh folder per
//! test, login steps that consume exact lines, the admin commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Client, TestServer};

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh folder for one test's accounts file; returns the file's path.
/// `tag` keeps test binaries running at the same time apart.
pub fn accounts_file_in(tag: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("loopchat-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("accounts.txt")
}

/// A server with `--accounts file` and `extra` options.
pub fn start(file: &Path, extra: &[&str]) -> TestServer {
    let mut args = vec!["--accounts", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// The password prompt for `name`.
pub fn password_prompt(name: &str) -> String {
    format!(
        "* Password for {name}? (A new name is registered with the password you send now: at least 8 characters.)"
    )
}

/// Connects and sends `name`; the password prompt is consumed.
pub fn begin(s: &TestServer, name: &str) -> Client {
    let mut c = s.connect();
    c.expect("* Welcome to loopchat! What shall I call you?");
    c.send(name);
    c.expect(&password_prompt(name));
    c
}

/// Logs in (or registers) and consumes the lines up to the welcome.
pub fn login(s: &TestServer, name: &str, password: &str) -> Client {
    let mut c = begin(s, name);
    c.send(password);
    c.line_where(|l| l.starts_with(&format!("* Welcome, {name}!")));
    c
}

/// Runs `loopchat-server --accounts file ARGS` with `stdin` piped in;
/// returns the exit status and stderr.
pub fn admin(file: &Path, args: &[&str], stdin: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .arg("--accounts")
        .arg(file)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
