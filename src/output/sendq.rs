//! A connection's pending output: an ordered list of spans, with a cap.
//!
//! The loop never blocks on a write. Output for a connection is appended
//! here; later, once per loop turn, [`SendQueue::write_to`] hands as much as
//! the kernel will take to the socket in one `writev`, and keeps the rest,
//! remembering how far it got (Redis calls this `sentlen`). A short write is
//! not an error, it is the normal answer of a full socket buffer.
//!
//! What is owed is a list of **spans**, in the order the bytes must leave:
//!
//! ```text
//!   own:  [reply to /who ......][private line]       bytes only this connection gets
//!   pool: chunk 7 [.. #lobby lines ........................]  shared with every member
//!
//!   spans: Own(31) → Shared(7, 120..2048) → Own(18) → Shared(7, 2100..2300)
//! ```
//!
//! A broadcast adds a span pointing into the [`Pool`], where its bytes are
//! stored once for every recipient; when the previous span ends where the
//! new piece starts (the room's previous line), it is extended instead, so
//! a reader that falls behind in a busy room owes one span per chunk, not
//! one per line. Replies and private lines are the queue's own bytes.
//!
//! The cap is the defence against slow readers: a client that reads nothing
//! would otherwise pin the whole room's traffic, forever. It is about a
//! reader falling behind, not about one long answer: the longest reply
//! owed (the room's list at join, `/who` in a big room, which grow with the
//! room) does not count against it, everything else owed does. So one reply
//! of any length reaches an attentive reader whole, and a queue owes at most
//! the cap plus one reply. Owed bytes are counted whether or not they are
//! shared: the cap keeps its meaning for the peer.
//!
//! Bytes leave in the order they were queued and in whole lines, even when
//! the connection is kicked: [`SendQueue::replace_with`] finishes the line
//! that is half written before the last words.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use super::pool::{Piece, Pool};

/// Buffers per `writev`. Linux takes up to 1024 (`IOV_MAX`); a queue rarely
/// owes more than a few spans, and 64 chunks already make a megabyte.
const MAX_IOV: usize = 64;

/// The queue would pass its cap; nothing was appended.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// A run of bytes owed, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    /// The next `len` bytes of the queue's own buffer, queued at `at` (on
    /// the pool's clock, for "who holds the oldest bytes").
    Own { len: u32, at: u64 },
    /// Bytes of a pool chunk: `chunk[start..end]`.
    Shared { chunk: u32, start: u32, end: u32 },
}

impl Span {
    fn len(&self) -> usize {
        match *self {
            Span::Own { len, .. } => len as usize,
            Span::Shared { start, end, .. } => (end - start) as usize,
        }
    }
}

/// Bytes waiting to be written to one socket.
#[derive(Debug)]
pub struct SendQueue {
    /// The first span, inline: a queue usually owes one (a room's lines
    /// merge into it), and then it costs no allocation.
    head: Option<Span>,
    rest: VecDeque<Span>,
    /// This connection's own bytes; `own[..own_sent]` are written.
    own: Vec<u8>,
    own_sent: usize,
    /// The total length of the spans.
    owed: usize,
    cap: usize,
    /// Bytes ever queued and written: positions in the connection's byte
    /// stream, for the longest reply below.
    queued: u64,
    written: u64,
    /// The longest reply still owed, exempt from the cap: it ends at
    /// stream position `longest_end` and is `longest_len` bytes long.
    longest_end: u64,
    longest_len: usize,
    /// The last byte written was not a newline: the head span starts in the
    /// middle of a line.
    mid_line: bool,
    /// Part of the head span has been written (it starts inside whatever
    /// unit, line or frame, was pushed).
    head_started: bool,
}

impl SendQueue {
    /// An empty queue whose owed bytes, apart from its longest reply, stay
    /// within `cap`.
    pub fn new(cap: usize) -> SendQueue {
        SendQueue {
            head: None,
            rest: VecDeque::new(),
            own: Vec::new(),
            own_sent: 0,
            owed: 0,
            cap,
            queued: 0,
            written: 0,
            longest_end: 0,
            longest_len: 0,
            mid_line: false,
            head_started: false,
        }
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.owed
    }

    pub fn is_empty(&self) -> bool {
        self.owed == 0
    }

    /// Own bytes owed (replies, private lines): the memory this queue
    /// holds alone.
    pub fn own_len(&self) -> usize {
        self.own.len() - self.own_sent
    }

