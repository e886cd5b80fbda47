//! Scale-out through Redis (`--redis`): several loopchat processes, each
//! one thread and one `mio::Poll`, share their rooms through Redis
//! pub/sub. docs/scale-out.md tells the whole story; in short:
//!
//! - [`resp`] (pure) reads and writes the Redis protocol, [`envelope`]
//!   (pure) the messages we publish and their channels.
//! - [`Bridge`] is the I/O: two non-blocking TCP connections to Redis,
//!   registered in the server's own Poll under [`CMD`] and [`SUB`] (far
//!   from the connection slab's keys and the listeners'). The command link
//!   is pipelined: each command sent pushes what its reply means onto a
//!   FIFO, and replies, which Redis sends in order, pop it. The subscriber
//!   link carries SUBSCRIBE/UNSUBSCRIBE and receives the pushes.
//! - The chat core never sees Redis: it tells its sink what to relay and
//!   what to watch ([`crate::chat::Relay`], [`crate::chat::Watch`]); the
//!   loop passes those to [`Bridge::publish`] and [`Bridge::watch`], and
//!   gives what arrives ([`Bridge::take_inbound`]) to the hub as
//!   [`crate::hub::Hub::remote`] calls.
//!
//! Like a client connection, the bridge only appends to buffers while the
//! turn runs ([`Bridge::publish`] makes no syscall); [`Bridge::flush`]
//! writes them before the loop sleeps. Nothing here blocks: connecting is
//! a non-blocking `connect` completed by a WRITABLE event, and the host
//! name was resolved once, before the loop started ([`Target::resolve`]).

pub mod envelope;
pub mod presence;
pub mod resp;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::chat::{ClaimAnswer, ConnId, Relay, TextKind, Watch};
use presence::{ClaimReply, Scripts};
use resp::Value;

/// The command link's token: half way up the token space, where neither
/// the slab's keys (from 0 up) nor the listeners' (from the top down) go.
pub const CMD: Token = Token(usize::MAX / 2);
/// The subscriber link's token.
pub const SUB: Token = Token(usize::MAX / 2 + 1);

