//! WebSocket (RFC 6455), the server's side, without sockets: bytes in,
//! messages and control replies out; messages in, frame bytes out.
//!
//! After the HTTP upgrade (see [`super::http`]), a WebSocket connection
//! carries **frames**. Each starts with a 2 to 14 byte header:
//!
//! ```text
//!   byte 0            byte 1            then, depending on the length:
//!   F R R R opcode    M  length (7)     126: 2 more bytes of length
//!   I S S S (4 bits)  A  0..=125 bytes  127: 8 more bytes of length
//!   N V V V           S                 then, if MASK is set, 4 bytes of
//!     1 2 3           K                 masking key; then the payload
//! ```
//!
//! - `FIN` says "last frame of this message": a message may be cut into
//!   a first frame (`Text` or `Binary`) and `Continuation` frames, and
//!   control frames (`Close`, `Ping`, `Pong`) may come in between.
//! - Every frame from a client is **masked**: its payload is XORed with the
//!   4-byte key, so that a browser page cannot put chosen bytes on the wire
//!   (and confuse a proxy that reads them as HTTP). Frames from the server
//!   are not masked.
//!
//! [`WsFramer`] checks everything a server must check, and fails the
//! connection (a close frame with a code, then the caller closes) on the
//! first violation:
//!
//! | rule | close code |
//! |---|---|
//! | an unmasked client frame, RSV bits set, an unknown opcode | 1002 |
//! | a control frame over 125 bytes or without `FIN` | 1002 |
//! | a `Continuation` outside a message, a new message inside one | 1002 |
//! | a 64-bit length with its top bit set | 1002 |
//! | a close frame with a 1-byte payload or an invalid code | 1002 |
//! | a message longer than `max_message`, **decided from the header**, before the payload arrives | 1009 |
//! | text that is not UTF-8, checked as the bytes arrive (across fragments and reads, failing as soon as a prefix cannot be UTF-8); a close reason that is not UTF-8 | 1007 |
//!
//! It also answers what the protocol asks: a `Ping` with a `Pong` carrying
//! the same payload, a `Close` with a `Close` echoing its code (the closing
//! handshake). `Pong`s are accepted and ignored. No extension is
//! negotiated (no permessage-deflate), so the RSV bits must be zero.
//!
//! # Memory
//!
//! The framer reads frames **in the caller's buffer** (the loop's shared
//! read buffer), unmasking them in place. A frame that arrived whole and is
//! a whole message, the common case for chat, is handed to the caller as a
//! slice of that buffer: no copy, no allocation. The framer keeps bytes of
//! its own only for what spans reads: a partial header (in a 14-byte array),
//! the payload of a message that arrives in pieces or fragments (at most
//! `max_message` bytes, the limit being checked from each header), a control
//! frame cut by a read (at most 125 bytes), and input left over when the
//! caller pauses it (see below). Each is freed once it is complete, so an
//! idle framer holds no heap memory, like [`LineFramer`](crate::framing::LineFramer).
//!
//! # Using it
//!
//! Feed it every read with [`WsFramer::feed`]; it calls your closure for
//! each [`WsEvent`], **in order**: messages to handle, [`WsEvent::Reply`]
//! bytes to queue for the peer (in order with everything else you send),
//! and at most one [`WsEvent::Closed`] or [`WsEvent::Fail`], after which
//! you queue its `reply` and close once the queue is written; the framer
//! ignores any further input. Close gently: shut down the writing side and
//! read (discarding) until the peer closes or a short timeout passes,
//! because closing a socket with unread input sends a reset, and a reset
//! can destroy the close frame before the peer reads it.
//!
//! The closure returns [`ControlFlow::Break`] to pause (flood control):
//! the framer stops after that event and keeps the rest of the input
//! ([`WsFramer::held`]); call [`WsFramer::resume`] before reading the
//! socket again.
//!
//! ```
//! use std::ops::ControlFlow;
//! use loopchat::transport::websocket::{Opcode, WsEvent, WsFramer, encode_masked};
//!
//! let mut framer = WsFramer::new(4096);
//! let mut input = Vec::new(); // what a browser sends for `ws.send("hi")`
//! encode_masked(Opcode::Text, true, b"hi", [1, 2, 3, 4], &mut input);
//! let mut to_peer = Vec::new();
//! framer.feed(&mut input, &mut |event| {
//!     match event {
//!         WsEvent::Text(line) => assert_eq!(line, b"hi"), // a slice of `input`
//!         WsEvent::Binary(_) => {}
//!         WsEvent::Reply(frame) => to_peer.extend_from_slice(frame),
//!         WsEvent::Closed { reply, .. } | WsEvent::Fail { reply, .. } => {
//!             to_peer.extend_from_slice(reply) // then close
//!         }
//!     }
//!     ControlFlow::Continue(())
//! });
//! ```
//!
//! `examples/ws_echo.rs` is a whole server around it.
//!
//! Server-to-client frames are written with [`frame_header`] (a header put
//! before bytes the caller already has, such as a rendered line) or the
//! `encode_*` functions. [`encode_masked`] and [`parse_unmasked`] are the
//! client's side, for loopchat-bench and the tests.
//!
//! The handshake's `Sec-WebSocket-Accept` is [`accept_key`].

use std::ops::ControlFlow;

/// The longest frame header: 2 bytes, 8 bytes of length, 4 of mask.
pub const MAX_HEADER: usize = 14;
/// The longest control frame payload (RFC 6455 5.5).
pub const MAX_CONTROL: usize = 125;

/// Close codes we send (RFC 6455 7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Data of a type we do not accept (e.g. binary where text is expected).
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// Text that is not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// A rule of ours was broken (e.g. flooding, a slow reader).
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The 4-bit frame kinds RFC 6455 defines; the others are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    /// The opcode for the low 4 bits of a frame's first byte, if defined.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong: at most 125 bytes, never fragmented, and
    /// allowed between the fragments of a message.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// Whether a close frame may carry `code` (RFC 6455 7.4): the defined
