//! The event loop: one thread, one `mio::Poll`, every socket non-blocking.
//!
//! # How one turn of the loop goes
//!
//! ```text
//!   ┌──────────────────────────────────────────────────────────────┐
//!   │ poll(timeout = 0 if work is left over, else the next timer   │
//!   │      or queued password check, else forever)                 │
//!   └──────────────┬───────────────────────────────────────────────┘
//!                  ▼
//!   for each event:   LISTENER  -> accept()       admit new connections
//!                     SIGNALS   -> on_signal()    start shutting down
//!                                                 (SIGHUP: reopen the log,
//!                                                 reload the certificate)
//!                     Token(k)  -> read_from(k)   read until WouldBlock,
//!                                                 (TLS: decrypt first),
//!                                                 frame lines, feed the Hub,
//!                                                 which queues output
//!                                  queue_flush(k) (when WRITABLE)
//!                     bridge::CMD/SUB -> bridge_event() (`--redis`: replies
//!                                  and pushes from Redis, to the hub)
//!                  ▼
//!   carried-over reads, due timers (rate limit, timeouts, linger)
//!                  ▼
//!   flush_pending(): each connection with queued output gets ONE write
//!                  ▼
//!   free_closed(): deregister and drop connections that finished closing
//!                  ▼
//!   run_auth_job(): with --accounts, at most ONE password hash (a few ms),
//!                   then flush and free again for its answer; new accounts
//!                   are held and saved together (commit_accounts), and
//!                   answered only once saved
//!                  ▼
//!   bridge_end_of_turn(): with --redis, write the links' buffers
//!                  ▼
//!   housekeeping: compact_timers() once the timer heap has doubled;
//!                 trim_heap_if_quiet() on a turn that did nothing
//! ```
//!
//! # The rules this file follows
//!
//! - **Readiness is edge-triggered.** mio tells us a socket *became*
//!   readable; it will not say so again until we have read everything. So
//!   [`Server::read_from`] reads until `WouldBlock`. When it stops early on
//!   purpose (fairness, flood control) it remembers the connection in
//!   `unread` or in a timer, because no new event will come for those bytes.
//! - **Writes are batched, like Redis.** The [`Hub`] never writes to a
//!   socket; it appends to send queues (through [`Mailer`]) and the
//!   connection is put on `flush_list`. Before the loop sleeps, every
//!   connection on that list gets one `write()` with everything queued for it
//!   this turn. WRITABLE interest is asked for only while bytes remain after
//!   that, and dropped as soon as the queue is empty; otherwise an idle
//!   server would wake up for every socket that is (always) writable.
//! - **Close later.** A connection that must go is only *marked* (`Phase::Closing`)
//!   while the turn runs; it is deregistered and its slab slot freed in
//!   [`Server::free_closed`], after every event of the batch. A slab key is
//!   therefore never reused while an event for its old owner is in hand.
//! - **One peer's problem is that peer's problem.** Any error while reading
//!   or writing a connection closes that connection only. Only a failing
//!   `poll()` ends the loop.
//! - **Nothing here waits for a peer.** Three things do take time inside
//!   the loop, and are kept small on purpose: a password hash (one per turn,
//!   a few ms, see [`Server::run_auth_job`]), saving the accounts file after
//!   registrations (a write and two `fsync`s, once for a burst: see
//!   [`Server::commit_accounts`]), and writing the log when it
//!   goes to a regular file (`--log-file`, or stderr redirected to a file).
//!   A log on a pipe, terminal or socket never blocks (see
//!   [`crate::logging`]); message contents are logged at debug level only.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::accounts::{self, Accounts, AuthJob, AuthOutcome, NewAccountBudget, Rate, Scope};
use crate::bridge::{self, Bridge};
use crate::chat::{ConnId, Event, LeaveReason, Refusal, Relay, Watch};
use crate::config::{self, Config};
use crate::dialect::line;
use crate::framing::{Frame, LineFramer};
use crate::hub::{Hub, Outbox};
use crate::logging::{self, Kind};
use crate::metrics::{self, Snapshot, Totals};
use crate::output::{Piece, Pool, SendQueue, Stream};
use crate::ratelimit::TokenBucket;
use crate::timers::{self, Timer, Timers};
use crate::tls::{self, Acceptor, Fed, Session};
use crate::transport::http;
use crate::transport::websocket::{self, Opcode, WsEvent, WsFramer};
use crate::turn_stats::{CountingWriter, TurnStats};
use crate::web;

/// Connection tokens are slab keys; these two sit at the top of the range,
/// where the slab never gets to.
const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// The one read buffer, shared by all connections (lines are copied out of
/// it into a connection's framer only while incomplete).
const READ_CHUNK: usize = 16 * 1024;
/// Bytes read from one connection per turn before the others get a go.
const FAIR_READ: usize = 64 * 1024;
/// Connections accepted per turn before the existing ones get a go.
const MAX_ACCEPTS_PER_TURN: usize = 128;
/// Events taken from the kernel per `poll()`.
const EVENTS_CAPACITY: usize = 1024;
/// Buffer memory released since the last heap trim that makes the next
/// quiet moment trim (see [`Server::trim_heap_if_quiet`])...
const TRIM_AFTER_RELEASED: usize = 1 << 20;
/// ...and the time without a read, a write or a timer that counts as idle.
const QUIET_BEFORE_TRIM: Duration = Duration::from_secs(1);
/// Bytes read and thrown away before closing, so the close sends FIN and
/// not RST (a RST can destroy the last line we sent before the peer reads it).
const DRAIN_BEFORE_CLOSE: usize = 64 * 1024;
/// The first byte of a TLS handshake record (a ClientHello). No chat line,
/// telnet command or HTTP request starts with it.
const TLS_HANDSHAKE: u8 = 0x16;

/// One client socket and everything the loop keeps for it.
struct Connection {
    stream: TcpStream,
    addr: SocketAddr,
    /// Unique for the server's life, unlike the slab key, so a timer for a
    /// connection that is gone cannot fire on its successor.
    serial: u64,
    framer: LineFramer,
    sendq: SendQueue,
    /// What we last registered for, so we only call `reregister` on change.
    interest: Interest,
    bucket: TokenBucket,
    /// The rate limit stopped reading; a `Refill` timer will resume it.
    throttled: bool,
    /// When the flooder was last told it is being slowed down.
    flood_noticed: Option<Instant>,
    /// Already on `flush_list` this turn.
    flush_queued: bool,
    /// Open, closing, or about to be freed.
    phase: Phase,
    last_input: Instant,
    /// An idle ping was sent and not answered yet.
    pinged: bool,
    /// A password check for it is queued, or (`--redis`) its nickname is
    /// being claimed: stop reading until the answer, so lines sent after
    /// the password or the name wait for it.
    waiting: bool,
    /// What carries its lines: TCP, or on the main port possibly HTTP and
    /// then WebSocket frames.
    transport: Transport,
    /// TLS under the transport: bytes read go through it before the
    /// transport sees them, and everything queued is sealed by it first.
    tls: Option<Session>,
}

/// How a connection's bytes become lines, and lines become bytes. Every
/// transport feeds the same [`LineFramer`] (so flood control, the line
/// limit and the dialects work the same), and writes into the same
/// [`SendQueue`].
#[derive(Debug)]
enum Transport {
    /// Main port, nothing read yet: a browser or a chat client? (A silent
    /// one is greeted as a line user after the greeting hold.)
    Sniffing,
    /// Newline-framed lines over TCP: `nc`, telnet, IRC clients.
    Lines,
    /// An HTTP request head arriving (at most [`http::MAX_HEAD`] bytes),
    /// or the first bytes of one (`GE`...). Boxed, like the WebSocket
    /// state, so that every connection's `Transport` is one word.
    #[allow(clippy::box_collection)]
    Http(Box<Vec<u8>>),
    /// WebSocket frames after `GET /ws`, one line per message.
    WebSocket(Box<WsConn>),
}

#[derive(Debug)]
struct WsConn {
    framer: WsFramer,
    /// `binary.ircv3.net`: messages go out as binary frames.
    binary: bool,
}

impl Connection {
    /// `Some(binary)` for a WebSocket connection.
    fn websocket(&self) -> Option<bool> {
        match &self.transport {
            Transport::WebSocket(ws) => Some(ws.binary),
            _ => None,
        }
    }
}

/// `lines` (whole lines, `\n` or `\r\n` ended) as WebSocket frames, one
/// per line and without its line ending (the IRCv3 WebSocket rule, and the
/// page's), appended to `out`.
fn websocket_frames(lines: &[u8], binary: bool, out: &mut Vec<u8>) {
    let opcode = if binary { Opcode::Binary } else { Opcode::Text };
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (head, n) = websocket::frame_header(opcode, line.len());
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(line);
    }
}

/// Where a connection is on its way out. Closing only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Leaving: read nothing more, accept no more output, free once the
    /// queue is written (or the linger timer says stop waiting).
    Closing,
    /// On `to_free`: deregistered and dropped at the end of the turn.
    Freeing,
}

impl Phase {
    /// Closing or being freed: no more reading, no more output.
    fn closing(self) -> bool {
        self != Phase::Open
    }

    /// Starts closing (a connection being freed stays so).
    fn close(&mut self) {
        if *self == Phase::Open {
            *self = Phase::Closing;
        }
    }
}

/// A password check waiting for its turn (see `Server::run_auth_job`).
struct QueuedAuth {
    key: usize,
    serial: u64,
    job: AuthJob,
}

/// Wrong passwords from one address, for the per-address delay.
#[derive(Debug, Clone, Copy)]
struct Penalty {
    failures: u32,
    last: Instant,
}

impl Penalty {
    /// The address's next check may not run before this.
    fn not_before(&self) -> Instant {
        let doublings = self.failures.saturating_sub(1).min(16);
        let delay = config::AUTH_DELAY_FIRST
            .saturating_mul(1 << doublings)
            .min(config::AUTH_DELAY_MAX);
        self.last + delay
    }
}

/// The [`Outbox`] the hub writes into: appends to send queues. It makes
/// no syscalls, except when a queue reaches its cap (see `send`).
struct Mailer<'a> {
    conns: &'a mut Slab<Connection>,
    pool: &'a mut Pool,
    stats: &'a mut TurnStats,
    flush_list: &'a mut Vec<usize>,
    overflowed: &'a mut Vec<usize>,
    broken: &'a mut Vec<usize>,
    timers: &'a mut Timers,
    auth_queue: &'a mut VecDeque<QueuedAuth>,
    /// `--redis`: relays and watches go to the bridge's buffers.
    bridge: Option<&'a mut Bridge>,
    now: Instant,
}

