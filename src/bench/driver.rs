//! The poll loop: one thread, one `mio::Poll`, every client connection.
//!
//! The loop owns the connections (a slab indexed by token), a single 64 KiB
//! read buffer shared by all of them (a partial line is the only per-client
//! copy), and a timerfd that wakes it for the next scheduled send, connect or
//! progress line. Each run goes through phases: connect and join everyone,
//! then the workload (fanout sends, idle holds, churn cycles, a storm of
//! joins), then for fanout and storm a bounded drain of in-flight messages
//! before loss is counted.
//!
//! With `--server-pid` the loop also samples the server's RSS every
//! `--rss-interval` (a timer deadline like any other, never a blocking
//! wait), labelled with the phase, so a short peak is seen and a join's
//! peak is told apart from the load's. With `--lag` some fanout receivers
//! stop reading for a while (their read events are ignored; on resuming
//! they are read at once, a batch per turn, since edge-triggered events
//! will not come again for bytes already waiting).
//!
//! Sending is open loop: message k of the run has an intended send time fixed
//! in advance from `--rate`, and latency is measured from that time, so a
//! stall (on either side) shows up in the figures instead of silently
//! delaying the next sends (coordinated omission, as wrk2 avoids it). The
//! latency from the moment the bench actually wrote the message is kept too.

use super::cli::{Config, Workload};
use super::dialect::{self, Dialect, Encoder, Input, Line};
use super::net::{self, ConnectState, Timer};
use super::payload::{self, Stamp};
use super::proc_stats::{self, ProcSample, RssTrack};
use super::report::{Cut, LagStats, Report, ServerCost};
use super::stats::LatencyHist;
use super::targets::Spread;
use super::tracker::SeqTracker;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

const TIMER: Token = Token(usize::MAX - 1);
const READ_BUF: usize = 64 * 1024;
/// A sender stops generating when this much is queued unwritten (the server
/// is not reading); the schedule keeps running, so the delay is measured.
const MAX_OUT: usize = 1 << 20;
/// Connections started per loop iteration at most, to keep reading.
const CONNECT_BATCH: usize = 256;
/// Paused receivers resumed per loop iteration at most: each is read until
/// its socket is empty, so all at once would stall the loop (and the RSS
/// sampling) for as long as it takes to read every backlog.
const RESUME_BATCH: usize = 256;
/// Settling (`--settle`) waits at most this long for the quiet.
const SETTLE_MAX: Duration = Duration::from_secs(60);
/// While draining with receivers that left or that joined late, how often
/// every receiver's trackers are checked for what is still owed.
const DRAIN_SCAN: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    /// WebSocket: the upgrade request sent, waiting for the `101`.
    Upgrading,
    /// Connected, nickname sent, waiting for `* The room contains: ...`.
    Joining,
    Joined,
    /// To be removed (failed, or churn done with it).
    Closing,
}

struct Conn {
    stream: TcpStream,
    state: State,
    nick: u64,
    /// The start of a unit (line, frame, reply) split across reads.
    partial: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// Sender index, for the senders.
    sender: Option<usize>,
    /// One per sender, once the fanout is set up.
    trackers: Vec<SeqTracker>,
    started: Instant,
    /// The grammar it speaks (`--dialect`).
    dialect: Dialect,
    /// Reached `Joined`: a close after this is a departure, not a failed join.
    joined: bool,
    /// A `--lag` receiver, and whether it is not reading right now.
    lagging: bool,
    paused: bool,
    /// Got an error line (`! ...`, IRC `ERROR`) after joining: the server
    /// said why before closing.
    error_line: bool,
    /// Its receipts move the closed-loop window (not a lagging receiver).
    acks: bool,
    /// Which server of `Config::targets` it is connected to.
    target: usize,
}

impl Conn {
    fn new(stream: TcpStream, nick: u64, dialect: Dialect, target: usize) -> Conn {
        Conn {
            stream,
            state: State::Connecting,
            nick,
            partial: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            sender: None,
            trackers: Vec::new(),
            started: Instant::now(),
            dialect,
            joined: false,
            lagging: false,
            paused: false,
            error_line: false,
            acks: true,
            target,
        }
    }

    /// The connection is gone (closed, reset, a failed write). Counted as a
    /// failure unless it is a lagging receiver the server cut, which
    /// `--lag` makes legitimate; either way a joined receiver's accounting
    /// is kept (see `Departed`).
    fn gone(&mut self, acc: &mut Acc, kind: impl Into<String>) {
        if !(self.lagging && self.joined) {
            acc.fail(kind);
        }
        self.state = State::Closing;
    }
}

/// A receiver that left after joining: the server closed it. Its trackers
/// say what it got; what it was owed and did not get is `Cut::undelivered`.
struct Departed {
    trackers: Vec<SeqTracker>,
    sender: Option<usize>,
    lagging: bool,
    error_line: bool,
}

struct Sender {
    key: usize,
    next_seq: u64,
    /// Actual send time (ns since t0) of each message, by sequence number.
    sent_ns: Vec<u64>,
    /// Receipts per outstanding message, from `ack_base` on (closed loop).
    acks: VecDeque<u32>,
    ack_base: u64,
}

/// Counters and histograms the line handler updates.
struct Acc {
    t0: Instant,
    failures: BTreeMap<String, u64>,
    joined_total: u64,
    join_latency: LatencyHist,
    senders: Vec<Sender>,
    receivers_per_msg: u32,
    measure_start_ns: u64,
    measure_end_ns: u64,
    sent: u64,
    measured_sent: u64,
    deliveries: u64,
    measured_deliveries: u64,
    duplicates: u64,
    foreign: u64,
    error_lines: u64,
    lat: LatencyHist,
    lat_uncorrected: LatencyHist,
    lat_second: LatencyHist,
    second_deliveries: u64,
    second_sent: u64,
    /// Connections between connect and joined (`--max-joining`).
    joining: usize,
    /// Bytes read from the server, and when last (`--settle`).
    bytes_read: u64,
    last_read: Instant,
    /// Storm: a client that joins gets this many late trackers (one per
    /// chatter), owing from its first receipt on.
    late_trackers: usize,
    /// WebSocket masks, shared by every client.
    enc: Encoder,
    /// Every client's `Sec-WebSocket-Key` is derived from this and its
    /// number (`dialect::ws_key`), so none is stored.
    ws_seed: u64,
    /// Where the next payload is put together.
    payload: Vec<u8>,
    /// `--workers`: the global number of this process's first sender, and
    /// the senders of every worker (`None`: this process's are all).
    sender_base: usize,
    senders_total: Option<usize>,
    /// The fanout's schedule (start, end in ns), from which the other
    /// workers' senders' totals are known while draining.
    plan: Option<(u64, Option<u64>)>,
    /// `--irc-oper`, `--irc-umode`: sent on `001`, before the JOIN.
    irc_oper: Option<(String, String)>,
    irc_umode: Option<String>,
    /// Several servers: each global sender's server, and the measured
    /// latency of deliveries on the sender's own server and across servers
    /// (empty with one server).
    sender_target: Vec<usize>,
    lat_same: LatencyHist,
    lat_cross: LatencyHist,
}

impl Acc {
    fn fail(&mut self, kind: impl Into<String>) {
        *self.failures.entry(kind.into()).or_insert(0) += 1;
    }