/// codes that may be sent (1004 is reserved, 1005 and 1006 only describe a
/// close locally, 1015 is TLS's), and the ranges for libraries (3000-3999)
/// and applications (4000-4999).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// What [`WsFramer::feed`] found. The slices live until the closure returns.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A complete text message; its bytes are valid UTF-8.
    Text(&'a [u8]),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A control frame to send to the peer (a pong), in order with the
    /// rest of the output.
    Reply(&'a [u8]),
    /// The peer closed the connection (`code`: its status code, if it gave
    /// one). Send `reply` (our close frame; empty if we had already sent
    /// ours), then close the TCP connection.
    Closed { code: Option<u16>, reply: &'a [u8] },
    /// The peer broke the protocol. Send `reply` (a close frame with
    /// `code`; empty if we had already sent ours), then close.
    Fail { code: u16, reply: &'a [u8] },
}

/// A frame header, once all of it has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Between frames, or inside a header (`WsFramer::head`).
    Header,
    /// Inside a frame's payload; `done` bytes of it have been read.
    Payload { head: Head, done: u64 },
    /// Closed or failed: input is ignored.
    Done,
}

/// The server's side of one WebSocket connection (see the module docs).
#[derive(Debug)]
pub struct WsFramer {
    max_message: usize,
    stage: Stage,
    /// A header cut by the end of a read: `head[..head_len]`.
    head: [u8; MAX_HEADER],
    head_len: u8,
    /// The data message being received (`Text` or `Binary`): set by its
    /// first frame unless that frame is handed over whole, cleared by its
    /// last.
    message: Option<Opcode>,
    /// That message's payload so far, unmasked.
    msg: Vec<u8>,
    /// `msg[..checked]` is whole UTF-8 characters (for `Text`).
    checked: usize,
    /// A control frame's payload cut by the end of a read.
    ctrl: Vec<u8>,
    /// Input not parsed yet because the caller paused.
    held: Vec<u8>,
    /// We sent a close frame (`close`): the peer's close needs no answer.
    close_sent: bool,
}

impl WsFramer {
    /// A framer accepting messages of at most `max_message` payload bytes
    /// (all fragments together).
    pub fn new(max_message: usize) -> WsFramer {
        WsFramer {
            max_message,
            stage: Stage::Header,
            head: [0; MAX_HEADER],
            head_len: 0,
            message: None,
            msg: Vec::new(),
            checked: 0,
            ctrl: Vec::new(),
            held: Vec::new(),
            close_sent: false,
        }
    }

    /// Parses `input` (bytes just read; unmasked in place), calling `on` for
    /// each event in order until the input is used up or `on` returns
    /// [`ControlFlow::Break`]; then the unparsed rest is kept
    /// ([`held`](Self::held)) for [`resume`](Self::resume). If bytes are
    /// held already, `input` is added after them.
    pub fn feed<F>(&mut self, input: &mut [u8], on: &mut F)
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        if self.held.is_empty() {
            let used = self.run(input, on);
            if used < input.len() {
                self.held.extend_from_slice(&input[used..]);
            }
        } else {
            // Only if the caller read again while paused.
            self.held.extend_from_slice(input);
            self.resume(on);
        }
    }

    /// Parses the input kept by a pause, like [`feed`](Self::feed).
    pub fn resume<F>(&mut self, on: &mut F)
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        let mut held = std::mem::take(&mut self.held);
        let used = self.run(&mut held, on);
        if used < held.len() && self.stage != Stage::Done {
            held.drain(..used);
            self.held = held;
        } // else `held` is dropped: its memory goes back
    }

    /// Bytes kept by a pause: call [`resume`](Self::resume) before the next
    /// read, or they pile up.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether the connection is over (the peer closed, or failed): the
    /// framer will produce nothing more.
    pub fn is_closed(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Starts the closing handshake from our side (shutting down, a slow
    /// reader kicked): appends a close frame with `code` and `reason` to
    /// `out`, and remembers it, so the peer's answering close is reported
    /// as [`WsEvent::Closed`] with nothing to reply. Wait for it (with a
    /// timeout) before closing: closing first may reset the connection
    /// and lose our close frame.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) {
        if !self.close_sent && self.stage != Stage::Done {
            self.close_sent = true;
            encode_close(code, reason, out);
        }
    }

    /// The heap memory this framer holds (for memory accounting in tests).
    pub fn capacity(&self) -> usize {
        self.msg.capacity() + self.ctrl.capacity() + self.held.capacity()
    }

    /// Parses `input` until it is used up, the connection ends, or `on`
    /// pauses. Returns how many bytes were used (all of them once done).
    fn run<F>(&mut self, input: &mut [u8], on: &mut F) -> usize
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        let mut at = 0;
        loop {
            let flow = match self.stage {
                Stage::Done => return input.len(),
                Stage::Header => {
                    if at == input.len() {
                        return at;
                    }
                    let (used, parsed) = self.take_header(&input[at..]);
                    at += used;
                    let head = match parsed.and_then(|h| self.check(h)) {
                        Ok(Some(head)) => head,
                        Ok(None) => return at, // the header goes on in the next read
                        Err(code) => {
                            self.fail(code, on);
                            return input.len();
                        }
                    };
                    let whole = (input.len() - at) as u64 >= head.len;
                    if whole && (head.opcode.is_control() || (head.fin && self.message.is_none())) {
                        // The common case: a whole frame that is a whole
                        // message (or a control frame), read in place.
                        let end = at + head.len as usize; // <= input.len()
                        let payload = &mut input[at..end];
                        at = end;
                        unmask(payload, head.mask, 0);
                        self.whole_frame(head.opcode, payload, on)
                    } else {
                        if !head.opcode.is_control() && self.message.is_none() {
                            self.message = Some(head.opcode);
                        }
                        self.stage = Stage::Payload { head, done: 0 };
                        continue;
                    }
                }
                Stage::Payload { head, done } => {
                    let n = (head.len - done).min((input.len() - at) as u64) as usize;
                    let chunk = &mut input[at..at + n];
                    at += n;
                    unmask(chunk, head.mask, done);
                    let done = done + n as u64;
                    if head.opcode.is_control() {
                        append_bounded(&mut self.ctrl, chunk, MAX_CONTROL);
                    } else {
                        append_bounded(&mut self.msg, chunk, self.max_message);
                        if self.message == Some(Opcode::Text) && !self.utf8_so_far() {
                            self.fail(CLOSE_INVALID_DATA, on);
                            return input.len();
                        }
                    }
                    if done < head.len {
                        self.stage = Stage::Payload { head, done };
                        return at; // == input.len()
                    }
                    self.stage = Stage::Header;
                    if head.opcode.is_control() {
                        let ctrl = std::mem::take(&mut self.ctrl);
                        self.control(head.opcode, &ctrl, on)
                    } else if head.fin {
                        self.finish_message(on)
                    } else {
                        ControlFlow::Continue(())
                    }
                }
            };
            if flow.is_break() {
                return if self.stage == Stage::Done {
                    input.len()
                } else {
                    at
                };
            }
        }
    }

    /// Takes header bytes from `input` (into `self.head` if the header is
    /// cut by the end of the read). Returns the bytes used and the header
    /// once complete; fails at once on what the first two bytes break.
    fn take_header(&mut self, input: &[u8]) -> (usize, Result<Option<Head>, u16>) {
        if self.head_len == 0 && input.len() >= 2 {
            // The fast path: the whole header in this read, nothing copied.
            if let Err(code) = check_start(input[0], input[1]) {
                return (0, Err(code));
            }
            let need = header_len(input[1]);
            if input.len() >= need {
                return (need, parse_header(&input[..need]).map(Some));
            }
        }
        let mut used = 0;
        loop {
            let have = usize::from(self.head_len);
            let need = if have < 2 {
                2
            } else {
                header_len(self.head[1])
            };
            if have == need {
                self.head_len = 0;
                return (used, parse_header(&self.head[..need]).map(Some));
            }
            let Some(&b) = input.get(used) else {
                return (used, Ok(None));
            };
            self.head[have] = b;
            self.head_len += 1;
            used += 1;
            if self.head_len == 2 {
                if let Err(code) = check_start(self.head[0], self.head[1]) {
                    return (used, Err(code));
                }
            }
        }
    }

    /// The rules that depend on where we are: fragmentation and the size
    /// limit, decided before any payload byte is read.
    fn check(&self, head: Option<Head>) -> Result<Option<Head>, u16> {
        let Some(head) = head else {
            return Ok(None);
        };
        match (head.opcode, self.message) {
            (Opcode::Continuation, None) => return Err(CLOSE_PROTOCOL_ERROR),
            (Opcode::Text | Opcode::Binary, Some(_)) => return Err(CLOSE_PROTOCOL_ERROR),
            _ => {}
        }
        if !head.opcode.is_control() {
            let total = (self.msg.len() as u64).saturating_add(head.len);
            if total > self.max_message as u64 {
                return Err(CLOSE_TOO_BIG);
            }
        }
        Ok(Some(head))
    }

    /// A frame read whole in the caller's buffer (already unmasked).
    fn whole_frame<F>(&mut self, opcode: Opcode, payload: &[u8], on: &mut F) -> ControlFlow<()>
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        match opcode {
            Opcode::Text if std::str::from_utf8(payload).is_err() => {
                self.fail(CLOSE_INVALID_DATA, on);
                ControlFlow::Break(())
            }
            Opcode::Text => on(WsEvent::Text(payload)),
            Opcode::Binary => on(WsEvent::Binary(payload)),
            _ => self.control(opcode, payload, on),
        }
    }

    /// The last frame of a message that was collected in `msg`.
    fn finish_message<F>(&mut self, on: &mut F) -> ControlFlow<()>
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        // Taken out (and dropped at the end): an idle framer holds nothing.
        let msg = std::mem::take(&mut self.msg);
        let checked = std::mem::replace(&mut self.checked, 0);
        match self.message.take() {
            Some(Opcode::Text) if checked != msg.len() => {
                // Ends in the middle of a character.
                self.fail(CLOSE_INVALID_DATA, on);
                ControlFlow::Break(())
            }
            Some(Opcode::Text) => on(WsEvent::Text(&msg)),
            _ => on(WsEvent::Binary(&msg)),
        }
    }

    /// Checks the text received so far as far as it goes: false as soon as
    /// it cannot be the start of UTF-8, whatever follows (a character cut
    /// by a frame or read boundary is checked when its end arrives).
    fn utf8_so_far(&mut self) -> bool {
        match std::str::from_utf8(&self.msg[self.checked..]) {
            Ok(_) => {
                self.checked = self.msg.len();
                true
            }
            // `error_len() == None`: the input ended inside a character
            // whose bytes so far are valid.
            Err(e) if e.error_len().is_none() => {
                self.checked += e.valid_up_to();
                true
            }
            Err(_) => false,
        }
    }

    /// A complete control frame: answer pings, take part in the close.
    fn control<F>(&mut self, opcode: Opcode, payload: &[u8], on: &mut F) -> ControlFlow<()>
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        match opcode {
            Opcode::Ping if !self.close_sent => {
                // The pong is built on the stack: at most 2 + 125 bytes.
                let mut pong = [0u8; 2 + MAX_CONTROL];
                let n = payload.len().min(MAX_CONTROL);
                pong[0] = 0x80 | Opcode::Pong.bits();
                pong[1] = n as u8;
                pong[2..2 + n].copy_from_slice(&payload[..n]);
                on(WsEvent::Reply(&pong[..2 + n]))
            }
            Opcode::Close => self.peer_close(payload, on),
            _ => ControlFlow::Continue(()), // a pong, or a ping while closing
        }
    }

    /// The peer's close frame: check it, then echo its code.
    fn peer_close<F>(&mut self, payload: &[u8], on: &mut F) -> ControlFlow<()>
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        let code = match payload {
            [] => None,
            [_] => {
                self.fail(CLOSE_PROTOCOL_ERROR, on);
                return ControlFlow::Break(());
            }
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !valid_close_code(code) {
                    self.fail(CLOSE_PROTOCOL_ERROR, on);
                    return ControlFlow::Break(());
                }
                if std::str::from_utf8(reason).is_err() {
                    self.fail(CLOSE_INVALID_DATA, on);
                    return ControlFlow::Break(());
                }
                Some(code)
            }
        };
        self.end();
        let reply = match code {
            Some(code) => close_frame(code),
            None => [0x80 | Opcode::Close.bits(), 0, 0, 0],
        };
        let len = if self.close_sent {
            0
        } else if code.is_some() {
            4
        } else {
            2
        };
        let _ = on(WsEvent::Closed {
            code,
            reply: &reply[..len],
        });
        ControlFlow::Break(()) // nothing follows a close
    }

    /// Fails the connection with `code` (the caller sends the close frame).
    fn fail<F>(&mut self, code: u16, on: &mut F)
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        self.end();
        let frame = close_frame(code);
        let reply = if self.close_sent { &[][..] } else { &frame[..] };
        let _ = on(WsEvent::Fail { code, reply });
    }

    /// No more input will be read: give the memory back.
    fn end(&mut self) {
        self.stage = Stage::Done;
        self.message = None;
        self.msg = Vec::new();
        self.checked = 0;
        self.ctrl = Vec::new();
        self.held = Vec::new();
    }
}

