//! The protocols as the bench sees them: the only module that knows a
//! grammar or a framing. Five dialects:
//!
//! | `--dialect` | transport | grammar |
//! |---|---|---|
//! | `line` (default) | TCP, one line per `\n` | loopchat's line grammar (Budget Chat) |
//! | `irc` | TCP, one line per `\r\n` | IRC: NICK/USER, JOIN, `PRIVMSG #room :payload` |
//! | `ws` | WebSocket (`GET /ws`), one line per text frame | the line grammar |
//! | `ws-irc` | WebSocket, subprotocol `text.ircv3.net` | IRC |
//! | `resp` | TCP | Redis pub/sub (RESP2): SUBSCRIBE, PUBLISH |
//!
//! The bench needs very little: when a client has joined, when it was
//! refused, the text of a chat message, and the pings to answer. Everything
//! else a server sends (welcome lines, notices, numerics, PUBLISH's
//! receiver counts) is ignored. The line grammar is Budget Chat's
//! (Protohackers problem 3), which loopchat extends, so the bench also
//! measures other Budget Chat servers; `irc` measures ngIRCd or InspIRCd,
//! `resp` measures Redis.
//!
//! # Reading: units, not per-client buffers
//!
//! [`Dialect::feed`] takes one read and calls back with an [`Input`] for
//! each complete *unit*: a line, an HTTP response head, a WebSocket frame,
//! a RESP reply. Units are found in the read itself (the driver's shared
//! read buffer) without copying; the only per-client bytes are the caller's
//! `held` buffer, which keeps a unit cut by the end of a read, and is then
//! completed with exactly the bytes that unit still needs (each framing
//! says how many, or "up to the next newline"), so it never holds more
//! than one unit. Every unit has a size limit ([`MAX_UNIT`]).
//!
//! Chat lines are by far the most frequent, so they are recognised on the
//! raw bytes without UTF-8 validation or allocation; the rare other lines
//! go through [`crate::protocol::ServerLine::parse`].
//!
//! # WebSocket
//!
//! On connect a `ws`/`ws-irc` client sends an HTTP/1.1 upgrade request
//! ([`Dialect::upgrade_request`], with a random `Sec-WebSocket-Key` derived
//! from a per-run seed and the client's number, so nothing is stored per
//! client), and the driver waits for the `101`: its status, its
//! `Sec-WebSocket-Accept` ([`crate::transport::websocket::accept_key`]) and
//! its subprotocol are checked. Then lines go out as masked text frames
//! ([`crate::transport::websocket::encode_masked`], a fresh mask per frame
//! from [`Encoder`]), and each frame that comes in
//! ([`crate::transport::websocket::parse_unmasked`]) is one line for the
//! grammar. Pings are answered with pongs, a close with a close (the server
//! then closes the TCP connection, which the driver accounts for as on
//! TCP). Fragmented messages are not reassembled (that would need a
//! per-client buffer, and the servers measured send one line per frame):
//! a fragment is a failure, `ws_fragment`.
//!
//! # RESP (Redis pub/sub)
//!
//! A subscribed RESP2 connection may not PUBLISH, so in this dialect the
//! senders are connections of their own: the first `--senders` clients
//! are *publishers* (they send `PING` and count as joined on `+PONG`, then
//! `PUBLISH room payload`), the others *subscribers* (`SUBSCRIBE room`,
//! joined on the confirmation; each message arrives as
//! `["message", room, payload]`). Replies are read by [`resp`], a small
//! sans-I/O decoder.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::SocketAddr;

use crate::protocol::ServerLine;
use crate::transport::websocket::{self, Opcode};

/// The largest unit (line, response head, frame, RESP reply) the bench
/// accepts: anything longer is not chat, and the connection fails with
/// `too_long` (memory stays bounded per client).
pub const MAX_UNIT: usize = 1 << 20;
/// The largest HTTP response head accepted for the WebSocket upgrade.
pub const MAX_HEAD: usize = 8 * 1024;
/// The WebSocket subprotocol that carries IRC (IRCv3).
pub const IRC_SUBPROTOCOL: &str = "text.ircv3.net";

/// The grammar (and transport) the bench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// loopchat's line grammar (Budget Chat).
    Line,
    /// IRC: NICK/USER, JOIN the room, `PRIVMSG #room :payload`.
    Irc,
    /// The line grammar over WebSocket.
    Ws,
    /// IRC over WebSocket (`text.ircv3.net`).
    WsIrc,
    /// Redis pub/sub, RESP2.
    Resp,
}

impl Dialect {
    /// Every dialect, as `--dialect` spells them, for messages.
    pub const NAMES: &'static str = "line, irc, ws, ws-irc or resp";

