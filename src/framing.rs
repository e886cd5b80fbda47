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
//! `nc`. The framer also answers them (RFC 854, RFC 1143's rules), because
//! telnet waits on some answers: on Ctrl-C it sends `IAC DO TIMING-MARK` and
//! discards everything it receives until `IAC WILL TIMING-MARK` comes back
//! (RFC 860). The answers and our own requests collect in a small buffer the
//! loop moves into the connection's send queue ([`LineFramer::take_replies`]).
//! What we answer:
//! - `DO TIMING-MARK`: `WILL TIMING-MARK`, every time (it is a marker, not a
//!   state).
//! - `DO ECHO`/`DONT ECHO`: by RFC 1143's state machine for the one option we
//!   offer ourselves ([`LineFramer::set_echo`], around a password prompt).
//! - Any other `DO X`: `WONT X`; any `WILL X`: `DONT X`. We enable nothing.
//! - `WONT`/`DONT` (other than ECHO's state changes): nothing. Answering a
//!   refusal is how two implementations loop; each reply above answers one
//!   request, so a peer can never get more bytes back than it sent.
//!
//! A peer that never negotiated gets no telnet bytes at all: `nc` users and
//! the loopchat client would see them as garbage.

/// The telnet "interpret as command" byte, and the commands we must skip.
const IAC: u8 = 0xFF;
const SB: u8 = 250; // subnegotiation begins ...
const SE: u8 = 240; // ... and ends
const WILL: u8 = 251; // WILL, WONT, DO, DONT (251..=254) take one option byte
const WONT: u8 = 252;
const DO: u8 = 253;
const DONT: u8 = 254;
/// The options we answer other than by refusing.
const OPT_ECHO: u8 = 1;
const OPT_TIMING_MARK: u8 = 6;

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
    /// After `IAC` and a verb (WILL..=DONT): the option byte comes next.
    Option(u8),
    Sub,
    SubIac,
}

