//! The server's log against the real binary: it must never stall the room
//! (stderr a pipe nobody reads, a connection storm), it carries the date,
//! its file is not world-readable, and SIGHUP reopens it for logrotate.

mod common;

use common::{Client, LINE_TIMEOUT, TestServer};
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A fresh path in the temp dir for a log file (removed when dropped).
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        let p =
            std::env::temp_dir().join(format!("loopchat-logging-{}-{tag}.log", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Connects, quits at once and reads the answer: one churn cycle.
fn connect_and_quit(s: &TestServer) {
    let stream =
        TcpStream::connect_timeout(&s.addr, Duration::from_secs(10)).expect("connect in time");
    let mut c = Client::from_stream(stream);
    // Said at once: the server greets a first line without waiting out its
    // greeting hold, then takes the line.
    c.send("/quit");
    c.expect("* Welcome to loopchat! What shall I call you?");
    c.expect("* Goodbye.");
}

/// `from` (joined as `nick`) says a line; `to` must receive it (within the
/// generous line timeout).
fn chat(from: &mut Client, nick: &str, to: &mut Client, text: &str) {
    from.send(text);
    to.expect(&format!("[{nick}] {text}"));
}

/// Waits until the file at `path` contains `needle`.
fn wait_for_in_file(path: &std::path::Path, needle: &str) -> bool {
    let deadline = Instant::now() + LINE_TIMEOUT;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// With stderr a pipe that is never read, 5,000 connect/quit cycles (far
/// more log than a pipe holds) do not stall the loop: two joined users keep
/// chatting during the storm and after it.
#[test]
fn unread_stderr_pipe_does_not_stall_the_room() {
    let mut s = TestServer::start_with(&["--log-level", "debug"], |cmd| {
        cmd.stderr(Stdio::piped());
    });
    // Keep the read end open and never read it: writes fill the pipe.
    let held_stderr = s.child.stderr.take().expect("stderr is piped");
    let mut alice = s.join("alice");
    let mut bob = s.join("bob");
    alice.expect("* bob has entered the room");
    for i in 0..5_000 {
        connect_and_quit(&s);
        if i % 500 == 0 {
            chat(&mut alice, "alice", &mut bob, &format!("still here {i}"));
        }
    }
    chat(&mut alice, "alice", &mut bob, "after the storm");
    chat(&mut bob, "bob", &mut alice, "and back");
    // Now read the pipe: once it has room again, the next line logged is
    // preceded by the count of lines that were dropped meanwhile.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stderr = held_stderr;
        let mut buf = [0u8; 1 << 16];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + LINE_TIMEOUT;
    let mut nudges = 0;
    while !String::from_utf8_lossy(&seen).contains(" log lines dropped: stderr was not being read")
    {
        assert!(Instant::now() < deadline, "no drop report");
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(chunk) => seen.extend(chunk),
            // The pipe is drained: make the server log something.
            Err(_) if nudges < 20 => {
                nudges += 1;
                chat(&mut alice, "alice", &mut bob, &format!("nudge {nudges}"));
            }
            Err(_) => panic!("no drop report"),
        }
    }
}

/// A storm of connections from one address logs a few of them and then one
/// summary line with the count, instead of a line per connection.
#[test]
fn a_connection_storm_is_summarised_in_the_log() {
    let file = TempPath::new("storm");
    let path = file.0.to_str().expect("utf-8 temp path");
    let s = TestServer::start(&["--log-file", path]);
    for _ in 0..300 {
        connect_and_quit(&s);
    }
    // Every connection is accounted for, by its own line or in a summary;
    // the last summary comes about a second after the storm ends.
    let count = |log: &str| {
        let accepted = log.lines().filter(|l| l.contains("] accepted ")).count();
        let summarised: usize = log
            .lines()
            .filter_map(|l| {
                let rest = l.split("] ").nth(1)?;
                let n = rest
                    .strip_suffix(" more connections accepted from 127.0.0.1 in the last second")?;
                n.parse::<usize>().ok()
            })
            .sum();
        (accepted, summarised)
    };
    let deadline = Instant::now() + LINE_TIMEOUT;
    let log = loop {
        let log = std::fs::read_to_string(&file.0).unwrap_or_default();
        let (accepted, summarised) = count(&log);
        if accepted + summarised >= 300 || Instant::now() >= deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (accepted, summarised) = count(&log);
    assert!(summarised > 0, "no summary in:\n{log}");
    assert!(
        accepted < 150,
        "{accepted} accept lines for 300 connections"
    );
    assert_eq!(accepted + summarised, 300, "{log}");
}

/// Log lines start with the date and time (ISO 8601), not the time alone.
#[test]
fn log_lines_carry_the_date() {
    let file = TempPath::new("date");
    let path = file.0.to_str().expect("utf-8 temp path");
    let s = TestServer::start(&["--log-file", path]);
    assert!(wait_for_in_file(&file.0, "listening on"));
    drop(s);
    let log = std::fs::read_to_string(&file.0).expect("read the log");
    let first = log.lines().next().expect("a line");
    let b = first.as_bytes();
    // 2026-11-30T04:01:02.345+01:00 [INFO] ...
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    assert!(
        b.len() > 30
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19),
        "{first:?}"
    );
}

/// The log file is created readable by owner and group at most (0640).
#[test]
fn log_file_is_not_world_readable() {
    let file = TempPath::new("mode");
    let path = file.0.to_str().expect("utf-8 temp path");
    let _s = TestServer::start(&["--log-file", path]);
    let mode = std::fs::metadata(&file.0)
        .expect("log file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & !0o640, 0, "log file mode {mode:o}");
}

/// logrotate: rename the file, send SIGHUP. The server lives on, users stay
/// connected, and a new file appears and receives the new lines.
#[test]
fn sighup_reopens_the_log_file() {
    let file = TempPath::new("hup");
    let rotated = TempPath::new("hup-rotated");
    let path = file.0.to_str().expect("utf-8 temp path");
    let s = TestServer::start(&["--log-file", path]);
    let mut alice = s.join("alice");
    let mut bob = s.join("bob");
    alice.expect("* bob has entered the room");
    std::fs::rename(&file.0, &rotated.0).expect("rotate");
    s.signal(libc::SIGHUP);
    assert!(
        wait_for_in_file(&file.0, "log file reopened"),
        "no new log file"
    );
    chat(&mut alice, "alice", &mut bob, "still connected");
    let _carol = s.join("carol");
    assert!(wait_for_in_file(&file.0, "joined as carol"));
    let old = std::fs::read_to_string(&rotated.0).expect("rotated log");
    assert!(old.contains("joined as bob"), "{old}");
    assert!(!old.contains("carol"), "{old}");
    let mode = std::fs::metadata(&file.0)
        .expect("new log")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & !0o640, 0, "reopened log file mode {mode:o}");
}