    fn failures_total(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Senders across every worker (this process's alone without
    /// `--workers`): the length of every receiver's trackers.
    fn all_senders(&self) -> usize {
        self.senders_total.unwrap_or(self.senders.len())
    }

    /// The sender of this process with global number `g`, if it is ours.
    fn local_sender(&self, g: usize) -> Option<usize> {
        g.checked_sub(self.sender_base)
            .filter(|&i| i < self.senders.len())
    }
}

fn io_kind(prefix: &str, e: &io::Error) -> String {
    use io::ErrorKind as K;
    let k = match e.kind() {
        K::ConnectionRefused => "refused",
        K::ConnectionReset => "reset",
        K::ConnectionAborted => "aborted",
        K::TimedOut => "timeout",
        K::AddrNotAvailable => "no_local_address",
        K::AddrInUse => "addr_in_use",
        K::BrokenPipe => "broken_pipe",
        _ if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) => {
            "out_of_fds"
        }
        _ => "other",
    };
    format!("{prefix}_{k}")
}

/// How much to read on an event. With edge-triggered polling, an event
/// reports the socket's state when it was polled, once: a short read
/// means drained, unless the end of stream (or an error) had already come
/// behind the bytes. The read that returns the last bytes stops before
/// it, and no new event will tell of it. So read to `WouldBlock` when the
/// event says the peer closed, and when a paused receiver resumes (its
/// events came while it was not reading); else stop at a short read,
/// which saves a syscall per event on the bench's hot path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    No,
    UntilShort,
    UntilWouldBlock,
}

impl Reading {
    fn from_event(readable: bool, closed: bool) -> Reading {
        match (readable, closed) {
            (_, true) => Reading::UntilWouldBlock,
            (true, false) => Reading::UntilShort,
            (false, false) => Reading::No,
        }
    }
}

/// The nickname of client `n`: unique per bench process, alphanumeric, so
/// any Budget Chat server accepts it.
fn nick(n: u64) -> String {
    format!("lb{}n{n}", std::process::id())
}

/// Whether client `nick` publishes instead of subscribing (`resp`: a
/// subscribed connection cannot publish, so the senders, the first
/// `--senders` clients of a fanout or storm, have connections of their
/// own and receive nothing).
fn publishes(cfg: &Config, nick: u64) -> bool {
    cfg.dialect == Dialect::Resp
        && matches!(cfg.workload, Workload::Fanout | Workload::Storm)
        && nick <= cfg.senders as u64
}

/// Handles one unit read from `conn` (see `Dialect::feed`).
fn on_input(conn: &mut Conn, input: Input<'_>, now_ns: u64, acc: &mut Acc, room: &str) {
    match input {
        Input::Line(line) => on_line(conn, line, now_ns, acc, room),
        Input::Upgraded => {
            if conn.state == State::Upgrading {
                // Never a publisher: WebSocket dialects have none.
                let dialect = conn.dialect;
                dialect.join(&nick(conn.nick), room, false, &mut acc.enc, &mut conn.out);
                conn.state = State::Joining;
            }
        }
        Input::Answer(opcode, payload) => acc.enc.control(opcode, payload, &mut conn.out),
        Input::Broken(kind) => conn.gone(acc, kind),
    }
}

/// Handles one complete line (or RESP reply) from `conn`.
fn on_line(conn: &mut Conn, parsed: Line<'_>, now_ns: u64, acc: &mut Acc, room: &str) {
    if let Line::Ping(token) = parsed {
        // IRC servers disconnect clients that do not answer.
        let dialect = conn.dialect;
        dialect.pong(token, &mut acc.enc, &mut conn.out);
        return;
    }
    match conn.state {
        State::Joining => match parsed {
            Line::Welcome => {
                let dialect = conn.dialect;
                if let Some((name, pass)) = &acc.irc_oper {
                    let line = format!("OPER {name} {pass}");
                    dialect.raw_line(line.as_bytes(), &mut acc.enc, &mut conn.out);
                }
                if let Some(modes) = &acc.irc_umode {
                    let line = format!("MODE {} {modes}", nick(conn.nick));
                    dialect.raw_line(line.as_bytes(), &mut acc.enc, &mut conn.out);
                }
                dialect.join_room(room, &mut acc.enc, &mut conn.out);
            }
            Line::Joined => {
                conn.state = State::Joined;
                conn.joined = true;
                acc.joining = acc.joining.saturating_sub(1);
                if conn.trackers.is_empty() && acc.late_trackers > 0 {
                    conn.trackers = vec![SeqTracker::late(); acc.late_trackers];
                    conn.acks = false;
                }
                acc.joined_total += 1;
                let us = conn.started.elapsed().as_micros() as u64;
                acc.join_latency.record_us(us);
            }
            Line::Refused(_) => {
                acc.fail("nick_refused");
                conn.state = State::Closing;
            }
            _ => {}
        },
        State::Joined => match parsed {
            Line::Chat(text) => on_chat(conn, text, now_ns, acc),
            Line::Refused(_) => {
                acc.error_lines += 1;
                conn.error_line = true;
            }
            _ => {}
        },
        State::Connecting | State::Upgrading | State::Closing => {}
    }
}

fn on_chat(conn: &mut Conn, text: &[u8], now_ns: u64, acc: &mut Acc) {
    let Some(Stamp {
        sender,
        seq,
        intended_ns,
    }) = payload::decode(text)
    else {
        acc.foreign += 1;
        return;
    };
    // A global sender number (with `--workers`, the sender may be in
    // another process: then there is no window to move and no actual send
    // time here).
    let s = sender as usize;
    if conn.sender == Some(s) || s >= conn.trackers.len() {
        acc.foreign += 1;
        return;
    }
    if !conn.trackers[s].observe(seq).is_new() {
        acc.duplicates += 1;
        return;
    }
    acc.deliveries += 1;
    acc.second_deliveries += 1;
    let local = acc.local_sender(s);
    if let Some(snd) = local.map(|i| &mut acc.senders[i]) {
        if conn.acks && seq >= snd.ack_base {
            if let Some(n) = snd.acks.get_mut((seq - snd.ack_base) as usize) {
                *n += 1;
            }
            while snd.acks.front() == Some(&acc.receivers_per_msg) {
                snd.acks.pop_front();
                snd.ack_base += 1;
            }
        }
    }
    let measured = intended_ns >= acc.measure_start_ns && intended_ns < acc.measure_end_ns;
    if measured {
        acc.measured_deliveries += 1;
    }
    // A lagging receiver's latency is its pause: what it shows is whether
    // the others (the latency figures) suffer from it.
    if conn.lagging {
        return;
    }
    let corrected = now_ns.saturating_sub(intended_ns) / 1000;
    acc.lat_second.record_us(corrected);
    if measured {
        acc.lat.record_us(corrected);
        if let Some(&t) = acc.sender_target.get(s) {
            if t == conn.target {
                acc.lat_same.record_us(corrected);
            } else {
                acc.lat_cross.record_us(corrected);
            }
        }
        let actual = local.and_then(|i| acc.senders[i].sent_ns.get(seq as usize));
        if let Some(&actual) = actual {
            acc.lat_uncorrected
                .record_us(now_ns.saturating_sub(actual) / 1000);
        }
    }
}

/// Hands one read to `conn`'s dialect, which keeps a unit cut at the end
/// in `conn.partial` (the only per-client copy).
fn feed(conn: &mut Conn, data: &[u8], now_ns: u64, acc: &mut Acc, room: &str) {
    let mut held = std::mem::take(&mut conn.partial);
    let key = (conn.state == State::Upgrading).then(|| dialect::ws_key(acc.ws_seed, conn.nick));
    let dialect = conn.dialect;
    dialect.feed(key.as_deref(), &mut held, data, &mut |input| {
        on_input(conn, input, now_ns, acc, room)
    });
    conn.partial = held;
}

/// Writes what is queued; errors close the connection.
fn flush(conn: &mut Conn, acc: &mut Acc) {
    while conn.out_pos < conn.out.len() {
        match conn.stream.write(&conn.out[conn.out_pos..]) {
            Ok(0) => {
                conn.gone(acc, "write_zero");
                return;
            }
            Ok(n) => conn.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                conn.gone(acc, io_kind("write", &e));
                return;
            }
        }
    }
    conn.out.clear();
    conn.out_pos = 0;
}