/// Bytes waiting for Redis beyond which a link is dropped and reconnected:
/// Redis is not reading, and we will not hold chat lines for it forever.
pub const MAX_OUT: usize = 4 << 20;
/// Bytes read from Redis and not yet a whole reply beyond which the link
/// is dropped (the decoder refuses any value bigger than this anyway).
pub const MAX_IN: usize = resp::MAX_BULK + 64 * 1024;
/// A link silent this long gets a PING...
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// ...and is dropped if nothing at all comes back within this (a cut
/// without FIN; also the connect timeout).
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnect backoff: the first retry, doubled after each failure...
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// ...up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bytes read from one link per turn before the clients get a go (like
/// the loop's `FAIR_READ` for a client): a flood of pushes cannot starve
/// the local users, and what one turn hands the hub stays bounded.
pub const FAIR_READ: usize = 256 * 1024;
/// Gap reports in the log: at most one per this period (all are counted).
const GAP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Where Redis is: `--redis HOST:PORT` or `redis://[:PASSWORD@]HOST:PORT[/DB]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    pub db: Option<u32>,
}

impl Target {
    /// Parses the `--redis` value.
    pub fn parse(s: &str) -> Result<Target, String> {
        let bad =
            || format!("--redis {s:?}: expected HOST:PORT or redis://[:PASSWORD@]HOST:PORT[/DB]");
        let (rest, url) = match s.strip_prefix("redis://") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let (password, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) if url => {
                // `:password` or `user:password`: Redis 6 ACL users are not
                // supported; the part before the colon must be empty.
                let pw = auth.strip_prefix(':').ok_or_else(bad)?;
                (Some(pw.to_string()), rest)
            }
            Some(_) => return Err(bad()),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((hp, "")) if url => (hp, None),
            Some((hp, db)) if url => (hp, Some(db.parse::<u32>().map_err(|_| bad())?)),
            Some(_) => return Err(bad()),
            None => (rest, None),
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Target {
            host: host.to_string(),
            port,
            password,
            db,
        })
    }

    /// Resolves the host name. **Blocking** (getaddrinfo): call it once,
    /// before the loop starts; the address is then kept for every
    /// reconnect (a Redis that moves to another address needs a restart).
    pub fn resolve(&self) -> io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{}: no address", self.host)))
    }
}

/// The default `--node-id`: host name and process id.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() { "loopchat" } else { &host };
    format!("{host}-{}", std::process::id())
}

/// The bridge's counters, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Figures {
    pub published: u64,
    pub received: u64,
    pub gaps: u64,
    pub reconnects: u64,
    /// Relays not published because the command link was down.
    pub lost: u64,
    /// Messages from Redis we could not read (bad envelope).
    pub unreadable: u64,
    pub up: bool,
    /// Channels subscribed (confirmed by Redis).
    pub subscribed: u64,
    /// Times our lease was found lapsed (we had been reaped, or Redis
    /// restarted) and our nicknames claimed again.
    pub lease_renewals: u64,
    /// Processes found dead by a reaper (ours or another's).
    pub nodes_down: u64,
    /// Nickname claims refused because another process holds the name.
    pub claims_taken: u64,
    /// Our users renamed after a collision.
    pub collisions: u64,
}

/// What a reply on the command link answers.
#[derive(Debug)]
enum Pending {
    /// AUTH, CLIENT SETNAME or SELECT; an error means the link is useless
    /// if `fatal` (a Redis-like server without CLIENT SETNAME is fine).
    Setup {
        what: &'static str,
        fatal: bool,
    },
    /// A PUBLISH (the reply is its number of receivers); a private line
    /// waits for it to learn whether anyone had the nickname.
    Publish(Option<PrivateWait>),
    Ping,
    /// `SCRIPT LOAD`: an error means the scripts cannot run here.
    ScriptLoad,
    /// `INFO cluster`: a Redis Cluster is refused (see `on_reply`).
    ClusterCheck,
    Heartbeat,
    Reap,
    /// A nickname claimed for a user: to register or rename (`again`:
    /// false), or ours already, claimed again after our lease lapsed.
    Claim {
        conn: ConnId,
        serial: u64,
        key: String,
        again: bool,
    },
    Release(String),
    Retire,
}

/// The answer to a claim, for the hub.
#[derive(Debug)]
pub struct ClaimDone {
    pub conn: ConnId,
    pub serial: u64,
    pub answer: ClaimAnswer,
}

/// A private line relayed to another process, waiting for its PUBLISH's
/// count of receivers.
#[derive(Debug)]
pub struct PrivateWait {
    pub conn: ConnId,
    pub serial: u64,
    pub to: String,
    pub text: String,
    pub kind: TextKind,
}

/// The answer for a private line: delivered to a listener, or not.
#[derive(Debug)]
pub struct Outcome {
    pub wait: PrivateWait,
    pub delivered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No socket; connect again at `retry_at`.
    Down {
        retry_at: Instant,
    },
    /// `connect()` is in progress: wait for WRITABLE.
    Connecting {
        since: Instant,
    },
    Up,
}

/// One TCP connection to Redis.
#[derive(Debug)]
struct Link {
    name: &'static str,
    token: Token,
    stream: Option<TcpStream>,
    state: State,
    /// Commands not yet written.
    out: Vec<u8>,
    /// Bytes read, not yet a whole reply.
    inbuf: Vec<u8>,
    interest: Option<Interest>,
    /// When anything was last read (or the link came up).
    last_rx: Instant,
    /// A PING is out since then.
    ping_at: Option<Instant>,
    backoff: Duration,
    /// Has been up before: the next time up is a reconnect.
    was_up: bool,
    /// Reading stopped at [`FAIR_READ`]: bytes may wait in the kernel, and
    /// no new event will say so (edge-triggered).
    more: bool,
    /// Failing to connect was logged (once until the link is up again).
    failing_noted: bool,
}

impl Link {
    fn new(name: &'static str, token: Token, now: Instant) -> Link {
        Link {
            name,
            token,
            stream: None,
            state: State::Down { retry_at: now },
            out: Vec::new(),
            inbuf: Vec::new(),
            interest: None,
            last_rx: now,
            ping_at: None,
            backoff: BACKOFF_MIN,
            was_up: false,
            more: false,
            failing_noted: false,
        }
    }

    fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// When this link next needs the loop's attention without an event.
    fn wake_at(&self) -> Instant {
        match self.state {
            State::Down { retry_at } => retry_at,
            State::Connecting { since } => since + PING_TIMEOUT,
            State::Up => match self.ping_at {
                Some(at) => at + PING_TIMEOUT,
                None => self.last_rx + PING_EVERY,
            },
        }
    }

    /// Starts a non-blocking connect.
    fn connect(&mut self, addr: SocketAddr, registry: &Registry, now: Instant) {
        let result = TcpStream::connect(addr).and_then(|mut s| {
            registry.register(&mut s, self.token, Interest::READABLE | Interest::WRITABLE)?;
            Ok(s)
        });
        match result {
            Ok(stream) => {
                self.stream = Some(stream);
                self.interest = Some(Interest::READABLE | Interest::WRITABLE);
                self.state = State::Connecting { since: now };
            }
            Err(e) => self.down(registry, now, &format!("connect: {e}")),
        }
    }

    /// Drops the socket and schedules the next try (exponential backoff).
    ///
    /// The socket is reset, not closed: what the kernel still holds for it
    /// (a heartbeat, a claim, lines) must never reach Redis. After a cut
    /// without FIN, a closed socket keeps retransmitting, and when the
    /// network heals its stale heartbeat could land after the reaper
    /// removed our lease, renewing it: our new link would then find the
    /// lease live and not claim our names again, and the others would
    /// never hear of our users.
    fn down(&mut self, registry: &Registry, now: Instant, why: &str) {
        if let Some(mut s) = self.stream.take() {
            if let Err(e) = registry.deregister(&mut s) {
                debug!("bridge {}: deregister: {e}", self.name);
            }
            if let Err(e) = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)) {
                debug!("bridge {}: SO_LINGER: {e}", self.name);
            }
        }
        if self.state == State::Up {
            warn!("bridge: {} link to Redis lost: {why}", self.name);
        } else if !self.failing_noted {
            self.failing_noted = true;
            warn!(
                "bridge: {} link: cannot reach Redis ({why}); retrying, every {:?} at most",
                self.name, BACKOFF_MAX
            );
        } else {
            debug!("bridge: {} link: {why}", self.name);
        }
        self.state = State::Down {
            retry_at: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.out = Vec::new();
        self.inbuf = Vec::new();
        self.interest = None;
        self.ping_at = None;
        self.more = false;
    }

    /// Writes what is queued until done or `WouldBlock`; asks for WRITABLE
    /// only while bytes remain. `Err` means the link is broken.
    fn flush(&mut self, registry: &Registry) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        if self.state != State::Up {
            return Ok(());
        }
        let mut written = 0;
        while written < self.out.len() {
            match stream.write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..written);
        if self.out.len() > MAX_OUT {
            return Err(io::Error::other(format!(
                "{} bytes waiting: Redis is not reading",
                self.out.len()
            )));
        }
        let want = if self.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if self.interest != Some(want) {
            registry.reregister(stream, self.token, want)?;
            self.interest = Some(want);
        }
        Ok(())
    }

    /// Reads until `WouldBlock` or [`FAIR_READ`] bytes (then `more` is
    /// set), decoding whole replies into `replies`. `Err`: the link is
    /// broken (closed, an I/O error, bad RESP).
    fn read(&mut self, now: Instant, replies: &mut Vec<Value>) -> Result<(), String> {
        self.more = false;
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut buf = [0u8; 16 * 1024];
        let mut budget = FAIR_READ;
        loop {
            if budget == 0 {
                self.more = true;
                return Ok(());
            }
            match stream.read(&mut buf) {
                Ok(0) => return Err("closed by Redis".into()),
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.last_rx = now;
                    self.ping_at = None;
                    self.inbuf.extend_from_slice(&buf[..n]);
                    let mut used = 0;
                    loop {
                        match resp::decode(&self.inbuf[used..]) {
                            Ok(Some((v, n))) => {
                                replies.push(v);
                                used += n;
                            }
                            Ok(None) => break,
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    self.inbuf.drain(..used);
                    if self.inbuf.len() > MAX_IN {
                        return Err("reply too big".into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// The bridge: both links, what we listen to, and the counters.
#[derive(Debug)]
pub struct Bridge {
    target: Target,
    addr: SocketAddr,
    node: String,
    cmd: Link,
    sub: Link,
    /// What each reply on the command link answers, in order.
    pending: VecDeque<Pending>,
    /// Channels we want to hear (rooms with local members, local nicks).
    watched: HashSet<String>,
    /// Channels Redis confirmed.
    subscribed: HashSet<String>,
    /// Our next sequence number per room channel (a receiver checks the
    /// numbers per channel, since it hears only the channels it listens
    /// to). Forgotten when we stop listening to the room.
    seq_out: HashMap<String, u64>,
    /// The last number heard per (channel, node), for gap counting.
    seq_in: HashMap<(String, String), u64>,
    figures: Figures,
    /// Relays lost since the command link went down (logged when back).
    lost_while_down: u64,
    /// Payloads received, for the hub (see `take_inbound`).
    inbound: Vec<Vec<u8>>,
    outcomes: Vec<Outcome>,
    /// The subscriber link went down: the hub should forget remote members.
    lost_remote: bool,
    /// Rooms newly subscribed: ask who is there (`Relay::Sync`).
    to_sync: Vec<String>,
    gap_logged: Option<Instant>,
    scratch: Vec<u8>,
    replies: Vec<Value>,
    scripts: Scripts,
    /// We have had a lease (so a lapsed one is news, not the start).
    had_lease: bool,
    /// The command link just came up: its first heartbeat's answer makes
    /// us claim our names again whatever it says (see `claim_again`).
    new_link: bool,
    /// The nicknames we hold in Redis or are claiming: lowercased ->
    /// as written (a fallback after a collision keeps the spelling).
    held: HashMap<String, String>,
    /// Nicknames given up while the command link was down: released
    /// when it is back (unless Redis lost them anyway).
    release_later: Vec<String>,
    /// When the next heartbeat and reap are due (command link up).
    heartbeat_at: Instant,
    reap_at: Instant,
    claims_done: Vec<ClaimDone>,
    /// (old, new): our users renamed after a collision.
    collisions: Vec<(String, String)>,
    /// Nodes a reaper found dead.
    downs: Vec<String>,
    /// Our names were claimed again (our lease had lapsed, or the command
    /// link is new): the hub tells the others who is here again.
    reannounce: bool,
    /// Why the bridge gave up for good (a Redis Cluster): no reconnects.
    refused: Option<String>,
    /// The process is stopping and gave its lease back: no heartbeats,
    /// no claims.
    retired: bool,
}

impl Bridge {
    /// A bridge to `target` (already resolved to `addr`), calling itself
    /// `node`. Connects at the first [`tick`](Self::tick).
    pub fn new(target: Target, addr: SocketAddr, node: String, now: Instant) -> Bridge {
        Bridge {
            target,
            addr,
            node,
            cmd: Link::new("command", CMD, now),
            sub: Link::new("subscriber", SUB, now),
            pending: VecDeque::new(),
            subscribed: HashSet::new(),
            seq_out: HashMap::new(),
            seq_in: HashMap::new(),
            figures: Figures::default(),
            lost_while_down: 0,
            inbound: Vec::new(),
            outcomes: Vec::new(),
            lost_remote: false,
            to_sync: Vec::new(),
            gap_logged: None,
            scratch: Vec::new(),
            replies: Vec::new(),
            scripts: Scripts::new(),
            had_lease: false,
            new_link: false,
            held: HashMap::new(),
            release_later: Vec::new(),
            heartbeat_at: now,
            reap_at: now,
            claims_done: Vec::new(),
            collisions: Vec::new(),
            downs: Vec::new(),
            reannounce: false,
            refused: None,
            retired: false,
            // Every process hears the reapers.
            watched: HashSet::from([presence::CONTROL.to_string()]),
        }
    }

    /// Why the bridge gave up for good (a Redis Cluster), if it did.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// This process's node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The counters, and whether both links are up.
    pub fn figures(&self) -> Figures {
        Figures {
            up: self.cmd.is_up() && self.sub.is_up(),
            subscribed: self.subscribed.len() as u64,
            ..self.figures
        }
    }

    /// PUBLISHes `relay` (caused by `conn`, whose serial is `serial`).
    /// Appends to the command link's buffer; no syscall. While the link is
    /// down the relay is lost and counted, and a private line is answered
    /// "not delivered" at once.
    pub fn publish(&mut self, conn: ConnId, serial: u64, relay: &Relay<'_>) {
        let wait = match relay {
            Relay::Private { to, text, kind, .. } => Some(PrivateWait {
                conn,
                serial,
                to: to.to_string(),
                text: text.to_string(),
                kind: *kind,
            }),
            _ => None,
        };
        if !self.cmd.is_up() {
            self.figures.lost += 1;
            self.lost_while_down += 1;
            if let Some(wait) = wait {
                self.outcomes.push(Outcome {
                    wait,
                    delivered: false,
                });
            }
            return;
        }
        let channel = envelope::channel_of(relay);
        let seq = if wait.is_some() {
            0 // private lines are not numbered: a receiver hears only its own
        } else {
            let next = self.seq_out.entry(channel.clone()).or_insert(0);
            *next += 1;
            *next
        };
        self.scratch.clear();
        envelope::encode(&self.node, seq, relay, &mut self.scratch);
        resp::command(
            &mut self.cmd.out,
            &[b"PUBLISH", channel.as_bytes(), &self.scratch],
        );
        self.pending.push_back(Pending::Publish(wait));
        self.figures.published += 1;
    }

    /// Starts (`on`) or stops listening to a room or nickname.
    pub fn watch(&mut self, what: Watch<'_>, on: bool) {
        let channel = match what {
            Watch::Room(room) => envelope::room_channel(room),
            Watch::Nick(nick) => envelope::nick_channel(nick),
        };
        if let Watch::Nick(nick) = what {
            let key = nick.to_ascii_lowercase();
            if on {
                self.held.insert(key, nick.to_string());
            } else if self.held.remove(&key).is_some() {
                self.release(key);
            }
        }
        if on {
            if self.watched.insert(channel.clone()) && self.sub.is_up() {
                resp::command(&mut self.sub.out, &[b"SUBSCRIBE", channel.as_bytes()]);
            }
        } else if self.watched.remove(&channel) {
            if self.sub.is_up() {
                resp::command(&mut self.sub.out, &[b"UNSUBSCRIBE", channel.as_bytes()]);
            }
            self.seq_out.remove(&channel);
            self.seq_in.retain(|(c, _), _| *c != channel);
        }
    }

    /// Claims `nick` for `conn` (whose serial is `serial`) on every
    /// process; the answer comes back through
    /// [`take_claims_done`](Self::take_claims_done). `false`: Redis cannot
    /// be asked now (the command link is down), and the name must be
    /// refused.
    pub fn claim(&mut self, conn: ConnId, serial: u64, nick: &str) -> bool {
        if !self.cmd.is_up() || self.refused.is_some() || self.retired {
            return false;
        }
        let key = nick.to_ascii_lowercase();
        self.held.insert(key.clone(), nick.to_string());
        self.send_claim(nick, &key, false);
        self.pending.push_back(Pending::Claim {
            conn,
            serial,
            key,
            again: false,
        });
        true
    }

    /// `EVALSHA claim` for `nick` (`key` lowercased).
    fn send_claim(&mut self, nick: &str, key: &str, again: bool) {
        let held = presence::held_key(&self.node);
        let max = crate::protocol::MAX_NICK_LEN.to_string();
        let mode: &[u8] = if again { b"again" } else { b"new" };
        presence::evalsha(
            &mut self.cmd.out,
            &self.scripts.claim,
            &[
                presence::NODES.as_bytes(),
                presence::NICKS.as_bytes(),
                held.as_bytes(),
            ],
            &[
                self.node.as_bytes(),
                key.as_bytes(),
                mode,
                nick.as_bytes(),
                max.as_bytes(),
            ],
        );
    }

    /// Gives `key` (a lowercased nickname) back in Redis, now or, with the
    /// command link down, once it is back.
    fn release(&mut self, key: String) {
        if !self.cmd.is_up() {
            self.release_later.push(key);
            return;
        }
        let held = presence::held_key(&self.node);
        presence::evalsha(
            &mut self.cmd.out,
            &self.scripts.release,
            &[presence::NICKS.as_bytes(), held.as_bytes()],
            &[self.node.as_bytes(), key.as_bytes()],
        );
        self.pending.push_back(Pending::Release(key));
    }

    /// Renews our lease (`EVALSHA heartbeat`).
    fn heartbeat(&mut self, now: Instant) {
        let lease = presence::LEASE.as_millis().to_string();
        presence::evalsha(
            &mut self.cmd.out,
            &self.scripts.heartbeat,
            &[presence::NODES.as_bytes()],
            &[self.node.as_bytes(), lease.as_bytes()],
        );
        self.pending.push_back(Pending::Heartbeat);
        self.heartbeat_at = now + presence::HEARTBEAT_EVERY;
    }

    /// Runs the reaper (`EVALSHA reap`): any process may, any number of
    /// times.
    fn reap(&mut self, now: Instant) {
        let prefix = presence::held_key("");
        presence::evalsha(
            &mut self.cmd.out,
            &self.scripts.reap,
            &[presence::NODES.as_bytes(), presence::NICKS.as_bytes()],
            &[prefix.as_bytes(), presence::CONTROL.as_bytes()],
        );
        self.pending.push_back(Pending::Reap);
        self.reap_at = now + presence::REAP_EVERY;
    }

    /// The process is stopping: gives our lease and nicknames back now
    /// (`EVALSHA retire`), so that our users, reconnecting to another
    /// process, find their names free at once. Call after the hub's
    /// shutdown, whose quits are published first.
    pub fn retire(&mut self) {
        if self.retired || !self.cmd.is_up() {
            return;
        }
        self.retired = true;
        let prefix = presence::held_key("");
        presence::evalsha(
            &mut self.cmd.out,
            &self.scripts.retire,
            &[presence::NODES.as_bytes(), presence::NICKS.as_bytes()],
            &[
                prefix.as_bytes(),
                presence::CONTROL.as_bytes(),
                self.node.as_bytes(),
            ],
        );
        self.pending.push_back(Pending::Retire);
    }

    /// Answers to [`claim`](Self::claim).
    pub fn take_claims_done(&mut self) -> Vec<ClaimDone> {
        std::mem::take(&mut self.claims_done)
    }

    /// (old, new) for each of our users renamed after a collision.
    pub fn take_collisions(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.collisions)
    }

    /// Processes a reaper found dead: the hub forgets their users.
    pub fn take_downs(&mut self) -> Vec<String> {
        std::mem::take(&mut self.downs)
    }

    /// Whether our names were claimed again since the last call (see
    /// `claim_again`): the hub tells the other processes who is here again.
    pub fn take_reannounce(&mut self) -> bool {
        std::mem::take(&mut self.reannounce)
    }

    /// Payloads that arrived (not our own), for the hub; give the vector
    /// back with [`put_back`](Self::put_back) so it is reused.
    pub fn take_inbound(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.inbound)
    }

    /// Returns an emptied inbound vector.
    pub fn put_back(&mut self, mut v: Vec<Vec<u8>>) {
        v.clear();
        if self.inbound.is_empty() {
            self.inbound = v;
        }
    }

    /// Answers for private lines.
    pub fn take_outcomes(&mut self) -> Vec<Outcome> {
        std::mem::take(&mut self.outcomes)
    }

    /// Whether the subscriber link went down since the last call (the hub
    /// forgets remote members then).
    pub fn take_lost_remote(&mut self) -> bool {
        std::mem::take(&mut self.lost_remote)
    }

    /// Rooms newly subscribed, to publish a `Relay::Sync` for.
    pub fn take_to_sync(&mut self) -> Vec<String> {
        std::mem::take(&mut self.to_sync)
    }

    /// The links whose reading stopped at [`FAIR_READ`]: the loop polls
    /// with a zero timeout and calls [`on_event`](Self::on_event) for
    /// them again.
    pub fn unread(&self) -> impl Iterator<Item = Token> + use<> {
        let cmd = self.cmd.more.then_some(CMD);
        let sub = self.sub.more.then_some(SUB);
        cmd.into_iter().chain(sub)
    }

    /// When [`tick`](Self::tick) must run next.
    pub fn wake_at(&self) -> Instant {
        if self.refused.is_some() {
            return self.cmd.last_rx + Duration::from_secs(24 * 3600);
        }
        let mut at = self.cmd.wake_at().min(self.sub.wake_at());
        if self.cmd.is_up() && !self.retired {
            at = at.min(self.heartbeat_at).min(self.reap_at);
        }
        at
    }

    /// Timers: connect links that are down when their backoff is over,
    /// PING idle links, drop links whose PING (or connect) timed out.
    pub fn tick(&mut self, registry: &Registry, now: Instant) {
        if self.refused.is_some() {
            return;
        }
        if self.cmd.is_up() && !self.retired {
            if now >= self.heartbeat_at {
                self.heartbeat(now);
            }
            if now >= self.reap_at {
                self.reap(now);
            }
        }
        for which in [CMD, SUB] {
            let link = self.link(which);
            match link.state {
                State::Down { retry_at } if retry_at <= now => {
                    let addr = self.addr;
                    self.link(which).connect(addr, registry, now);
                }
                State::Connecting { since } if now >= since + PING_TIMEOUT => {
                    self.drop_link(which, registry, now, "connect timed out");
                }
                State::Up => match link.ping_at {
                    Some(at) if now >= at + PING_TIMEOUT => {
                        self.drop_link(which, registry, now, "no answer to PING");
                    }
                    None if now >= link.last_rx + PING_EVERY => {
                        link.ping_at = Some(now);
                        resp::command(&mut link.out, &[b"PING"]);
                        if which == CMD {
                            self.pending.push_back(Pending::Ping);
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }

    fn link(&mut self, which: Token) -> &mut Link {
        if which == CMD {
            &mut self.cmd
        } else {
            &mut self.sub
        }
    }

    /// A readiness event for one of our tokens.
    pub fn on_event(&mut self, token: Token, registry: &Registry, now: Instant) {
        let link = self.link(token);
        if let State::Connecting { .. } = link.state {
            let Some(stream) = link.stream.as_ref() else {
                return;
            };
            // mio's recipe: a connect finished (or failed) once the socket
            // reports an error or has a peer address.
            match stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    return self.drop_link(token, registry, now, &format!("connect: {e}"));
                }
                Ok(None) => {}
            }
            match stream.peer_addr() {
                Ok(_) => self.link_up(token, now),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    return self.drop_link(token, registry, now, &format!("connect: {e}"));
                }
            }
        }
        let mut replies = std::mem::take(&mut self.replies);
        let read = self.link(token).read(now, &mut replies);
        let mut broken = read.err();
        for reply in replies.drain(..) {
            let handled = if token == CMD {
                self.on_reply(reply)
            } else {
                self.on_push(reply, now)
            };
            if let Err(why) = handled {
                broken = Some(why);
                break;
            }
        }
        replies.clear();
        self.replies = replies;
        if let Some(why) = broken {
            self.drop_link(token, registry, now, &why);
        }
        if self.refused.is_some() {
            for which in [CMD, SUB] {
                if self.link(which).stream.is_some() {
                    self.drop_link(which, registry, now, "bridging is off");
                }
            }
        }
    }

    /// A link just connected: authenticate, select, resubscribe.
    fn link_up(&mut self, which: Token, now: Instant) {
        let password = self.target.password.clone();
        let db = self.target.db;
        let node = self.node.clone();
        let link = self.link(which);
        link.state = State::Up;
        link.last_rx = now;
        link.backoff = BACKOFF_MIN;
        link.failing_noted = false;
        let again = std::mem::replace(&mut link.was_up, true);
        let mut setup = Vec::new();
        if let Some(pw) = &password {
            resp::command(&mut link.out, &[b"AUTH", pw.as_bytes()]);
            setup.push("AUTH");
        }
        // So `CLIENT LIST` shows whose link it is.
        let name = format!("loopchat-{}-{}", node.replace(' ', "_"), link.name);
        resp::command(&mut link.out, &[b"CLIENT", b"SETNAME", name.as_bytes()]);
        setup.push("CLIENT SETNAME");
        if again {
            self.figures.reconnects += 1;
        }
        if which == CMD {
            if let Some(db) = db {
                resp::command(&mut self.cmd.out, &[b"SELECT", db.to_string().as_bytes()]);
                setup.push("SELECT");
            }
            self.pending
                .extend(setup.into_iter().map(|what| Pending::Setup {
                    what,
                    fatal: what != "CLIENT SETNAME",
                }));
            info!(
                "bridge: command link to Redis {}:{} up{}",
                self.target.host,
                self.target.port,
                if again { " again" } else { "" }
            );
            for script in self.scripts.all() {
                resp::command(
                    &mut self.cmd.out,
                    &[b"SCRIPT", b"LOAD", script.text.as_bytes()],
                );
                self.pending.push_back(Pending::ScriptLoad);
            }
            resp::command(&mut self.cmd.out, &[b"INFO", b"cluster"]);
            self.pending.push_back(Pending::ClusterCheck);
            self.new_link = true;
            self.heartbeat(now);
            self.reap_at = now + presence::REAP_EVERY;
            for key in std::mem::take(&mut self.release_later) {
                if !self.held.contains_key(&key) {
                    self.release(key);
                }
            }
            if self.lost_while_down > 0 {
                warn!(
                    "bridge: {} lines and events could not be published while Redis was unreachable",
                    self.lost_while_down
                );
                self.lost_while_down = 0;
            }
        } else {
            // Replies to AUTH/SETNAME on this link come before any push;
            // `on_push` takes them for what they are.
            let channels: Vec<String> = self.watched.iter().cloned().collect();
            for chunk in channels.chunks(256) {
                let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
                args.extend(chunk.iter().map(|c| c.as_bytes()));
                resp::command(&mut self.sub.out, &args);
            }
            info!(
                "bridge: subscriber link up{}, {} channels",
                if again { " again" } else { "" },
                channels.len()
            );
        }
    }

    /// One reply on the command link.
    fn on_reply(&mut self, reply: Value) -> Result<(), String> {
        let Some(pending) = self.pending.pop_front() else {
            return Err(format!("a reply nobody asked for: {reply:?}"));
        };
        match (pending, reply) {
            (Pending::Setup { what, fatal: true }, Value::Error(e)) => Err(format!("{what}: {e}")),
            (Pending::Setup { what, .. }, Value::Error(e)) => {
                debug!("bridge: {what}: {e}");
                Ok(())
            }
            (Pending::Setup { .. }, _) => Ok(()),
            (Pending::Publish(wait), reply) => {
                let receivers = match reply {
                    Value::Int(n) => n,
                    Value::Error(e) => {
                        warn!("bridge: PUBLISH refused: {e}");
                        0
                    }
                    _ => 0,
                };
                if let Some(wait) = wait {
                    self.outcomes.push(Outcome {
                        wait,
                        delivered: receivers > 0,
                    });
                }
                Ok(())
            }
            (Pending::Ping, _) => Ok(()),
            (Pending::ScriptLoad, Value::Error(e)) => Err(format!("SCRIPT LOAD: {e}")),
            (Pending::ScriptLoad, _) => Ok(()),
            (Pending::ClusterCheck, Value::Bulk(info)) => {
                let info = String::from_utf8_lossy(&info);
                if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
                    let why = "Redis Cluster is not supported: point --redis at a single Redis (or a primary with replicas), not a cluster node".to_string();
                    log::error!("bridge: {why}; bridging is off, local chat goes on");
                    self.refused = Some(why.clone());
                    return Err(why);
                }
                Ok(())
            }
            (Pending::ClusterCheck, _) => Ok(()), // a Redis-like server without INFO
            (Pending::Heartbeat, Value::Int(live)) => {
                let first = std::mem::take(&mut self.new_link);
                if live == 0 || first {
                    self.claim_again(live == 0);
                }
                self.had_lease = true;
                Ok(())
            }
            (Pending::Reap, Value::Array(dead)) => {
                if !dead.is_empty() {
                    info!(
                        "bridge: reaped {} process(es) whose lease expired",
                        dead.len()
                    );
                }
                Ok(())
            }
            (Pending::Release(_) | Pending::Retire, _) => Ok(()),
            (
                Pending::Claim {
                    conn,
                    serial,
                    key,
                    again,
                },
                reply,
            ) => self.on_claim(conn, serial, key, again, &reply),
            (Pending::Heartbeat | Pending::Reap, reply) => {
                Err(format!("unexpected reply to a script: {reply:?}"))
            }
        }
    }

    /// Claims every nickname we hold again and asks the hub to tell the
    /// others who is here. When our lease was not live (`lapsed`): Redis
    /// restarted, or we were silent longer than a lease (stopped, cut off)
    /// and may have been reaped. Also after every new command link, lapsed
    /// or not: a heartbeat of the old link, delayed in the network, may
    /// have renewed the lease after a reaper removed it (and our names),
    /// so "live" is not proof. Claiming a name we still hold, and telling
    /// the others of users they know, change nothing.
    fn claim_again(&mut self, lapsed: bool) {
        if lapsed && self.had_lease {
            self.figures.lease_renewals += 1;
            warn!(
                "bridge: our lease in Redis had lapsed (Redis restarted, or this process was silent too long); claiming {} nicknames again",
                self.held.len()
            );
        }
        let mut names: Vec<(String, String)> = self
            .held
            .iter()
            .map(|(key, nick)| (key.clone(), nick.clone()))
            .collect();
        names.sort_unstable();
        for (key, nick) in names {
            self.send_claim(&nick, &key, true);
            self.pending.push_back(Pending::Claim {
                conn: usize::MAX,
                serial: 0,
                key,
                again: true,
            });
        }
        self.reannounce = true;
    }

    /// A claim's reply.
    fn on_claim(
        &mut self,
        conn: ConnId,
        serial: u64,
        key: String,
        again: bool,
        reply: &Value,
    ) -> Result<(), String> {
        let read = ClaimReply::read(reply);
        if again {
            match read {
                Some(ClaimReply::Ok | ClaimReply::NoLease) => {}
                Some(ClaimReply::Renamed(new)) => {
                    self.held.remove(&key);
                    self.held.insert(new.to_ascii_lowercase(), new.clone());
                    self.figures.collisions += 1;
                    self.collisions.push((key, new));
                }
                Some(ClaimReply::Taken) => {
                    warn!("bridge: {key} is held elsewhere and no fallback name was free")
                }
                None => return Err(format!("claim: unexpected reply {reply:?}")),
            }
            return Ok(());
        }
        let answer = match read {
            Some(ClaimReply::Ok) => ClaimAnswer::Granted,
            Some(ClaimReply::Taken) => {
                self.figures.claims_taken += 1;
                ClaimAnswer::Taken
            }
            Some(ClaimReply::NoLease) | Some(ClaimReply::Renamed(_)) | None => {
                ClaimAnswer::Unavailable
            }
        };
        if answer != ClaimAnswer::Granted {
            self.held.remove(&key);
        }
        self.claims_done.push(ClaimDone {
            conn,
            serial,
            answer,
        });
        match read {
            None => Err(format!("claim: unexpected reply {reply:?}")),
            _ => Ok(()),
        }
    }

    /// One push (or reply) on the subscriber link.
    fn on_push(&mut self, push: Value, now: Instant) -> Result<(), String> {
        let items = match push {
            Value::Array(items) => items,
            // +OK to AUTH/CLIENT SETNAME.
            Value::Simple(_) => return Ok(()),
            // A refused AUTH (the command link drops and retries on its
            // own), or a server without CLIENT SETNAME: said, not fatal.
            Value::Error(e) => {
                warn!("bridge: subscriber link: {e}");
                return Ok(());
            }
            other => return Err(format!("unexpected {other:?}")),
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::Bulk(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let kind = text(items.first());
        match kind.as_str() {
            "message" => {
                let channel = text(items.get(1));
                let Some(Value::Bulk(payload)) = items.into_iter().nth(2) else {
                    return Err("message without payload".into());
                };
                self.on_message(&channel, payload, now);
            }
            "subscribe" => {
                let channel = text(items.get(1));
                if self.watched.contains(&channel) {
                    let room = channel
                        .strip_prefix(envelope::PREFIX)
                        .and_then(|c| c.strip_prefix("room:"));
                    if let Some(room) = room {
                        self.to_sync.push(room.to_string());
                    }
                    self.subscribed.insert(channel);
                }
            }
            "unsubscribe" => {
                let channel = text(items.get(1));
                self.subscribed.remove(&channel);
            }
            // PING in subscribed mode.
            _ => {}
        }
        Ok(())
    }

    /// A published payload: ours (dropped), or another node's (checked
    /// for gaps, then queued for the hub).
    fn on_message(&mut self, channel: &str, payload: Vec<u8>, now: Instant) {
        if channel == presence::CONTROL {
            match presence::read_node(&payload) {
                // Our own lease lapsed: the next heartbeat finds out and
                // claims our names again.
                Some(node) if node == self.node => {}
                Some(node) => {
                    self.figures.nodes_down += 1;
                    warn!("bridge: process {node} is gone (its lease expired)");
                    self.seq_in.retain(|(_, n), _| n != node);
                    self.downs.push(node.to_string());
                }
                None => self.figures.unreadable += 1,
            }
            return;
        }
        let (node, seq) = match envelope::decode(&payload) {
            Ok(env) => (env.node.to_string(), env.seq),
            Err(_) => {
                self.figures.unreadable += 1;
                debug!("bridge: unreadable message on {channel}");
                return;
            }
        };
        if node == self.node {
            return; // our own echo
        }
        if !self.watched.contains(channel) {
            return; // crossed our UNSUBSCRIBE
        }
        self.figures.received += 1;
        if seq > 0 {
            let last = self
                .seq_in
                .entry((channel.to_string(), node.clone()))
                .or_insert(seq - 1);
            if seq > *last + 1 {
                let missed = seq - *last - 1;
                self.figures.gaps += missed;
                let due = self
                    .gap_logged
                    .is_none_or(|t| now.duration_since(t) >= GAP_LOG_EVERY);
                if due {
                    self.gap_logged = Some(now);
                    warn!(
                        "bridge: {missed} messages from {node} on {channel} never arrived ({} gaps in all)",
                        self.figures.gaps
                    );
                }
            }
            // A lower number: that node restarted its count (it left the
            // room and came back, or restarted): start over from it.
            *last = seq;
        }
        self.inbound.push(payload);
    }

    /// Drops a link; it reconnects after its backoff. The command link's
    /// unanswered private lines are answered "not delivered"; losing the
    /// subscriber link forgets what was subscribed (and the hub forgets
    /// the remote members: see `take_lost_remote`).
    fn drop_link(&mut self, which: Token, registry: &Registry, now: Instant, why: &str) {
        self.link(which).down(registry, now, why);
        if which == CMD {
            for pending in std::mem::take(&mut self.pending) {
                match pending {
                    Pending::Publish(Some(wait)) => self.outcomes.push(Outcome {
                        wait,
                        delivered: false,
                    }),
                    Pending::Claim {
                        conn,
                        serial,
                        key,
                        again: false,
                    } => {
                        // Redis may have granted it before the link went:
                        // give it back once we can.
                        self.held.remove(&key);
                        self.release_later.push(key);
                        self.claims_done.push(ClaimDone {
                            conn,
                            serial,
                            answer: ClaimAnswer::Unavailable,
                        });
                    }
                    Pending::Release(key) => self.release_later.push(key),
                    _ => {}
                }
            }
        } else {
            // `seq_in` is kept: what the other processes published while
            // we were away shows as a gap in their next numbers, counted.
            self.subscribed.clear();
            self.lost_remote = true;
        }
    }

    /// Writes both links' buffers (end of turn). A link whose write fails,
    /// or whose buffer passed [`MAX_OUT`], is dropped and reconnects.
    pub fn flush(&mut self, registry: &Registry, now: Instant) {
        for which in [CMD, SUB] {
            if let Err(e) = self.link(which).flush(registry) {
                self.drop_link(which, registry, now, &format!("write: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis that accepts but never reads: what we owe it grows to
    /// [`MAX_OUT`] at most, then the link is dropped (and will reconnect),
    /// never blocking and never buffering without bound.
    #[test]
    fn a_redis_that_does_not_read_is_dropped_not_buffered_forever() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let poll = mio::Poll::new().unwrap();
        let registry = poll.registry();
        let now = Instant::now();
        let target = Target::parse(&addr.to_string()).unwrap();
        let mut b = Bridge::new(target, addr, "t".into(), now);
        b.tick(registry, now);
        // Loopback: both connects are done once accepted.
        let _held: Vec<_> = (0..2).map(|_| listener.accept().unwrap()).collect();
        b.on_event(CMD, registry, now);
        b.on_event(SUB, registry, now);
        assert!(b.cmd.is_up() && b.sub.is_up());
        let text = "x".repeat(4000);
        let relay = Relay::Said {
            room: "#lobby",
            nick: "a",
            user: "a",
            text: &text,
            kind: TextKind::Plain,
        };
        let mut most = 0;
        for _ in 0..50_000 {
            b.publish(0, 0, &relay);
            most = most.max(b.cmd.out.len());
            b.flush(registry, now);
            if !b.cmd.is_up() {
                break;
            }
        }
        assert!(!b.cmd.is_up(), "never dropped");
        assert!(most <= MAX_OUT + 8192, "held {most} bytes");
        assert!(b.cmd.out.is_empty() && b.pending.is_empty());
        // Down now: what is published is counted as lost, not queued.
        b.publish(0, 0, &relay);
        assert_eq!(b.figures().lost, 1);
        assert!(b.cmd.out.is_empty());
    }

    #[test]
    fn targets() {
        let t = Target::parse("127.0.0.1:6379").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.password, t.db),
            ("127.0.0.1", 6379, None, None)
        );
        let t = Target::parse("redis://:s3cr@t@redis.example:6380/2").unwrap();
        assert_eq!(t.host, "redis.example");
        assert_eq!(t.port, 6380);
        assert_eq!(t.password.as_deref(), Some("s3cr@t"));
        assert_eq!(t.db, Some(2));
        let t = Target::parse("redis://[::1]:6379").unwrap();
        assert_eq!(t.host, "::1");
        for bad in [
            "",
            "host",
            "host:x",
            ":6379",
            "redis://user:pw@h:1",
            "h:1/2",
            "redis://h:1/x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