impl Mailer<'_> {
    /// Queues `line` for `to`: as a span of `shared` (a broadcast stored
    /// once in the pool) when there is one, else as `to`'s own bytes.
    fn deliver(&mut self, to: ConnId, line: &[u8], shared: Option<Piece>, raw: bool) {
        let Some(c) = self.conns.get_mut(to) else {
            return;
        };
        if c.phase.closing() {
            return;
        }
        // A telnet client letting us echo (a password is asked) shows a
        // bare \n as a line feed only: it gets the NVT's \r\n, in its own
        // bytes. Rare, so the copy does not matter.
        let crlf;
        let framed;
        // A TLS connection's bytes are encrypted for it alone: it never
        // takes a span of a shared broadcast.
        let own_only = shared.is_none() || c.tls.is_some();
        let (line, shared) = if raw {
            (line, None)
        } else if let (Some(binary), true) = (c.websocket(), own_only) {
            framed = {
                let mut f = Vec::with_capacity(line.len() + 8);
                websocket_frames(line, binary, &mut f);
                f
            };
            (&framed[..], None)
        } else if c.framer.remote_echo() {
            crlf = line.iter().fold(Vec::new(), |mut v, &b| {
                if b == b'\n' {
                    v.push(b'\r');
                }
                v.push(b);
                v
            });
            (&crlf[..], None)
        } else {
            (line, shared)
        };
        let sealed;
        let (line, shared) = match &mut c.tls {
            None => (line, shared),
            Some(session) => {
                let mut records = Vec::with_capacity(line.len() + 32);
                if let Err(e) = session.seal(line, &mut records) {
                    // Only before the handshake ends, with more than
                    // tls::BUFFER_LIMIT waiting: a peer that never finishes it.
                    debug!("#{to}: TLS: {e}");
                    c.phase.close();
                    self.broken.push(to);
                    return;
                }
                sealed = records;
                (&sealed[..], None)
            }
        };
        self.enqueue(to, line, shared);
    }

    /// Appends `line` (bytes ready for the socket) or `shared` to `to`'s
    /// queue and puts `to` on the flush list; offers the queue to the
    /// kernel early when it is full or holds a long reply.
    fn enqueue(&mut self, to: ConnId, line: &[u8], shared: Option<Piece>) {
        let Some(c) = self.conns.get_mut(to) else {
            return;
        };
        let push = |q: &mut SendQueue, pool: &mut Pool| match shared {
            Some(piece) => q.push_shared(pool, piece),
            None => q.push(pool, line),
        };
        self.stats.queued += 1;
        self.stats.queued_bytes += line.len() as u64;
        if push(&mut c.sendq, self.pool).is_err() {
            // The queue is full of bytes from *this* turn, which the kernel
            // has not been offered yet. Offer them now: only what it will
            // not take counts against the cap.
            if !self.write_now(to) {
                return;
            }
            let Some(c) = self.conns.get_mut(to) else {
                return;
            };
            if push(&mut c.sendq, self.pool).is_err() {
                // A slow reader. It is kicked in `flush_pending`, once the
                // room is done with this input; until then it gets nothing.
                c.phase.close();
                self.overflowed.push(to);
                return;
            }
        } else if c.sendq.own_len() > config::WRITE_OWN_EARLY {
            // A long reply of its own (the room's list for a joiner in a
            // big room): hand it to the kernel now rather than hold it to
            // the end of the turn, when a storm of joiners would hold one
            // each. Broadcast spans do not count: they cost no memory of
            // their own, and batching them is the point of the turn.
            if !self.write_now(to) {
                return;
            }
        }
        let Some(c) = self.conns.get_mut(to) else {
            return;
        };
        if !c.flush_queued {
            c.flush_queued = true;
            self.flush_list.push(to);
        }
    }

    /// Writes `to`'s queue now, ahead of the end-of-turn flush. Returns
    /// `false` if the socket failed (the connection is then closing and on
    /// the `broken` list).
    fn write_now(&mut self, to: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(to) else {
            return false;
        };
        let mut w = CountingWriter::new(&mut c.stream);
        let written = c.sendq.write_to(self.pool, &mut w);
        self.stats.writes += w.calls;
        self.stats.written_bytes += w.bytes;
        if written.is_err() {
            c.phase.close();
            self.broken.push(to);
            return false;
        }
        true
    }
}

impl Mailer<'_> {
    /// Queues `bytes` as they are: transport bytes (an HTTP response, a
    /// WebSocket control frame), not lines of a dialect.
    fn send_raw(&mut self, to: ConnId, bytes: &[u8]) {
        self.deliver(to, bytes, None, true);
    }

    /// Queues TLS records from `to`'s session (handshake, alerts,
    /// close_notify): already encrypted, so they skip `deliver`.
    fn send_records(&mut self, to: ConnId, records: &[u8]) {
        if !records.is_empty() {
            self.enqueue(to, records, None);
        }
    }
}

impl Outbox for Mailer<'_> {
    fn send(&mut self, to: ConnId, line: &[u8]) {
        self.deliver(to, line, None, false);
    }

    /// One copy in the pool; a span of it for each recipient. WebSocket
    /// recipients get the same lines as frames, also stored once (in their
    /// own stream, so that they too lie side by side).
    fn send_many(&mut self, stream: Stream, bytes: &[u8], to: impl Iterator<Item = ConnId>) {
        let plain = self.pool.append(stream, bytes);
        let mut framed: [Option<Piece>; 2] = [None, None];
        for conn in to {
            // (A TLS recipient seals the plain lines itself: no shared piece.)
            let framing = self
                .conns
                .get(conn)
                .filter(|c| c.tls.is_none())
                .and_then(Connection::websocket);
            let piece = match framing {
                None => plain,
                Some(binary) => *framed[usize::from(binary)].get_or_insert_with(|| {
                    let mut f = Vec::with_capacity(bytes.len() + 8);
                    websocket_frames(bytes, binary, &mut f);
                    let ws_stream = Stream {
                        dialect: stream.dialect | if binary { 0x40 } else { 0x80 },
                        ..stream
                    };
                    self.pool.append(ws_stream, &f)
                }),
            };
            self.deliver(conn, bytes, Some(piece), false);
        }
        for piece in std::iter::once(plain).chain(framed.into_iter().flatten()) {
            self.pool.settle(piece);
        }
    }

    fn authenticate(&mut self, conn: ConnId, job: AuthJob) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.waiting = true;
        self.auth_queue.push_back(QueuedAuth {
            key: conn,
            serial: c.serial,
            job,
        });
    }

    fn wake_at(&mut self, at: Instant) {
        self.timers.schedule(at, Timer::InviteExpiry);
    }

    fn relay(&mut self, conn: ConnId, relay: &Relay<'_>) {
        let serial = self.conns.get(conn).map_or(0, |c| c.serial);
        if let Some(bridge) = self.bridge.as_deref_mut() {
            bridge.publish(conn, serial, relay);
        }
    }

    fn watch(&mut self, what: Watch<'_>, on: bool) {
        if let Some(bridge) = self.bridge.as_deref_mut() {
            bridge.watch(what, on);
        }
    }

    fn claim(&mut self, conn: ConnId, nick: &str) -> bool {
        let (Some(bridge), Some(c)) = (self.bridge.as_deref_mut(), self.conns.get_mut(conn)) else {
            return false;
        };
        let asked = bridge.claim(conn, c.serial, nick);
        c.waiting |= asked;
        asked
    }

    /// Only to telnet clients (see [`LineFramer::set_echo`]).
    fn password_prompt(&mut self, conn: ConnId, on: bool) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.framer.set_echo(on);
        let bytes = c.framer.take_replies();
        if !bytes.is_empty() {
            // Telnet commands, not a line: the queue takes any bytes.
            self.send(conn, &bytes);
        }
    }

    fn close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if let (Transport::WebSocket(ws), false) = (&mut c.transport, c.phase.closing()) {
            // The closing handshake, from our side, after the last lines.
            let mut frame = Vec::new();
            ws.framer.close(websocket::CLOSE_NORMAL, "", &mut frame);
            if !frame.is_empty() {
                self.send_raw(conn, &frame);
            }
        }
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if let (Some(session), false) = (&mut c.tls, c.phase.closing()) {
            // TLS's own goodbye, after the last plaintext.
            let mut records = Vec::new();
            session.close(&mut records);
            self.send_records(conn, &records);
        }
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.phase.close();
        // Duplicate timers are harmless: the first to fire frees it.
        self.timers.schedule(
            self.now + config::CLOSE_LINGER,
            Timer::Linger {
                key: conn,
                serial: c.serial,
            },
        );
        if !c.flush_queued {
            c.flush_queued = true;
            self.flush_list.push(conn);
        }
    }
}

/// The whole server state. See the module docs for how a turn goes.
pub struct Server {
    poll: Poll,
    /// The main port first (both dialects, sniffed), then `--irc-listen`s.
    listeners: Vec<Listener>,
    signals: Signals,
    config: Config,
    conns: Slab<Connection>,
    /// Every broadcast's bytes, once, for the send queues' spans; and the
    /// tally of output memory that `--max-output-memory` caps.
    pool: Pool,
    /// `/metrics` counters since start.
    totals: Totals,
    /// Who may open a WebSocket from a web page (`--allow-origin`).
    web_policy: web::Policy,
    /// When the server started (Unix seconds), for `/metrics`.
    started_unix: f64,
    hub: Hub,
    timers: Timers,
    /// Connections with output queued this turn.
    flush_list: Vec<usize>,
    /// Connections whose send queue overflowed this turn.
    overflowed: Vec<usize>,
    /// Connections whose socket failed in an early write this turn.
    broken: Vec<usize>,
    /// Connections we stopped reading for fairness; more bytes may wait.
    unread: Vec<(usize, u64)>,
    /// Connections to deregister and drop at the end of the turn.
    to_free: Vec<usize>,
    read_buf: Box<[u8]>,
    /// The line being handed to the room (copied out of the framer so the
    /// room may queue output for the very connection it came from).
    line: Vec<u8>,
    per_ip: HashMap<IpAddr, usize>,
    /// Held open so that, when the process runs out of descriptors, we can
    /// close it, accept the waiting connection, tell it why, and close it.
    spare_fd: Option<File>,
    accept_paused: bool,
    next_serial: u64,
    shutting_down: bool,
    shutdown_expired: bool,
    now: Instant,
    /// For `--timestamps`: the Unix second last formatted.
    clock_second: i64,
    /// The end of the last turn that read, wrote or fired a timer.
    last_busy: Instant,
    /// `--accounts`: the store, owned by the loop, written by auth jobs.
    accounts: Option<Accounts>,
    /// Password checks in arrival order; at most one runs per turn.
    auth_queue: VecDeque<QueuedAuth>,
    /// Answers held until the accounts file is saved (group commit): from
    /// the first registration not yet saved on, every answer waits, in
    /// order, so none tells of an account the file does not have.
    held: Vec<(usize, u64, AuthOutcome)>,
    /// When the first held registration was hashed.
    held_since: Option<Instant>,
    /// Recent wrong passwords per address (see `config::AUTH_DELAY_*`).
    penalties: HashMap<IpAddr, Penalty>,
    /// How many more accounts may be registered, per address and in all.
    new_accounts: NewAccountBudget,
    /// What this turn did (`--trace-turns` logs it), and its number.
    turn: TurnStats,
    turn_no: u64,
    /// The connection whose lines were handled last (to count connections).
    turn_last_conn: Option<usize>,
    /// Sums up storms of accept/refusal log lines (see `logging::Limiter`).
    log_limiter: logging::Limiter,
    /// `--tls-cert`/`--tls-key`: the certificate new TLS sessions get.
    tls: Option<Acceptor>,
    /// TLS handshake messages processed this turn (see
    /// [`tls::MAX_HANDSHAKES_PER_TURN`]).
    handshakes: usize,
    /// Scratch for one TLS read: the plaintext, and the records to send.
    tls_plain: Vec<u8>,
    tls_records: Vec<u8>,
    /// `--redis`: the links to Redis and what they carry (see
    /// [`crate::bridge`]). `None`: nothing of it exists.
    bridge: Option<Bridge>,
    /// The earliest `Timer::Bridge` in the heap.
    bridge_wake: Option<Instant>,
}