/// `--lag`: which receivers pause, and when they read again.
struct LagState {
    keys: Vec<usize>,
    paused_at: Option<Instant>,
    /// When to resume: known at the first send (`--lag-pause`), or with
    /// `--lag-after-send` once the last message is sent.
    resume_at: Option<Instant>,
    /// Still paused, once resuming has begun (a batch per turn).
    to_resume: Option<Vec<usize>>,
    resumed_at: Option<Instant>,
}

/// The run: the poll, the connections and the accounting.
struct Run<'c> {
    cfg: &'c Config,
    poll: Poll,
    timer: Timer,
    conns: Slab<Conn>,
    rbuf: Vec<u8>,
    acc: Acc,
    next_nick: u64,
    launched: u64,
    /// Pacing origin of the connect schedule.
    connect_origin: Instant,
    connect_base: u64,
    next_progress: Instant,
    /// Receivers that left after joining.
    departed: Vec<Departed>,
    /// `--server-pid`: the RSS samples, and when the next is due.
    rss: Option<RssTrack>,
    rss_next: Instant,
    lag: Option<LagState>,
    /// Which server each client goes to.
    spread: Spread,
}

impl<'c> Run<'c> {
    fn new(cfg: &'c Config) -> io::Result<Run<'c>> {
        let poll = Poll::new()?;
        let timer = Timer::new(poll.registry(), TIMER)?;
        // With `--workers`, every worker's clock starts at the parent's
        // instant, so payload times mean the same in every process.
        let t0 = cfg
            .worker
            .map_or_else(Instant::now, |r| super::workers::instant_at(r.t0_mono_ns));
        let seed = dialect::random_seed();
        Ok(Run {
            cfg,
            poll,
            timer,
            conns: Slab::with_capacity(cfg.clients),
            rbuf: vec![0; READ_BUF],
            acc: Acc {
                t0,
                failures: BTreeMap::new(),
                joined_total: 0,
                join_latency: LatencyHist::new(),
                senders: Vec::new(),
                receivers_per_msg: 0,
                measure_start_ns: u64::MAX,
                measure_end_ns: u64::MAX,
                sent: 0,
                measured_sent: 0,
                deliveries: 0,
                measured_deliveries: 0,
                duplicates: 0,
                foreign: 0,
                error_lines: 0,
                lat: LatencyHist::new(),
                lat_uncorrected: LatencyHist::new(),
                lat_second: LatencyHist::new(),
                second_deliveries: 0,
                second_sent: 0,
                joining: 0,
                bytes_read: 0,
                last_read: t0,
                late_trackers: 0,
                enc: Encoder::new(seed),
                ws_seed: seed.rotate_left(32),
                payload: Vec::new(),
                sender_base: cfg.worker.map_or(0, |r| r.share.sender_base),
                senders_total: cfg.worker.map(|r| r.share.senders_total),
                plan: None,
                irc_oper: cfg.irc_oper.clone(),
                irc_umode: cfg.irc_umode.clone(),
                sender_target: Vec::new(),
                lat_same: LatencyHist::new(),
                lat_cross: LatencyHist::new(),
            },
            spread: Spread::of(cfg),
            next_nick: 0,
            launched: 0,
            connect_origin: t0,
            connect_base: 0,
            next_progress: t0 + Duration::from_secs(1),
            departed: Vec::new(),
            rss: (!cfg.server_pids.is_empty()).then(|| RssTrack::new("join")),
            rss_next: t0,
            lag: None,
        })
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.acc.t0).as_nanos() as u64
    }

    /// From now on RSS samples belong to `phase`; one is taken at once, so
    /// that a phase is sampled even when it is shorter than the interval.
    fn set_phase(&mut self, phase: &'static str) {
        if let Some(r) = self.rss.as_mut() {
            r.set_phase(phase);
        }
        self.sample_rss(Instant::now());
    }

    fn sample_rss(&mut self, now: Instant) {
        let Some(r) = self.rss.as_mut() else {
            return;
        };
        if let Ok(s) = proc_stats::sample_all(&self.cfg.server_pids, proc_stats::sample_rss) {
            r.record(s, now.duration_since(self.acc.t0).as_secs_f64());
        }
        let every = if self.cfg.rss_interval.is_zero() {
            Duration::from_secs(1)
        } else {
            self.cfg.rss_interval
        };
        self.rss_next = now + every;
    }

    /// Starts one connection.
    fn launch(&mut self) {
        let source = if self.cfg.source_addrs.is_empty() {
            None
        } else {
            Some(self.cfg.source_addrs[self.launched as usize % self.cfg.source_addrs.len()])
        };
        self.launched += 1;
        // By the number the client will get: a connect that fails at once
        // takes no number, so the next client goes where it would have.
        let target = self.spread.of_client(self.next_nick + 1);
        let mut stream = match net::connect(self.cfg.target(target), source) {
            Ok(s) => s,
            Err(e) => {
                self.acc.fail(io_kind("connect", &e));
                return;
            }
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.acc.fail(io_kind("register", &e));
            return;
        }
        self.next_nick += 1;
        self.acc.joining += 1;
        entry.insert(Conn::new(stream, self.next_nick, self.cfg.dialect, target));
    }

    /// When the next connection is due under `--connect-rate`.
    fn next_connect_at(&self) -> Instant {
        let n = self.launched - self.connect_base;
        self.connect_origin + Duration::from_secs_f64(n as f64 / self.cfg.connect_rate)
    }

    /// Whether `--max-joining` holds new connections back right now.
    fn joining_full(&self) -> bool {
        self.cfg.max_joining.is_some_and(|m| self.acc.joining >= m)
    }

    /// When to wake for the next connect while fewer than `want` were
    /// launched: `None` when none is due (all launched, or `--max-joining`
    /// reached: a join or a failure wakes the loop then).
    fn connect_deadline(&self, want: u64) -> Option<Instant> {
        (self.launched < want && !self.joining_full()).then(|| self.next_connect_at())
    }

    /// Starts the connections that are due, while fewer than `limit` were launched
    /// (fanout, idle, storm) or fewer than `limit` are open (churn).
    fn launch_due(&mut self, now: Instant, limit_total: Option<u64>, limit_open: Option<usize>) {
        for _ in 0..CONNECT_BATCH {
            if limit_total.is_some_and(|l| self.launched >= l)
                || limit_open.is_some_and(|l| self.conns.len() >= l)
                || self.joining_full()
                || self.next_connect_at() > now
            {
                return;
            }
            self.launch();
        }
    }

