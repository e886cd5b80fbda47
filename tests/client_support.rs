//! Helpers shared by the client's integration tests (`client_plain.rs`,
//! `client_tui.rs`): spawn the real client binary and read its output with
//! deadlines instead of sleeps. The server is started with the shared
//! `TestServer` (tests/common).
//!
//! Compiled on its own as a test target too (it has no tests of its own).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: the suite must pass on a busy 2-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Sends each line read from `r` into a channel (the channel closes at EOF).
pub fn line_channel<R: Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// A server on a given address, for the reconnect test: the shared
/// `TestServer` (tests/common) always takes a fresh port, but a client can
/// only come back to the address it knows.
pub struct ServerOn {
    child: Child,
    /// The address it listens on, as it printed it.
    pub addr: String,
}

impl ServerOn {
    pub fn start(listen: &str) -> ServerOn {
        ServerOn::start_with(listen, &[])
    }

    /// Like [`start`](Self::start), with extra server arguments.
    pub fn start_with(listen: &str, args: &[&str]) -> ServerOn {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
            .args(["--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn loopchat-server");
        let out = line_channel(child.stdout.take().unwrap());
        let first = out.recv_timeout(TIMEOUT).expect("server's first line");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{first:?}"))
            .trim()
            .to_string();
        ServerOn { child, addr }
    }
}

impl Drop for ServerOn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `loopchat` client in plain mode, with its stdout (and stderr) read
/// line by line.
pub struct Client {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub out: Receiver<String>,
    pub err: Receiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<String>,
}

impl Client {
    /// Spawns the client with a piped stdin.
    pub fn spawn(args: &[&str]) -> Client {
        Client::spawn_with(args, Stdio::piped())
    }

    pub fn spawn_with(args: &[&str], stdin: Stdio) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loopchat"))
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn loopchat");
        let out = line_channel(child.stdout.take().unwrap());
        let err = line_channel(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Client {
            child,
            stdin,
            out,
            err,
            seen: Vec::new(),
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}").expect("write to client");
        stdin.flush().unwrap();
    }

    /// Closes the client's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stdout line satisfying `pred`; panics with what was seen
    /// if none comes in time.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for {what}; saw {:?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("client output ended before {what}; saw {:?}", self.seen)
                }
            }
        }
    }

    /// Waits for a stdout line that equals `line`.
    pub fn expect_line(&mut self, line: &str) -> String {
        self.expect(line, |l| l == line)
    }

    /// Waits for a stdout line starting with `prefix`.
    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        self.expect(prefix, |l| l.starts_with(prefix))
    }

    /// Waits for stdout to close, then for the process; returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("client did not exit; saw {:?}", self.seen)
                }
            }
        }
        self.child.wait().expect("wait for client")
    }

    /// Whatever the client wrote to stderr so far (without waiting).
    pub fn stderr_now(&self) -> Vec<String> {
        self.err.try_iter().collect()
    }

    /// The `Threads:` count of the running client.
    pub fn threads(&self) -> usize {
        threads_of(self.child.id())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `Threads:` line of /proc/PID/status.
pub fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: line")
}