    /// A `--dialect` name.
    pub fn parse(name: &str) -> Option<Dialect> {
        match name {
            "line" => Some(Dialect::Line),
            "irc" => Some(Dialect::Irc),
            "ws" => Some(Dialect::Ws),
            "ws-irc" => Some(Dialect::WsIrc),
            "resp" => Some(Dialect::Resp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Line => "line",
            Dialect::Irc => "irc",
            Dialect::Ws => "ws",
            Dialect::WsIrc => "ws-irc",
            Dialect::Resp => "resp",
        }
    }

    /// Whether a client upgrades to WebSocket first.
    pub fn websocket(self) -> bool {
        matches!(self, Dialect::Ws | Dialect::WsIrc)
    }

    fn irc(self) -> bool {
        matches!(self, Dialect::Irc | Dialect::WsIrc)
    }

    /// The `Sec-WebSocket-Protocol` offered (and required in the answer).
    fn subprotocol(self) -> Option<&'static str> {
        (self == Dialect::WsIrc).then_some(IRC_SUBPROTOCOL)
    }

    /// The HTTP/1.1 upgrade request a WebSocket client sends on connect
    /// (`key`: from [`ws_key`]).
    pub fn upgrade_request(self, host: SocketAddr, key: &str, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(p) = self.subprotocol() {
            let _ = write!(out, "Sec-WebSocket-Protocol: {p}\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// What a client sends to join, all at once (the server handles it in
    /// order): its nickname and, for another room than the default, a
    /// `/join` of `room` (line), registration and a JOIN of `room`
    /// (IRC), `SUBSCRIBE room` or, for a `publisher`, `PING` (RESP). Over
    /// WebSocket, after the upgrade.
    pub fn join(
        self,
        nick: &str,
        room: &str,
        publisher: bool,
        enc: &mut Encoder,
        out: &mut Vec<u8>,
    ) {
        let nick = nick.as_bytes();
        match self {
            Dialect::Line | Dialect::Ws => {
                self.line(&[nick], enc, out);
                // In the same write, so the server moves the client in the
                // turn it registers: it never hears the first room.
                if room != crate::config::DEFAULT_ROOM {
                    self.line(&[b"/join ", room.as_bytes()], enc, out);
                }
            }
            Dialect::Irc | Dialect::WsIrc => {
                // JOIN waits for 001 (`Dialect::join_room`).
                self.line(&[b"NICK ", nick], enc, out);
                self.line(&[b"USER ", nick, b" 0 * :", nick], enc, out);
            }
            Dialect::Resp if publisher => resp::command(&[b"PING"], out),
            Dialect::Resp => resp::command(&[b"SUBSCRIBE", room.as_bytes()], out),
        }
    }

    /// IRC, on `001`: appends the JOIN of `room` (other dialects joined
    /// with their first line and append nothing).
    pub fn join_room(self, room: &str, enc: &mut Encoder, out: &mut Vec<u8>) {
        if self.irc() {
            self.line(&[b"JOIN ", room.as_bytes()], enc, out);
        }
    }

    /// Appends one protocol line (no terminator), framed for the dialect.
    pub fn raw_line(self, line: &[u8], enc: &mut Encoder, out: &mut Vec<u8>) {
        self.line(&[line], enc, out);
    }

    /// Appends a message carrying `payload` (no terminator) in `room`.
    pub fn message(self, room: &str, payload: &[u8], enc: &mut Encoder, out: &mut Vec<u8>) {
        match self {
            Dialect::Line | Dialect::Ws => self.line(&[payload], enc, out),
            Dialect::Irc | Dialect::WsIrc => {
                self.line(&[b"PRIVMSG ", room.as_bytes(), b" :", payload], enc, out)
            }
            Dialect::Resp => resp::command(&[b"PUBLISH", room.as_bytes(), payload], out),
        }
    }

    /// The answer to an IRC `PING :token`.
    pub fn pong(self, token: &[u8], enc: &mut Encoder, out: &mut Vec<u8>) {
        if self.irc() {
            self.line(&[b"PONG :", token], enc, out);
        }
    }

    /// One line made of `parts`: terminated on TCP, a masked text frame
    /// over WebSocket.
    fn line(self, parts: &[&[u8]], enc: &mut Encoder, out: &mut Vec<u8>) {
        if self.websocket() {
            enc.text(parts, out);
            return;
        }
        for p in parts {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(if self.irc() { b"\r\n" } else { b"\n" });
    }

    /// Classifies one line (without its terminator) of a line or IRC
    /// dialect.
    pub fn classify(self, line: &[u8]) -> Line<'_> {
        if self.irc() {
            classify_irc(line)
        } else {
            classify(line)
        }
    }

    /// Reads `data` (one read), calling `on` for each complete unit in
    /// order. `held` is the client's bytes of a unit cut by the previous
    /// read (and keeps the one this read cuts). `ws_key`: the client is
    /// waiting for its WebSocket upgrade (the key it sent); after
    /// [`Input::Upgraded`] the rest is frames. After [`Input::Broken`]
    /// nothing more is read.
    pub fn feed<F>(self, ws_key: Option<&str>, held: &mut Vec<u8>, data: &[u8], on: &mut F)
    where
        F: FnMut(Input<'_>),
    {
        let mut upgrading = ws_key;
        drive(held, data, &mut |buf: &[u8]| {
            if let Some(key) = upgrading {
                // Not an HTTP answer at all (a chat server that took the
                // request for lines): say so now, not at the join timeout.
                let n = buf.len().min(5);
                if buf[..n] != b"HTTP/"[..n] {
                    on(Input::Broken("ws_not_http".into()));
                    return Eat::Stop;
                }
                let Some(end) = find(buf, b"\r\n\r\n") else {
                    if buf.len() > MAX_HEAD {
                        on(Input::Broken("ws_head_too_long".into()));
                        return Eat::Stop;
                    }
                    return Eat::Need(Need::Line);
                };
                let n = end + 4;
                if let Err(kind) = check_upgrade(&buf[..n], key, self.subprotocol()) {
                    on(Input::Broken(kind));
                    return Eat::Stop;
                }
                upgrading = None;
                on(Input::Upgraded);
                return Eat::Ate(n);
            }
            match self {
                Dialect::Line | Dialect::Irc => match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        on(Input::Line(self.classify(&buf[..i])));
                        Eat::Ate(i + 1)
                    }
                    None => Eat::Need(Need::Line),
                },
                Dialect::Ws | Dialect::WsIrc => self.eat_frame(buf, on),
                Dialect::Resp => match resp::parse(buf) {
                    Ok(resp::Parsed::Done(value, n)) => {
                        on(Input::Line(resp::classify(&value)));
                        Eat::Ate(n)
                    }
                    Ok(resp::Parsed::Need(need)) => Eat::Need(need),
                    Err(resp::Malformed) => {
                        on(Input::Broken("resp_malformed".into()));
                        Eat::Stop
                    }
                },
            }
        });
    }

    /// One WebSocket frame at the start of `buf`, if whole.
    fn eat_frame<F>(self, buf: &[u8], on: &mut F) -> Eat
    where
        F: FnMut(Input<'_>),
    {
        let frame = match websocket::parse_unmasked(buf) {
            Ok(Some((frame, n))) => (frame, n),
            Ok(None) => {
                return match ws_missing(buf) {
                    Some(k) => Eat::Need(Need::Bytes(k)),
                    None => {
                        on(Input::Broken("too_long".into()));
                        Eat::Stop
                    }
                };
            }
            Err(websocket::Malformed) => {
                on(Input::Broken("ws_malformed".into()));
                return Eat::Stop;
            }
        };
        let (
            websocket::Frame {
                fin,
                opcode,
                payload,
            },
            n,
        ) = frame;
        match opcode {
            Opcode::Text | Opcode::Binary if fin => on(Input::Line(self.classify(payload))),
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                on(Input::Broken("ws_fragment".into()));
                return Eat::Stop;
            }
            Opcode::Ping => on(Input::Answer(Opcode::Pong, payload)),
            // The closing handshake: echo the code (the first 2 bytes).
            Opcode::Close => on(Input::Answer(
                Opcode::Close,
                &payload[..payload.len().min(2)],
            )),
            Opcode::Pong => {}
        }
        Eat::Ate(n)
    }
}

/// What a read brought, unit by unit (see [`Dialect::feed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// The WebSocket upgrade was accepted: send the join lines now.
    Upgraded,
    /// A line (or a RESP reply), classified.
    Line(Line<'a>),
    /// A WebSocket control frame to send back: a pong for a ping, a close
    /// for a close (see [`Encoder::control`]).
    Answer(Opcode, &'a [u8]),
    /// The server broke the protocol or refused the upgrade: count a
    /// failure of this kind and close. Nothing more is read.
    Broken(Cow<'static, str>),
}

/// A line from the server, as far as the bench cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `* The room contains: ...`, IRC `366`, a RESP subscribe
    /// confirmation or `+PONG`: the client has joined.
    Joined,
    /// `! ...`, IRC `ERROR` or a join error, a RESP error: refused.
    Refused(&'a [u8]),
    /// `[from] text`, `PRIVMSG`, RESP `message`: the text of a chat line.
    Chat(&'a [u8]),
    /// IRC `PING :token`: answer `PONG :token` or be disconnected.
    Ping(&'a [u8]),
    /// IRC `001`: registered; now the client may JOIN (a server that
    /// registers asynchronously, as InspIRCd does, refuses an earlier JOIN
    /// with 451).
    Welcome,
    /// Anything else.
    Other,
}

/// What the clients share when writing: the state drawing WebSocket
/// masking keys, and one scratch buffer in which a frame's payload is put
/// together before it is masked.
pub struct Encoder {
    state: u64,
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new(seed: u64) -> Encoder {
        Encoder {
            // xorshift must not start at 0.
            state: seed | 1,
            scratch: Vec::new(),
        }
    }

    /// A fresh masking key (xorshift64: RFC 6455 asks for unpredictable
    /// keys to protect proxies from pages; a load generator only needs
    /// them to vary).
    fn mask(&mut self) -> [u8; 4] {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        (x as u32).to_le_bytes()
    }

    /// A masked text frame carrying `parts` joined.
    fn text(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) {
        self.scratch.clear();
        for p in parts {
            self.scratch.extend_from_slice(p);
        }
        let mask = self.mask();
        websocket::encode_masked(Opcode::Text, true, &self.scratch, mask, out);
    }

    /// A masked control frame (an [`Input::Answer`]).
    pub fn control(&mut self, opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
        let mask = self.mask();
        let payload = &payload[..payload.len().min(websocket::MAX_CONTROL)];
        websocket::encode_masked(opcode, true, payload, mask, out);
    }
}

/// A seed that differs between runs (for the WebSocket keys and masks).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The `Sec-WebSocket-Key` of client `n`: base64 of 16 bytes drawn from
/// `seed` and `n`, so the driver can recompute it to check the answer
/// instead of storing it.
pub fn ws_key(seed: u64, n: u64) -> String {
    let a = splitmix64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let b = splitmix64(a);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    websocket::base64(&bytes)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Checks the answer to the upgrade request: `101`, the accept key that
/// proves the server read our key, and the subprotocol we asked for (none
/// for `ws`: the server must not pick one we did not offer).
fn check_upgrade(
    head: &[u8],
    key: &str,
    subprotocol: Option<&str>,
) -> Result<(), Cow<'static, str>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("ws_bad_response".into()),
    }
    match resp.code {
        Some(101) => {}
        Some(code) => return Err(format!("ws_status_{code}").into()),
        None => return Err("ws_bad_response".into()),
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim_ascii())
    };
    if header("sec-websocket-accept") != Some(websocket::accept_key(key.as_bytes()).as_bytes()) {
        return Err("ws_bad_accept".into());
    }
    if header("sec-websocket-protocol") != subprotocol.map(str::as_bytes) {
        return Err("ws_bad_subprotocol".into());
    }
    Ok(())
}

/// How many more bytes the incomplete server frame at the start of `buf`
/// needs (at least 1); `None` if it would pass [`MAX_UNIT`]. Server frames
/// are unmasked: 2 bytes, then 2 or 8 of extended length.
fn ws_missing(buf: &[u8]) -> Option<usize> {
    let [_, b1, ..] = *buf else {
        return Some(2 - buf.len());
    };
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let head = 2 + ext;
    let Some(bytes) = buf.get(2..head) else {
        return Some(head - buf.len());
    };
    let len = if ext == 0 {
        u64::from(b1 & 0x7F)
    } else {
        bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
    };
    let total = (head as u64).checked_add(len)?;
    if total > MAX_UNIT as u64 {
        return None;
    }
    Some((total as usize).saturating_sub(buf.len()).max(1))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a framing says about the bytes at the start of a buffer.
enum Eat {
    /// A whole unit of this many bytes was handled.
    Ate(usize),
    /// The unit is incomplete.
    Need(Need),
    /// The connection is broken: stop reading.
    Stop,
}

/// What an incomplete unit still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// At least this many more bytes, all of them part of the unit.
    Bytes(usize),
    /// The bytes up to and including the next `\n`.
    Line,
}

/// Runs `eat` over `held` (completed first, with only the bytes its unit
/// needs) and then over `data` directly; keeps an incomplete tail in
/// `held`.
fn drive(held: &mut Vec<u8>, data: &[u8], eat: &mut impl FnMut(&[u8]) -> Eat) {
    let mut rest = data;
    while !held.is_empty() {
        match eat(held) {
            Eat::Ate(n) => {
                held.drain(..n.min(held.len()));
            }
            Eat::Stop => {
                held.clear();
                return;
            }
            Eat::Need(need) => {
                if rest.is_empty() {
                    return;
                }
                let take = match need {
                    Need::Bytes(k) => k.clamp(1, rest.len()),
                    Need::Line => rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |i| i + 1),
                };
                if held.len() + take > MAX_UNIT {
                    // Only a line gets this long (the other framings refuse
                    // a unit over the limit from its header): garbage for
                    // the bench, skipped.
                    held.clear();
                    return;
                }
                held.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
            }
        }
    }
    while !rest.is_empty() {
        match eat(rest) {
            Eat::Ate(n) => rest = &rest[n.min(rest.len())..],
            Eat::Stop => return,
            Eat::Need(_) => {
                if rest.len() <= MAX_UNIT {
                    held.extend_from_slice(rest);
                }
                return;
            }
        }
    }
}

/// The nickname line a client sends to join (line dialect, TCP).
pub fn nick_line(nick: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(nick.as_bytes());
    out.push(b'\n');
}

/// Classifies one line (without its `\n`).
pub fn classify(line: &[u8]) -> Line<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rest) = line.strip_prefix(b"[") {
        if let Some(end) = rest.windows(2).position(|w| w == b"] ") {
            return Line::Chat(&rest[end + 2..]);
        }
        return Line::Other;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Line::Other;
    };
    let parsed = ServerLine::parse(text);
    if parsed.room_members().is_some() {
        return Line::Joined;
    }
    match parsed {
        ServerLine::Error(_) => Line::Refused(line),
        // With server-side timestamps the chat line starts with the time.
        ServerLine::Chat { text: t, .. } => {
            let off = t.as_ptr() as usize - line.as_ptr() as usize;
            Line::Chat(&line[off..])
        }
        _ => Line::Other,
    }
}

/// An IRC line: `366` (end of NAMES) means joined; errors of registration
/// or joining (`ERROR`, 433 and friends) are refusals; `PRIVMSG`/`NOTICE` text is
/// chat, found on the raw bytes (every delivery comes this way).
fn classify_irc(line: &[u8]) -> Line<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(rest) = line.strip_prefix(b":") else {
        if let Some(token) = line.strip_prefix(b"PING ") {
            return Line::Ping(token.strip_prefix(b":").unwrap_or(token));
        }
        if line.starts_with(b"ERROR ") {
            return Line::Refused(line);
        }
        return Line::Other;
    };
    // After the source: the command, then its parameters.
    let Some(space) = rest.iter().position(|&b| b == b' ') else {
        return Line::Other;
    };
    let after = &rest[space + 1..];
    let (command, params) = match after.iter().position(|&b| b == b' ') {
        Some(i) => (&after[..i], &after[i + 1..]),
        None => (after, &b""[..]),
    };
    match command {
        b"PRIVMSG" | b"NOTICE" => match params.windows(2).position(|w| w == b" :") {
            Some(i) => Line::Chat(&params[i + 2..]),
            None => Line::Other,
        },
        b"366" => Line::Joined,
        b"001" => Line::Welcome,
        b"PING" => Line::Ping(params.strip_prefix(b":").unwrap_or(params)),
        // Registration and JOIN errors; other numerics (422: no MOTD) are
        // information.
        b"403" | b"405" | b"431" | b"432" | b"433" | b"436" | b"437" | b"451" | b"461" | b"462"
        | b"464" | b"465" | b"471" | b"473" | b"474" | b"475" | b"477" | b"904" => {
            Line::Refused(line)
        }
        _ => Line::Other,
    }
}