    /// Waits for events (or the deadline, or the next RSS sample or lag
    /// resume) and handles them.
    fn turn(&mut self, deadline: Instant, events: &mut Events) -> io::Result<()> {
        let now = Instant::now();
        let mut deadline = deadline;
        if self.rss.is_some() {
            deadline = deadline.min(self.rss_next);
        }
        if let Some(lag) = &self.lag {
            if lag.to_resume.is_some() {
                deadline = now;
            } else if let (Some(at), None) = (lag.resume_at, lag.resumed_at) {
                deadline = deadline.min(at);
            }
        }
        self.timer.arm(deadline, now);
        let timeout = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(100))
            + Duration::from_millis(1);
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            if ev.token() == TIMER {
                self.timer.clear();
                continue;
            }
            let closed = ev.is_read_closed() || ev.is_error();
            self.on_event(
                ev.token().0,
                Reading::from_event(ev.is_readable(), closed),
                ev.is_writable() || ev.is_error(),
            );
        }
        let now = Instant::now();
        if self.rss.is_some() && now >= self.rss_next {
            self.sample_rss(now);
        }
        self.resume_due(now);
        Ok(())
    }

    fn on_event(&mut self, key: usize, read: Reading, writable: bool) {
        let Run {
            conns,
            rbuf,
            acc,
            cfg,
            ..
        } = self;
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        if conn.state == State::Connecting {
            match net::check_connect(&conn.stream) {
                ConnectState::Pending => return,
                ConnectState::Failed(e) => {
                    acc.fail(io_kind("connect", &e));
                    conn.state = State::Closing;
                    self.close(key);
                    return;
                }
                ConnectState::Connected => {
                    // The nickname goes out at once, greeting or not: a
                    // Budget Chat server reads it whenever it comes, and
                    // loopchat holds its greeting 250 ms for a first line
                    // (to tell IRC clients apart). Sending also completes a
                    // SYN-cookie handshake under a connect burst. Over
                    // WebSocket the upgrade request goes first, the
                    // nickname after the `101`.
                    let dialect = conn.dialect;
                    if dialect.websocket() {
                        let key = dialect::ws_key(acc.ws_seed, conn.nick);
                        dialect.upgrade_request(cfg.target(conn.target), &key, &mut conn.out);
                        conn.state = State::Upgrading;
                    } else {
                        let publisher = publishes(cfg, conn.nick);
                        let nick = nick(conn.nick);
                        dialect.join(&nick, &cfg.room, publisher, &mut acc.enc, &mut conn.out);
                        conn.state = State::Joining;
                    }
                }
            }
        }
        // A paused receiver leaves its bytes in the socket: that backlog,
        // and what the server queues behind it, is what `--lag` measures.
        if read != Reading::No && !conn.paused {
            loop {
                match conn.stream.read(rbuf) {
                    Ok(0) => {
                        let kind = match conn.state {
                            State::Joined => "closed_after_join",
                            _ => "closed_before_join",
                        };
                        conn.gone(acc, kind);
                        break;
                    }
                    Ok(n) => {
                        let now = Instant::now();
                        acc.bytes_read += n as u64;
                        acc.last_read = now;
                        let now_ns = now.saturating_duration_since(acc.t0).as_nanos() as u64;
                        feed(conn, &rbuf[..n], now_ns, acc, &cfg.room);
                        if conn.state == State::Closing {
                            break;
                        }
                        if n < rbuf.len() && read == Reading::UntilShort {
                            // Edge-triggered: a short read means drained
                            // for now, and more bytes or an end of stream
                            // coming later bring a new event. One already
                            // here does not: see `Reading`.
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let prefix = if conn.state == State::Joined {
                            "read_after_join"
                        } else {
                            "read_before_join"
                        };
                        conn.gone(acc, io_kind(prefix, &e));
                        break;
                    }
                }
            }
        }
        if conn.state != State::Closing && (writable || !conn.out.is_empty()) {
            flush(conn, acc);
        }
        if conn.state == State::Closing {
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        if self.conns.contains(key) {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if !conn.joined {
                self.acc.joining = self.acc.joining.saturating_sub(1);
            } else if !conn.trackers.is_empty() {
                self.departed.push(Departed {
                    trackers: conn.trackers,
                    sender: conn.sender,
                    lagging: conn.lagging,
                    error_line: conn.error_line,
                });
            }
        }
    }

    fn joined(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.state == State::Joined)
            .count()
    }

    fn progress(&mut self, now: Instant, phase: &str) {
        if now < self.next_progress {
            return;
        }
        self.next_progress += Duration::from_secs(1);
        if self.next_progress < now {
            self.next_progress = now + Duration::from_secs(1);
        }
        if !self.cfg.quiet {
            let p99 = if self.acc.lat_second.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{:.3} ms",
                    self.acc.lat_second.quantile(0.99) as f64 / 1000.0
                )
            };
            let rss = match &self.rss {
                Some(r) => format!("  server RSS {} KiB (peak {})", r.last_kib, r.peak_kib),
                None => String::new(),
            };
            eprintln!(
                "[{:6.1}s] {phase:<8} conns {}/{} joined {}  sent/s {}  deliveries/s {}  p99 {}  errors {}{rss}",
                now.duration_since(self.acc.t0).as_secs_f64(),
                self.conns.len(),
                self.cfg.clients,
                self.acc.joined_total,
                self.acc.second_sent,
                self.acc.second_deliveries,
                p99,
                self.acc.failures_total() + self.acc.error_lines,
            );
        }
        self.acc.second_sent = 0;
        self.acc.second_deliveries = 0;
        self.acc.lat_second.reset();
    }

    /// Connects and joins `want` clients (counting those launched before);
    /// returns how long it took.
    fn join_all(&mut self, want: u64, events: &mut Events) -> io::Result<Duration> {
        let start = Instant::now();
        let give_up = start + self.cfg.join_timeout;
        self.connect_origin = start;
        self.connect_base = self.launched;
        loop {
            let now = Instant::now();
            self.launch_due(now, Some(want), None);
            if self.launched >= want && self.acc.joining == 0 {
                return Ok(now - start);
            }
            if now >= give_up {
                self.give_up_joining();
                return Ok(now - start);
            }
            self.progress(now, "joining");
            let mut deadline = give_up.min(self.next_progress);
            if let Some(at) = self.connect_deadline(want) {
                deadline = deadline.min(at);
            }
            self.turn(deadline, events)?;
        }
    }

    /// The join timeout passed: whoever has not joined is a failure.
    fn give_up_joining(&mut self) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state != State::Joined)
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            self.acc.fail("join_timeout");
            self.close(k);
        }
    }

    /// Keeps reading until nothing has come for `--settle` (at most
    /// `SETTLE_MAX`): the notices of the last joins have reached everyone.
    fn settle(&mut self, events: &mut Events) -> io::Result<Duration> {
        let start = Instant::now();
        self.acc.last_read = start;
        loop {
            let now = Instant::now();
            let quiet_at = self.acc.last_read + self.cfg.settle;
            if now >= quiet_at || now >= start + SETTLE_MAX {
                return Ok(now - start);
            }
            self.progress(now, "settle");
            self.turn(
                quiet_at.min(start + SETTLE_MAX).min(self.next_progress),
                events,
            )?;
        }
    }

    /// The first send: the lagging receivers stop reading.
    fn pause_lagging(&mut self, now: Instant) {
        let (cfg, conns) = (self.cfg, &mut self.conns);
        let Some(lag) = self.lag.as_mut() else {
            return;
        };
        for &k in &lag.keys {
            if let Some(c) = conns.get_mut(k) {
                c.paused = true;
            }
        }
        lag.paused_at = Some(now);
        if !cfg.lag_after_send {
            lag.resume_at = Some(now + cfg.lag_pause);
        }
    }

    /// Sending is over (with `--lag-after-send`: and it reached every
    /// reader): the resume time is now known.
    fn sending_done(&mut self, now: Instant) {
        let cfg = self.cfg;
        if let Some(lag) = self.lag.as_mut() {
            if lag.resume_at.is_none() {
                lag.resume_at = Some(now + cfg.lag_pause);
            }
        }
    }

    /// Resumes the lagging receivers once it is time, a batch per turn,
    /// reading each at once (no new event would come for bytes waiting).
    fn resume_due(&mut self, now: Instant) {
        let Some(lag) = self.lag.as_mut() else {
            return;
        };
        if lag.resumed_at.is_some() || lag.resume_at.is_none_or(|at| now < at) {
            return;
        }
        let mut pending = lag
            .to_resume
            .take()
            .unwrap_or_else(|| lag.keys.iter().rev().copied().collect());
        if self.rss.as_ref().is_some_and(|r| r.phase() == "send") {
            // Resuming while the senders still send: still "send".
        }
        let mut batch = Vec::with_capacity(RESUME_BATCH);
        while batch.len() < RESUME_BATCH {
            match pending.pop() {
                Some(k) => batch.push(k),
                None => break,
            }
        }
        if pending.is_empty() {
            lag.resumed_at = Some(now);
        } else {
            lag.to_resume = Some(pending);
        }
        for k in batch {
            if let Some(c) = self.conns.get_mut(k) {
                c.paused = false;
                self.on_event(k, Reading::UntilWouldBlock, true);
            }
        }
    }

    /// Whether some lagging receivers have not resumed yet.
    fn lag_pending(&self) -> bool {
        self.lag.as_ref().is_some_and(|l| l.resumed_at.is_none())
    }

    /// Waits (at most `--drain-timeout`) until every message sent has
    /// reached every receiver that reads: then the server has handled them
    /// all, and the lagging receivers' whole backlog exists. Without such
    /// receivers there is nothing to wait for.
    fn wait_readers(&mut self, events: &mut Events) -> io::Result<()> {
        let give_up = Instant::now() + self.cfg.drain_timeout;
        loop {
            let now = Instant::now();
            let delivered = self.acc.receivers_per_msg == 0
                || self.acc.senders.iter().all(|s| s.ack_base >= s.next_seq);
            if delivered || now >= give_up {
                return Ok(());
            }
            self.progress(now, "fan-out");
            self.turn(give_up.min(self.next_progress), events)?;
        }
    }

    /// After the last send, waits for the lagging receivers to resume.
    fn wait_lag(&mut self, events: &mut Events) -> io::Result<()> {
        if !self.lag_pending() {
            return Ok(());
        }
        self.set_phase("lag");
        while self.lag_pending() {
            let now = Instant::now();
            self.progress(now, "lag");
            self.turn(self.next_progress, events)?;
        }
        Ok(())
    }

    /// Messages each sender sent so far, by global sender number: ours
    /// as counted, another worker's as its schedule plans them (see
    /// src/bench/workers.rs; the parent's accounting uses the real ones).
    fn sent_by(&self) -> Vec<u64> {
        let acc = &self.acc;
        (0..acc.all_senders())
            .map(|g| match acc.local_sender(g) {
                Some(i) => acc.senders[i].next_seq,
                None => acc.plan.map_or(0, |(start, end)| {
                    planned_sends(start, end, self.cfg.rate, acc.all_senders(), g)
                }),
            })
            .collect()
    }

    /// Per global sender, what this process's receivers owed and received
    /// (alive and cut), and what its own senders sent: what `--workers`
    /// adds up.
    fn per_sender(&self) -> super::workers::PerSender {
        let mut p = super::workers::PerSender::new(self.acc.all_senders());
        for (i, snd) in self.acc.senders.iter().enumerate() {
            if let Some(slot) = p.sent.get_mut(self.acc.sender_base + i) {
                *slot = snd.next_seq;
            }
        }
        let alive = self
            .conns
            .iter()
            .filter(|(_, c)| c.joined && !c.trackers.is_empty())
            .map(|(_, c)| (&c.trackers, c.sender, false));
        let gone = self.departed.iter().map(|d| (&d.trackers, d.sender, true));
        for (trackers, own, cut) in alive.chain(gone) {
            for (g, tr) in trackers.iter().enumerate() {
                if own == Some(g) || g >= p.owers.len() {
                    continue;
                }
                let (owers, received) = if cut {
                    (&mut p.cut_owers, &mut p.cut_received)
                } else {
                    (&mut p.owers, &mut p.received)
                };
                owers[g] += 1;
                received[g] += tr.received;
            }
        }
        p
    }

    /// Messages owed to receivers still connected and not yet received.
    fn outstanding(&self) -> u64 {
        let sent_by = self.sent_by();
        self.conns
            .iter()
            .filter(|(_, c)| c.state == State::Joined)
            .map(|(_, c)| owed_missing(&c.trackers, c.sender, &sent_by))
            .sum()
    }

    /// Waits (at most `--drain-timeout`) for the messages still in flight to
    /// reach the receivers still connected.
    fn drain(&mut self, events: &mut Events) -> io::Result<Duration> {
        self.set_phase("drain");
        let start = Instant::now();
        let give_up = start + self.cfg.drain_timeout;
        let expected = self.acc.sent * u64::from(self.acc.receivers_per_msg);
        let mut next_scan = start;
        loop {
            let now = Instant::now();
            if now >= give_up {
                break;
            }
            // Exact and cheap while every receiver owes from 0 and none
            // left; otherwise every receiver's trackers are checked now and
            // then.
            let scan = self.acc.late_trackers > 0
                || !self.departed.is_empty()
                || self.lag.is_some()
                || self.cfg.worker.is_some();
            if !scan && self.acc.deliveries >= expected {
                break;
            }
            if scan && now >= next_scan {
                if self.outstanding() == 0 {
                    break;
                }
                next_scan = now + DRAIN_SCAN;
            }
            self.progress(now, "drain");
            let mut deadline = give_up.min(self.next_progress);
            if scan {
                deadline = deadline.min(next_scan);
            }
            self.turn(deadline, events)?;
        }
        Ok(start.elapsed())
    }

    /// Loss, duplicates and reordering over every receiver, those still
    /// connected and those the server cut (counted apart).
    fn account(&self) -> Tally {
        let sent_by = self.sent_by();
        let mut t = Tally::default();
        let alive = self
            .conns
            .iter()
            .filter(|(_, c)| c.joined && !c.trackers.is_empty())
            .map(|(_, c)| (&c.trackers, c.sender, None));
        let gone = self
            .departed
            .iter()
            .map(|d| (&d.trackers, d.sender, Some(d)));
        for (trackers, own, departed) in alive.chain(gone) {
            let mut missing = 0;
            for (s, tr) in trackers.iter().enumerate() {
                if own == Some(s) {
                    continue;
                }
                let sent = sent_by.get(s).copied().unwrap_or(0);
                t.expected += tr.owed(sent);
                missing += tr.lost(sent);
                t.reordered += tr.reordered;
                t.duplicates += tr.duplicates;
            }
            match departed {
                None => t.lost += missing,
                Some(d) => {
                    t.cut.receivers += 1;
                    t.cut.lagging += u64::from(d.lagging);
                    t.cut.with_error_line += u64::from(d.error_line);
                    t.cut.undelivered += missing;
                }
            }
        }
        t
    }

    fn sample_server(&self) -> Option<ProcSample> {
        if self.cfg.server_pids.is_empty() {
            return None;
        }
        proc_stats::sample_all(&self.cfg.server_pids, proc_stats::sample).ok()
    }
}

