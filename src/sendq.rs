//! A connection's pending output: bytes queued for the socket, with a cap.
//!
//! The loop never blocks on a write. A line for a connection is appended
//! here; later, once per loop turn, [`SendQueue::write_to`] hands as much as
//! the kernel will take to the socket and keeps the rest, remembering how far
//! it got (Redis calls this `sentlen`). A short write is not an error, it is
//! the normal answer of a full socket buffer.
//!
//! The cap is the defence against slow readers: a client that reads nothing
//! would otherwise make us buffer the whole room's traffic for it, forever.
//! It is about a reader falling behind, not about one long answer: the
//! longest reply owed (the room's list at join, `/who` in a big room, which
//! grow with the room) does not count against it, everything else owed
//! does. So one reply of any length reaches an attentive reader whole, and
//! a queue holds at most the cap plus one reply.
//!
//! Bytes leave in the order they were queued and in whole lines, even when
//! the connection is kicked: [`SendQueue::replace_with`] finishes the line
//! that is half written before the last words.

use std::io::{self, Write};

/// The queue would pass its cap; nothing was appended.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// Bytes waiting to be written to one socket.
#[derive(Debug)]
pub struct SendQueue {
    buf: Vec<u8>,
    /// `buf[..sent]` has been written already.
    sent: usize,
    cap: usize,
    /// The longest reply still owed, exempt from the cap: it ends at
    /// `buf[longest_end]` and is `longest_len` bytes long. Once `sent`
    /// passes `longest_end` it is gone (`longest_owed` is then 0).
    longest_end: usize,
    longest_len: usize,
    /// The written prefix that compaction dropped ended inside a line, so
    /// `buf[0]` is in the middle of one (only meaningful while `sent == 0`).
    starts_mid_line: bool,
}

impl SendQueue {
    /// An empty queue whose owed bytes, apart from its longest reply, stay
    /// within `cap`.
    pub fn new(cap: usize) -> SendQueue {
        SendQueue {
            buf: Vec::new(),
            sent: 0,
            cap,
            longest_end: 0,
            longest_len: 0,
            starts_mid_line: false,
        }
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The heap memory held (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends `bytes` (one reply: one or more whole lines), or refuses if
    /// what would be owed besides the longest reply passes the cap.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.admit(bytes.len())?;
        self.push_unchecked(bytes);
        self.note_reply(bytes.len());
        Ok(())
    }

    /// Appends `line` and a `\n`, like [`push`](Self::push).
    pub fn push_line(&mut self, line: &[u8]) -> Result<(), Overflow> {
        self.admit(line.len() + 1)?;
        self.push_unchecked(line);
        self.push_unchecked(b"\n");
        self.note_reply(line.len() + 1);
        Ok(())
    }

    /// The unwritten part of the longest reply owed.
    fn longest_owed(&self) -> usize {
        let start = self.longest_end.saturating_sub(self.longest_len);
        self.longest_end.saturating_sub(self.sent.max(start))
    }

    /// Whether a reply of `n` bytes fits: everything owed after it, except
    /// the longest reply (it or an earlier one), must stay within the cap.
    fn admit(&self, n: usize) -> Result<(), Overflow> {
        if self.len() + n - self.longest_owed().max(n) > self.cap {
            return Err(Overflow);
        }
        Ok(())
    }

    /// Records the reply of `n` bytes just appended, if it is the longest.
    fn note_reply(&mut self, n: usize) {
        if n > self.longest_owed() {
            self.longest_end = self.buf.len();
            self.longest_len = n;
        }
    }

    /// Drops everything pending and the memory it held (for a new
    /// connection: what follows starts a fresh stream).
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.sent = 0;
        self.starts_mid_line = false;
        self.forget_replies();
    }

    /// Replaces what is owed with one last line (an error telling the peer
    /// why it is being disconnected), ignoring the cap. A line already half
    /// written is finished first, so the peer gets whole lines: the rest of
    /// that line, then `bytes`; the lines after it are dropped unsent.
    pub fn replace_with(&mut self, bytes: &[u8]) {
        let mid_line = if self.sent == 0 {
            self.starts_mid_line
        } else {
            self.buf[self.sent - 1] != b'\n'
        };
        let keep_to = if mid_line {
            match self.buf[self.sent..].iter().position(|&b| b == b'\n') {
                Some(i) => self.sent + i + 1,
                None => self.buf.len(),
            }
        } else {
            self.sent
        };
        self.buf.truncate(keep_to);
        self.buf.drain(..self.sent);
        self.sent = 0;
        self.starts_mid_line = mid_line;
        self.forget_replies();
        if self.buf.last().is_some_and(|&b| b != b'\n') {
            // Only if a push broke the contract (lines end in `\n`).
            self.buf.push(b'\n');
        }
        self.push_unchecked(bytes);
    }

    fn forget_replies(&mut self) {
        self.longest_end = 0;
        self.longest_len = 0;
    }