/// Appends `bytes` to `buf`, whose length the header checks keep within
/// `limit`. The capacity grows by doubling, as a `Vec`'s does, but never
/// past `limit`: the buffer never holds more than the limit, spare
/// capacity included.
fn append_bounded(buf: &mut Vec<u8>, bytes: &[u8], limit: usize) {
    let needed = buf.len() + bytes.len();
    if needed > buf.capacity() {
        let target = (buf.capacity() * 2)
            .max(64)
            .clamp(needed, limit.max(needed));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(bytes);
}

/// The checks the first two header bytes allow, before the rest arrives.
fn check_start(b0: u8, b1: u8) -> Result<(), u16> {
    let Some(opcode) = Opcode::from_bits(b0 & 0x0F) else {
        return Err(CLOSE_PROTOCOL_ERROR);
    };
    let rsv = b0 & 0x70 != 0; // no extension negotiated: must be zero
    let masked = b1 & 0x80 != 0;
    let fin = b0 & 0x80 != 0;
    let bad_control = opcode.is_control() && (!fin || b1 & 0x7F > MAX_CONTROL as u8);
    if rsv || !masked || bad_control {
        return Err(CLOSE_PROTOCOL_ERROR);
    }
    Ok(())
}

/// A header's total length, from its second byte.
fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Reads a whole header (`b.len() == header_len(b[1])`).
fn parse_header(b: &[u8]) -> Result<Head, u16> {
    let opcode = Opcode::from_bits(b[0] & 0x0F).ok_or(CLOSE_PROTOCOL_ERROR)?;
    let (len, at) = match b[1] & 0x7F {
        126 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            (u64::from_be_bytes(n), 10)
        }
        n => (u64::from(n), 2),
    };
    if len >> 63 != 0 {
        return Err(CLOSE_PROTOCOL_ERROR); // RFC 6455 5.2: the top bit must be 0
    }
    // A length in a longer form than needed (5 in 16 bits) breaks the
    // sender's "MUST" but is accepted: it is unambiguous, and Autobahn
    // does not ask for more.
    let mut mask = [0u8; 4];
    if let Some(key) = b.get(at..at + 4) {
        mask.copy_from_slice(key);
    }
    Ok(Head {
        fin: b[0] & 0x80 != 0,
        opcode,
        mask,
        len,
    })
}