    /// Spans owed (for measuring fragmentation).
    pub fn spans(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    /// How old the oldest byte owed is, on the pool's clock (smaller is
    /// older); `None` when nothing is owed.
    pub fn age(&self, pool: &Pool) -> Option<u64> {
        match self.head? {
            Span::Own { at, .. } => Some(at),
            Span::Shared { chunk, .. } => Some(pool.seq(chunk)),
        }
    }

    /// Appends `bytes` (one reply: one or more whole lines), or refuses if
    /// what would be owed besides the longest reply passes the cap.
    pub fn push(&mut self, pool: &mut Pool, bytes: &[u8]) -> Result<(), Overflow> {
        self.admit(bytes.len())?;
        self.push_own(pool, &[bytes]);
        self.note_reply(bytes.len());
        Ok(())
    }

    /// Appends `line` and a `\n`, like [`push`](Self::push).
    pub fn push_line(&mut self, pool: &mut Pool, line: &[u8]) -> Result<(), Overflow> {
        self.admit(line.len() + 1)?;
        self.push_own(pool, &[line, b"\n"]);
        self.note_reply(line.len() + 1);
        Ok(())
    }

    /// Appends a broadcast stored once in `pool` (whole lines), like
    /// [`push`](Self::push): the span before it grows if it ends where
    /// `piece` starts, so a room's lines owed in a row are one span.
    pub fn push_shared(&mut self, pool: &mut Pool, piece: Piece) -> Result<(), Overflow> {
        if piece.is_empty() {
            return Ok(());
        }
        self.admit(piece.len())?;
        let merged = match self.last_mut() {
            Some(Span::Shared { chunk, end, .. })
                if *chunk == piece.chunk && *end == piece.start =>
            {
                *end = piece.end;
                true
            }
            _ => false,
        };
        if !merged {
            pool.retain(piece.chunk);
            self.push_span(Span::Shared {
                chunk: piece.chunk,
                start: piece.start,
                end: piece.end,
            });
        }
        self.owed += piece.len();
        self.queued += piece.len() as u64;
        self.note_reply(piece.len());
        Ok(())
    }

    fn last_mut(&mut self) -> Option<&mut Span> {
        match self.rest.back_mut() {
            Some(s) => Some(s),
            None => self.head.as_mut(),
        }
    }

    fn push_span(&mut self, span: Span) {
        if self.head.is_none() {
            self.head = Some(span);
        } else {
            self.rest.push_back(span);
        }
    }

    fn pop_span(&mut self) -> Option<Span> {
        self.head_started = false;
        let span = self.head.take();
        self.head = self.rest.pop_front();
        span
    }

    /// The unwritten part of the longest reply owed.
    fn longest_owed(&self) -> usize {
        let start = self.longest_end.saturating_sub(self.longest_len as u64);
        self.longest_end.saturating_sub(self.written.max(start)) as usize
    }

    /// Whether a reply of `n` bytes fits: everything owed after it, except
    /// the longest reply (it or an earlier one), must stay within the cap.
    fn admit(&self, n: usize) -> Result<(), Overflow> {
        if self.owed + n - self.longest_owed().max(n) > self.cap {
            return Err(Overflow);
        }
        Ok(())
    }

    /// Records the reply of `n` bytes just appended, if it is the longest.
    fn note_reply(&mut self, n: usize) {
        if n > self.longest_owed() {
            self.longest_end = self.queued;
            self.longest_len = n;
        }
    }

    fn forget_replies(&mut self) {
        self.longest_end = 0;
        self.longest_len = 0;
        self.queued = self.written + self.owed as u64;
    }

    /// Appends `parts` to the own bytes, in one span (merged with the last
    /// span if that is own bytes too), ignoring the cap.
    fn push_own(&mut self, pool: &mut Pool, parts: &[&[u8]]) {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        if n == 0 {
            return;
        }
        let before = self.own.capacity();
        // Drop the written prefix once it is the larger part, so the buffer
        // does not creep forward forever under a steady partial-write load.
        if self.own_sent > 0 && self.own_sent >= self.own.len() / 2 {
            self.own.drain(..self.own_sent);
            self.own_sent = 0;
        }
        for part in parts {
            self.own.extend_from_slice(part);
        }
        pool.own_changed(before, self.own.capacity());
        let at = pool.now();
        let merged = match self.last_mut() {
            Some(Span::Own { len, .. }) => match u32::try_from(*len as usize + n) {
                Ok(sum) => {
                    *len = sum;
                    true
                }
                Err(_) => false,
            },
            _ => false,
        };
        if !merged {
            // A single reply never nears 4 GiB: the line limit and the
            // send queue cap are far below.
            let len = u32::try_from(n).unwrap_or(u32::MAX);
            self.push_span(Span::Own { len, at });
        }
        self.owed += n;
        self.queued += n as u64;
    }

    /// Drops everything owed and the memory it held (for a connection
    /// being freed, or a client starting a fresh stream). A queue must be
    /// cleared before it is dropped, or the chunks it points into stay.
    pub fn clear(&mut self, pool: &mut Pool) {
        while let Some(span) = self.pop_span() {
            if let Span::Shared { chunk, .. } = span {
                pool.release(chunk);
            }
        }
        self.rest = VecDeque::new();
        pool.own_changed(self.own.capacity(), 0);
        self.own = Vec::new();
        self.own_sent = 0;
        self.owed = 0;
        self.mid_line = false;
        self.forget_replies();
    }

    /// The bytes of the span at the front, from `own_pos` for own bytes.
    fn span_bytes<'a>(&'a self, pool: &'a Pool, span: Span, own_pos: usize) -> &'a [u8] {
        match span {
            Span::Own { len, .. } => self.own.get(own_pos..own_pos + len as usize).unwrap_or(&[]),
            Span::Shared { chunk, start, end } => pool.bytes(chunk, start, end),
        }
    }

    /// Replaces what is owed with one last line (an error telling the peer
    /// why it is being disconnected), ignoring the cap. A line already half
    /// written is finished first, so the peer gets whole lines: the rest of
    /// that line, then `bytes`; the lines after it are dropped unsent.
    pub fn replace_with(&mut self, pool: &mut Pool, bytes: &[u8]) {
        self.replace(pool, bytes, true);
    }

    /// [`replace_with`](Self::replace_with) for a queue of frames (a
    /// WebSocket's) rather than lines: a frame half written cannot be found
    /// by its end, so the whole span it is in is kept (spans hold whole
    /// pushes, and each push is whole frames).
    pub fn replace_frames_with(&mut self, pool: &mut Pool, bytes: &[u8]) {
        self.replace(pool, bytes, false);
    }

    fn replace(&mut self, pool: &mut Pool, bytes: &[u8], lines: bool) {
        let started = self.head_started;
        // Lines never straddle spans, so the rest of the line in flight
        // is in the head span.
        let head = self.pop_span();
        let keep = match head {
            Some(span) if !lines && started => span.len(),
            Some(_) if !lines => 0,
            Some(span) if self.mid_line => {
                let b = self.span_bytes(pool, span, self.own_sent);
                b.iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |i| i + 1)
            }
            _ => 0,
        };
        let ends_line = match head {
            Some(span) if keep > 0 && lines => {
                self.span_bytes(pool, span, self.own_sent)[keep - 1] == b'\n'
            }
            _ => true,
        };
        while let Some(span) = self.pop_span() {
            if let Span::Shared { chunk, .. } = span {
                pool.release(chunk);
            }
        }
        let before = self.own.capacity();
        self.own.drain(..self.own_sent);
        self.own_sent = 0;
        self.owed = keep;
        match head {
            Some(Span::Own { at, .. }) if keep > 0 => {
                self.own.truncate(keep);
                self.head = Some(Span::Own {
                    len: keep as u32,
                    at,
                });
            }
            Some(Span::Shared { chunk, start, .. }) if keep > 0 => {
                self.own.clear();
                self.head = Some(Span::Shared {
                    chunk,
                    start,
                    end: start + keep as u32,
                });
            }
            other => {
                self.own.clear();
                if let Some(Span::Shared { chunk, .. }) = other {
                    pool.release(chunk);
                }
            }
        }
        pool.own_changed(before, self.own.capacity());
        self.head_started = started && keep > 0;
        self.forget_replies();
        if !ends_line {
            // Only if a push broke the contract (lines end in `\n`).
            self.push_own(pool, &[b"\n"]);
        }
        self.push_own(pool, &[bytes]);
    }