/// Our side of the ECHO option: RFC 1143's "us" states, the "opposite"
/// flag folded in (a change of mind while waiting for the peer's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Echo {
    No,
    Yes,
    /// `WONT` sent, answer awaited; `true`: then ask again.
    WantNo(bool),
    /// `WILL` sent, answer awaited; `true`: then give it back.
    WantYes(bool),
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
    /// The peer has negotiated (sent WILL, WONT, DO, DONT or SB): it is a
    /// telnet client, and may be sent telnet commands.
    speaks_telnet: bool,
    /// Telnet bytes to send to the peer (see [`take_replies`](Self::take_replies)).
    replies: Vec<u8>,
    echo: Echo,
    /// We want ECHO on (a password is being asked).
    want_echo: bool,
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
            speaks_telnet: false,
            replies: Vec::new(),
            echo: Echo::No,
            want_echo: false,
        }
    }

    /// Whether the peer speaks telnet (it has negotiated an option), so that
    /// telnet commands sent to it are understood rather than shown.
    pub fn speaks_telnet(&self) -> bool {
        self.speaks_telnet
    }

    /// Takes the telnet bytes to send to the peer: answers to what
    /// [`push`](Self::push) received and requests made by
    /// [`set_echo`](Self::set_echo). Empty (and no allocation) for peers that
    /// do not negotiate. Call after every `push` and `set_echo`; the bytes
    /// belong in the connection's send queue, in order with its lines.
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.replies)
    }

    /// Asks a telnet peer to stop (`on`) or resume (`!on`) echoing what its
    /// user types, by offering or withdrawing our ECHO option (`IAC WILL
    /// ECHO` / `IAC WONT ECHO`): while we "echo" (and echo nothing), a
    /// password typed in telnet is not shown. Does nothing for a peer that
    /// never negotiated, and nothing when the option is already as wanted
    /// or its change is awaiting the peer's answer.
    pub fn set_echo(&mut self, on: bool) {
        if !self.speaks_telnet {
            return;
        }
        self.want_echo = on;
        self.echo = match (self.echo, on) {
            (Echo::No, true) => {
                self.reply(WILL, OPT_ECHO);
                Echo::WantYes(false)
            }
            (Echo::Yes, false) => {
                self.reply(WONT, OPT_ECHO);
                Echo::WantNo(false)
            }
            (Echo::WantNo(_), on) => Echo::WantNo(on),
            (Echo::WantYes(_), on) => Echo::WantYes(!on),
            (state, _) => state,
        };
    }

    /// Whether a telnet peer has been asked to let us echo (and has not
    /// been told to stop): its terminal then no longer turns `\n` into a
    /// new line, so lines to it must end in the NVT's `\r\n`.
    pub fn remote_echo(&self) -> bool {
        matches!(self.echo, Echo::Yes | Echo::WantYes(_))
    }

    /// The peer's `verb` for `option`: the answer, if any (module docs).
    fn negotiate(&mut self, verb: u8, option: u8) {
        match (verb, option) {
            (DO, OPT_TIMING_MARK) => self.reply(WILL, OPT_TIMING_MARK),
            (DO | DONT, OPT_ECHO) => self.echo_answer(verb == DO),
            (DO, _) => self.reply(WONT, option),
            (WILL, _) => self.reply(DONT, option),
            _ => {} // WONT, DONT: already off on our side; never answered
        }
    }

    /// RFC 1143 for our ECHO: the peer said `DO` (`agreed`) or `DONT`.
    fn echo_answer(&mut self, agreed: bool) {
        self.echo = match (self.echo, agreed) {
            (Echo::No, true) if self.want_echo => {
                self.reply(WILL, OPT_ECHO);
                Echo::Yes
            }
            (Echo::No, true) => {
                self.reply(WONT, OPT_ECHO);
                Echo::No
            }
            (Echo::Yes, false) => {
                self.reply(WONT, OPT_ECHO);
                Echo::No
            }
            (Echo::WantYes(false), true) | (Echo::WantNo(true), true) => Echo::Yes,
            (Echo::WantYes(true), true) => {
                self.reply(WONT, OPT_ECHO);
                Echo::WantNo(false)
            }
            (Echo::WantNo(true), false) => {
                self.reply(WILL, OPT_ECHO);
                Echo::WantYes(false)
            }
            (Echo::WantNo(false), _) | (Echo::WantYes(_), false) => Echo::No,
            (state, _) => state, // No + DONT, Yes + DO: nothing changes
        };
    }

    fn reply(&mut self, verb: u8, option: u8) {
        self.replies.extend_from_slice(&[IAC, verb, option]);
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
                (Telnet::Iac, WILL..=DONT) => {
                    self.speaks_telnet = true;
                    Telnet::Option(b)
                }
                (Telnet::Iac, SB) => {
                    self.speaks_telnet = true;
                    Telnet::Sub
                }
                (Telnet::Iac, _) => Telnet::Data, // two-byte command (NOP, IP, AYT...)
                (Telnet::Option(verb), option) => {
                    self.negotiate(verb, option);
                    Telnet::Data
                }
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

    /// Feeds `input` in chunks of `chunk` bytes; returns the lines and the
    /// telnet bytes the framer wants sent back.
    fn telnet_exchange(f: &mut LineFramer, input: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut lines = Vec::new();
        let mut replies = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            f.push(piece);
            replies.extend(f.take_replies());
            while let Some(Frame::Line(l)) = f.next_frame() {
                lines.push(l.to_vec());
            }
        }
        (lines, replies)
    }

    const NONE: [u8; 0] = [];

    #[test]
    fn timing_mark_is_answered_across_reads() {
        // What telnet sends on Ctrl-C: IAC IP, IAC DO TIMING-MARK. It then
        // discards all output until the WILL TIMING-MARK comes back.
        let input = [
            b'a',
            IAC,
            244,
            IAC,
            DO,
            OPT_TIMING_MARK,
            b'b',
            b'\n',
            IAC,
            DO,
            OPT_TIMING_MARK,
        ];
        for chunk in 1..5 {
            let mut f = LineFramer::new(100);
            let (lines, replies) = telnet_exchange(&mut f, &input, chunk);
            assert_eq!(lines, vec![b"ab".to_vec()]);
            assert_eq!(
                replies,
                [IAC, WILL, OPT_TIMING_MARK, IAC, WILL, OPT_TIMING_MARK],
                "chunk {chunk}"
            );
            assert!(f.speaks_telnet());
        }
    }

    #[test]
    fn other_options_are_refused_and_refusals_never_answered() {
        // DO SGA, WILL NAWS, SB NAWS ... SE, WONT LINEMODE, DONT STATUS.
        let input = [
            IAC,
            DO,
            3,
            IAC,
            WILL,
            31,
            IAC,
            SB,
            31,
            0,
            80,
            0,
            24,
            IAC,
            SE,
            IAC,
            WONT,
            34,
            IAC,
            DONT,
            5,
            IAC,
            WILL,
            OPT_TIMING_MARK,
        ];
        for chunk in 1..6 {
            let mut f = LineFramer::new(100);
            let (lines, replies) = telnet_exchange(&mut f, &input, chunk);
            assert!(lines.is_empty());
            assert_eq!(
                replies,
                [IAC, WONT, 3, IAC, DONT, 31, IAC, DONT, OPT_TIMING_MARK]
            );
        }
    }

    #[test]
    fn plain_peers_never_get_telnet_bytes() {
        // Text, and a literal 0xFF (IAC IAC): no negotiation, so not telnet.
        let mut f = LineFramer::new(100);
        let (lines, replies) = telnet_exchange(&mut f, &[b'x', IAC, IAC, b'\n'], 1);
        assert_eq!(lines, vec![vec![b'x', 0xFF]]);
        assert!(replies.is_empty());
        assert!(!f.speaks_telnet());
        f.set_echo(true);
        f.set_echo(false);
        assert!(f.take_replies().is_empty());
    }

    #[test]
    fn echo_is_offered_for_a_password_and_given_back() {
        let telnet = |f: &mut LineFramer, input: &[u8]| telnet_exchange(f, input, 1).1;
        // Agreed: WILL, DO; then WONT, DONT. Answers to answers: none.
        let mut f = LineFramer::new(100);
        assert_eq!(telnet(&mut f, &[IAC, WONT, 31]), NONE);
        f.set_echo(true);
        assert_eq!(f.take_replies(), [IAC, WILL, OPT_ECHO]);
        f.set_echo(true);
        assert_eq!(f.take_replies(), NONE, "already asked");
        assert_eq!(telnet(&mut f, &[IAC, DO, OPT_ECHO]), NONE);
        assert!(f.remote_echo());
        f.set_echo(false);
        assert_eq!(f.take_replies(), [IAC, WONT, OPT_ECHO]);
        assert!(!f.remote_echo());
        assert_eq!(telnet(&mut f, &[IAC, DONT, OPT_ECHO]), NONE);
        f.set_echo(false);
        assert_eq!(f.take_replies(), NONE, "already off");

        // Refused: DONT ECHO ends it; nothing to give back afterwards.
        f.set_echo(true);
        assert_eq!(f.take_replies(), [IAC, WILL, OPT_ECHO]);
        assert_eq!(telnet(&mut f, &[IAC, DONT, OPT_ECHO]), NONE);
        f.set_echo(false);
        assert_eq!(f.take_replies(), NONE);

        // Switched off before the peer answered: the answer is awaited,
        // then the option given back (RFC 1143's WANTYES OPPOSITE).
        f.set_echo(true);
        assert_eq!(f.take_replies(), [IAC, WILL, OPT_ECHO]);
        f.set_echo(false);
        assert_eq!(f.take_replies(), NONE);
        assert_eq!(telnet(&mut f, &[IAC, DO, OPT_ECHO]), [IAC, WONT, OPT_ECHO]);
        assert_eq!(telnet(&mut f, &[IAC, DONT, OPT_ECHO]), NONE);

        // Asked for by the peer while we do not want it: refused once.
        assert_eq!(telnet(&mut f, &[IAC, DO, OPT_ECHO]), [IAC, WONT, OPT_ECHO]);
        assert_eq!(telnet(&mut f, &[IAC, DONT, OPT_ECHO]), NONE);
    }

    /// Two framers answering each other's telnet bytes settle: whatever
    /// one side starts, the exchange ends within a few round trips.
    #[test]
    fn negotiation_settles() {
        let mut ours = LineFramer::new(100);
        let mut peer = LineFramer::new(100);
        ours.push(&[IAC, WONT, 31]);
        peer.push(&[IAC, WONT, 31]);
        for on in [true, false, true, true, false] {
            ours.set_echo(on);
            let mut to_peer = ours.take_replies();
            let mut rounds = 0;
            while !to_peer.is_empty() {
                rounds += 1;
                assert!(rounds < 5, "negotiation loop");
                peer.push(&to_peer);
                let back = peer.take_replies();
                ours.push(&back);
                to_peer = ours.take_replies();
            }
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