/// What one receiver was owed and did not get (yet), over the senders but
/// itself.
fn owed_missing(trackers: &[SeqTracker], own: Option<usize>, sent_by: &[u64]) -> u64 {
    trackers
        .iter()
        .enumerate()
        .filter(|&(s, _)| own != Some(s))
        .map(|(s, t)| t.lost(sent_by.get(s).copied().unwrap_or(0)))
        .sum()
}

/// The run's correctness counts (see `Run::account`).
#[derive(Default)]
struct Tally {
    expected: u64,
    lost: u64,
    reordered: u64,
    duplicates: u64,
    cut: Cut,
}

/// Runs the workload in `cfg` and returns its report.
pub fn run(cfg: &Config) -> io::Result<Report> {
    proc_stats::raise_nofile_limit();
    let mut run = Run::new(cfg)?;
    let mut events = Events::with_capacity(1024);
    run.sample_rss(Instant::now());
    let mut report = match cfg.workload {
        Workload::Fanout => fanout(&mut run, &mut events),
        Workload::Idle => idle(&mut run, &mut events),
        Workload::Churn => churn(&mut run, &mut events),
        Workload::Storm => storm(&mut run, &mut events),
    }?;
    run.sample_rss(Instant::now());
    report.memory = run.rss.take();
    report.read_bytes = run.acc.bytes_read;
    Ok(report)
}