/// RESP2 (the Redis protocol), the client's side, without sockets: a reply
/// at the start of a buffer, or what it still needs.
///
/// ```text
/// +OK\r\n              simple string      -ERR unknown\r\n   error
/// :96\r\n              integer            $5\r\nlobby\r\n   bulk string ($-1: null)
/// *3\r\n$7\r\nmessage\r\n$5\r\nlobby\r\n$64\r\nb0:1:...\r\n   array of 3 ($-1... *-1: null)
/// ```
///
/// Arrays are not collected into a vector: an [`Array`](resp::Array) is
/// its element count and the bytes of its elements, read again on demand.
/// Nesting, element counts and lengths are capped ([`resp::MAX_DEPTH`],
/// [`resp::MAX_ELEMENTS`], [`MAX_UNIT`]): pub/sub replies are flat arrays
/// of a few elements.
pub mod resp {
    use super::{Line, MAX_UNIT, Need};

    /// Arrays inside arrays at most this deep (pub/sub needs 1).
    pub const MAX_DEPTH: usize = 2;
    /// Elements per array at most (a pub/sub message has 3).
    pub const MAX_ELEMENTS: usize = 64;

    /// One reply; the slices are in the buffer parsed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Value<'a> {
        Simple(&'a [u8]),
        Error(&'a [u8]),
        Integer(i64),
        /// `None`: the null bulk string (`$-1`).
        Bulk(Option<&'a [u8]>),
        /// `None`: the null array (`*-1`).
        Array(Option<Array<'a>>),
    }

    /// An array's elements, each a whole value (checked when it was
    /// parsed).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Array<'a> {
        pub len: usize,
        body: &'a [u8],
    }

    impl<'a> Array<'a> {
        /// The elements in order.
        pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + 'a {
            let mut body = self.body;
            (0..self.len).map_while(move |_| match parse(body) {
                Ok(Parsed::Done(v, n)) => {
                    body = &body[n..];
                    Some(v)
                }
                _ => None,
            })
        }
    }

    /// A whole reply and its length, or what an incomplete one needs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Parsed<'a> {
        Done(Value<'a>, usize),
        Need(Need),
    }

    /// Not RESP2 (or over the limits).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Malformed;

    /// The reply at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, Malformed> {
        parse_at(buf, 0)
    }