    /// Writes pending bytes to `w`, a `writev` of up to [`MAX_IOV`] spans
    /// at a time, until the queue is empty or the writer would block.
    /// Returns `Ok(())` in both cases (check [`is_empty`]); an `Err` is a
    /// real write error and the connection is dead.
    ///
    /// A short write means the socket buffer is full, so we stop there
    /// instead of spending a syscall to hear `WouldBlock`: the kernel reports
    /// the socket writable again when space frees up.
    ///
    /// [`is_empty`]: Self::is_empty
    pub fn write_to<W: Write>(&mut self, pool: &mut Pool, w: &mut W) -> io::Result<()> {
        while !self.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            let mut offered = 0;
            let mut own_pos = self.own_sent;
            for &span in self.head.iter().chain(self.rest.iter()).take(MAX_IOV) {
                let bytes = self.span_bytes(pool, span, own_pos);
                if let Span::Own { len, .. } = span {
                    own_pos += len as usize;
                }
                iov[n_iov] = IoSlice::new(bytes);
                n_iov += 1;
                offered += bytes.len();
            }
            match w.write_vectored(&iov[..n_iov]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.advance(pool, n);
                    if n < offered {
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
            self.rest = VecDeque::new();
            pool.own_changed(self.own.capacity(), 0);
            self.own = Vec::new();
            self.own_sent = 0;
            self.forget_replies();
        }
        Ok(())
    }

    /// `n` bytes were written: drop what they covered, releasing chunks.
    fn advance(&mut self, pool: &mut Pool, mut n: usize) {
        n = n.min(self.owed);
        self.owed -= n;
        self.written += n as u64;
        while n > 0 {
            let Some(span) = self.head else {
                break;
            };
            let len = span.len();
            let take = n.min(len);
            let bytes = self.span_bytes(pool, span, self.own_sent);
            if let Some(&last) = bytes.get(take - 1) {
                self.mid_line = last != b'\n';
            }
            n -= take;
            match span {
                Span::Own { len, at } => {
                    self.own_sent += take;
                    self.head = Some(Span::Own {
                        len: len - take as u32,
                        at,
                    });
                }
                Span::Shared { chunk, start, end } => {
                    self.head = Some(Span::Shared {
                        chunk,
                        start: start + take as u32,
                        end,
                    });
                }
            }
            self.head_started = true;
            if take == len {
                self.pop_span();
                if let Span::Shared { chunk, .. } = span {
                    pool.release(chunk);
                }
            }
        }
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
        let mut p = Pool::new();
        let mut q = SendQueue::new(1 << 20);
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 3,
            calls_left: 0,
        };
        let mut want = Vec::new();
        for i in 0..100 {
            let line = format!("line {i}\n");
            q.push(&mut p, line.as_bytes()).unwrap();
            want.extend_from_slice(line.as_bytes());
            w.calls_left = 1;
            q.write_to(&mut p, &mut w).unwrap();
        }
        while !q.is_empty() {
            w.calls_left = 1;
            q.write_to(&mut p, &mut w).unwrap();
        }
        assert_eq!(w.out, want);
        assert_eq!(p.held(), 0, "an empty queue holds no memory");
    }