/// Creates the listening socket: non-blocking, `SO_REUSEADDR` (so a
/// restarted server can bind while old connections sit in TIME_WAIT), and
/// a backlog of [`config::LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_with(addr, false)
}

/// [`bind`], and with `reuse_port` also `SO_REUSEPORT` (`--reuse-port`):
/// several processes may then listen on the same port, each with its own
/// socket, and the kernel spreads new connections over them (by a hash of
/// the addresses). Every process must set it, as the same user.
pub fn bind_with(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(config::LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// One listening socket.
struct Listener {
    socket: TcpListener,
    /// Every connection speaks IRC from its first byte (`--irc-listen`).
    irc: bool,
    /// Every connection is TLS from its first byte (`--tls-listen`).
    tls: bool,
    /// Stopped accepting at the per-turn cap; the backlog may hold more.
    more: bool,
}

/// The token of listener `i`: the main one at the very top, the IRC ones
/// below the signal pipe's.
fn listener_token(i: usize) -> Token {
    if i == 0 {
        LISTENER
    } else {
        Token(usize::MAX - 1 - i)
    }
}

/// Binds nothing, spawns nothing: serves `listener` until SIGINT/SIGTERM.
/// Returns an error only if the poll itself fails.
pub fn run(listener: TcpListener, config: Config) -> io::Result<()> {
    Server::new(listener, config)?.serve()
}

/// [`run`] with accounts: names need a password, checked against `store`.
pub fn run_with_accounts(listener: TcpListener, config: Config, store: Accounts) -> io::Result<()> {
    Server::new(listener, config)?.with_accounts(store).serve()
}

/// [`run`] with IRC-only listeners and, optionally, accounts.
pub fn run_with(
    listener: TcpListener,
    irc_listeners: Vec<TcpListener>,
    config: Config,
    store: Option<Accounts>,
) -> io::Result<()> {
    let mut server = Server::new(listener, config)?;
    for socket in irc_listeners {
        server.add_irc_listener(socket)?;
    }
    match store {
        Some(store) => server.with_accounts(store).serve(),
        None => server.serve(),
    }
}

impl Server {
    /// Registers the listener and the signal pipe with a new Poll.
    pub fn new(mut listener: TcpListener, config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let web_policy = web::Policy {
            allow_origins: config.allow_origins.clone(),
        };
        let new_accounts = NewAccountBudget::new(
            Rate {
                count: config.new_accounts_per_ip,
                period: Duration::from_secs(3600),
            },
            Rate {
                count: config.new_accounts_per_minute,
                period: Duration::from_secs(60),
            },
        );
        Ok(Server {
            poll,
            listeners: vec![Listener {
                socket: listener,
                irc: false,
                tls: false,
                more: false,
            }],
            signals,
            hub: {
                let mut hub = Hub::new(config.max_line);
                hub.set_invite_timeout(config.invite_timeout);
                hub.set_default_room(&config.default_room);
                hub.set_quiet_joins_above(config.quiet_joins_above);
                hub.set_irc_config(config.irc.clone());
                hub
            },
            config,
            conns: Slab::new(),
            timers: Timers::new(),
            flush_list: Vec::new(),
            overflowed: Vec::new(),
            broken: Vec::new(),
            unread: Vec::new(),
            to_free: Vec::new(),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            line: Vec::new(),
            per_ip: HashMap::new(),
            spare_fd: File::open("/dev/null").ok(),
            accept_paused: false,
            next_serial: 0,
            shutting_down: false,
            shutdown_expired: false,
            now: Instant::now(),
            clock_second: -1,
            pool: Pool::new(),
            totals: Totals::default(),
            web_policy,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            last_busy: Instant::now(),
            accounts: None,
            auth_queue: VecDeque::new(),
            held: Vec::new(),
            held_since: None,
            penalties: HashMap::new(),
            new_accounts,
            log_limiter: logging::Limiter::new(),
            turn: TurnStats::default(),
            turn_no: 0,
            turn_last_conn: None,
            tls: None,
            handshakes: 0,
            tls_plain: Vec::new(),
            tls_records: Vec::new(),
            bridge: None,
            bridge_wake: None,
        })
    }

    /// Turns the Redis bridge on (`--redis`): `addr` is `target` resolved
    /// (before the loop: resolving may block), `node` this process's id.
    /// The links connect at the loop's first turn.
    pub fn set_bridge(&mut self, target: bridge::Target, addr: SocketAddr, node: String) {
        info!(
            "bridge: node {node}, Redis at {}:{} ({addr})",
            target.host, target.port
        );
        self.bridge = Some(Bridge::new(target, addr, node, self.now));
        self.hub.set_bridged(true);
        self.schedule_bridge_tick();
    }

    /// Turns accounts on, with `store` loaded from the accounts file.
    pub fn with_accounts(mut self, store: Accounts) -> Server {
        self.accounts = Some(store);
        self.hub.set_accounts(true);
        self
    }

    /// The loop. Returns after a shutdown has drained.
    pub fn serve(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            // Sleep until something happens; never spin. Zero only when we
            // left work undone on purpose last turn (see `unread`); else
            // until the next timer or queued password check, whichever is
            // first (zero if one may run now).
            let now = Instant::now();
            let bridge_unread = self
                .bridge
                .as_ref()
                .is_some_and(|b| b.unread().next().is_some());
            let timeout = if self.wants_accept()
                || !self.unread.is_empty()
                || !self.held.is_empty()
                || bridge_unread
            {
                Some(Duration::ZERO)
            } else {
                let auth = self.next_auth_at().map(|at| timers::until(at, now));
                match (self.timers.poll_timeout(now), auth) {
                    (Some(t), Some(a)) => Some(t.min(a)),
                    (t, a) => t.or(a),
                }
            };
            let timeout = self.limit_for_trim(timeout);
            let timeout = self.limit_for_log_summary(now, timeout);
            let slept_from = Instant::now();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue; // a signal arrived; it is also in the pipe
                }
                error!("poll failed: {e}");
                return Err(e);
            }
            self.now = Instant::now();
            // `now` is re-taken after a password hash; the turn's length
            // counts from here.
            let turn_started = self.now;
            self.turn = TurnStats {
                slept: self.now.duration_since(slept_from),
                ..TurnStats::default()
            };
            self.turn_last_conn = None;
            self.handshakes = 0;
            self.hub.set_now(self.now);
            self.tick_clock();
            self.log_limiter.flush(self.now, |s| info!("{s}"));
            let carried = std::mem::take(&mut self.unread);
            // Whether this turn reads, writes or fires anything (see
            // `trim_heap_if_quiet`); timers are counted below.
            let mut busy =
                !events.is_empty() || !carried.is_empty() || self.wants_accept() || bridge_unread;

            for event in events.iter() {
                let token = event.token();
                if token == SIGNALS {
                    self.turn.signals += 1;
                    self.on_signal();
                } else if let Some(i) = self.listener_index(token) {
                    self.turn.accepts += 1;
                    self.accept(i);
                } else if token == bridge::CMD || token == bridge::SUB {
                    self.bridge_event(token);
                } else {
                    let Token(k) = token;
                    if event.is_writable() {
                        self.turn.writable += 1;
                        self.queue_flush(k);
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.turn.readable += 1;
                        self.read_from(k);
                    }
                }
            }

            if self.wants_accept() {
                for i in 0..self.listeners.len() {
                    if self.listeners[i].more {
                        self.accept(i);
                    }
                }
            }
            for (k, serial) in carried {
                if self.conns.get(k).is_some_and(|c| c.serial == serial) {
                    self.read_from(k);
                }
            }
            if bridge_unread {
                let tokens: Vec<Token> = self.bridge.iter().flat_map(Bridge::unread).collect();
                for token in tokens {
                    self.bridge_event(token);
                }
            }
            self.run_timers();
            busy |= self.turn.timers > 0;
            self.flush_pending();
            self.free_closed();
            // The slow part last, after this turn's output is on its way:
            // a line read this turn does not wait for the hash as well.
            let ran = self.run_auth_job();
            if self.commit_accounts(false) || ran {
                busy = true;
                self.flush_pending();
                self.free_closed();
            }
            if self.bridge.is_some() {
                self.bridge_end_of_turn();
            }
            if self.timers.needs_compaction() {
                self.compact_timers();
            }
            if busy {
                self.last_busy = Instant::now();
            } else {
                self.trim_heap_if_quiet();
            }
            self.turn.broadcasts = self.hub.take_broadcasts();
            self.totals.add_turn(&self.turn);
            self.turn_no += 1;
            if self.config.trace_turns && self.turn.did_something() {
                self.turn.held_bytes = self.pool.held();
                info!("{}", self.turn.line(self.turn_no, turn_started.elapsed()));
            }

            if self.shutting_down && (self.conns.is_empty() || self.shutdown_expired) {
                info!("shutdown complete");
                return Ok(());
            }
        }
    }

    /// Whether the backlog may hold connections we should accept now
    /// (the last `accept()` stopped at its cap). Never while shutting down
    /// or paused, so neither makes the loop poll with a zero timeout.
    fn wants_accept(&self) -> bool {
        self.listeners.iter().any(|l| l.more) && !self.accept_paused && !self.shutting_down
    }

    /// Which listener `token` is, if it is one.
    fn listener_index(&self, token: Token) -> Option<usize> {
        (0..self.listeners.len()).find(|&i| listener_token(i) == token)
    }

    /// Adds a listener whose connections speak IRC from the first byte.
    pub fn add_irc_listener(&mut self, socket: TcpListener) -> io::Result<()> {
        self.add_listener(socket, true, false)
    }

    /// Turns TLS on: `--tls-listen` ports can be added, and main-port
    /// clients whose first byte is 0x16 (a TLS record carrying a
    /// ClientHello; no chat line or HTTP request starts with it) are TLS.
    pub fn set_tls(&mut self, acceptor: Acceptor) {
        self.tls = Some(acceptor);
    }

    /// Adds a listener whose connections are TLS from the first byte;
    /// inside, they are sniffed like the main port's. Needs [`set_tls`](Self::set_tls).
    pub fn add_tls_listener(&mut self, socket: TcpListener) -> io::Result<()> {
        self.add_listener(socket, false, true)
    }

    /// Registers one more listener, after the others (its token says which).
    fn add_listener(&mut self, mut socket: TcpListener, irc: bool, tls: bool) -> io::Result<()> {
        let token = listener_token(self.listeners.len());
        self.poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)?;
        self.listeners.push(Listener {
            socket,
            irc,
            tls,
            more: false,
        });
        Ok(())
    }

    /// Accepts waiting connections on listener `i`, at most
    /// [`MAX_ACCEPTS_PER_TURN`].
    fn accept(&mut self, i: usize) {
        let Some(listener) = self.listeners.get_mut(i) else {
            return;
        };
        listener.more = false;
        let (irc, tls) = (listener.irc, listener.tls);
        if self.accept_paused || self.shutting_down {
            return;
        }
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            match self.listeners[i].socket.accept() {
                Ok((stream, addr)) => self.admit(stream, addr, irc, tls),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if out_of_descriptors(&e) => {
                    if !self.shed_with_spare_fd(i) {
                        return;
                    }
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => {
                    self.totals.accept_errors += 1;
                    warn!("accept failed: {e}");
                }
            }
        }
        self.listeners[i].more = true; // the backlog may hold more: next turn
    }

    /// Out of descriptors with connections waiting. Closes the spare
    /// descriptor, accepts one connection with it, tells that client why
    /// and closes it, then takes the spare back. Without this, the waiting
    /// connection would sit in the backlog forever (edge-triggered: no new
    /// event) or, with level-triggered polling, wake us in a busy loop.
    /// Returns `true` if the caller should keep accepting.
    fn shed_with_spare_fd(&mut self, i: usize) -> bool {
        if let Some(spare) = self.spare_fd.take() {
            drop(spare);
            // The refused connection is closed *before* the spare is taken
            // back, or the spare would have no descriptor to reopen with.
            let accepted = match self.listeners[i].socket.accept() {
                Ok((stream, addr)) => {
                    if self
                        .log_limiter
                        .admit(Kind::RefusedNoDescriptors, addr.ip(), self.now)
                    {
                        warn!("out of file descriptors: refused {addr}");
                    }
                    self.totals.refused_descriptors += 1;
                    refuse(stream, Refusal::NoDescriptors);
                    true
                }
                // Linux reports EMFILE before looking at the backlog, so an
                // empty backlog shows only once a descriptor is free.
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        debug!("accept with the spare descriptor: {e}");
                    }
                    false
                }
            };
            self.spare_fd = File::open("/dev/null").ok();
            if self.spare_fd.is_some() {
                return accepted;
            }
        }
        // No spare (another process took the last one): try again later.
        warn!(
            "out of file descriptors: pausing accept for {:?}",
            config::ACCEPT_PAUSE
        );
        self.accept_paused = true;
        self.timers
            .schedule(self.now + config::ACCEPT_PAUSE, Timer::ResumeAccept);
        false
    }

    /// Sets up a freshly accepted connection, or refuses it.
    fn admit(&mut self, mut stream: TcpStream, addr: SocketAddr, irc: bool, tls: bool) {
        if self.conns.len() >= self.config.max_clients {
            if self
                .log_limiter
                .admit(Kind::RefusedFull, addr.ip(), self.now)
            {
                info!(
                    "refused {addr}: server full ({} clients)",
                    self.config.max_clients
                );
            }
            self.totals.refused_full += 1;
            return refuse(
                stream,
                Refusal::Full {
                    max: self.config.max_clients,
                },
            );
        }
        let ip = address_key(addr.ip());
        let limit = self.config.max_per_ip;
        let exempt = ip.is_loopback() && !self.config.limit_loopback;
        if limit > 0 && !exempt && self.per_ip.get(&ip).copied().unwrap_or(0) >= limit {
            if self
                .log_limiter
                .admit(Kind::RefusedPerAddress, addr.ip(), self.now)
            {
                warn!("refused {addr}: {limit} connections from that address");
            }
            self.totals.refused_per_address += 1;
            return refuse(stream, Refusal::TooManyFromAddress { max: limit });
        }
        // Nagle's algorithm would hold our small lines back waiting for ACKs;
        // we batch writes ourselves already.
        if let Err(e) = stream.set_nodelay(true) {
            debug!("{addr}: set_nodelay: {e}");
        }
        set_keepalive(&stream, addr);
        let session = match (tls, &self.tls) {
            (true, Some(acceptor)) => match acceptor.session() {
                Ok(session) => Some(session),
                Err(e) => {
                    warn!("{addr}: {e}");
                    return;
                }
            },
            _ => None,
        };
        let is_tls = session.is_some();

        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            warn!("{addr}: cannot register: {e}");
            return;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        entry.insert(Connection {
            stream,
            addr,
            serial,
            framer: LineFramer::new(self.config.max_line),
            sendq: SendQueue::new(self.config.max_sendq),
            interest: Interest::READABLE,
            bucket: TokenBucket::new(self.config.max_rate, self.config.burst, self.now),
            throttled: false,
            flood_noticed: None,
            flush_queued: false,
            phase: Phase::Open,
            last_input: self.now,
            pinged: false,
            waiting: false,
            transport: if irc {
                Transport::Lines
            } else {
                Transport::Sniffing
            },
            tls: session,
        });
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.totals.accepted += 1;
        if self.log_limiter.admit(Kind::Accepted, addr.ip(), self.now) {
            info!("accepted {addr} as #{key}");
        }
        self.timers.schedule(
            self.now + self.config.register_timeout,
            Timer::RegisterDeadline { key, serial },
        );
        if let Some(idle) = self.config.idle_timeout {
            self.timers
                .schedule(self.now + idle, Timer::IdleCheck { key, serial });
        }
        if irc {
            self.hub.connected_irc(key);
        } else if is_tls {
            // Sniffed inside TLS; the greeting hold starts once the
            // handshake is done (see `tls_in`).
            self.hub.connected_pending(key);
        } else {
            // IRC clients speak first, line users wait to be greeted: hold
            // the greeting for the first line, or this long.
            self.hub.connected_pending(key);
            self.timers.schedule(
                self.now + config::GREETING_HOLD,
                Timer::Greet { key, serial },
            );
        }
    }

    /// Reads from connection `k` until `WouldBlock`, handing each complete
    /// line to the room. Stops early, remembering to come back, when the
    /// connection used up its fair share of this turn or its rate limit.
    fn read_from(&mut self, k: usize) {
        let mut budget = FAIR_READ;
        loop {
            // Lines already buffered go first: on EOF they must not be lost,
            // and under flood control they are what we are waiting to send.
            if !self.hand_lines_to_room(k) {
                return;
            }
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            // A handshake costs real CPU (a signature): past the turn's
            // share, the others wait for the next turn, like `budget`.
            let handshake_waits = c.tls.as_ref().is_some_and(Session::handshaking)
                && self.handshakes >= tls::MAX_HANDSHAKES_PER_TURN;
            if budget == 0 || handshake_waits {
                self.unread.push((k, c.serial));
                return;
            }
            match c.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    // The peer closed its side. Whatever it sent before has
                    // been handled above; a partial last line is dropped.
                    self.peer_gone(k, LeaveReason::Closed, false);
                    return;
                }
                Ok(n) => {
                    c.last_input = self.now;
                    c.pinged = false;
                    budget = budget.saturating_sub(n);
                    if c.tls.is_none()
                        && matches!(c.transport, Transport::Sniffing)
                        && self.read_buf[0] == TLS_HANDSHAKE
                    {
                        // Main port, first byte: a ClientHello (see `set_tls`).
                        if let Some(acceptor) = &self.tls {
                            match acceptor.session() {
                                Ok(session) => c.tls = Some(session),
                                Err(e) => warn!("#{k}: {e}"),
                            }
                        }
                    }
                    if c.tls.is_some() {
                        self.tls_in(k, n);
                    } else {
                        let mut buf = std::mem::take(&mut self.read_buf);
                        self.transport_in(k, &mut buf[..n]);
                        self.read_buf = buf;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("#{k}: read error: {e}");
                    self.peer_gone(k, LeaveReason::Reset, true);
                    return;
                }
            }
        }
    }

    /// `read_buf[..n]` from a TLS connection: through its session, whose
    /// plaintext then takes the same path as a plain connection's bytes
    /// ([`transport_in`](Self::transport_in)) and whose records (handshake,
    /// alerts) go to the send queue as they are.
    fn tls_in(&mut self, k: usize, n: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        let Some(session) = &mut c.tls else {
            return;
        };
        let was_handshaking = session.handshaking();
        if was_handshaking {
            self.handshakes += 1;
        }
        let mut plain = std::mem::take(&mut self.tls_plain);
        let mut records = std::mem::take(&mut self.tls_records);
        plain.clear();
        records.clear();
        let fed = session.feed(&self.read_buf[..n], &mut plain, &mut records);
        if was_handshaking && !session.handshaking() {
            self.totals.tls_handshakes += 1;
            // Encrypted now: the greeting hold for the plaintext starts.
            self.timers.schedule(
                self.now + config::GREETING_HOLD,
                Timer::Greet {
                    key: k,
                    serial: c.serial,
                },
            );
        }
        let addr = c.addr;
        let (_, mut out) = self.split();
        out.send_records(k, &records);
        if !plain.is_empty() {
            self.transport_in(k, &mut plain);
        }
        match fed {
            Fed::Open => {}
            Fed::Closed => {
                // close_notify: the lines before it are the peer's last.
                self.hand_lines_to_room(k);
                self.peer_gone(k, LeaveReason::Closed, false);
            }
            Fed::Failed(e) => {
                // Not TLS, or a failed handshake: this connection only.
                debug!("#{k} ({addr}): {e}");
                self.totals.tls_failures += 1;
                self.peer_gone(k, LeaveReason::Reset, false);
            }
        }
        self.tls_plain = plain;
        self.tls_records = records;
    }

    /// Bytes a connection sent (decrypted, if TLS), to its transport.
    fn transport_in(&mut self, k: usize, input: &mut [u8]) {
        let Some(c) = self.conns.get(k) else {
            return;
        };
        match c.transport {
            Transport::Lines => self.lines_in(k, input),
            Transport::Sniffing | Transport::Http(_) => self.http_in(k, input),
            Transport::WebSocket(_) => self.websocket_frames_in(k, input),
        }
    }

    /// Bytes from a TCP-lines connection: into its framer.
    fn lines_in(&mut self, k: usize, input: &[u8]) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        c.framer.push(input);
        // Telnet answers go out at once, ahead of the replies to the lines
        // just read: telnet may be discarding output until its TIMING-MARK
        // is answered.
        let telnet = c.framer.take_replies();
        if !telnet.is_empty() {
            let (_, mut out) = self.split();
            out.send(k, &telnet);
        }
    }

    /// Bytes from a main-port connection that may be a browser:
    /// gathers the request head and answers it. A connection whose first
    /// bytes are not `GET ` or `HEAD ` is a chat client after all: its
    /// bytes go to its line framer.
    fn http_in(&mut self, k: usize, input: &[u8]) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if !matches!(c.transport, Transport::Http(_)) {
            c.transport = Transport::Http(Box::default());
        }
        let Transport::Http(head) = &mut c.transport else {
            return;
        };
        head.extend_from_slice(input);
        match http::looks_like_http(head) {
            None => return, // `GE`: wait for more
            Some(false) => {
                let bytes = std::mem::take(&mut **head);
                c.transport = Transport::Lines;
                return self.lines_in(k, &bytes);
            }
            Some(true) => {}
        }
        let policy = &self.web_policy;
        let metrics_ok = c.addr.ip().is_loopback()
            || self
                .config
                .metrics_from
                .iter()
                .any(|b| b.contains(c.addr.ip()));
        let (answer, rest) = match http::parse_head(head) {
            Ok(None) if head.len() <= http::MAX_HEAD => return,
            Ok(None) => (
                web::Answer::Respond(http::error_response(
                    http::Status::HeaderFieldsTooLarge,
                    false,
                )),
                Vec::new(),
            ),
            Err(status) => (
                web::Answer::Respond(http::error_response(status, false)),
                Vec::new(),
            ),
            Ok(Some((req, used))) => (web::answer(&req, policy, metrics_ok), head[used..].to_vec()),
        };
        self.totals.http_requests += 1;
        // The chat never knew this connection as a user; from now on it is
        // either done, or a WebSocket that starts over as a new chat client.
        let (hub, mut out) = self.split();
        hub.disconnected(k, &LeaveReason::Closed, &mut out);
        match answer {
            web::Answer::Respond(bytes) => self.respond_and_close(k, &bytes),
            web::Answer::Metrics { head_only } => {
                let body = self.metrics_text();
                self.respond_and_close(k, &web::metrics_response(&body, head_only));
            }
            web::Answer::Upgrade {
                response,
                irc,
                binary,
            } => self.upgrade(k, &response, irc, binary, rest),
        }
    }

    /// Queues an HTTP response and closes once it is written.
    fn respond_and_close(&mut self, k: usize, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        c.transport = Transport::Lines; // no more HTTP parsing
        let (_, mut out) = self.split();
        out.send_raw(k, bytes);
        out.close(k);
    }

    /// Answers `GET /ws` with 101 and turns `k` into a WebSocket chat
    /// client: a line user, greeted at once, or an IRC client. `rest`: bytes
    /// that came after the request head (the first frames).
    fn upgrade(&mut self, k: usize, response: &[u8], irc: bool, binary: bool, mut rest: Vec<u8>) {
        let max = self.config.max_line;
        self.totals.websocket_upgrades += 1;
        let (_, mut out) = self.split();
        out.send_raw(k, response);
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        c.transport = Transport::WebSocket(Box::new(WsConn {
            framer: WsFramer::new(max),
            binary,
        }));
        let (hub, mut out) = self.split();
        if irc {
            hub.connected_irc(k);
        } else {
            hub.connected(k, &mut out);
        }
        if !rest.is_empty() {
            self.websocket_frames_in(k, &mut rest);
        }
    }

    /// Feeds `input` to `k`'s WebSocket framer: each message becomes a line
    /// in its line framer (then handled like any line, flood control
    /// included); pings are answered; a close or a broken frame ends the
    /// connection after our close frame.
    fn websocket_frames_in(&mut self, k: usize, input: &mut [u8]) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        let Connection {
            transport, framer, ..
        } = c;
        let Transport::WebSocket(ws) = transport else {
            return;
        };
        let mut replies = Vec::new();
        let mut ended = None;
        ws.framer.feed(input, &mut |event| {
            match event {
                WsEvent::Text(line) | WsEvent::Binary(line) => {
                    framer.push(line);
                    framer.push(b"\n");
                }
                WsEvent::Reply(bytes) => replies.extend_from_slice(bytes),
                WsEvent::Closed { reply, .. } => {
                    replies.extend_from_slice(reply);
                    ended = Some(LeaveReason::Closed);
                }
                WsEvent::Fail { code, reply } => {
                    replies.extend_from_slice(reply);
                    debug!("#{k}: WebSocket protocol error, closing with {code}");
                    ended = Some(LeaveReason::Reset);
                }
            }
            std::ops::ControlFlow::Continue(())
        });
        if !replies.is_empty() {
            let (_, mut out) = self.split();
            out.send_raw(k, &replies);
        }
        if let Some(reason) = ended {
            // Lines that came before the close are the peer's last words.
            self.hand_lines_to_room(k);
            self.peer_gone(k, reason, false);
        }
    }

    /// Gives every complete line in `k`'s framer to the room, as far as the
    /// rate limit allows. Returns `false` if reading should stop (throttled,
    /// closing, or gone).
    fn hand_lines_to_room(&mut self, k: usize) -> bool {
        loop {
            let Some(c) = self.conns.get_mut(k) else {
                return false;
            };
            if c.phase.closing() || c.throttled || c.waiting {
                return false;
            }
            if c.framer.buffered() == 0 {
                return true;
            }
            if !c.bucket.ready(self.now) {
                // Flood control: stop reading; the socket's receive buffer
                // fills and TCP slows the sender down. Resume on the timer.
                c.throttled = true;
                let at = c.bucket.ready_at(self.now);
                self.timers.schedule(
                    at,
                    Timer::Refill {
                        key: k,
                        serial: c.serial,
                    },
                );
                let due = c
                    .flood_noticed
                    .is_none_or(|t| self.now.duration_since(t) >= config::FLOOD_NOTICE_INTERVAL);
                if due {
                    c.flood_noticed = Some(self.now);
                    self.totals.flood_notices += 1;
                    let nick = self.hub.nick(k).unwrap_or("-");
                    info!(
                        "{} ({nick}) throttled: over {} lines/s",
                        c.addr, self.config.max_rate
                    );
                    let notice = Event::SlowDown {
                        rate: self.config.max_rate,
                        burst: self.config.burst,
                    };
                    let (hub, mut out) = self.split();
                    hub.notify(k, &notice, &mut out);
                }
                return false;
            }
            let too_long = match c.framer.next_frame() {
                None => return true,
                Some(Frame::TooLong) => true,
                Some(Frame::Line(bytes)) => {
                    self.line.clear();
                    self.line.extend_from_slice(bytes);
                    false
                }
            };
            c.bucket.take();
            let line = std::mem::take(&mut self.line);
            let frame = if too_long {
                Frame::TooLong
            } else {
                Frame::Line(&line)
            };
            let (hub, mut out) = self.split();
            hub.handle_frame(k, frame, &mut out);
            self.turn.lines += 1;
            if self.turn_last_conn != Some(k) {
                self.turn_last_conn = Some(k);
                self.turn.conns_read += 1;
            }
            self.line = line;
        }
    }

    /// The peer went away or failed. The room tells the others; with
    /// `hard`, the socket is useless and is freed at the end of the turn,
    /// otherwise (EOF: a half-close) what is queued for it is still sent.
    fn peer_gone(&mut self, k: usize, reason: LeaveReason, hard: bool) {
        self.count_cut(&reason);
        let (hub, mut out) = self.split();
        hub.disconnected(k, &reason, &mut out);
        out.close(k);
        if hard {
            self.free_later(k);
        }
    }

    /// Counts a connection that went away for `reason` (for `/metrics`),
    /// unless it is already on its way out.
    fn count_cut(&mut self, reason: &LeaveReason) {
        let label = match reason {
            LeaveReason::Closed => "closed",
            LeaveReason::Reset => "reset",
            LeaveReason::WriteError => "write_error",
            LeaveReason::SendQueueExceeded => "sendq",
            LeaveReason::IdleTimeout => "idle_timeout",
            LeaveReason::RegisterTimeout => "register_timeout",
            LeaveReason::Quit(_) | LeaveReason::Moved(_) | LeaveReason::Part(_) => return,
        };
        self.totals.count_cut(label);
    }

    /// Puts `k` on the flush list (a WRITABLE event: the kernel has room).
    fn queue_flush(&mut self, k: usize) {
        if let Some(c) = self.conns.get_mut(k) {
            if !c.flush_queued {
                c.flush_queued = true;
                self.flush_list.push(k);
            }
        }
    }

    /// Before sleeping: kick slow readers, then write each connection that
    /// has output, once. This is where the turn's syscalls are batched: a
    /// recipient of 50 messages this turn gets one `write()`, not 50.
    fn flush_pending(&mut self) {
        loop {
            if let Some(k) = self.overflowed.pop() {
                self.kick(
                    k,
                    Refusal::SendQueueExceeded,
                    LeaveReason::SendQueueExceeded,
                );
                continue;
            }
            if let Some(k) = self.broken.pop() {
                self.peer_gone(k, LeaveReason::WriteError, true);
                continue;
            }
            if let Some(k) = self.flush_list.pop() {
                self.flush(k);
                continue;
            }
            if self.pool.held() > self.config.max_output_memory && self.cut_oldest_debtors() {
                continue;
            }
            return;
        }
    }

    /// `--max-output-memory` was passed: what the kernel would not take
    /// this turn is more than the server may hold. Like Redis's
    /// `maxmemory-clients`, cut the connections owing the oldest bytes (they
    /// pin the oldest chunks, which every faster reader has left behind)
    /// until the tally is back under the limit. Returns whether it cut any.
    fn cut_oldest_debtors(&mut self) -> bool {
        let limit = self.config.max_output_memory;
        let held = self.pool.held();
        let mut debtors: Vec<(u64, usize)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Open)
            .filter_map(|(k, c)| c.sendq.age(&self.pool).map(|age| (age, k)))
            .collect();
        debtors.sort_unstable();
        let mut cut = 0;
        for (_, k) in debtors {
            if self.pool.held() <= limit {
                break;
            }
            self.kick(
                k,
                Refusal::SendQueueExceeded,
                LeaveReason::SendQueueExceeded,
            );
            cut += 1;
        }
        warn!(
            "output memory {} KiB passed --max-output-memory ({} KiB): cut {cut} connection(s) owing the oldest bytes; {} KiB held now",
            held / 1024,
            limit / 1024,
            self.pool.held() / 1024
        );
        cut > 0
    }

    /// Writes `k`'s queue until it is empty or the socket is full, then
    /// sets the interest to match: WRITABLE only while bytes remain.
    fn flush(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        c.flush_queued = false;
        if c.phase == Phase::Freeing {
            return;
        }
        self.turn.max_spans = self.turn.max_spans.max(c.sendq.spans());
        let mut w = CountingWriter::new(&mut c.stream);
        let written = c.sendq.write_to(&mut self.pool, &mut w);
        self.turn.writes += w.calls;
        self.turn.written_bytes += w.bytes;
        if let Err(e) = written {
            debug!("#{k}: write error: {e}");
            return self.peer_gone(k, LeaveReason::WriteError, true);
        }
        if c.phase.closing() && c.sendq.is_empty() {
            return self.free_later(k);
        }
        let want = if c.sendq.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if want != c.interest {
            match self
                .poll
                .registry()
                .reregister(&mut c.stream, Token(k), want)
            {
                Ok(()) => c.interest = want,
                Err(e) => {
                    warn!("#{k}: reregister failed: {e}");
                    self.peer_gone(k, LeaveReason::WriteError, true);
                }
            }
        }
    }

    /// Disconnects `k` for breaking a limit: its pending output is replaced
    /// by one error line saying why (after the rest of a half-written line,
    /// see `SendQueue::replace_with`), the others are told it left.
    fn kick(&mut self, k: usize, refusal: Refusal, reason: LeaveReason) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.phase == Phase::Freeing {
            return;
        }
        self.count_cut(&reason);
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        let nick = self.hub.nick(k).unwrap_or("-");
        warn!(
            "{} ({nick}) disconnected: {reason} ({} bytes were queued)",
            c.addr,
            c.sendq.len()
        );
        let last = self.hub.refusal(k, refusal);
        if c.tls.is_some() {
            // Records already sealed cannot be dropped (each one's number
            // is in the next one's encryption), nor can the line be sent
            // behind them (the queue is full): TLS clients are cut without
            // it. Everyone else is told it left. Its memory goes now, so
            // `cut_oldest_debtors` sees it gone.
            c.sendq.clear(&mut self.pool);
            let (hub, mut out) = self.split();
            hub.disconnected(k, &reason, &mut out);
            return self.free_later(k);
        }
        if let Transport::WebSocket(ws) = &mut c.transport {
            // The line as a frame, then the close frame: the page shows why.
            let mut framed = Vec::with_capacity(last.len() + 16);
            websocket_frames(&last, ws.binary, &mut framed);
            ws.framer.close(websocket::CLOSE_POLICY, "", &mut framed);
            c.sendq.replace_frames_with(&mut self.pool, &framed);
        } else {
            c.sendq.replace_with(&mut self.pool, &last);
        }
        let (hub, mut out) = self.split();
        hub.disconnected(k, &reason, &mut out);
        out.close(k);
    }

    fn free_later(&mut self, k: usize) {
        if let Some(c) = self.conns.get_mut(k) {
            if c.phase != Phase::Freeing {
                c.phase = Phase::Freeing;
                self.to_free.push(k);
            }
        }
    }

    /// End of turn: drop the connections that finished closing. Their slab
    /// slots can be reused from the next turn on.
    fn free_closed(&mut self) {
        for k in std::mem::take(&mut self.to_free) {
            if !self.conns.get(k).is_some_and(|c| c.phase == Phase::Freeing) {
                continue;
            }
            let mut c = self.conns.remove(k);
            c.sendq.clear(&mut self.pool);
            self.turn.closed += 1;
            // The chat forgot it already, unless it is being freed for a
            // reason the chat has not heard (harmless: a no-op then).
            let (hub, mut out) = self.split();
            hub.disconnected(k, &LeaveReason::Closed, &mut out);
            if let Err(e) = self.poll.registry().deregister(&mut c.stream) {
                debug!("#{k}: deregister: {e}");
            }
            drain_input(&mut c.stream);
            let ip = address_key(c.addr.ip());
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
            debug!("closed #{k} ({})", c.addr);
        }
        // The room may have queued more lines (leave notices) for others.
        if !self.flush_list.is_empty() || !self.overflowed.is_empty() || !self.broken.is_empty() {
            self.flush_pending();
            if !self.to_free.is_empty() {
                self.free_closed();
            }
        }
    }

    /// Fires every due timer (counted in `turn.timers`, stale ones too).
    fn run_timers(&mut self) {
        while let Some(timer) = self.timers.pop_due(self.now) {
            self.turn.timers += 1;
            self.turn.first_timer.get_or_insert(timer.name());
            match timer {
                Timer::RegisterDeadline { key, serial } => {
                    let http = self
                        .conns
                        .get(key)
                        .is_some_and(|c| matches!(c.transport, Transport::Http(_)));
                    if http && self.live(key, serial) {
                        // A request head still incomplete (slowloris): no
                        // chat line to explain, just close.
                        debug!("#{key}: HTTP request head not complete in time");
                        self.peer_gone(key, LeaveReason::RegisterTimeout, true);
                    } else if self.live(key, serial) && !self.hub.is_joined(key) {
                        let secs = self.config.register_timeout.as_secs();
                        self.kick(
                            key,
                            Refusal::RegisterTimeout { secs },
                            LeaveReason::RegisterTimeout,
                        );
                    }
                }
                Timer::IdleCheck { key, serial } => self.idle_check(key, serial),
                Timer::Refill { key, serial } => {
                    if let Some(c) = self.conns.get_mut(key) {
                        if c.serial == serial {
                            c.throttled = false;
                            self.read_from(key);
                        }
                    }
                }
                Timer::Linger { key, serial } => {
                    if self.conns.get(key).is_some_and(|c| c.serial == serial) {
                        self.free_later(key);
                    }
                }
                Timer::ResumeAccept => {
                    self.accept_paused = false;
                    if self.spare_fd.is_none() {
                        self.spare_fd = File::open("/dev/null").ok();
                    }
                    for i in 0..self.listeners.len() {
                        self.accept(i);
                    }
                }
                Timer::Greet { key, serial } => {
                    let Some(c) = self.conns.get_mut(key).filter(|c| c.serial == serial) else {
                        continue;
                    };
                    if c.tls.as_ref().is_some_and(Session::handshaking) {
                        // The hold starts again when the handshake ends
                        // (see `tls_in`): a slow link is not a silent user.
                        continue;
                    }
                    match c.transport {
                        // Silent: a line user waiting to be greeted. From
                        // now on its bytes are lines, even `GET `.
                        Transport::Sniffing => c.transport = Transport::Lines,
                        Transport::Lines => {}
                        // A browser, or greeted already (WebSocket).
                        Transport::Http(_) | Transport::WebSocket(_) => continue,
                    }
                    if self.live(key, serial) {
                        let (hub, mut out) = self.split();
                        hub.greet(key, &mut out);
                    }
                }
                Timer::ShutdownDeadline => self.shutdown_expired = true,
                Timer::InviteExpiry => {
                    let (hub, mut out) = self.split();
                    hub.expire_invites(&mut out);
                }
                Timer::Bridge => {
                    self.bridge_wake = None;
                    if let Some(b) = self.bridge.as_mut() {
                        b.tick(self.poll.registry(), self.now);
                    }
                    self.bridge_deliver();
                }
            }
        }
    }

    /// Drops the timers that would do nothing when they fire, by the same
    /// tests [`Self::run_timers`] applies then: their connection is gone
    /// (or, for deadlines and idle checks, closing), or it joined before its
    /// registration deadline. Keeps the heap about as big as what is live
    /// under churn (see `timers.rs`).
    fn compact_timers(&mut self) {
        let before = self.timers.len();
        let (conns, hub) = (&self.conns, &self.hub);
        let same = |key: usize, serial: u64| conns.get(key).is_some_and(|c| c.serial == serial);
        let open = |key: usize, serial: u64| {
            conns
                .get(key)
                .is_some_and(|c| c.serial == serial && !c.phase.closing())
        };
        self.timers.retain(|t| match *t {
            Timer::RegisterDeadline { key, serial } => open(key, serial) && !hub.is_joined(key),
            Timer::IdleCheck { key, serial } | Timer::Greet { key, serial } => open(key, serial),
            Timer::Refill { key, serial } | Timer::Linger { key, serial } => same(key, serial),
            Timer::ResumeAccept | Timer::ShutdownDeadline | Timer::InviteExpiry | Timer::Bridge => {
                true
            }
        });
        debug!(
            "timers: dropped {} dead of {before} entries",
            before - self.timers.len()
        );
    }

    /// `--idle-timeout`: ping a silent connection, close it if the ping
    /// gets no answer within the grace period.
    fn idle_check(&mut self, key: usize, serial: u64) {
        let (Some(idle), Some(grace)) = (self.config.idle_timeout, self.config.ping_grace()) else {
            return;
        };
        if !self.live(key, serial) {
            return;
        }
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let silent_since = c.last_input;
        if c.pinged {
            let secs = idle.as_secs().max(1);
            return self.kick(key, Refusal::IdleTimeout { secs }, LeaveReason::IdleTimeout);
        }
        if self.now >= silent_since + idle {
            c.pinged = true;
            self.timers
                .schedule(self.now + grace, Timer::IdleCheck { key, serial });
            let (hub, mut out) = self.split();
            let grace_secs = grace.as_secs().max(1);
            hub.notify(key, &Event::Ping { grace_secs }, &mut out);
        } else {
            self.timers
                .schedule(silent_since + idle, Timer::IdleCheck { key, serial });
        }
    }

    /// SIGHUP: reopen the log file (logrotate), reload the TLS certificate,
    /// re-read the MOTD and the accounts file (see [`Server::reload_files`]).
    /// SIGINT/SIGTERM: tell everyone, stop accepting, let output drain for
    /// at most [`config::SHUTDOWN_GRACE`]. A second signal ends the wait.
    fn on_signal(&mut self) {
        // Read every pending signal: the pipe behind them is edge-triggered.
        let (mut hangup, mut stop) = (false, false);
        for signal in self.signals.pending() {
            if signal == SIGHUP {
                hangup = true;
            } else {
                stop = true;
            }
        }
        if hangup {
            logging::reopen();
            if let Some(acceptor) = &mut self.tls {
                // New handshakes get the new files; sessions keep theirs.
                match acceptor.reload() {
                    Ok(()) => info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => warn!("SIGHUP: {e}; keeping the old certificate"),
                }
            }
            self.reload_files();
        }
        if !stop {
            return;
        }
        if self.shutting_down {
            // A second signal: stop waiting for output to drain.
            self.shutdown_expired = true;
            return;
        }
        info!("shutting down");
        self.shutting_down = true;
        // The backlogs are not read any more (see `wants_accept`).
        for l in &mut self.listeners {
            l.more = false;
            if let Err(e) = self.poll.registry().deregister(&mut l.socket) {
                debug!("deregister listener: {e}");
            }
        }
        self.timers
            .schedule(self.now + config::SHUTDOWN_GRACE, Timer::ShutdownDeadline);
        let (hub, mut out) = self.split();
        hub.shutdown(&mut out);
        if let Some(b) = self.bridge.as_mut() {
            b.retire();
        }
    }

    /// SIGHUP: re-reads `--motd FILE` (IRC clients get the new one from
    /// their next `MOTD` or registration), and the accounts file if it
    /// changed on disk, so that `--add-user`/`--remove-user` run beside the
    /// server take effect. Held registrations are saved first, so the
    /// re-read cannot drop them. A file that cannot be read or parsed is
    /// logged and the old contents kept. Logged-in users stay logged in.
    fn reload_files(&mut self) {
        if let Some(path) = self.config.motd_file.clone() {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let lines: Vec<String> = text.lines().map(str::to_string).collect();
                    info!(
                        "SIGHUP: MOTD re-read from {} ({} lines)",
                        path.display(),
                        lines.len()
                    );
                    self.config.irc.motd = Some(lines);
                    self.hub.set_irc_config(self.config.irc.clone());
                }
                Err(e) => warn!(
                    "SIGHUP: cannot read the MOTD {}, keeping the old one: {e}",
                    path.display()
                ),
            }
        }
        self.commit_accounts(true);
        let Some(store) = self.accounts.as_mut() else {
            return;
        };
        match store.reload_if_changed() {
            Ok(None) => info!("SIGHUP: accounts file {} unchanged", store.path().display()),
            Ok(Some(n)) => info!(
                "SIGHUP: accounts file {} re-read: {n} accounts",
                store.path().display()
            ),
            Err(e) => warn!("SIGHUP: keeping the accounts as they were: {e}"),
        }
    }

    /// When the first queued auth job may run: `None` with none queued.
    /// The loop's poll timeout includes it, so a job waiting out its
    /// address's delay needs no timer of its own. Jobs of connections that
    /// left are dropped here.
    fn next_auth_at(&mut self) -> Option<Instant> {
        let conns = &self.conns;
        self.auth_queue.retain(|q| {
            conns
                .get(q.key)
                .is_some_and(|c| c.serial == q.serial && !c.phase.closing())
        });
        self.auth_queue.iter().map(|q| self.not_before(q.key)).min()
    }

    /// When `key`'s address may next have a password checked.
    fn not_before(&self, key: usize) -> Instant {
        self.conns
            .get(key)
            .and_then(|c| self.penalties.get(&address_key(c.addr.ip())))
            .map_or(self.now, |p| p.not_before().max(self.now))
    }

    /// Runs at most one queued password check (argon2 costs milliseconds;
    /// one per turn keeps the room's latency bounded), the first whose
    /// address is not being made to wait. Then gives the room the answer
    /// and resumes reading the connection. Returns whether a job ran.
    fn run_auth_job(&mut self) -> bool {
        if self.auth_queue.is_empty() || self.accounts.is_none() {
            return false;
        }
        self.forget_old_penalties();
        let now = self.now;
        let Some(index) = (0..self.auth_queue.len()).find(|&i| {
            let q = &self.auth_queue[i];
            self.live(q.key, q.serial) && self.not_before(q.key) <= now
        }) else {
            return false;
        };
        let Some(QueuedAuth { key, serial, job }) = self.auth_queue.remove(index) else {
            return false;
        };
        let Some(store) = self.accounts.as_mut() else {
            return false;
        };
        let Some(addr) = self.conns.get(key).map(|c| c.addr) else {
            return false;
        };
        let ip = address_key(addr.ip());
        let budget = &mut self.new_accounts;
        let outcome = accounts::run_job(store, &job, || budget.take(ip, now));
        self.totals.password_checks += 1;
        // Re-take `now` after a hash: it took milliseconds, and the
        // address's delay counts from the answer.
        self.now = Instant::now();
        let now = self.now;
        match &outcome {
            AuthOutcome::LoggedIn { name } => info!("{addr} (#{key}) logged in as {name}"),
            AuthOutcome::Registered { name } => info!("{addr} (#{key}) registered {name}"),
            AuthOutcome::WrongPassword => {
                let p = self.penalties.entry(ip).or_insert(Penalty {
                    failures: 0,
                    last: now,
                });
                p.failures = p.failures.saturating_add(1);
                p.last = now;
                warn!(
                    "{addr} (#{key}) wrong password for {} ({} recent failures from that address)",
                    job.name, p.failures
                );
            }
            AuthOutcome::TooShort { .. } => {
                info!(
                    "{addr} (#{key}) password too short for new account {}",
                    job.name
                )
            }
            AuthOutcome::SaveFailed => warn!("{addr} (#{key}) could not register {}", job.name),
            AuthOutcome::NoNewAccounts(spent) => {
                let whose = match spent.scope {
                    Scope::Address => "from that address",
                    Scope::Server => "on the server",
                };
                warn!(
                    "{addr} (#{key}) new account {} refused: {} {whose} spent",
                    job.name, spent.rate
                );
            }
        }
        drop(job);
        if matches!(outcome, AuthOutcome::Registered { .. }) || !self.held.is_empty() {
            self.held_since.get_or_insert(now);
            self.held.push((key, serial, outcome));
        } else {
            self.answer(key, serial, outcome);
        }
        true
    }

    /// Gives the room a password check's answer and resumes reading the
    /// connection, if it is still there.
    fn answer(&mut self, key: usize, serial: u64, outcome: AuthOutcome) {
        if !self.live(key, serial) {
            return;
        }
        if let Some(c) = self.conns.get_mut(key) {
            c.waiting = false;
        }
        let (hub, mut out) = self.split();
        hub.auth_done(key, outcome, &mut out);
        // Lines that arrived meanwhile are waiting in the framer or socket.
        self.read_from(key);
    }

    /// Group commit. Saves the held registrations in ONE atomic write (a
    /// temporary file, fsync, rename, fsync of the folder: two fsyncs that
    /// stall the loop, see docs/accounts-bench.md), then sends every held
    /// answer, in order. Unless `now` is set, it waits while another
    /// password check is ready to run (its registration joins this save),
    /// up to [`config::GROUP_COMMIT_MAX`] held or
    /// [`config::GROUP_COMMIT_WINDOW`] since the first. Returns whether it
    /// saved. If the save fails, the held accounts are dropped and their
    /// users told `SaveFailed`.
    fn commit_accounts(&mut self, now: bool) -> bool {
        let Some(since) = self.held_since else {
            return false;
        };
        let registered: Vec<String> = self
            .held
            .iter()
            .filter_map(|(_, _, o)| match o {
                AuthOutcome::Registered { name } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let ready = self
            .auth_queue
            .iter()
            .any(|q| self.live(q.key, q.serial) && self.not_before(q.key) <= self.now);
        let due = now
            || !ready
            || registered.len() >= config::GROUP_COMMIT_MAX
            || self.now.duration_since(since) >= config::GROUP_COMMIT_WINDOW;
        if !due {
            return false;
        }
        let Some(store) = self.accounts.as_mut() else {
            return false;
        };
        let started = Instant::now();
        let result = store.commit(&registered);
        let took = started.elapsed();
        self.now = Instant::now();
        self.totals.accounts_saves += 1;
        let lost = match result {
            Ok(lost) => {
                info!(
                    "accounts saved: {} new in one write ({:.1} ms)",
                    registered.len(),
                    took.as_secs_f64() * 1000.0
                );
                lost
            }
            Err(e) => {
                error!(
                    "accounts: {} new accounts not registered: {e}",
                    registered.len()
                );
                registered
            }
        };
        self.held_since = None;
        for (key, serial, outcome) in std::mem::take(&mut self.held) {
            let outcome = match outcome {
                AuthOutcome::Registered { name } | AuthOutcome::LoggedIn { name }
                    if lost.iter().any(|l| l.eq_ignore_ascii_case(&name)) =>
                {
                    warn!("#{key}: account {name} not saved");
                    AuthOutcome::SaveFailed
                }
                o => o,
            };
            self.answer(key, serial, outcome);
        }
        true
    }

    /// Forgets addresses quiet for `AUTH_FORGET_AFTER`; past
    /// `AUTH_PENALTY_TABLE` entries, also the oldest half (memory stays
    /// bounded under a spray of addresses; the newest offenders are kept).
    fn forget_old_penalties(&mut self) {
        let now = self.now;
        self.penalties
            .retain(|_, p| now.duration_since(p.last) < config::AUTH_FORGET_AFTER);
        if self.penalties.len() > config::AUTH_PENALTY_TABLE {
            let mut lasts: Vec<Instant> = self.penalties.values().map(|p| p.last).collect();
            lasts.sort_unstable();
            let cut = lasts[lasts.len() / 2];
            self.penalties.retain(|_, p| p.last >= cut);
        }
    }

    /// A readiness event on one of the bridge's links: connect completes,
    /// replies and pushes are read; what arrived is given to the hub.
    fn bridge_event(&mut self, token: Token) {
        if let Some(b) = self.bridge.as_mut() {
            b.on_event(token, self.poll.registry(), self.now);
        }
        self.bridge_deliver();
        if self.bridge.as_ref().is_some_and(|b| b.refused().is_some()) {
            // A Redis we cannot work with (a cluster): bridging is off for
            // good, and names are this process's alone again.
            self.bridge = None;
            self.hub.set_bridged(false);
        }
    }

    /// Hands the hub what the bridge has for it: other processes' events,
    /// answers for private lines, the loss of the subscriber link; and
    /// publishes a `Sync` for each room newly subscribed. Returns whether
    /// there was anything.
    fn bridge_deliver(&mut self) -> bool {
        let Some(b) = self.bridge.as_mut() else {
            return false;
        };
        let lost = b.take_lost_remote();
        let inbound = b.take_inbound();
        let outcomes = b.take_outcomes();
        let to_sync = b.take_to_sync();
        let downs = b.take_downs();
        let claims = b.take_claims_done();
        let collisions = b.take_collisions();
        let reannounce = b.take_reannounce();
        let any = lost
            || !inbound.is_empty()
            || !outcomes.is_empty()
            || !to_sync.is_empty()
            || !downs.is_empty()
            || !claims.is_empty()
            || !collisions.is_empty()
            || reannounce;
        if lost {
            let (hub, mut out) = self.split();
            hub.forget_remote(&mut out);
        }
        for (old, new) in &collisions {
            let (hub, mut out) = self.split();
            hub.collision(old, new, &mut out);
        }
        if reannounce {
            let (hub, mut out) = self.split();
            hub.announce_all(&mut out);
        }
        for done in claims {
            if !self.live(done.conn, done.serial) {
                continue;
            }
            if let Some(c) = self.conns.get_mut(done.conn) {
                c.waiting = false;
            }
            let (hub, mut out) = self.split();
            hub.claim_done(done.conn, done.answer, &mut out);
            // Lines that came after the name wait in the framer or socket.
            self.read_from(done.conn);
        }
        for payload in &inbound {
            // Checked by the bridge already; read again here, borrowing.
            if let Ok(env) = bridge::envelope::decode(payload) {
                let (hub, mut out) = self.split();
                hub.remote(env.node, &env.relay, &mut out);
            }
        }
        // After what those nodes said before going (a clean stop publishes
        // its users' quits, then retires).
        for node in &downs {
            let (hub, mut out) = self.split();
            hub.node_down(node, &mut out);
        }
        for o in outcomes {
            let w = o.wait;
            if self.live(w.conn, w.serial) {
                let (hub, mut out) = self.split();
                hub.private_outcome(w.conn, &w.to, &w.text, w.kind, o.delivered, &mut out);
            }
        }
        if let Some(b) = self.bridge.as_mut() {
            for room in &to_sync {
                b.publish(usize::MAX, 0, &Relay::Sync { room });
            }
            b.put_back(inbound);
        }
        any
    }

    /// End of turn with `--redis`: write the bridge's buffers (a link that
    /// fails is dropped, which may answer private lines: those answers are
    /// delivered and flushed at once, not left for a turn that may never
    /// come), and keep a `Timer::Bridge` for its next ping or reconnect.
    fn bridge_end_of_turn(&mut self) {
        // Delivering may publish more (a claim granted: the joins it
        // causes), and a failed write may answer more: a few rounds, then
        // one last write, so nothing waits for a turn that may not come.
        for _ in 0..3 {
            if let Some(b) = self.bridge.as_mut() {
                b.flush(self.poll.registry(), self.now);
            }
            if !self.bridge_deliver() {
                break;
            }
            self.flush_pending();
            self.free_closed();
        }
        if let Some(b) = self.bridge.as_mut() {
            b.flush(self.poll.registry(), self.now);
        }
        self.schedule_bridge_tick();
    }

    /// Puts a `Timer::Bridge` in the heap for the bridge's next deadline,
    /// unless one at least as early is there.
    fn schedule_bridge_tick(&mut self) {
        let Some(at) = self.bridge.as_ref().map(Bridge::wake_at) else {
            return;
        };
        if self.bridge_wake.is_none_or(|w| at < w) {
            self.timers.schedule(at, Timer::Bridge);
            self.bridge_wake = Some(at);
        }
    }

    /// Whether `key` still holds the connection `serial` and it is open.
    fn live(&self, key: usize, serial: u64) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| c.serial == serial && !c.phase.closing())
    }

    /// With `--timestamps`, gives the room the current HH:MM:SS (local).
    fn tick_clock(&mut self) {
        if !self.config.timestamps {
            return;
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if secs != self.clock_second {
            self.clock_second = secs;
            self.hub.set_clock(Some(&local_hhmmss(secs)));
        }
    }

    /// How long `poll()` may sleep when the log limiter holds a count back:
    /// until its window ends, so the summary line is not late.
    fn limit_for_log_summary(&self, now: Instant, timeout: Option<Duration>) -> Option<Duration> {
        let Some(at) = self.log_limiter.next_flush() else {
            return timeout;
        };
        let until = at.saturating_duration_since(now);
        Some(timeout.map_or(until, |t| t.min(until)))
    }

    /// How long `poll()` may sleep when freed memory waits to be trimmed:
    /// no later than [`QUIET_BEFORE_TRIM`] after the last busy turn, so the
    /// end of a quiet second is noticed.
    fn limit_for_trim(&self, timeout: Option<Duration>) -> Option<Duration> {
        if self.pool.released() < TRIM_AFTER_RELEASED {
            return timeout;
        }
        let quiet_at = timers::until(self.last_busy + QUIET_BEFORE_TRIM, Instant::now());
        Some(timeout.map_or(quiet_at, |t| t.min(quiet_at)))
    }

    /// Called on a turn that did nothing. Gives freed heap memory back to
    /// the kernel once the loop has read, written and fired nothing for
    /// [`QUIET_BEFORE_TRIM`] after a burst (a join storm queues a line for
    /// every user, then frees it all). glibc keeps such memory for reuse;
    /// on a small host we would rather it showed up as free. Never while
    /// traffic flows, even traffic driven by timers alone (a throttled
    /// paste): `malloc_trim` walks the whole heap.
    fn trim_heap_if_quiet(&mut self) {
        let quiet = self.now.duration_since(self.last_busy) >= QUIET_BEFORE_TRIM;
        if quiet && self.pool.released() >= TRIM_AFTER_RELEASED {
            self.pool.drop_spares();
            // Taken outside `debug!`, whose arguments are not evaluated
            // when debug logging is off.
            let released = self.pool.take_released();
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only returns free heap pages to the kernel.
            unsafe {
                libc::malloc_trim(0);
            }
            debug!(
                "trimmed heap ({} KiB of buffers released since the last trim; {} timers pending)",
                released / 1024,
                self.timers.len()
            );
        }
    }

    /// The `/metrics` text: the counters, and the gauges of this moment.
    fn metrics_text(&self) -> String {
        let mut by_kind: Vec<((&'static str, &'static str), u64)> = Vec::new();
        for (k, c) in &self.conns {
            let transport = match c.transport {
                Transport::Sniffing | Transport::Lines => "tcp",
                Transport::Http(_) => "http",
                Transport::WebSocket(_) => "websocket",
            };
            let dialect = match (&c.transport, self.hub.dialect(k)) {
                (Transport::Http(_), _) => "none",
                (_, crate::dialect::Dialect::Irc) => "irc",
                (_, crate::dialect::Dialect::Line) => "line",
            };
            match by_kind
                .iter_mut()
                .find(|(kind, _)| *kind == (transport, dialect))
            {
                Some((_, n)) => *n += 1,
                None => by_kind.push(((transport, dialect), 1)),
            }
        }
        by_kind.sort();
        let (rss_bytes, cpu_seconds, open_fds) = metrics::process_figures();
        metrics::render(&Snapshot {
            totals: self.totals.clone(),
            connections: by_kind,
            users: self.hub.joined_count() as u64,
            rooms: self.hub.room_count() as u64,
            output_bytes: self.pool.held() as u64,
            output_chunk_bytes: self.pool.chunk_bytes() as u64,
            rss_bytes,
            cpu_seconds,
            open_fds,
            start_time_seconds: self.started_unix,
            bridge: self.bridge.as_ref().map(Bridge::figures),
        })
    }

    /// The hub and an outbox over our connections, borrowed together.
    fn split(&mut self) -> (&mut Hub, Mailer<'_>) {
        (
            &mut self.hub,
            Mailer {
                conns: &mut self.conns,
                pool: &mut self.pool,
                stats: &mut self.turn,
                flush_list: &mut self.flush_list,
                overflowed: &mut self.overflowed,
                broken: &mut self.broken,
                timers: &mut self.timers,
                auth_queue: &mut self.auth_queue,
                bridge: self.bridge.as_mut(),
                now: self.now,
            },
        )
    }
}