/// Tracks the server's and the bench's own cost over the measured window.
struct CostWindow {
    server_start: Option<ProcSample>,
    server_peak_rss: u64,
    bench_start: Option<ProcSample>,
    perf: Option<proc_stats::SyscallCounter>,
    /// Deliveries so far when the window opened: the server's cost is
    /// divided by the deliveries made over the same window.
    deliveries_start: u64,
}

impl CostWindow {
    fn start(run: &Run) -> CostWindow {
        let server_start = run.sample_server();
        CostWindow {
            perf: proc_stats::SyscallCounter::start(&run.cfg.server_pids),
            server_peak_rss: server_start.map_or(0, |s| s.rss_kib),
            server_start,
            bench_start: proc_stats::sample(std::process::id()).ok(),
            deliveries_start: run.acc.deliveries,
        }
    }

    fn tick(&mut self, run: &Run) {
        if let Some(s) = run.sample_server() {
            self.server_peak_rss = self.server_peak_rss.max(s.rss_kib);
        }
    }

    fn finish(mut self, run: &Run, report: &mut Report) {
        let deliveries = run.acc.deliveries - self.deliveries_start;
        report.cost_window_deliveries = deliveries;
        let perf_writes = self.perf.take().and_then(|p| p.stop());
        if let (Some(a), Some(b)) = (self.server_start, run.sample_server()) {
            self.server_peak_rss = self.server_peak_rss.max(b.rss_kib);
            let cpu_s = (b.cpu_s - a.cpu_s).max(0.0);
            let per = |v: f64| (deliveries > 0).then(|| v / deliveries as f64);
            report.server = Some(ServerCost {
                rss_start_kib: a.rss_kib,
                rss_peak_kib: self.server_peak_rss,
                rss_end_kib: b.rss_kib,
                threads: b.threads,
                cpu_s,
                cpu_us_per_1k_deliveries: per(cpu_s * 1e9),
                write_syscalls: perf_writes.or(match (a.syscw, b.syscw) {
                    (Some(x), Some(y)) => Some(y.saturating_sub(x)),
                    _ => None,
                }),
                write_syscalls_source: if perf_writes.is_some() {
                    "perf"
                } else {
                    "syscw"
                },
                write_syscalls_per_delivery: perf_writes
                    .or(match (a.syscw, b.syscw) {
                        (Some(x), Some(y)) => Some(y.saturating_sub(x)),
                        _ => None,
                    })
                    .and_then(|w| per(w as f64)),
            });
        }
        if let (Some(a), Ok(b)) = (self.bench_start, proc_stats::sample(std::process::id())) {
            report.bench_cpu_s = Some((b.cpu_s - a.cpu_s).max(0.0));
            report.bench_rss_kib = Some(b.rss_kib);
        }
    }
}

fn base_report(run: &Run, join_time: Duration) -> Report {
    let mut r = Report::new(run.cfg.clone());
    r.joined = run.acc.joined_total;
    r.join_s = join_time.as_secs_f64();
    r.join_latency = run.acc.join_latency.summary();
    r
}

/// When the senders in `acc.senders` send.
struct Schedule {
    start_ns: u64,
    /// No message intended at or after this is sent (`--duration`).
    end: Option<Instant>,
    /// At most this many messages in all (`--messages`).
    limit: Option<u64>,
}

/// Makes the clients at `keys` the senders, in order.
fn setup_senders(run: &mut Run, keys: &[usize]) {
    if run.spread.targets > 1 {
        // Other workers' senders are where the spread puts them; ours are
        // where they are (another client takes a sender's place if one
        // failed to join).
        let all = run.acc.senders_total.unwrap_or(keys.len());
        run.acc.sender_target = (0..all).map(|g| run.spread.of_sender(g)).collect();
    }
    for (i, &key) in keys.iter().enumerate() {
        run.acc.senders.push(Sender {
            key,
            next_seq: 0,
            sent_ns: Vec::new(),
            acks: VecDeque::new(),
            ack_base: 0,
        });
        if let Some(c) = run.conns.get_mut(key) {
            c.sender = Some(run.acc.sender_base + i);
            if let Some(t) = run.acc.sender_target.get_mut(run.acc.sender_base + i) {
                *t = c.target;
            }
        }
    }
}

/// Queues and writes every message that is due; returns whether the
/// schedule is done and when the next message is due.
fn send_due(run: &mut Run, now: Instant, sched: &Schedule) -> (bool, Instant) {
    let cfg = run.cfg;
    let now_ns = run.ns(now);
    let n_senders = run.acc.senders.len();
    let (base, all) = (run.acc.sender_base, run.acc.all_senders());
    let mut next_due = sched.end.unwrap_or(now + Duration::from_secs(1));
    let mut all_done = true;
    for i in 0..n_senders {
        let key = run.acc.senders[i].key;
        let Some(conn) = run.conns.get_mut(key) else {
            continue;
        };
        if conn.state != State::Joined {
            continue;
        }
        let acc = &mut run.acc;
        let snd = &mut acc.senders[i];
        loop {
            if sched.limit.is_some_and(|m| acc.sent >= m) {
                break;
            }
            let seq = snd.next_seq;
            let t = if cfg.rate > 0.0 {
                intended_ns(sched.start_ns, cfg.rate, all, base + i, seq)
            } else {
                // Closed loop; with no receiver that acknowledges (all
                // lagging) there is no window to wait for.
                if acc.receivers_per_msg > 0 && seq - snd.ack_base >= cfg.window as u64 {
                    all_done = false;
                    break;
                }
                now_ns
            };
            if sched.end.is_some_and(|e| t >= run_ns(acc.t0, e)) {
                break;
            }
            all_done = false;
            if t > now_ns {
                next_due = next_due.min(acc.t0 + Duration::from_nanos(t));
                break;
            }
            if conn.out.len() - conn.out_pos >= MAX_OUT {
                break;
            }
            acc.payload.clear();
            payload::encode_text(
                Stamp {
                    sender: (base + i) as u32,
                    seq,
                    intended_ns: t,
                },
                cfg.size,
                &mut acc.payload,
            );
            cfg.dialect
                .message(&cfg.room, &acc.payload, &mut acc.enc, &mut conn.out);
            snd.sent_ns.push(now_ns);
            snd.acks.push_back(0);
            snd.next_seq += 1;
            acc.sent += 1;
            acc.second_sent += 1;
            if t >= acc.measure_start_ns && t < acc.measure_end_ns {
                acc.measured_sent += 1;
            }
        }
        flush(conn, acc);
        if conn.state == State::Closing {
            run.close(key);
        }
    }
    if sched.limit.is_some_and(|m| run.acc.sent >= m) {
        all_done = true;
    }
    (all_done, next_due)
}

/// The correctness counts and the chat figures into `report`.
fn fill_chat(run: &Run, report: &mut Report) {
    let tally = run.account();
    let a = &run.acc;
    report.failures = a.failures.clone();
    report.senders = a.senders.len();
    report.sent = a.sent;
    report.deliveries = a.deliveries;
    report.expected_deliveries = tally.expected;
    report.lost = tally.lost;
    report.duplicates = tally.duplicates.max(a.duplicates);
    report.reordered = tally.reordered;
    report.cut = tally.cut;
    report.foreign_lines = a.foreign;
    report.error_lines = a.error_lines;
    report.measured_sent = a.measured_sent;
    report.measured_deliveries = a.measured_deliveries;
    report.latency = Some(a.lat.summary());
    report.latency_uncorrected = Some(a.lat_uncorrected.summary());
    report.hists = Some(super::stats::RunHists {
        latency: a.lat.clone(),
        latency_uncorrected: a.lat_uncorrected.clone(),
        join: a.join_latency.clone(),
        same_target: a.lat_same.clone(),
        cross_target: a.lat_cross.clone(),
    });
    if !a.sender_target.is_empty() {
        report.latency_same_target = Some(a.lat_same.summary());
        report.latency_cross_target = Some(a.lat_cross.summary());
    }
    report.per_sender = Some(run.per_sender());
}

