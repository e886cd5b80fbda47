//! A helper program (a Python client, `openssl s_client`) driven through
//! its stdin and stdout: one line in, one line out, every wait bounded by
//! [`LINE_TIMEOUT`](super::LINE_TIMEOUT).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Instant;

use super::LINE_TIMEOUT;

/// A running helper, killed when dropped.
pub struct ChildLines {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl ChildLines {
    /// Starts `cmd` with piped stdin and stdout (stderr dropped); a thread
    /// forwards its output lines.
    pub fn spawn(cmd: &mut Command) -> ChildLines {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a helper client");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        ChildLines {
            child,
            stdin,
            lines,
        }
    }

    /// The helper's next output line.
    #[track_caller]
    pub fn next(&mut self) -> String {
        self.lines
            .recv_timeout(LINE_TIMEOUT)
            .expect("no output from the helper client in time")
    }

    /// Skips output until a line satisfying `pred`, within one timeout.
    #[track_caller]
    pub fn until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => skipped.push(line),
                Err(_) => panic!("the expected line did not come; got {skipped:#?}"),
            }
        }
    }

    /// Writes `line` and a newline to the helper's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the helper");
        stdin.flush().expect("flush");
    }
}

impl Drop for ChildLines {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
