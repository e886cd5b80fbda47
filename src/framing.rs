//! Bytes in, lines out: the newline framer. No sockets here.
//!
//! TCP delivers a byte stream, not messages: one `read()` may return half a
//! line, or three lines and the start of a fourth. [`LineFramer`] keeps what
//! has arrived and hands out complete lines one at a time.
//!
//! It is written against the classic framing bugs:
//! - **Bounded memory.** A line longer than `max_line` is reported as
//!   [`Frame::TooLong`] as soon as the limit is passed, *before* its newline
//!   arrives, and the rest of it is dropped as it comes in. A peer sending
//!   10 MB without a newline costs us at most `max_line` bytes.
//! - **No rescanning.** `scanned` remembers how far we already looked for a
//!   newline, so a line dribbled in one byte at a time costs O(n), not O(n²).
//! - **One line at a time.** The caller pulls lines with
//!   [`LineFramer::next_frame`], so it can stop (for flow control) and leave
//!   the rest buffered.
//!
//! Telnet clients open with option negotiation (`IAC` 0xFF sequences). Those
//! are removed on the way in, across read boundaries, so `telnet` works like
//! `nc`.

/// The telnet "interpret as command" byte, and the commands we must skip.
const IAC: u8 = 0xFF;
const SB: u8 = 250; // subnegotiation begins ...
const SE: u8 = 240; // ... and ends
const WILL: u8 = 251; // WILL, WONT, DO, DONT (251..=254) take one option byte
const DONT: u8 = 254;

/// What [`LineFramer::next_frame`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One complete line, without its `\n` or `\r\n`.
    Line(&'a [u8]),
    /// A line passed the length limit; it has been (or is being) discarded.
    TooLong,
}

/// Where we are inside a telnet command, carried from one `push` to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    Data,
    Iac,
    Option,
    Sub,
    SubIac,
}

/// Splits a byte stream into lines of at most `max_line` bytes.
#[derive(Debug)]
pub struct LineFramer {
    /// Received bytes (telnet commands removed); `buf[start..]` is unconsumed.
    buf: Vec<u8>,
    start: usize,
    /// `buf[start..start + scanned]` is known to hold no `\n`.
    scanned: usize,
    max_line: usize,
    /// Inside an over-long line: drop everything up to the next `\n`.
    discarding: bool,
    telnet: Telnet,
}