fn fanout(run: &mut Run, events: &mut Events) -> io::Result<Report> {
    let cfg = run.cfg;
    let join_time = run.join_all(cfg.clients as u64, events)?;
    // `--workers`: everyone has joined in every worker; the parent says
    // when sending starts, the same instant for all.
    let go = match &cfg.worker {
        Some(role) => Some(super::workers::ready_and_wait_go(role, run.acc.t0)?),
        None => None,
    };
    let mut report = base_report(run, join_time);
    let mut joined: Vec<usize> = run
        .conns
        .iter()
        .filter(|(_, c)| c.state == State::Joined)
        .map(|(k, _)| k)
        .collect();
    // The senders are the first joined (by client number, which decided
    // their server); `resp`: the publishers, who receive nothing (their
    // messages reach every subscriber).
    joined.sort_by_key(|&k| run.conns[k].nick);
    let resp = cfg.dialect == Dialect::Resp;
    let (n_senders, receivers) = if resp {
        joined.sort_by_key(|&k| !publishes(cfg, run.conns[k].nick));
        let n = joined
            .iter()
            .filter(|&&k| publishes(cfg, run.conns[k].nick))
            .count();
        (n, joined.len() - n)
    } else {
        (
            cfg.senders.min(joined.len()),
            joined.len().saturating_sub(1),
        )
    };
    if joined.len() < 2 || n_senders == 0 || receivers == 0 {
        report.failures = run.acc.failures.clone();
        return Ok(report);
    }
    setup_senders(run, &joined[..n_senders]);
    let tracked = if resp {
        &joined[n_senders..]
    } else {
        &joined[..]
    };
    // Every receiver tracks every sender (of every worker).
    let all_senders = run.acc.all_senders();
    for &key in tracked {
        run.conns[key].trackers = vec![SeqTracker::default(); all_senders];
    }
    // `--lag`: the last receivers to join stop reading (never a sender).
    let n_lag = cfg.lag.map_or(0, |l| l.of(joined.len() - n_senders));
    let lag_keys = joined[joined.len() - n_lag..].to_vec();
    for &k in &lag_keys {
        let c = &mut run.conns[k];
        c.lagging = true;
        c.acks = false;
    }
    run.acc.receivers_per_msg = (receivers - n_lag) as u32;
    if cfg.lag.is_some() {
        // The notices of the last joins still on their way would be part
        // of the backlog measured: let them arrive first.
        run.set_phase("settle");
        report.settle_s = run.settle(events)?.as_secs_f64();
        run.lag = Some(LagState {
            keys: lag_keys,
            paused_at: None,
            resume_at: None,
            to_resume: None,
            resumed_at: None,
        });
    }

    run.set_phase("send");
    let send_start = go.unwrap_or_else(Instant::now);
    run.pause_lagging(send_start);
    let measure_start = send_start + cfg.warmup;
    let send_end = cfg.messages.is_none().then(|| measure_start + cfg.duration);
    run.acc.measure_start_ns = run.ns(measure_start);
    run.acc.measure_end_ns = send_end.map_or(u64::MAX, |e| run.ns(e));
    let sched = Schedule {
        start_ns: run.ns(send_start),
        end: send_end,
        limit: cfg.messages,
    };
    run.acc.plan = Some((sched.start_ns, send_end.map(|e| run.ns(e))));
    let mut cost: Option<CostWindow> = None;
    // Send and receive until the schedule (or the message count) is done.
    let send_stop = loop {
        let now = Instant::now();
        if cost.is_none() && now >= measure_start {
            cost = Some(CostWindow::start(run));
        }
        let (all_done, next_due) = send_due(run, now, &sched);
        if all_done {
            break now;
        }
        if let Some(c) = cost.as_mut() {
            if now >= run.next_progress {
                c.tick(run);
            }
        }
        run.progress(
            now,
            if now < measure_start {
                "warmup"
            } else {
                "measure"
            },
        );
        let deadline = next_due.min(run.next_progress).max(now);
        let deadline = if cost.is_none() {
            deadline.min(measure_start)
        } else {
            deadline
        };
        run.turn(deadline, events)?;
    };
    if run.lag.is_some() && cfg.lag_after_send {
        run.wait_readers(events)?;
    }
    run.sending_done(Instant::now());
    let measure_end = send_end
        .map_or(send_stop, |e| e.min(send_stop))
        .max(measure_start);
    if cfg.messages.is_some() {
        run.acc.measure_end_ns = u64::MAX; // every message sent after warm-up counts
    }
    let cost = cost.unwrap_or_else(|| CostWindow::start(run));

    // The lagging receivers read again, then everything in flight drains.
    run.wait_lag(events)?;
    report.drain_s = run.drain(events)?.as_secs_f64();
    cost.finish(run, &mut report);
    fill_chat(run, &mut report);
    report.measured_s = measure_end.duration_since(measure_start).as_secs_f64();
    report.lag = run.lag.as_ref().map(|l| LagStats {
        receivers: l.keys.len() as u64,
        paused_s: match (l.paused_at, l.resume_at) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        },
    });
    Ok(report)
}

/// The storm: the chatters (`--senders`) join first; then the other
/// clients connect as fast as allowed while the chatters talk, and every
/// client keeps reading. Ends when all have joined (or the join timeout);
/// then the chat drains and the bench reads until the server falls quiet,
/// the server's RSS sampled throughout.
fn storm(run: &mut Run, events: &mut Events) -> io::Result<Report> {
    let cfg = run.cfg;
    let chatters = cfg.senders.min(cfg.clients);
    if chatters > 0 {
        run.join_all(chatters as u64, events)?;
    }
    let chatter_keys: Vec<usize> = run
        .conns
        .iter()
        .filter(|(_, c)| c.state == State::Joined)
        .map(|(k, _)| k)
        .collect();
    let n = chatter_keys.len();
    setup_senders(run, &chatter_keys);
    // `resp`: the chatters are publishers and receive nothing.
    if cfg.dialect != Dialect::Resp {
        for &k in &chatter_keys {
            run.conns[k].trackers = vec![SeqTracker::default(); n];
        }
        run.acc.receivers_per_msg = n.saturating_sub(1) as u32;
    }
    // Everyone who joins from now on owes each chatter's messages from the
    // first one it receives.
    run.acc.late_trackers = n;

    run.set_phase("storm");
    let start = Instant::now();
    let give_up = start + cfg.join_timeout;
    let joined_before = run.acc.joined_total;
    run.connect_origin = start;
    run.connect_base = run.launched;
    run.acc.measure_start_ns = run.ns(start);
    let sched = Schedule {
        start_ns: run.ns(start),
        end: None,
        limit: cfg.messages,
    };
    let want = cfg.clients as u64;
    let mut cost = CostWindow::start(run);
    let storm_end = loop {
        let now = Instant::now();
        run.launch_due(now, Some(want), None);
        let mut deadline = give_up.min(run.next_progress);
        if n > 0 {
            let (_, next_due) = send_due(run, now, &sched);
            deadline = deadline.min(next_due.max(now));
        }
        if run.launched >= want && run.acc.joining == 0 {
            break now;
        }
        if now >= give_up {
            run.give_up_joining();
            break now;
        }
        if now >= run.next_progress {
            cost.tick(run);
        }
        run.progress(now, "storm");
        if let Some(at) = run.connect_deadline(want) {
            deadline = deadline.min(at);
        }
        run.turn(deadline, events)?;
    };
    let storm_s = storm_end.duration_since(start);
    let mut report = base_report(run, storm_s);
    report.joins = run.acc.joined_total - joined_before;
    report.measured_s = storm_s.as_secs_f64();
    if n > 0 {
        report.drain_s = run.drain(events)?.as_secs_f64();
    }
    // The last joins' notices are still queued for the others: the
    // server's memory is measured until they are read.
    run.set_phase("settle");
    report.settle_s = run.settle(events)?.as_secs_f64();
    cost.finish(run, &mut report);
    fill_chat(run, &mut report);
    Ok(report)
}