    #[test]
    fn cap_refuses_without_appending() {
        let mut p = Pool::new();
        let mut q = SendQueue::new(10);
        q.push(&mut p, b"1234567\n").unwrap();
        q.push(&mut p, b"123\n").unwrap();
        assert_eq!(q.push(&mut p, b"1234567\n"), Err(Overflow));
        assert_eq!(q.len(), 12);
        q.replace_with(&mut p, b"bye\n");
        assert_eq!(q.len(), 4);
    }

    /// A reply longer than the cap is one answer, not a reader falling
    /// behind: an empty queue takes it, and the cap still stops a reader
    /// that reads nothing (at most cap + the longest reply stays owed).
    #[test]
    fn one_reply_longer_than_the_cap_is_accepted() {
        let mut p = Pool::new();
        let mut q = SendQueue::new(10);
        let long = [b'x'; 99];
        assert_eq!(q.push_line(&mut p, &long), Ok(()));
        assert_eq!(q.push_line(&mut p, b"1234"), Ok(()));
        assert_eq!(q.push_line(&mut p, b"1234"), Ok(()));
        assert_eq!(q.push_line(&mut p, b"1"), Err(Overflow));
        assert_eq!(q.len(), 100 + 10);
    }

    /// Lines owed beside a long reply count against the cap, whichever
    /// came first.
    #[test]
    fn the_cap_counts_everything_but_the_longest_reply() {
        let mut p = Pool::new();
        let mut q = SendQueue::new(10);
        q.push(&mut p, b"12345678\n").unwrap();
        assert_eq!(
            q.push(&mut p, &[b'y'; 50]),
            Ok(()),
            "the long one is exempt"
        );
        assert_eq!(
            q.push(&mut p, b"1\n"),
            Err(Overflow),
            "9 + 2 owed beside it"
        );
        // Once the long reply is written, the short ones are all that count.
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 60,
            calls_left: 1,
        };
        q.write_to(&mut p, &mut w).unwrap();
        assert!(q.is_empty());
        assert_eq!(q.push(&mut p, b"123456789\n"), Ok(()));
        assert_eq!(
            q.push(&mut p, b"1234567\n"),
            Ok(()),
            "8 owed beside the longest"
        );
        assert_eq!(q.push(&mut p, b"12\n"), Err(Overflow), "11 would be");
        assert_eq!(q.push(&mut p, b"1\n"), Ok(()), "10 is the cap");
    }

    /// A kick replaces what is owed by the error line, but the line that
    /// is half written is finished first, so the peer never sees a cut
    /// line glued to the error.
    #[test]
    fn replace_with_finishes_the_line_in_flight() {
        let mut p = Pool::new();
        let mut q = SendQueue::new(1 << 20);
        q.push(&mut p, b"first line\n").unwrap();
        q.push(&mut p, b"second line\n").unwrap();
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 4,
            calls_left: 1,
        };
        q.write_to(&mut p, &mut w).unwrap();
        q.replace_with(&mut p, b"! bye\n");
        while !q.is_empty() {
            w.calls_left = 1;
            q.write_to(&mut p, &mut w).unwrap();
        }
        assert_eq!(w.out, b"first line\n! bye\n");
    }

    /// The same when the written prefix was already dropped from the
    /// buffer (the queue compacts itself as it goes), and when the cut
    /// falls just after a newline (nothing to finish).
    #[test]
    fn replace_with_after_compaction_and_on_a_boundary() {
        let mut p = Pool::new();
        let mut q = SendQueue::new(1 << 20);
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 7,
            calls_left: 1,
        };
        q.push(&mut p, b"aaaaaaaaa\n").unwrap();
        q.write_to(&mut p, &mut w).unwrap();
        q.push(&mut p, b"b\n").unwrap(); // compacts: 7 of 10 bytes were written
        q.replace_with(&mut p, b"! bye\n");
        while !q.is_empty() {
            w.calls_left = 1;
            q.write_to(&mut p, &mut w).unwrap();
        }
        assert_eq!(w.out, b"aaaaaaaaa\n! bye\n");

        let mut p = Pool::new();
        let mut q = SendQueue::new(1 << 20);
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 3,
            calls_left: 1,
        };
        q.push(&mut p, b"ab\n").unwrap();
        q.push(&mut p, b"cd\n").unwrap();
        q.write_to(&mut p, &mut w).unwrap();
        q.replace_with(&mut p, b"! bye\n");
        while !q.is_empty() {
            w.calls_left = 1;
            q.write_to(&mut p, &mut w).unwrap();
        }
        assert_eq!(w.out, b"ab\n! bye\n");
    }

    /// Frames have no newline to find: a kick keeps the whole span the
    /// frame in flight is in (spans hold whole pushes), and no stray `\n`.
    #[test]
    fn replace_frames_keeps_the_span_in_flight() {
        let mut p = Pool::new();
        let mut q = SendQueue::new(1 << 20);
        q.push(&mut p, b"\x81\x03abc").unwrap();
        q.push_line(&mut p, b"unrelated").unwrap(); // merged into one own span
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 2,
            calls_left: 1,
        };
        q.write_to(&mut p, &mut w).unwrap();
        q.replace_frames_with(&mut p, b"\x88\x02\x03\xf0");
        while !q.is_empty() {
            w.calls_left = 1;
            q.write_to(&mut p, &mut w).unwrap();
        }
        assert_eq!(w.out, b"\x81\x03abcunrelated\n\x88\x02\x03\xf0");
        // Nothing written yet: everything owed is dropped.
        let mut q = SendQueue::new(1 << 20);
        q.push(&mut p, b"\x81\x01a").unwrap();
        q.replace_frames_with(&mut p, b"\x88\x00");
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 100,
            calls_left: 1,
        };
        q.write_to(&mut p, &mut w).unwrap();
        assert_eq!(w.out, b"\x88\x00");
    }

    #[test]
    fn would_block_is_not_an_error() {
        let mut p = Pool::new();
        let mut q = SendQueue::new(100);
        q.push(&mut p, b"hello").unwrap();
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 100,
            calls_left: 0,
        };
        assert!(q.write_to(&mut p, &mut w).is_ok());
        assert_eq!(q.len(), 5);
    }
}
