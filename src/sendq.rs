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
}

impl SendQueue {
    /// An empty queue that refuses to hold more than `cap` bytes.
    pub fn new(cap: usize) -> SendQueue {
        SendQueue {
            buf: Vec::new(),
            sent: 0,
            cap,
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

    /// Appends `bytes`, or refuses if that would pass the cap.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        if self.len() + bytes.len() > self.cap {
            return Err(Overflow);
        }
        self.push_unchecked(bytes);
        Ok(())
    }

    /// Appends `line` and a `\n`, or refuses if that would pass the cap.
    pub fn push_line(&mut self, line: &[u8]) -> Result<(), Overflow> {
        if self.len() + line.len() + 1 > self.cap {
            return Err(Overflow);
        }
        self.push_unchecked(line);
        self.push_unchecked(b"\n");
        Ok(())
    }

    /// Drops everything pending and the memory it held.
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.sent = 0;
    }

    /// Replaces everything pending with one last line (an error telling the
    /// peer why it is being disconnected), ignoring the cap.
    pub fn replace_with(&mut self, bytes: &[u8]) {
        self.buf.clear();
        self.sent = 0;
        self.push_unchecked(bytes);
    }

    fn push_unchecked(&mut self, bytes: &[u8]) {
        // Drop the written prefix once it is the larger part, so the buffer
        // does not creep forward forever under a steady partial-write load.
        if self.sent > 0 && self.sent >= self.buf.len() / 2 {
            self.buf.drain(..self.sent);
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
            self.buf = Vec::new();
            self.sent = 0;
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
        q.push(b"12345678").unwrap();
        assert_eq!(q.push(b"abc"), Err(Overflow));
        assert_eq!(q.len(), 8);
        q.replace_with(b"bye\n");
        assert_eq!(q.len(), 4);
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