/// The open-loop schedule: the intended send time of message `seq` of
/// sender `i` among `senders`, at `rate` messages/s in total. The senders
/// take turns, so the total is evenly spaced: message k of the run (k =
/// seq * senders + i) is due at `start + k / rate`.
pub fn intended_ns(start_ns: u64, rate: f64, senders: usize, i: usize, seq: u64) -> u64 {
    let k = seq.saturating_mul(senders as u64).saturating_add(i as u64);
    start_ns.saturating_add((k as f64 * 1e9 / rate) as u64)
}

/// How many messages sender `g` of `senders` sends on the open-loop
/// schedule from `start_ns` until `end_ns` (no end: none are planned).
/// The same sum `send_due` makes, message by message.
pub fn planned_sends(
    start_ns: u64,
    end_ns: Option<u64>,
    rate: f64,
    senders: usize,
    g: usize,
) -> u64 {
    let Some(end) = end_ns else {
        return 0;
    };
    if rate <= 0.0 || senders == 0 || end <= start_ns {
        return 0;
    }
    let due = |seq: u64| intended_ns(start_ns, rate, senders, g, seq) < end;
    // Close to the answer from the rate, then exact by the schedule itself.
    let k = ((end - start_ns) as f64 * rate / 1e9) as u64;
    let mut n = (k / senders as u64).saturating_add(1);
    while n > 0 && !due(n - 1) {
        n -= 1;
    }
    while due(n) {
        n += 1;
    }
    n
}

fn run_ns(t0: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(t0).as_nanos() as u64
}

fn idle(run: &mut Run, events: &mut Events) -> io::Result<Report> {
    let join_time = run.join_all(run.cfg.clients as u64, events)?;
    run.set_phase("idle");
    let mut cost = CostWindow::start(run);
    let end = Instant::now() + run.cfg.duration;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= run.next_progress {
            cost.tick(run);
        }
        run.progress(now, "idle");
        run.turn(end.min(run.next_progress), events)?;
    }
    let mut report = base_report(run, join_time);
    report.held = run.joined() as u64;
    report.measured_s = run.cfg.duration.as_secs_f64();
    cost.finish(run, &mut report);
    report.failures = run.acc.failures.clone();
    report.error_lines = run.acc.error_lines;
    Ok(report)
}

fn churn(run: &mut Run, events: &mut Events) -> io::Result<Report> {
    let cfg = run.cfg;
    let start = Instant::now();
    let end = start + cfg.duration;
    run.connect_origin = start;
    run.set_phase("churn");
    let mut cost = CostWindow::start(run);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        // Everyone who joined leaves at once (closing the socket).
        let done: Vec<usize> = run
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Joined)
            .map(|(k, _)| k)
            .collect();
        for k in done {
            run.close(k);
        }
        // Stuck attempts are failures too.
        let stuck: Vec<usize> = run
            .conns
            .iter()
            .filter(|(_, c)| now.duration_since(c.started) > cfg.join_timeout)
            .map(|(k, _)| k)
            .collect();
        for k in stuck {
            run.acc.fail("join_timeout");
            run.close(k);
        }
        run.launch_due(now, None, Some(cfg.clients));
        if now >= run.next_progress {
            cost.tick(run);
        }
        run.progress(now, "churn");
        let mut deadline = end.min(run.next_progress);
        if run.conns.len() < cfg.clients && !run.joining_full() {
            deadline = deadline.min(run.next_connect_at().max(now));
        }
        run.turn(deadline, events)?;
    }
    let elapsed = start.elapsed();
    let mut report = base_report(run, elapsed);
    report.joins = run.acc.joined_total;
    report.measured_s = elapsed.as_secs_f64();
    report.requested = run.launched as usize;
    cost.finish(run, &mut report);
    report.failures = run.acc.failures.clone();
    report.error_lines = run.acc.error_lines;
    // Attempts still in flight at the end are neither joins nor failures.
    report.in_flight_at_end = run.conns.len() as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_evenly_spaced_across_senders() {
        // 1000 msg/s over 4 senders: one message every 1 ms, round robin.
        let t = |i, seq| intended_ns(5_000, 1000.0, 4, i, seq);
        assert_eq!(t(0, 0), 5_000);
        assert_eq!(t(1, 0), 1_005_000);
        assert_eq!(t(3, 0), 3_005_000);
        assert_eq!(t(0, 1), 4_005_000);
        assert_eq!(t(2, 10), 5_000 + 42_000_000);
        // Each sender alone runs at rate / senders.
        assert_eq!(t(1, 250) - t(1, 0), 1_000_000_000);
    }

    #[test]
    fn planned_sends_match_the_schedule() {
        for (rate, senders, start, end) in [
            (1000.0, 4, 5_000, 1_000_005_000),
            (333.0, 3, 0, 2_500_000_000),
            (7.0, 5, 17, 999_999_999),
        ] {
            for g in 0..senders {
                let naive = (0..)
                    .take_while(|&seq| intended_ns(start, rate, senders, g, seq) < end)
                    .count() as u64;
                assert_eq!(planned_sends(start, Some(end), rate, senders, g), naive);
            }
        }
        assert_eq!(planned_sends(0, None, 1000.0, 4, 0), 0);
    }

    #[test]
    fn feed_splits_lines_across_reads() {
        let mut events = Vec::new();
        let stream = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            TcpStream::from_std(s)
        };
        let mut conn = Conn::new(stream, 1, Dialect::Line, 0);
        conn.state = State::Joining;
        conn.trackers = vec![SeqTracker::default()];
        let mut acc = Run::new(&Config::new(
            Workload::Fanout,
            "127.0.0.1:1".parse().unwrap(),
        ))
        .unwrap()
        .acc;
        acc.senders.push(Sender {
            key: 0,
            next_seq: 2,
            sent_ns: vec![0, 0],
            acks: VecDeque::from([0, 0]),
            ack_base: 0,
        });
        acc.receivers_per_msg = 1;
        acc.measure_start_ns = 0;
        // The nickname went out on connect; the greeting changes nothing.
        let room = "#lobby";
        feed(&mut conn, b"* Welcome\n* The room con", 10, &mut acc, room);
        assert_eq!(conn.state, State::Joining);
        feed(&mut conn, b"tains: a\n[a] b0:0:0:x", 10, &mut acc, room);
        assert_eq!(conn.state, State::Joined);
        feed(
            &mut conn,
            b"xx\r\n[a] b0:1:0:\n[a] b0:1:0:\n[a] hello\n",
            2_000_000,
            &mut acc,
            room,
        );
        events.push((acc.deliveries, acc.duplicates, acc.foreign));
        assert_eq!(events, [(2, 1, 1)]);
        assert!(
            acc.senders[0].acks.is_empty(),
            "both messages fully delivered"
        );
        assert_eq!(acc.senders[0].ack_base, 2);
        assert_eq!(acc.lat.len(), 2);
    }
}