    fn push_unchecked(&mut self, bytes: &[u8]) {
        // Drop the written prefix once it is the larger part, so the buffer
        // does not creep forward forever under a steady partial-write load.
        if self.sent > 0 && self.sent >= self.buf.len() / 2 {
            self.starts_mid_line = self.buf[self.sent - 1] != b'\n';
            self.buf.drain(..self.sent);
            self.longest_end = self.longest_end.saturating_sub(self.sent);
            self.sent = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Writes pending bytes to `w` until the queue is empty or the writer
    /// would block. Returns `Ok(())` in both cases (check [`is_empty`]);
    /// an `Err` is a real write error and the connection is dead.
    ///
    /// A short write means the socket buffer is full, so we stop there
    /// instead of spending a syscall to hear `WouldBlock`: the kernel reports
    /// the socket writable again when space frees up.
    ///
    /// [`is_empty`]: Self::is_empty
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<()> {
        while !self.is_empty() {
            let pending = &self.buf[self.sent..];
            match w.write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    if n < pending.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.is_empty() {
            // Give the memory back: idle connections should cost nothing.
            self.starts_mid_line = self.buf.last().is_some_and(|&b| b != b'\n');
            self.buf = Vec::new();
            self.sent = 0;
            self.forget_replies();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `room` bytes per call, then would block.
    struct Trickle {
        out: Vec<u8>,
        per_call: usize,
        calls_left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = b.len().min(self.per_call);
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_bytes() {
        let mut q = SendQueue::new(1 << 20);
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 3,
            calls_left: 0,
        };
        let mut want = Vec::new();
        for i in 0..100 {
            let line = format!("line {i}\n");
            q.push(line.as_bytes()).unwrap();
            want.extend_from_slice(line.as_bytes());
            w.calls_left = 1;
            q.write_to(&mut w).unwrap();
        }
        while !q.is_empty() {
            w.calls_left = 1;
            q.write_to(&mut w).unwrap();
        }
        assert_eq!(w.out, want);
        assert_eq!(q.capacity(), 0, "an empty queue holds no memory");
    }

    #[test]
    fn cap_refuses_without_appending() {
        let mut q = SendQueue::new(10);
        q.push(b"1234567\n").unwrap();
        q.push(b"123\n").unwrap();
        assert_eq!(q.push(b"1234567\n"), Err(Overflow));
        assert_eq!(q.len(), 12);
        q.replace_with(b"bye\n");
        assert_eq!(q.len(), 4);
    }

    /// A reply longer than the cap is one answer, not a reader falling
    /// behind: an empty queue takes it, and the cap still stops a reader
    /// that reads nothing (at most cap + the longest reply stays owed).
    #[test]
    fn one_reply_longer_than_the_cap_is_accepted() {
        let mut q = SendQueue::new(10);
        let long = [b'x'; 99];
        assert_eq!(q.push_line(&long), Ok(()));
        assert_eq!(q.push_line(b"1234"), Ok(()));
        assert_eq!(q.push_line(b"1234"), Ok(()));
        assert_eq!(q.push_line(b"1"), Err(Overflow));
        assert_eq!(q.len(), 100 + 10);
    }

    /// Lines owed beside a long reply count against the cap, whichever
    /// came first.
    #[test]
    fn the_cap_counts_everything_but_the_longest_reply() {
        let mut q = SendQueue::new(10);
        q.push(b"12345678\n").unwrap();
        assert_eq!(q.push(&[b'y'; 50]), Ok(()), "the long one is exempt");
        assert_eq!(q.push(b"1\n"), Err(Overflow), "9 + 2 owed beside it");
        // Once the long reply is written, the short ones are all that count.
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 60,
            calls_left: 1,
        };
        q.write_to(&mut w).unwrap();
        assert!(q.is_empty());
        assert_eq!(q.push(b"123456789\n"), Ok(()));
        assert_eq!(q.push(b"1234567\n"), Ok(()), "8 owed beside the longest");
        assert_eq!(q.push(b"12\n"), Err(Overflow), "11 would be");
        assert_eq!(q.push(b"1\n"), Ok(()), "10 is the cap");
    }

    /// A kick replaces what is owed by the error line, but the line that
    /// is half written is finished first, so the peer never sees a cut
    /// line glued to the error.
    #[test]
    fn replace_with_finishes_the_line_in_flight() {
        let mut q = SendQueue::new(1 << 20);
        q.push(b"first line\n").unwrap();
        q.push(b"second line\n").unwrap();
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 4,
            calls_left: 1,
        };
        q.write_to(&mut w).unwrap();
        q.replace_with(b"! bye\n");
        while !q.is_empty() {
            w.calls_left = 1;
            q.write_to(&mut w).unwrap();
        }
        assert_eq!(w.out, b"first line\n! bye\n");
    }

    /// The same when the written prefix was already dropped from the
    /// buffer (the queue compacts itself as it goes), and when the cut
    /// falls just after a newline (nothing to finish).
    #[test]
    fn replace_with_after_compaction_and_on_a_boundary() {
        let mut q = SendQueue::new(1 << 20);
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 7,
            calls_left: 1,
        };
        q.push(b"aaaaaaaaa\n").unwrap();
        q.write_to(&mut w).unwrap();
        q.push(b"b\n").unwrap(); // compacts: 7 of 10 bytes were written
        q.replace_with(b"! bye\n");
        while !q.is_empty() {
            w.calls_left = 1;
            q.write_to(&mut w).unwrap();
        }
        assert_eq!(w.out, b"aaaaaaaaa\n! bye\n");

        let mut q = SendQueue::new(1 << 20);
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 3,
            calls_left: 1,
        };
        q.push(b"ab\n").unwrap();
        q.push(b"cd\n").unwrap();
        q.write_to(&mut w).unwrap();
        q.replace_with(b"! bye\n");
        while !q.is_empty() {
            w.calls_left = 1;
            q.write_to(&mut w).unwrap();
        }
        assert_eq!(w.out, b"ab\n! bye\n");
    }

    #[test]
    fn would_block_is_not_an_error() {
        let mut q = SendQueue::new(100);
        q.push(b"hello").unwrap();
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 100,
            calls_left: 0,
        };
        assert!(q.write_to(&mut w).is_ok());
        assert_eq!(q.len(), 5);
    }
}
