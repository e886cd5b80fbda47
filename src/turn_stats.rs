//! What one turn of the loop did, for `--trace-turns`: a learner runs the
//! server with it, connects three `nc` users, and sees one line become one
//! `write()` per recipient; under `loopchat-bench` the same line shows
//! turns carrying hundreds of lines per write.
//!
//! The counters are plain integers bumped as the turn goes, whether tracing
//! is on or not (cheaper than asking each time); only the line is skipped
//! when it is off.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

/// Counters for one turn; reset at the start of each.
#[derive(Debug, Default, Clone)]
pub struct TurnStats {
    /// How long `poll()` slept.
    pub slept: Duration,
    /// Events by kind.
    pub readable: u32,
    pub writable: u32,
    pub accepts: u32,
    pub signals: u32,
    /// Timers fired, and the kind of the first (why a quiet poll woke).
    pub timers: u32,
    pub first_timer: Option<&'static str>,
    /// Lines handed to the chat, and from how many connections.
    pub lines: u32,
    pub conns_read: u32,
    /// Events sent to many (rendered once per dialect present).
    pub broadcasts: u64,
    /// Byte strings queued for connections, and their bytes.
    pub queued: u64,
    pub queued_bytes: u64,
    /// `write()` calls and the bytes the kernel took.
    pub writes: u32,
    pub written_bytes: u64,
    /// Connections freed at the end of the turn.
    pub closed: u32,
    /// Bytes held for output at the end of the turn (shared chunks and
    /// queues' own bytes), and the most spans one flushed queue owed.
    pub held_bytes: usize,
    pub max_spans: usize,
}

impl TurnStats {
    /// Whether the turn did anything worth a line.
    pub fn did_something(&self) -> bool {
        self.readable + self.writable + self.accepts + self.signals + self.timers + self.closed > 0
            || self.lines > 0
            || self.writes > 0
            || self.queued > 0
    }

    /// The trace line for turn number `n`, which took `took`.
    pub fn line(&self, n: u64, took: Duration) -> String {
        let mut s = format!("turn {n}: slept {:.1} ms, woke for", ms(self.slept));
        let mut why = Vec::new();
        for (count, what) in [
            (self.readable, "readable"),
            (self.writable, "writable"),
            (self.accepts, "listener"),
            (self.signals, "signal"),
        ] {
            if count > 0 {
                why.push(format!("{count} {what}"));
            }
        }
        if self.timers > 0 {
            let first = self.first_timer.unwrap_or("timer");
            why.push(format!("{} timer(s) ({first} first)", self.timers));
        }
        if why.is_empty() {
            why.push("work left over".into());
        }
        let _ = write!(
            s,
            " {}; read {} line(s) from {} conn(s); {} broadcast(s), {} queued ({} B); \
             {} write(s), {} B written; {} closed; {} B held, longest queue {} span(s); \
             took {:.3} ms",
            why.join(", "),
            self.lines,
            self.conns_read,
            self.broadcasts,
            self.queued,
            self.queued_bytes,
            self.writes,
            self.written_bytes,
            self.closed,
            self.held_bytes,
            self.max_spans,
            ms(took)
        );
        s
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A writer that counts the `write()` calls made through it and the bytes
/// they took (each call to the socket is one syscall).
pub struct CountingWriter<'a, W: Write> {
    pub inner: &'a mut W,
    pub calls: u32,
    pub bytes: u64,
}

impl<'a, W: Write> CountingWriter<'a, W> {
    pub fn new(inner: &'a mut W) -> CountingWriter<'a, W> {
        CountingWriter {
            inner,
            calls: 0,
            bytes: 0,
        }
    }
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        let n = self.inner.write_vectored(bufs)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_in_one_line() {
        let mut t = TurnStats::default();
        assert!(!t.did_something());
        t.slept = Duration::from_millis(1500);
        t.readable = 1;
        t.lines = 1;
        t.conns_read = 1;
        t.broadcasts = 1;
        t.queued = 2;
        t.queued_bytes = 20;
        t.writes = 2;
        t.written_bytes = 20;
        t.max_spans = 1;
        assert!(t.did_something());
        let line = t.line(7, Duration::from_micros(250));
        assert_eq!(
            line,
            "turn 7: slept 1500.0 ms, woke for 1 readable; read 1 line(s) from 1 conn(s); \
             1 broadcast(s), 2 queued (20 B); 2 write(s), 20 B written; 0 closed; \
             0 B held, longest queue 1 span(s); took 0.250 ms"
        );
        let mut sink = Vec::new();
        let mut w = CountingWriter::new(&mut sink);
        w.write_all(b"abc").unwrap();
        assert_eq!((w.calls, w.bytes), (1, 3));
    }
}