/// XORs `data` with `mask`, `data` starting `offset` bytes into the
/// payload. Eight bytes at a time: this runs over every byte received.
fn unmask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    let r = (offset % 4) as usize;
    let m = [
        mask[r],
        mask[(r + 1) % 4],
        mask[(r + 2) % 4],
        mask[(r + 3) % 4],
    ];
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// Writes a header into `out`; returns its length.
fn write_header(
    out: &mut [u8; MAX_HEADER],
    fin: bool,
    opcode: Opcode,
    len: usize,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = if fin { 0x80 } else { 0 } | opcode.bits();
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut n = match len {
        0..=125 => {
            out[1] = m | len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = m | 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = m | 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    if let Some(key) = mask {
        out[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

/// The header of a server frame (final, unmasked) of `len` payload bytes:
/// `header.0[..header.1]`, 2 to 10 bytes, to put before the payload.
pub fn frame_header(opcode: Opcode, len: usize) -> ([u8; 10], usize) {
    let mut full = [0u8; MAX_HEADER];
    let n = write_header(&mut full, true, opcode, len, None);
    let mut head = [0u8; 10];
    head.copy_from_slice(&full[..10]);
    (head, n)
}

/// Appends a server frame (final, unmasked) carrying `payload` to `out`.
pub fn encode(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    let (head, n) = frame_header(opcode, payload.len());
    out.reserve(n + payload.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

/// Appends a text frame (`payload` must be UTF-8; the peer closes on
/// anything else).
pub fn encode_text(payload: &[u8], out: &mut Vec<u8>) {
    encode(Opcode::Text, payload, out);
}

/// Appends a binary frame.
pub fn encode_binary(payload: &[u8], out: &mut Vec<u8>) {
    encode(Opcode::Binary, payload, out);
}

/// Appends a ping carrying `payload` (cut to 125 bytes).
pub fn encode_ping(payload: &[u8], out: &mut Vec<u8>) {
    encode(
        Opcode::Ping,
        &payload[..payload.len().min(MAX_CONTROL)],
        out,
    );
}

/// Appends a close frame with `code` and `reason` (cut at a character
/// boundary to fit the 125-byte control frame).
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode(Opcode::Close, &payload[..2 + end], out);
}

/// A close frame with `code` and no reason.
pub fn close_frame(code: u16) -> [u8; 4] {
    let [hi, lo] = code.to_be_bytes();
    [0x80 | Opcode::Close.bits(), 2, hi, lo]
}

/// The client's side: appends a frame masked with `mask` (a real client
/// draws a fresh random key per frame; a test or a load generator may
/// not need to).
pub fn encode_masked(opcode: Opcode, fin: bool, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let mut head = [0u8; MAX_HEADER];
    let n = write_header(&mut head, fin, opcode, payload.len(), Some(mask));
    out.reserve(n + payload.len());
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0); // masking and unmasking are one XOR
}

/// A frame as the client reads it (see [`parse_unmasked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: Opcode,
    pub payload: &'a [u8],
}

/// A server frame the client must refuse: masked, RSV bits, an unknown
/// opcode, a bad control frame or length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The client's side: the frame at the start of `buf`, and its length in
/// bytes, or `None` while it is incomplete. Server frames are unmasked.
pub fn parse_unmasked(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, Malformed> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(Malformed)?;
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 || b1 & 0x80 != 0 {
        return Err(Malformed);
    }
    if opcode.is_control() && (!fin || b1 & 0x7F > MAX_CONTROL as u8) {
        return Err(Malformed);
    }
    let need = header_len(b1);
    let Some(header) = buf.get(..need) else {
        return Ok(None);
    };
    let head = parse_header(header).map_err(|_| Malformed)?;
    if ((buf.len() - need) as u64) < head.len {
        return Ok(None);
    }
    let end = need + head.len as usize; // <= buf.len()
    let frame = Frame {
        fin,
        opcode,
        payload: &buf[need..end],
    };
    Ok(Some((frame, end)))
}

/// The GUID RFC 6455 appends to the client's key before hashing.
const HANDSHAKE_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)). It proves to the client that the server
/// understood the WebSocket handshake (not that it is trustworthy).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(HANDSHAKE_GUID.as_bytes());
    base64(&sha.digest().bytes())
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648): every 3 bytes become 4
/// characters of 6 bits each; a short last group is padded with `=`.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = |i: usize| u32::from(group.get(i).copied().unwrap_or(0));
        let n = b(0) << 16 | b(1) << 8 | b(2);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 of 16 bytes, so 22
/// characters, the last carrying only 2 bits, then `==`.
pub fn valid_key(key: &[u8]) -> bool {
    let value = |c: u8| BASE64.iter().position(|&a| a == c);
    match key {
        [body @ .., b'=', b'='] if body.len() == 22 => {
            body.iter().all(|&c| value(c).is_some())
                && value(body[21]).is_some_and(|v| v & 0x0F == 0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event with its bytes copied out, to collect and compare.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Reply(Vec<u8>),
        Closed(Option<u16>, Vec<u8>),
        Fail(u16, Vec<u8>),
    }

    impl Ev {
        fn from(e: WsEvent<'_>) -> Ev {
            match e {
                WsEvent::Text(t) => Ev::Text(t.to_vec()),
                WsEvent::Binary(b) => Ev::Binary(b.to_vec()),
                WsEvent::Reply(r) => Ev::Reply(r.to_vec()),
                WsEvent::Closed { code, reply } => Ev::Closed(code, reply.to_vec()),
                WsEvent::Fail { code, reply } => Ev::Fail(code, reply.to_vec()),
            }
        }
    }

    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    /// A client frame.
    fn frame(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_masked(opcode, fin, payload, MASK, &mut out);
        out
    }

    fn text(s: &str) -> Vec<u8> {
        frame(Opcode::Text, true, s.as_bytes())
    }

    /// A frame as raw bytes: first byte, then a masked payload of `len`.
    fn raw(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = frame(Opcode::Binary, true, payload);
        out[0] = b0;
        out
    }

    /// Feeds `input` to `f` in pieces of `chunk` bytes; returns the events.
    fn feed_in(f: &mut WsFramer, input: &[u8], chunk: usize) -> Vec<Ev> {
        let mut events = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            let mut buf = piece.to_vec();
            f.feed(&mut buf, &mut |e| {
                events.push(Ev::from(e));
                ControlFlow::Continue(())
            });
        }
        events
    }

    fn events(max: usize, input: &[u8], chunk: usize) -> Vec<Ev> {
        feed_in(&mut WsFramer::new(max), input, chunk)
    }

    fn fail(code: u16) -> Ev {
        Ev::Fail(code, close_frame(code).to_vec())
    }

    /// The same events whatever the reads' sizes.
    fn every_split(max: usize, input: &[u8]) -> Vec<Ev> {
        let whole = events(max, input, input.len());
        for chunk in 1..input.len().min(40) {
            assert_eq!(events(max, input, chunk), whole, "chunk {chunk}");
        }
        whole
    }

    #[test]
    fn text_and_binary_messages_in_every_split() {
        let mut input = text("hello");
        input.extend(frame(Opcode::Binary, true, &[0, 1, 2, 255]));
        input.extend(text(""));
        input.extend(text("καλημέρα"));
        assert_eq!(
            every_split(100, &input),
            vec![
                Ev::Text(b"hello".to_vec()),
                Ev::Binary(vec![0, 1, 2, 255]),
                Ev::Text(vec![]),
                Ev::Text("καλημέρα".as_bytes().to_vec()),
            ]
        );
    }

    /// A whole frame in the read is handed over in place: the message is
    /// a slice of the caller's buffer, and the framer allocates nothing.
    #[test]
    fn whole_frames_are_read_in_place() {
        let mut f = WsFramer::new(100);
        let mut buf = text("in place");
        buf.extend(text("twice"));
        let range = buf.as_ptr_range();
        let mut seen = 0;
        f.feed(&mut buf, &mut |e| {
            let WsEvent::Text(t) = e else {
                panic!("{e:?}");
            };
            assert!(range.contains(&t.as_ptr()), "copied");
            seen += 1;
            ControlFlow::Continue(())
        });
        assert_eq!(seen, 2);
        assert_eq!(f.capacity(), 0);
    }

    #[test]
    fn unmasked_frames_fail_1002() {
        let mut out = Vec::new();
        encode_text(b"hi", &mut out); // a server frame: no mask
        assert_eq!(every_split(100, &out), vec![fail(1002)]);
    }

    #[test]
    fn rsv_bits_fail_1002() {
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            let input = raw(0x80 | rsv | Opcode::Text.bits(), b"hi");
            assert_eq!(every_split(100, &input), vec![fail(1002)], "rsv {rsv:#x}");
        }
    }

    #[test]
    fn unknown_opcodes_fail_1002() {
        for op in (3..=7).chain(0xB..=0xF) {
            assert_eq!(Opcode::from_bits(op), None);
            let input = raw(0x80 | op, b"");
            assert_eq!(every_split(100, &input), vec![fail(1002)], "opcode {op}");
        }
    }

    /// The first two bytes are enough to fail: the rest of a bad header
    /// is not waited for.
    #[test]
    fn header_errors_fail_before_the_rest_arrives() {
        assert_eq!(
            events(100, &[0x80 | 0x3, 0x80 | 127], 100),
            vec![fail(1002)]
        );
        assert_eq!(events(100, &[0x81, 0x05], 100), vec![fail(1002)]); // unmasked
    }

    #[test]
    fn control_frames_are_at_most_125_bytes_and_final() {
        let ok = frame(Opcode::Ping, true, &[7; 125]);
        let mut pong = vec![0x8A, 125];
        pong.extend([7; 125]);
        assert_eq!(every_split(10, &ok), vec![Ev::Reply(pong)]);
        // 126 bytes: the 16-bit length form, refused from byte 2.
        assert_eq!(
            every_split(10, &frame(Opcode::Ping, true, &[7; 126])),
            vec![fail(1002)]
        );
        for op in [Opcode::Ping, Opcode::Pong, Opcode::Close] {
            let unfinished = frame(op, false, b"");
            assert_eq!(every_split(10, &unfinished), vec![fail(1002)], "{op:?}");
        }
    }

    #[test]
    fn continuation_only_inside_a_message() {
        let lone = frame(Opcode::Continuation, true, b"x");
        assert_eq!(every_split(100, &lone), vec![fail(1002)]);

        let mut nested = frame(Opcode::Text, false, b"a");
        nested.extend(text("b"));
        assert_eq!(every_split(100, &nested), vec![fail(1002)]);

        let mut nested = frame(Opcode::Binary, false, b"a");
        nested.extend(frame(Opcode::Binary, true, b"b"));
        assert_eq!(every_split(100, &nested), vec![fail(1002)]);

        // Fragments with control frames between them; then a new message.
        let mut ok = frame(Opcode::Text, false, b"he");
        ok.extend(frame(Opcode::Ping, true, b"p"));
        ok.extend(frame(Opcode::Continuation, false, b""));
        ok.extend(frame(Opcode::Pong, true, b"ignored"));
        ok.extend(frame(Opcode::Continuation, true, b"llo"));
        ok.extend(frame(Opcode::Binary, false, &[1]));
        ok.extend(frame(Opcode::Continuation, true, &[2]));
        ok.extend(frame(Opcode::Continuation, true, &[3]));
        assert_eq!(
            every_split(100, &ok),
            vec![
                Ev::Reply(vec![0x8A, 1, b'p']),
                Ev::Text(b"hello".to_vec()),
                Ev::Binary(vec![1, 2]),
                fail(1002),
            ]
        );
    }

    #[test]
    fn lengths_in_7_16_and_64_bits() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let input = frame(Opcode::Binary, true, &payload);
            let header = match len {
                0..=125 => 6,
                126..=65_535 => 8,
                _ => 14,
            };
            assert_eq!(input.len(), header + len, "len {len}");
            for chunk in [1, 3, 1000, input.len()] {
                if len > 1000 && chunk == 1 {
                    continue; // slow, and the same code as chunk 3
                }
                let got = events(100_000, &input, chunk);
                assert_eq!(
                    got,
                    vec![Ev::Binary(payload.clone())],
                    "len {len} chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn a_64_bit_length_with_the_top_bit_set_fails_1002() {
        let mut input = vec![0x82, 0x80 | 127];
        input.extend((1u64 << 63 | 5).to_be_bytes());
        input.extend(MASK);
        assert_eq!(every_split(usize::MAX, &input), vec![fail(1002)]);
    }

    /// The limit is decided from the header: nothing of the payload needs
    /// to arrive, and nothing of it is kept.
    #[test]
    fn too_big_fails_1009_from_the_header_alone() {
        let mut f = WsFramer::new(1000);
        let mut header = vec![0x81, 0x80 | 127];
        header.extend((1u64 << 40).to_be_bytes());
        header.extend(MASK);
        assert_eq!(feed_in(&mut f, &header, 1), vec![fail(1009)]);
        assert!(f.is_closed());
        assert_eq!(f.capacity(), 0);

        // 16-bit form, one byte over.
        let input = frame(Opcode::Binary, true, &[0; 1001]);
        assert_eq!(events(1000, &input[..8], 8), vec![fail(1009)]);
        // Exactly the limit is fine.
        let input = frame(Opcode::Binary, true, &[0; 1000]);
        assert_eq!(events(1000, &input, 7), vec![Ev::Binary(vec![0; 1000])]);

        // Fragments count together: the third pushes the total over.
        let mut f = WsFramer::new(10);
        let mut input = frame(Opcode::Text, false, b"1234");
        input.extend(frame(Opcode::Continuation, false, b"5678"));
        input.extend(&frame(Opcode::Continuation, true, b"9ab")[..6]); // its header only
        assert_eq!(feed_in(&mut f, &input, 5), vec![fail(1009)]);
        assert_eq!(f.capacity(), 0);
    }

    #[test]
    fn memory_stays_within_the_limit_plus_a_header() {
        let mut f = WsFramer::new(4096);
        let mut input = frame(Opcode::Text, false, &[b'a'; 4000]);
        input.extend(frame(Opcode::Continuation, true, &[b'b'; 96]));
        let mut events = Vec::new();
        for piece in input.chunks(100) {
            let mut buf = piece.to_vec();
            f.feed(&mut buf, &mut |e| {
                events.push(Ev::from(e));
                ControlFlow::Continue(())
            });
            // Not even the buffer's spare capacity passes the limit.
            assert!(f.capacity() <= 4096, "{}", f.capacity());
        }
        assert_eq!(events.len(), 1);
        assert_eq!(f.capacity(), 0, "an idle framer holds nothing");
    }

    /// A text message cut into two fragments at every byte, characters of
    /// 1 to 4 bytes included, and in reads of every size.
    #[test]
    fn utf8_across_fragments_split_at_every_byte() {
        let s = "aé€😀ü ok".as_bytes();
        for cut in 0..=s.len() {
            let mut input = frame(Opcode::Text, false, &s[..cut]);
            input.extend(frame(Opcode::Continuation, true, &s[cut..]));
            assert_eq!(
                every_split(100, &input),
                vec![Ev::Text(s.to_vec())],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn invalid_utf8_fails_1007() {
        let bad: [&[u8]; 7] = [
            b"\xff",
            b"a\xc0\xafz",       // overlong '/'
            b"\xed\xa0\x80",     // a surrogate
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"\xe2\x82",         // ends inside a character
            b"ok\x80",           // a lone continuation byte
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        ];
        for b in bad {
            assert_eq!(
                every_split(100, &frame(Opcode::Text, true, b)),
                vec![fail(1007)],
                "{b:?}"
            );
            // Fragmented, cut everywhere.
            for cut in 0..=b.len() {
                let mut input = frame(Opcode::Text, false, &b[..cut]);
                input.extend(frame(Opcode::Continuation, true, &b[cut..]));
                assert_eq!(
                    every_split(100, &input),
                    vec![fail(1007)],
                    "{b:?} cut {cut}"
                );
            }
        }
        // Binary messages are not checked.
        assert_eq!(
            events(100, &frame(Opcode::Binary, true, b"\xff"), 100),
            vec![Ev::Binary(vec![0xFF])]
        );
    }

    /// Autobahn's 6.x cases: invalid text fails as soon as the bytes that
    /// make it invalid arrive, before the rest of the frame or message.
    #[test]
    fn invalid_utf8_fails_fast() {
        // In the first fragment of a message whose end never comes.
        let first = frame(Opcode::Text, false, b"valid \xf5 then");
        assert_eq!(every_split(100, &first), vec![fail(1007)]);
        // Inside one frame, before its payload is complete: header, mask
        // and the first 4 payload bytes, which hold a surrogate's start.
        let whole = frame(Opcode::Text, true, b"ab\xed\xa0\x80cdefgh");
        assert_eq!(events(100, &whole[..10], 1), vec![fail(1007)]);
        // A valid prefix that could still go on is not refused early.
        assert_eq!(
            events(100, &frame(Opcode::Text, true, "ab€".as_bytes())[..9], 1),
            vec![]
        );
    }

    #[test]
    fn pings_are_answered_with_the_same_payload() {
        let mut input = frame(Opcode::Ping, true, b"");
        input.extend(frame(Opcode::Ping, true, b"are you there"));
        let mut pong = vec![0x8A, 13];
        pong.extend(b"are you there");
        assert_eq!(
            every_split(10, &input),
            vec![Ev::Reply(vec![0x8A, 0]), Ev::Reply(pong)]
        );
        let out = match &every_split(10, &input)[1] {
            Ev::Reply(r) => r.clone(),
            other => panic!("{other:?}"),
        };
        let (parsed, used) = parse_unmasked(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(
            (parsed.opcode, parsed.payload),
            (Opcode::Pong, &b"are you there"[..])
        );
    }

    #[test]
    fn the_close_handshake_echoes_the_code() {
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend(b"bye");
        let mut input = frame(Opcode::Close, true, &close);
        input.extend(text("after the close: ignored"));
        assert_eq!(
            every_split(10, &input),
            vec![Ev::Closed(Some(1000), close_frame(1000).to_vec())]
        );
        // No code: an empty close back.
        assert_eq!(
            every_split(10, &frame(Opcode::Close, true, b"")),
            vec![Ev::Closed(None, vec![0x88, 0])]
        );
    }

    #[test]
    fn close_codes_and_reasons_are_checked() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            let input = frame(Opcode::Close, true, &u16::to_be_bytes(code));
            assert_eq!(
                every_split(10, &input),
                vec![Ev::Closed(Some(code), close_frame(code).to_vec())]
            );
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let input = frame(Opcode::Close, true, &u16::to_be_bytes(code));
            assert_eq!(every_split(10, &input), vec![fail(1002)], "code {code}");
        }
        assert_eq!(
            every_split(10, &frame(Opcode::Close, true, &[3])),
            vec![fail(1002)],
            "1 byte"
        );
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.extend(b"\xce\xba\xff");
        assert_eq!(
            every_split(10, &frame(Opcode::Close, true, &bad_reason)),
            vec![fail(1007)]
        );
    }

    /// Once we sent our close, the peer's close is the end of the
    /// handshake: nothing to send back, and pings are not answered.
    #[test]
    fn our_close_first_means_no_reply() {
        let mut f = WsFramer::new(100);
        let mut out = Vec::new();
        f.close(CLOSE_GOING_AWAY, "shutting down", &mut out);
        let mut want = vec![0x88, 15, 0x03, 0xE9];
        want.extend(b"shutting down");
        assert_eq!(out, want);
        f.close(CLOSE_NORMAL, "again", &mut out);
        assert_eq!(out.len(), want.len(), "one close only");
        let mut input = text("still delivered");
        input.extend(frame(Opcode::Ping, true, b"x"));
        input.extend(frame(Opcode::Close, true, &1001u16.to_be_bytes()));
        assert_eq!(
            feed_in(&mut f, &input, 3),
            vec![
                Ev::Text(b"still delivered".to_vec()),
                Ev::Closed(Some(1001), vec![])
            ]
        );
        let mut f = WsFramer::new(100);
        f.close(CLOSE_GOING_AWAY, "", &mut out);
        assert_eq!(feed_in(&mut f, &[0x81, 0], 1), vec![Ev::Fail(1002, vec![])]);
    }

    /// `Break` pauses after the event; the rest waits in the framer, in
    /// order, until `resume`.
    #[test]
    fn pausing_keeps_the_rest_for_resume() {
        let mut input = text("one");
        input.extend(text("two"));
        input.extend(frame(Opcode::Text, false, b"thr"));
        input.extend(frame(Opcode::Continuation, true, b"ee"));
        let mut f = WsFramer::new(100);
        let mut got = Vec::new();
        let take_one = |f: &mut WsFramer, input: Option<&mut [u8]>, got: &mut Vec<Ev>| {
            let mut on = |e: WsEvent<'_>| {
                got.push(Ev::from(e));
                ControlFlow::Break(())
            };
            match input {
                Some(buf) => f.feed(buf, &mut on),
                None => f.resume(&mut on),
            }
        };
        take_one(&mut f, Some(&mut input), &mut got);
        assert_eq!(got, vec![Ev::Text(b"one".to_vec())]);
        assert_eq!(f.held(), input.len() - text("one").len());
        // Bytes read while paused go after the held ones.
        let mut more = text("four");
        take_one(&mut f, Some(&mut more), &mut got);
        take_one(&mut f, None, &mut got);
        take_one(&mut f, None, &mut got);
        assert_eq!(f.held(), 0);
        assert_eq!(f.capacity(), 0);
        take_one(&mut f, None, &mut got);
        assert_eq!(
            got,
            ["one", "two", "three", "four"]
                .map(|s| Ev::Text(s.as_bytes().to_vec()))
                .to_vec()
        );
    }

    #[test]
    fn idle_framer_holds_no_memory() {
        let mut f = WsFramer::new(100);
        let mut input = frame(Opcode::Text, false, b"frag");
        input.extend(frame(Opcode::Ping, true, b"cut ping"));
        input.extend(frame(Opcode::Continuation, true, b"ment"));
        let got = feed_in(&mut f, &input, 3);
        assert_eq!(got.last(), Some(&Ev::Text(b"fragment".to_vec())));
        assert_eq!(f.capacity(), 0);
        // The framer itself is part of every connection's fixed cost.
        let size = std::mem::size_of::<WsFramer>();
        assert!(size <= 160, "{size} bytes");
    }

    #[test]
    fn server_frame_headers() {
        for (len, n, second) in [
            (0, 2, 0),
            (125, 2, 125),
            (126, 4, 126),
            (65_535, 4, 126),
            (65_536, 10, 127),
        ] {
            let (head, got) = frame_header(Opcode::Text, len);
            assert_eq!((got, head[0], head[1]), (n, 0x81, second), "len {len}");
        }
        let (head, n) = frame_header(Opcode::Binary, 300);
        assert_eq!(&head[..n], &[0x82, 126, 1, 44]);
        let (head, n) = frame_header(Opcode::Binary, 1 << 33);
        assert_eq!(&head[..n], &[0x82, 127, 0, 0, 0, 2, 0, 0, 0, 0]);
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let mut out = Vec::new();
        encode_close(1008, &"é".repeat(100), &mut out);
        let (frame, used) = parse_unmasked(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(frame.payload.len(), 124, "2 + 61 two-byte characters");
        assert!(std::str::from_utf8(&frame.payload[2..]).is_ok());
        assert_eq!(close_frame(1009), [0x88, 2, 0x03, 0xF1]);
    }

    #[test]
    fn the_client_parser_refuses_what_a_server_must_not_send() {
        let mut masked = Vec::new();
        encode_masked(Opcode::Text, true, b"x", MASK, &mut masked);
        assert_eq!(parse_unmasked(&masked), Err(Malformed));
        assert_eq!(parse_unmasked(&[0x83, 0]), Err(Malformed), "opcode");
        assert_eq!(parse_unmasked(&[0xC1, 0]), Err(Malformed), "rsv");
        assert_eq!(
            parse_unmasked(&[0x09, 0]),
            Err(Malformed),
            "ping without fin"
        );
        assert_eq!(parse_unmasked(&[0x81]), Ok(None));
        assert_eq!(parse_unmasked(&[0x81, 126, 1]), Ok(None));
        assert_eq!(parse_unmasked(&[0x81, 2, b'a']), Ok(None));
    }

    #[test]
    fn accept_key_is_rfc_6455s_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_is_rfc_4648s_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
        assert_eq!(base64(&[0xFB, 0xFF]), "+/8=");
    }

    #[test]
    fn keys_must_be_16_bytes_of_base64() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(valid_key(base64(&[0xFF; 16]).as_bytes()));
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZR==", // nonzero padding bits
            b"dGhlIHNhbXBsZSBub25j*Q==",
            b"dGhlIHNhbXBsZSBub25jZQ==x",
            b"dGhlIHNhbXBsZSBub25jZQAA",
        ] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn unmasking_at_any_offset() {
        let data: Vec<u8> = (0..37).collect();
        let mut masked = Vec::new();
        encode_masked(Opcode::Binary, true, &data, MASK, &mut masked);
        let payload = &masked[6..];
        for cut in 0..data.len() {
            let mut a = payload[..cut].to_vec();
            let mut b = payload[cut..].to_vec();
            unmask(&mut a, MASK, 0);
            unmask(&mut b, MASK, cut as u64);
            a.extend(b);
            assert_eq!(a, data, "cut {cut}");
        }
    }

    /// A message for the property tests: text or binary, its fragments,
    /// and whether a ping goes after each fragment.
    #[derive(Debug, Clone)]
    struct Msg {
        binary: bool,
        payload: Vec<u8>,
        cuts: Vec<usize>,
        pings: Vec<bool>,
    }

    fn msg() -> impl proptest::strategy::Strategy<Value = Msg> {
        use proptest::prelude::*;
        let payload = prop_oneof![
            ".{0,40}".prop_map(|s: String| (false, s.into_bytes())),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (true, b)),
        ];
        (
            payload,
            proptest::collection::vec(0usize..400, 0..4),
            proptest::collection::vec(any::<bool>(), 4),
        )
            .prop_map(|((binary, payload), mut cuts, pings)| {
                for c in &mut cuts {
                    *c %= payload.len() + 1;
                }
                cuts.sort();
                Msg {
                    binary,
                    payload,
                    cuts,
                    pings,
                }
            })
    }

    /// Payloads of every length form: 7 bits, 16 bits and 64 bits (around
    /// the boundaries, where a mistake would be).
    fn payload() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let sized = |r: std::ops::Range<usize>| proptest::collection::vec(any::<u8>(), r);
        prop_oneof![
            4 => sized(0..300),
            1 => sized(65_530..65_540),
        ]
    }

    proptest::proptest! {
        /// What the server encodes, the client parses back, frame by frame
        /// from one stream.
        #[test]
        fn server_frames_parse_back(payloads in proptest::collection::vec(payload(), 0..4)) {
            let mut stream = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                if i % 2 == 0 {
                    encode_binary(p, &mut stream);
                } else {
                    let (head, n) = frame_header(Opcode::Binary, p.len());
                    stream.extend_from_slice(&head[..n]);
                    stream.extend_from_slice(p);
                }
            }
            let mut at = 0;
            for p in &payloads {
                let Ok(Some((frame, used))) = parse_unmasked(&stream[at..]) else {
                    panic!("no frame at {at}");
                };
                proptest::prop_assert!(frame.fin);
                proptest::prop_assert_eq!(frame.opcode, Opcode::Binary);
                proptest::prop_assert_eq!(frame.payload, &p[..]);
                at += used;
                // An incomplete frame is "not yet", never an error.
                proptest::prop_assert_eq!(parse_unmasked(&stream[at - used..at - 1]), Ok(None));
            }
            proptest::prop_assert_eq!(at, stream.len());
        }

        /// Client messages, fragmented anywhere (text split inside
        /// characters too) with pings between fragments, masked with any
        /// key and read in any sizes, come out whole and in order.
        #[test]
        fn client_messages_survive_any_fragmentation_and_reads(
            msgs in proptest::collection::vec(msg(), 0..6),
            mask in proptest::prelude::any::<[u8; 4]>(),
            reads in proptest::collection::vec(1usize..64, 1..10),
        ) {
            let mut stream = Vec::new();
            let mut want = Vec::new();
            for m in &msgs {
                let mut bounds = vec![0];
                bounds.extend(&m.cuts);
                bounds.push(m.payload.len());
                let n = bounds.len() - 1;
                for i in 0..n {
                    let opcode = match (i, m.binary) {
                        (0, true) => Opcode::Binary,
                        (0, false) => Opcode::Text,
                        _ => Opcode::Continuation,
                    };
                    let last = i == n - 1;
                    encode_masked(opcode, last, &m.payload[bounds[i]..bounds[i + 1]], mask, &mut stream);
                    if last {
                        let p = m.payload.clone();
                        want.push(if m.binary { Ev::Binary(p) } else { Ev::Text(p) });
                    }
                    if m.pings[i] {
                        // Answered at once, even between fragments.
                        encode_masked(Opcode::Ping, true, &[i as u8], mask, &mut stream);
                        want.push(Ev::Reply(vec![0x8A, 1, i as u8]));
                    }
                }
            }
            let mut f = WsFramer::new(1000);
            let mut got = Vec::new();
            let (mut at, mut r) = (0, 0);
            while at < stream.len() {
                let n = reads[r % reads.len()].min(stream.len() - at);
                r += 1;
                let mut buf = stream[at..at + n].to_vec();
                at += n;
                f.feed(&mut buf, &mut |e| {
                    got.push(Ev::from(e));
                    ControlFlow::Continue(())
                });
            }
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(f.capacity(), 0);
        }
    }
}