impl LineFramer {
    /// A framer for lines of at most `max_line` bytes (not counting `\r\n`).
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_line,
            discarding: false,
            telnet: Telnet::Data,
        }
    }

    /// Bytes held that have not been returned as lines yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The heap memory this framer holds (for memory accounting in tests).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends bytes as they came off the socket.
    ///
    /// Call [`next_frame`](Self::next_frame) until it returns `None` before
    /// the next `push`, or the buffer holds more than one read's worth.
    pub fn push(&mut self, data: &[u8]) {
        // Move the unconsumed tail to the front before growing, so the
        // buffer never holds consumed lines.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.telnet == Telnet::Data && !data.contains(&IAC) {
            self.buf.extend_from_slice(data); // the common case: plain text
        } else {
            self.push_telnet(data);
        }
    }

    /// The slow path: strip telnet commands byte by byte.
    fn push_telnet(&mut self, data: &[u8]) {
        for &b in data {
            self.telnet = match (self.telnet, b) {
                (Telnet::Data, IAC) => Telnet::Iac,
                (Telnet::Data, _) => {
                    self.buf.push(b);
                    Telnet::Data
                }
                (Telnet::Iac, IAC) => {
                    self.buf.push(IAC); // IAC IAC is a literal 0xFF
                    Telnet::Data
                }
                (Telnet::Iac, WILL..=DONT) => Telnet::Option,
                (Telnet::Iac, SB) => Telnet::Sub,
                (Telnet::Iac, _) => Telnet::Data, // two-byte command (NOP, IP, AYT...)
                (Telnet::Option, _) => Telnet::Data,
                (Telnet::Sub, IAC) => Telnet::SubIac,
                (Telnet::Sub, _) => Telnet::Sub,
                (Telnet::SubIac, SE) => Telnet::Data,
                (Telnet::SubIac, _) => Telnet::Sub,
            };
        }
    }

    /// Returns the next complete line, [`Frame::TooLong`] once for each
    /// over-long line, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        loop {
            let unscanned = &self.buf[self.start + self.scanned..];
            let Some(i) = unscanned.iter().position(|&b| b == b'\n') else {
                return self.no_newline_yet();
            };
            let line_start = self.start;
            let line_end = self.start + self.scanned + i;
            self.start = line_end + 1;
            self.scanned = 0;
            if self.discarding {
                // That newline ended an over-long line we already reported.
                self.discarding = false;
                continue;
            }
            let mut line = &self.buf[line_start..line_end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > self.max_line {
                return Some(Frame::TooLong);
            }
            return Some(Frame::Line(line));
        }
    }

    /// No `\n` in the buffer: enforce the limit now, and give memory back.
    fn no_newline_yet(&mut self) -> Option<Frame<'_>> {
        let pending = self.buf.len() - self.start;
        // +1: the line may still end in "\r\n", and the \r does not count.
        if self.discarding || pending > self.max_line + 1 {
            let report = !self.discarding;
            self.discarding = true;
            self.release();
            return report.then_some(Frame::TooLong);
        }
        if pending == 0 {
            self.release();
        } else {
            self.scanned = pending;
        }
        None
    }

    /// Frees the buffer: an idle connection should hold no heap memory.
    fn release(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.scanned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes and collects every frame.
    fn frames(max: usize, input: &[u8], chunk: usize) -> Vec<Result<String, ()>> {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            f.push(piece);
            while let Some(frame) = f.next_frame() {
                out.push(match frame {
                    Frame::Line(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                    Frame::TooLong => Err(()),
                });
            }
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        let want = vec![Ok("a".into()), Ok("bc".into()), Ok("".into())];
        for chunk in 1..8 {
            assert_eq!(frames(10, b"a\nbc\r\n\npartial", chunk), want);
        }
    }

    #[test]
    fn over_long_line_is_reported_once_before_its_newline() {
        let mut f = LineFramer::new(4);
        f.push(b"abcdefgh");
        assert_eq!(f.next_frame(), Some(Frame::TooLong));
        assert_eq!(f.next_frame(), None);
        assert_eq!(f.buffered(), 0, "the long line is not kept");
        f.push(b"ijk\nok\n");
        assert_eq!(f.next_frame(), Some(Frame::Line(b"ok")));
        assert_eq!(f.next_frame(), None);
    }

    #[test]
    fn over_long_complete_line_then_normal_line() {
        assert_eq!(
            frames(4, b"abcdefgh\nok\n", 100),
            vec![Err(()), Ok("ok".into())]
        );
        // exactly max, with \r\n, is fine
        assert_eq!(frames(4, b"abcd\r\n", 100), vec![Ok("abcd".into())]);
        assert_eq!(frames(4, b"abcd\r\n", 1), vec![Ok("abcd".into())]);
    }

    #[test]
    fn memory_stays_bounded_for_endless_line() {
        let mut f = LineFramer::new(100);
        let chunk = [b'x'; 1000];
        let mut reports = 0;
        for _ in 0..10_000 {
            f.push(&chunk);
            while let Some(frame) = f.next_frame() {
                assert_eq!(frame, Frame::TooLong);
                reports += 1;
            }
            assert!(f.capacity() <= 2000);
        }
        assert_eq!(reports, 1);
    }

    #[test]
    fn telnet_negotiation_is_skipped_across_reads() {
        // IAC DO ECHO, IAC SB NAWS 0 80 0 24 IAC SE, IAC NOP, then text; IAC IAC = 0xFF
        let mut input = vec![IAC, 253, 1, IAC, SB, 31, 0, 80, 0, 24, IAC, SE, IAC, 241];
        input.extend_from_slice(b"hi\n");
        input.extend_from_slice(&[b'a', IAC, IAC, b'\n']);
        for chunk in 1..6 {
            let mut f = LineFramer::new(100);
            let mut lines: Vec<Vec<u8>> = Vec::new();
            for piece in input.chunks(chunk) {
                f.push(piece);
                while let Some(Frame::Line(l)) = f.next_frame() {
                    lines.push(l.to_vec());
                }
            }
            assert_eq!(lines, vec![b"hi".to_vec(), vec![b'a', 0xFF]]);
        }
    }

    #[test]
    fn idle_framer_holds_no_memory() {
        let mut f = LineFramer::new(100);
        f.push(b"hello\n");
        assert!(f.next_frame().is_some());
        assert!(f.next_frame().is_none());
        assert_eq!(f.capacity(), 0);
    }

    proptest::proptest! {
        /// However the stream is cut into reads, the same lines come out,
        /// and the buffer never holds more than one push plus one line.
        #[test]
        fn chunking_does_not_matter(
            lines in proptest::collection::vec("[a-z\r]{0,12}", 0..20),
            cut in 1usize..20,
        ) {
            let mut input = Vec::new();
            for l in &lines { input.extend_from_slice(l.as_bytes()); input.push(b'\n'); }
            let whole = frames(8, &input, input.len().max(1));
            let cut_up = frames(8, &input, cut);
            proptest::prop_assert_eq!(whole, cut_up);
        }
    }
}