    fn parse_at(buf: &[u8], depth: usize) -> Result<Parsed<'_>, Malformed> {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            return if buf.len() > 64 * 1024 {
                Err(Malformed)
            } else {
                Ok(Parsed::Need(Need::Line))
            };
        };
        let line = buf[..nl].strip_suffix(b"\r").ok_or(Malformed)?;
        let (&kind, text) = line.split_first().ok_or(Malformed)?;
        let after = nl + 1;
        let value = match kind {
            b'+' => Value::Simple(text),
            b'-' => Value::Error(text),
            b':' => Value::Integer(integer(text)?),
            b'$' => {
                let len = integer(text)?;
                if len < 0 {
                    return Ok(Parsed::Done(Value::Bulk(None), after));
                }
                let len = usize::try_from(len).map_err(|_| Malformed)?;
                if len > MAX_UNIT {
                    return Err(Malformed);
                }
                let end = after + len;
                if buf.len() < end + 2 {
                    return Ok(Parsed::Need(Need::Bytes(end + 2 - buf.len())));
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(Malformed);
                }
                return Ok(Parsed::Done(Value::Bulk(Some(&buf[after..end])), end + 2));
            }
            b'*' => {
                let len = integer(text)?;
                if len < 0 {
                    return Ok(Parsed::Done(Value::Array(None), after));
                }
                let len = usize::try_from(len).map_err(|_| Malformed)?;
                if len > MAX_ELEMENTS || depth >= MAX_DEPTH {
                    return Err(Malformed);
                }
                let mut pos = after;
                for _ in 0..len {
                    match parse_at(&buf[pos..], depth + 1)? {
                        Parsed::Done(_, n) => pos += n,
                        need @ Parsed::Need(_) => return Ok(need),
                    }
                }
                let body = &buf[after..pos];
                return Ok(Parsed::Done(Value::Array(Some(Array { len, body })), pos));
            }
            _ => return Err(Malformed),
        };
        Ok(Parsed::Done(value, after))
    }

    /// A decimal integer, optionally negative (no `+`, no spaces).
    fn integer(text: &[u8]) -> Result<i64, Malformed> {
        let (neg, digits) = match text.strip_prefix(b"-") {
            Some(d) => (true, d),
            None => (false, text),
        };
        if digits.is_empty() || digits.len() > 19 {
            return Err(Malformed);
        }
        let mut v: i64 = 0;
        for &b in digits {
            if !b.is_ascii_digit() {
                return Err(Malformed);
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(b - b'0')))
                .ok_or(Malformed)?;
        }
        Ok(if neg { -v } else { v })
    }

    /// Appends a command as an array of bulk strings.
    pub fn command(parts: &[&[u8]], out: &mut Vec<u8>) {
        use std::io::Write as _;
        let _ = write!(out, "*{}\r\n", parts.len());
        for p in parts {
            let _ = write!(out, "${}\r\n", p.len());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// A reply as the bench sees it: `["message", channel, payload]` is
    /// chat; `["subscribe", channel, n]` and `+PONG` (a publisher's join)
    /// mean joined; an error is a refusal; anything else (PUBLISH's
    /// receiver count) is ignored.
    pub fn classify<'a>(value: &Value<'a>) -> Line<'a> {
        match *value {
            Value::Simple(b"PONG") => Line::Joined,
            Value::Error(text) => Line::Refused(text),
            Value::Array(Some(array)) => {
                let mut items = array.iter();
                match (items.next(), items.next(), items.next()) {
                    (
                        Some(Value::Bulk(Some(b"message"))),
                        Some(_),
                        Some(Value::Bulk(Some(payload))),
                    ) => Line::Chat(payload),
                    (Some(Value::Bulk(Some(b"subscribe"))), Some(_), Some(_)) => Line::Joined,
                    _ => Line::Other,
                }
            }
            _ => Line::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"* The room contains: a, b"), Line::Joined);
        assert_eq!(classify(b"* The room contains: \r"), Line::Joined);
        assert_eq!(classify(b"[bob] b1:2:3:xx"), Line::Chat(b"b1:2:3:xx"));
        assert_eq!(classify(b"[bob] hi\r"), Line::Chat(b"hi"));
        assert_eq!(classify(b"12:00:00 [bob] hi"), Line::Chat(b"hi"));
        assert_eq!(
            classify(b"! Nickname x is taken."),
            Line::Refused(b"! Nickname x is taken.")
        );
        assert_eq!(classify(b"* bob has entered the room"), Line::Other);
        assert_eq!(
            classify(b"Welcome to budgetchat! What shall I call you?"),
            Line::Other
        );
        assert_eq!(classify(b"[broken"), Line::Other);
        assert_eq!(classify(b"\xff\xfe"), Line::Other);
    }

    #[test]
    fn classifies_irc() {
        let irc = Dialect::Irc;
        assert_eq!(
            irc.classify(b":s 366 me #lobby :End of /NAMES list\r"),
            Line::Joined
        );
        assert_eq!(
            irc.classify(b":a!a@h PRIVMSG #lobby :b1:2:3:xx\r"),
            Line::Chat(b"b1:2:3:xx")
        );
        assert_eq!(irc.classify(b"PING :tok"), Line::Ping(b"tok"));
        assert_eq!(irc.classify(b":s PING :tok"), Line::Ping(b"tok"));
        assert_eq!(
            irc.classify(b":s 433 * me :Nickname is already in use"),
            Line::Refused(b":s 433 * me :Nickname is already in use")
        );
        assert_eq!(irc.classify(b":s 001 me :Welcome"), Line::Welcome);
        assert_eq!(
            irc.classify(b":s 422 me :MOTD File is missing"),
            Line::Other
        );
        assert_eq!(irc.classify(b":a!a@h JOIN #lobby"), Line::Other);
        let mut out = Vec::new();
        irc.join("n1", "#lobby", false, &mut Encoder::new(1), &mut out);
        irc.join_room("#lobby", &mut Encoder::new(1), &mut out);
        assert_eq!(out, b"NICK n1\r\nUSER n1 0 * :n1\r\nJOIN #lobby\r\n");
        assert_eq!(Dialect::parse("irc"), Some(Dialect::Irc));
        assert_eq!(Dialect::parse("IRC"), None);
        for d in [
            Dialect::Line,
            Dialect::Irc,
            Dialect::Ws,
            Dialect::WsIrc,
            Dialect::Resp,
        ] {
            assert_eq!(Dialect::parse(d.name()), Some(d));
        }
    }

    /// Feeds `data` in pieces cut at `cuts`, collecting the inputs as
    /// owned text for comparison.
    fn feed_cut(dialect: Dialect, key: Option<&str>, data: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut held = Vec::new();
        let mut got = Vec::new();
        let mut key = key;
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&data.len())) {
            let mut upgraded = false;
            let mut broken = false;
            dialect.feed(key, &mut held, &data[start..end], &mut |input| {
                upgraded |= input == Input::Upgraded;
                broken |= matches!(input, Input::Broken(_));
                got.push(format!("{input:?}"));
            });
            if broken {
                break; // the driver closes the connection
            }
            if upgraded {
                key = None;
            }
            assert!(held.len() <= data.len(), "held only what it must");
            start = end;
        }
        got
    }

    /// Every way of cutting `data` in two (and into single bytes) gives
    /// the same inputs as one read.
    fn same_whatever_the_cuts(dialect: Dialect, key: Option<&str>, data: &[u8]) -> Vec<String> {
        let whole = feed_cut(dialect, key, data, &[]);
        for cut in 0..=data.len() {
            assert_eq!(feed_cut(dialect, key, data, &[cut]), whole, "cut at {cut}");
        }
        let bytes: Vec<usize> = (1..data.len()).collect();
        assert_eq!(feed_cut(dialect, key, data, &bytes), whole, "byte by byte");
        whole
    }

    fn server_frame(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
        websocket::encode(opcode, payload, out);
    }

    #[test]
    fn websocket_upgrade_then_frames() {
        let key = ws_key(42, 7);
        assert_eq!(key.len(), 24);
        assert!(websocket::valid_key(key.as_bytes()), "{key}");
        assert_ne!(key, ws_key(42, 8));
        let mut req = Vec::new();
        Dialect::WsIrc.upgrade_request("127.0.0.1:7878".parse().unwrap(), &key, &mut req);
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:7878\r\n"));
        assert!(req.contains(&format!("Sec-WebSocket-Key: {key}\r\n")));
        assert!(req.contains("Sec-WebSocket-Protocol: text.ircv3.net\r\n"));
        assert!(req.ends_with("\r\n\r\n"));

        let accept = websocket::accept_key(key.as_bytes());
        let mut data = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             sec-websocket-accept: {accept}\r\nSec-WebSocket-Protocol: text.ircv3.net\r\n\r\n"
        )
        .into_bytes();
        server_frame(Opcode::Text, b":s 366 n #lobby :End", &mut data);
        server_frame(Opcode::Ping, b"hb", &mut data);
        server_frame(Opcode::Text, &[b'x'; 300], &mut data); // 16-bit length
        server_frame(Opcode::Text, b":a!a@h PRIVMSG #lobby :b0:1:2:x", &mut data);
        server_frame(Opcode::Close, &[3, 232, b'b', b'y'], &mut data);
        let got = same_whatever_the_cuts(Dialect::WsIrc, Some(&key), &data);
        assert_eq!(
            got,
            [
                "Upgraded".to_string(),
                format!("{:?}", Input::Line(Line::Joined)),
                format!("{:?}", Input::Answer(Opcode::Pong, b"hb")),
                format!("{:?}", Input::Line(Line::Other)),
                format!("{:?}", Input::Line(Line::Chat(b"b0:1:2:x"))),
                format!("{:?}", Input::Answer(Opcode::Close, &[3, 232])),
            ]
        );
    }

    #[test]
    fn websocket_refusals_and_broken_frames() {
        let key = ws_key(1, 1);
        let broken = |dialect: Dialect, data: &[u8]| {
            let got = same_whatever_the_cuts(dialect, Some(&key), data);
            got.last().cloned().unwrap_or_default()
        };
        let ok_head = |extra: &str| {
            format!(
                "HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
                websocket::accept_key(key.as_bytes())
            )
            .into_bytes()
        };
        assert!(broken(Dialect::Ws, b"HTTP/1.1 403 Forbidden\r\n\r\n").contains("ws_status_403"));
        assert!(
            broken(
                Dialect::Ws,
                b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: AAAA\r\n\r\n"
            )
            .contains("ws_bad_accept")
        );
        assert!(broken(Dialect::WsIrc, &ok_head("")).contains("ws_bad_subprotocol"));
        assert!(
            broken(Dialect::Ws, &ok_head("Sec-WebSocket-Protocol: x\r\n"))
                .contains("ws_bad_subprotocol")
        );
        assert!(broken(Dialect::Ws, b"HTTP/1.1 x\r\n\r\n").contains("ws_bad_response"));
        assert!(
            broken(Dialect::Ws, b"* Welcome to loopchat!\n! Invalid nickname\n")
                .contains("ws_not_http")
        );
        assert_eq!(broken(Dialect::Ws, &ok_head("")), "Upgraded");
        let mut frag = ok_head("");
        websocket::encode_masked(Opcode::Text, false, b"a", [0; 4], &mut frag);
        assert!(
            broken(Dialect::Ws, &frag).contains("ws_malformed"),
            "masked"
        );
        let mut frag = ok_head("");
        frag.extend_from_slice(&[0x01, 1, b'a']); // text, not final
        assert!(broken(Dialect::Ws, &frag).contains("ws_fragment"));
        let mut huge = ok_head("");
        huge.extend_from_slice(&[0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0]);
        assert!(broken(Dialect::Ws, &huge).contains("too_long"));
        let mut endless = b"HTTP/1.1 101 ".to_vec();
        endless.resize(MAX_HEAD + 10, b'x');
        let got = feed_cut(Dialect::Ws, Some(&key), &endless, &[100]);
        assert!(got.last().unwrap().contains("ws_head_too_long"), "{got:?}");
    }

    #[test]
    fn lines_and_masked_frames_out() {
        let mut enc = Encoder::new(9);
        let mut out = Vec::new();
        Dialect::Ws.join("n1", "#lobby", false, &mut enc, &mut out);
        Dialect::WsIrc.message("#r", b"b0:0:0:", &mut enc, &mut out);
        Dialect::WsIrc.pong(b"tok", &mut enc, &mut out);
        // What the server reads: the same lines, masked with varying keys.
        let mut framer = websocket::WsFramer::new(4096);
        let mut lines = Vec::new();
        framer.feed(&mut out, &mut |e| {
            if let websocket::WsEvent::Text(t) = e {
                lines.push(String::from_utf8_lossy(t).into_owned());
            }
            std::ops::ControlFlow::Continue(())
        });
        assert_eq!(lines, ["n1", "PRIVMSG #r :b0:0:0:", "PONG :tok"]);
        let mut out = Vec::new();
        Dialect::Line.message("#r", b"hi", &mut enc, &mut out);
        Dialect::Irc.message("#r", b"hi", &mut enc, &mut out);
        assert_eq!(out, b"hi\nPRIVMSG #r :hi\r\n");
        assert_ne!(enc.mask(), enc.mask());
    }

    #[test]
    fn lines_split_anywhere() {
        let got = same_whatever_the_cuts(
            Dialect::Line,
            None,
            b"* Welcome\n* The room contains: a\r\n[a] b0:0:0:x\n",
        );
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[2],
            format!("{:?}", Input::Line(Line::Chat(b"b0:0:0:x")))
        );
    }

    #[test]
    fn line_users_join_another_room_after_their_nickname() {
        let mut out = Vec::new();
        Dialect::Line.join("n", "#lobby", false, &mut Encoder::new(1), &mut out);
        assert_eq!(out, b"n\n");
        out.clear();
        Dialect::Line.join("n", "#soak", false, &mut Encoder::new(1), &mut out);
        assert_eq!(out, b"n\n/join #soak\n");
    }

    #[test]
    fn resp_replies() {
        let mut out = Vec::new();
        Dialect::Resp.join("n", "lobby", false, &mut Encoder::new(1), &mut out);
        assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nlobby\r\n");
        out.clear();
        Dialect::Resp.join("n", "lobby", true, &mut Encoder::new(1), &mut out);
        assert_eq!(out, b"*1\r\n$4\r\nPING\r\n");
        out.clear();
        Dialect::Resp.message("lobby", b"b0:1:2:", &mut Encoder::new(1), &mut out);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nlobby\r\n$7\r\nb0:1:2:\r\n"
        );

        let data = b"*3\r\n$9\r\nsubscribe\r\n$5\r\nlobby\r\n:1\r\n+PONG\r\n:42\r\n\
                     *3\r\n$7\r\nmessage\r\n$5\r\nlobby\r\n$8\r\nb0:1:2:x\r\n\
                     $-1\r\n*-1\r\n*2\r\n*1\r\n:1\r\n$0\r\n\r\n-ERR wrong\r\n";
        let got = same_whatever_the_cuts(Dialect::Resp, None, data);
        let line = |l| format!("{:?}", Input::Line(l));
        assert_eq!(
            got,
            [
                line(Line::Joined),
                line(Line::Joined),
                line(Line::Other),
                line(Line::Chat(b"b0:1:2:x")),
                line(Line::Other),
                line(Line::Other),
                line(Line::Other),
                line(Line::Refused(b"ERR wrong")),
            ]
        );
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$3\r\nabcd\r\n",
            b":1\n",
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            b"*65\r\n",
            b"$2000000\r\n",
            b":99999999999999999999\r\n",
        ] {
            let got = feed_cut(Dialect::Resp, None, bad, &[]);
            assert_eq!(
                got.last().map(String::as_str),
                Some(r#"Broken("resp_malformed")"#),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            resp::parse(b"$5\r\nab"),
            Ok(resp::Parsed::Need(Need::Bytes(5)))
        );
        assert_eq!(resp::parse(b"*2\r\n:1"), Ok(resp::Parsed::Need(Need::Line)));
    }
}