/// Sends a one-line refusal to a connection we will not keep, and closes it.
/// The socket is new, so its buffer has room for one short line.
fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let _ = stream.write(line::refusal_line(refusal).as_bytes());
    drain_input(&mut stream);
}

/// Reads and discards what the peer sent, without blocking (see
/// [`DRAIN_BEFORE_CLOSE`]).
fn drain_input(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut left = DRAIN_BEFORE_CLOSE;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// TCP keepalive, so a peer that vanished (power cut, cable pulled) is
/// noticed in about two minutes even if we never write to it.
fn set_keepalive(stream: &TcpStream, addr: SocketAddr) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(config::KEEPALIVE_IDLE)
        .with_interval(config::KEEPALIVE_INTERVAL)
        .with_retries(config::KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        debug!("{addr}: keepalive: {e}");
    }
}

/// The per-address limit counts IPv4 addresses one by one and IPv6 by /64
/// (one customer's network: a host there can pick any address in it).
/// `::1` stays itself: it is one host, and must still look like loopback
/// (its /64 would be `::`).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) if v6.is_loopback() => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// `HH:MM:SS` in the server's local time zone.
fn local_hhmmss(unix_secs: i64) -> String {
    let t = unix_secs as libc::time_t;
    // SAFETY: localtime_r only writes the struct we pass; zeroed is a valid tm.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        let s = unix_secs.rem_euclid(86_400);
        return format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn loopback_keys_are_loopback() {
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(address_key(ip).is_loopback(), "{ip}");
        }
    }

    #[test]
    fn clock_format() {
        let s = local_hhmmss(0);
        assert_eq!(s.len(), 8);
        assert_eq!(&s[2..3], ":");
    }
}
