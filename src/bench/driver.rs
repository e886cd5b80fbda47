//! The poll loop: one thread, one `mio::Poll`, every client connection.
//!
//! The loop owns the connections (a slab indexed by token), a single 64 KiB
//! read buffer shared by all of them (a partial line is the only per-client
//! copy), and a timerfd that wakes it for the next scheduled send, connect or
//! progress line. Each run goes through phases: connect and join everyone,
//! then the workload (fanout sends, idle holds, churn cycles), then for
//! fanout a bounded drain of in-flight messages before loss is counted.
//!
//! Sending is open loop: message k of the run has an intended send time fixed
//! in advance from `--rate`, and latency is measured from that time, so a
//! stall (on either side) shows up in the figures instead of silently
//! delaying the next sends (coordinated omission, as wrk2 avoids it). The
//! latency from the moment the bench actually wrote the message is kept too.

use super::cli::{Config, Workload};
use super::dialect::{Dialect, Line};
use super::net::{self, ConnectState, Timer};
use super::payload::{self, Stamp};
use super::proc_stats::{self, ProcSample};
use super::report::{Report, ServerCost};
use super::stats::LatencyHist;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
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
    /// The tail of a line split across reads.
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
}

impl Acc {
    fn fail(&mut self, kind: impl Into<String>) {
        *self.failures.entry(kind.into()).or_insert(0) += 1;
    }

    fn failures_total(&self) -> u64 {
        self.failures.values().sum()
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

/// The nickname of client `n`: unique per bench process, alphanumeric, so
/// any Budget Chat server accepts it.
fn nick(n: u64) -> String {
    format!("lb{}n{n}", std::process::id())
}

/// Handles one complete line from `conn`.
fn on_line(conn: &mut Conn, line: &[u8], now_ns: u64, acc: &mut Acc) {
    let parsed = conn.dialect.classify(line);
    if let Line::Ping(token) = parsed {
        // IRC servers disconnect clients that do not answer.
        conn.out.extend_from_slice(b"PONG :");
        conn.out.extend_from_slice(token);
        conn.out.extend_from_slice(b"\r\n");
        return;
    }
    match conn.state {
        State::Joining => match parsed {
            Line::Joined => {
                conn.state = State::Joined;
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
            Line::Refused(_) => acc.error_lines += 1,
            _ => {}
        },
        State::Connecting | State::Closing => {}
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
    let snd = &mut acc.senders[s];
    if seq >= snd.ack_base {
        if let Some(n) = snd.acks.get_mut((seq - snd.ack_base) as usize) {
            *n += 1;
        }
        while snd.acks.front() == Some(&acc.receivers_per_msg) {
            snd.acks.pop_front();
            snd.ack_base += 1;
        }
    }
    let corrected = now_ns.saturating_sub(intended_ns) / 1000;
    acc.lat_second.record_us(corrected);
    if intended_ns >= acc.measure_start_ns && intended_ns < acc.measure_end_ns {
        acc.measured_deliveries += 1;
        acc.lat.record_us(corrected);
        if let Some(&actual) = snd.sent_ns.get(seq as usize) {
            acc.lat_uncorrected
                .record_us(now_ns.saturating_sub(actual) / 1000);
        }
    }
}

/// Splits `data` into lines for `conn`, keeping a trailing partial line.
fn feed(conn: &mut Conn, data: &[u8], now_ns: u64, acc: &mut Acc) {
    let mut rest = data;
    if !conn.partial.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let mut line = std::mem::take(&mut conn.partial);
                line.extend_from_slice(&rest[..i]);
                on_line(conn, &line, now_ns, acc);
                line.clear();
                conn.partial = line;
                rest = &rest[i + 1..];
            }
            None => {
                conn.partial.extend_from_slice(rest);
                cap_partial(conn);
                return;
            }
        }
    }
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        on_line(conn, &rest[..i], now_ns, acc);
        rest = &rest[i + 1..];
    }
    conn.partial.extend_from_slice(rest);
    cap_partial(conn);
}

/// A line longer than this is garbage for the bench; keep memory bounded.
fn cap_partial(conn: &mut Conn) {
    if conn.partial.len() > 1 << 20 {
        conn.partial.clear();
    }
}

/// Writes what is queued; errors close the connection.
fn flush(conn: &mut Conn, acc: &mut Acc) {
    while conn.out_pos < conn.out.len() {
        match conn.stream.write(&conn.out[conn.out_pos..]) {
            Ok(0) => {
                acc.fail("write_zero");
                conn.state = State::Closing;
                return;
            }
            Ok(n) => conn.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                acc.fail(io_kind("write", &e));
                conn.state = State::Closing;
                return;
            }
        }
    }
    conn.out.clear();
    conn.out_pos = 0;
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
}

impl<'c> Run<'c> {
    fn new(cfg: &'c Config) -> io::Result<Run<'c>> {
        let poll = Poll::new()?;
        let timer = Timer::new(poll.registry(), TIMER)?;
        let t0 = Instant::now();
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
            },
            next_nick: 0,
            launched: 0,
            connect_origin: t0,
            connect_base: 0,
            next_progress: t0 + Duration::from_secs(1),
        })
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.acc.t0).as_nanos() as u64
    }

    /// Starts one connection.
    fn launch(&mut self) {
        let source = if self.cfg.source_addrs.is_empty() {
            None
        } else {
            Some(self.cfg.source_addrs[self.launched as usize % self.cfg.source_addrs.len()])
        };
        self.launched += 1;
        let mut stream = match net::connect(self.cfg.addr, source) {
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
        entry.insert(Conn {
            stream,
            state: State::Connecting,
            nick: self.next_nick,
            partial: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            sender: None,
            trackers: Vec::new(),
            started: Instant::now(),
            dialect: self.cfg.dialect,
        });
    }

    /// When the next connection is due under `--connect-rate`.
    fn next_connect_at(&self) -> Instant {
        let n = self.launched - self.connect_base;
        self.connect_origin + Duration::from_secs_f64(n as f64 / self.cfg.connect_rate)
    }

    /// Starts the connections that are due, while fewer than `limit` were launched
    /// (fanout, idle) or fewer than `limit` are open (churn).
    fn launch_due(&mut self, now: Instant, limit_total: Option<u64>, limit_open: Option<usize>) {
        for _ in 0..CONNECT_BATCH {
            if limit_total.is_some_and(|l| self.launched >= l)
                || limit_open.is_some_and(|l| self.conns.len() >= l)
                || self.next_connect_at() > now
            {
                return;
            }
            self.launch();
        }
    }

    /// Waits for events (or the deadline) and handles them.
    fn turn(&mut self, deadline: Instant, events: &mut Events) -> io::Result<()> {
        let now = Instant::now();
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
            self.on_event(
                ev.token().0,
                ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                ev.is_writable() || ev.is_error(),
            );
        }
        Ok(())
    }

    fn on_event(&mut self, key: usize, readable: bool, writable: bool) {
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
                    // SYN-cookie handshake under a connect burst.
                    let dialect = conn.dialect;
                    dialect.join_lines(&nick(conn.nick), &cfg.room, &mut conn.out);
                    conn.state = State::Joining;
                }
            }
        }
        if readable {
            loop {
                match conn.stream.read(rbuf) {
                    Ok(0) => {
                        acc.fail(match conn.state {
                            State::Joined => "closed_after_join",
                            _ => "closed_before_join",
                        });
                        conn.state = State::Closing;
                        break;
                    }
                    Ok(n) => {
                        let now_ns = acc.t0.elapsed().as_nanos() as u64;
                        feed(conn, &rbuf[..n], now_ns, acc);
                        if conn.state == State::Closing {
                            break;
                        }
                        if n < rbuf.len() {
                            // Edge-triggered: a short read usually means
                            // drained; one more read confirms cheaply only
                            // when the buffer was filled.
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
                        acc.fail(io_kind(prefix, &e));
                        conn.state = State::Closing;
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
            eprintln!(
                "[{:6.1}s] {phase:<8} conns {}/{} joined {}  sent/s {}  deliveries/s {}  p99 {}  errors {}",
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

    /// Connects and joins `--clients` clients; returns how long it took.
    fn join_all(&mut self, events: &mut Events) -> io::Result<Duration> {
        let start = Instant::now();
        let give_up = start + self.cfg.join_timeout;
        self.connect_origin = start;
        let want = self.cfg.clients as u64;
        loop {
            let now = Instant::now();
            self.launch_due(now, Some(want), None);
            let pending = self
                .conns
                .iter()
                .filter(|(_, c)| c.state != State::Joined)
                .count();
            if self.launched >= want && pending == 0 {
                return Ok(now - start);
            }
            if now >= give_up {
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
                return Ok(now - start);
            }
            self.progress(now, "joining");
            let mut deadline = give_up.min(self.next_progress);
            if self.launched < want {
                deadline = deadline.min(self.next_connect_at());
            }
            self.turn(deadline, events)?;
        }
    }

    fn sample_server(&self) -> Option<ProcSample> {
        self.cfg.server_pid.and_then(|p| proc_stats::sample(p).ok())
    }
}

/// Runs the workload in `cfg` and returns its report.
pub fn run(cfg: &Config) -> io::Result<Report> {
    proc_stats::raise_nofile_limit();
    let mut run = Run::new(cfg)?;
    let mut events = Events::with_capacity(1024);
    match cfg.workload {
        Workload::Fanout => fanout(&mut run, &mut events),
        Workload::Idle => idle(&mut run, &mut events),
        Workload::Churn => churn(&mut run, &mut events),
    }
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
            perf: run
                .cfg
                .server_pid
                .and_then(proc_stats::SyscallCounter::start),
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

fn fanout(run: &mut Run, events: &mut Events) -> io::Result<Report> {
    let cfg = run.cfg;
    let join_time = run.join_all(events)?;
    let mut report = base_report(run, join_time);
    let joined: Vec<usize> = run
        .conns
        .iter()
        .filter(|(_, c)| c.state == State::Joined)
        .map(|(k, _)| k)
        .collect();
    let n_senders = cfg.senders.min(joined.len());
    if joined.len() < 2 || n_senders == 0 {
        report.failures = run.acc.failures.clone();
        return Ok(report);
    }
    run.acc.receivers_per_msg = (joined.len() - 1) as u32;
    for (i, &key) in joined.iter().take(n_senders).enumerate() {
        run.acc.senders.push(Sender {
            key,
            next_seq: 0,
            sent_ns: Vec::new(),
            acks: VecDeque::new(),
            ack_base: 0,
        });
        run.conns[key].sender = Some(i);
    }
    for &key in &joined {
        run.conns[key].trackers = vec![SeqTracker::default(); n_senders];
    }

    let send_start = Instant::now();
    let measure_start = send_start + cfg.warmup;
    let send_end = cfg.messages.is_none().then(|| measure_start + cfg.duration);
    run.acc.measure_start_ns = run.ns(measure_start);
    run.acc.measure_end_ns = send_end.map_or(u64::MAX, |e| run.ns(e));
    let send_start_ns = run.ns(send_start);
    let intended = |seq: u64, i: usize| intended_ns(send_start_ns, cfg.rate, n_senders, i, seq);
    let mut cost: Option<CostWindow> = None;
    // Send and receive until the schedule (or the message count) is done.
    let send_stop = loop {
        let now = Instant::now();
        let now_ns = run.ns(now);
        if cost.is_none() && now >= measure_start {
            cost = Some(CostWindow::start(run));
        }
        let mut next_due = send_end.unwrap_or(now + Duration::from_secs(1));
        let mut all_done = true;
        for i in 0..run.acc.senders.len() {
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
                if cfg.messages.is_some_and(|m| acc.sent >= m) {
                    break;
                }
                let seq = snd.next_seq;
                let t = if cfg.rate > 0.0 {
                    intended(seq, i)
                } else {
                    if seq - snd.ack_base >= cfg.window as u64 {
                        all_done = false;
                        break;
                    }
                    now_ns
                };
                if send_end.is_some_and(|e| t >= run_ns(acc.t0, e)) {
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
                cfg.dialect.message_prefix(&cfg.room, &mut conn.out);
                payload::encode(
                    Stamp {
                        sender: i as u32,
                        seq,
                        intended_ns: t,
                    },
                    cfg.size,
                    &mut conn.out,
                );
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
        if cfg.messages.is_some_and(|m| run.acc.sent >= m) {
            all_done = true;
        }
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
    let measure_end = send_end
        .map_or(send_stop, |e| e.min(send_stop))
        .max(measure_start);
    if cfg.messages.is_some() {
        run.acc.measure_end_ns = u64::MAX; // every message sent after warm-up counts
    }
    let cost = cost.unwrap_or_else(|| CostWindow::start(run));

    // Drain: wait (bounded) for the messages still in flight.
    let drain_start = Instant::now();
    let expected = run.acc.sent * u64::from(run.acc.receivers_per_msg);
    loop {
        let now = Instant::now();
        if run.acc.deliveries >= expected || now >= drain_start + cfg.drain_timeout {
            break;
        }
        run.progress(now, "drain");
        let deadline = (drain_start + cfg.drain_timeout).min(run.next_progress);
        run.turn(deadline, events)?;
    }
    report.drain_s = drain_start.elapsed().as_secs_f64();
    cost.finish(run, &mut report);

    // Loss: per receiver, per sender, what was sent and not received.
    let sent_by: Vec<u64> = run.acc.senders.iter().map(|s| s.next_seq).collect();
    let (mut lost, mut reordered, mut dups) = (0u64, 0u64, 0u64);
    let mut receivers_alive = 0u64;
    for &key in &joined {
        match run.conns.get(key) {
            Some(conn) if conn.state == State::Joined => {
                receivers_alive += 1;
                for (s, t) in conn.trackers.iter().enumerate() {
                    if conn.sender == Some(s) {
                        continue;
                    }
                    lost += t.lost(sent_by[s]);
                    reordered += t.reordered;
                    dups += t.duplicates;
                }
            }
            _ => {
                // A receiver that disconnected lost what it did not get;
                // its trackers went with it, so count from the totals.
            }
        }
    }
    // Whatever a vanished receiver did not get is the rest of the shortfall.
    let accounted = run.acc.deliveries + lost;
    lost += expected.saturating_sub(accounted);
    let _ = receivers_alive;

    let a = &run.acc;
    report.failures = a.failures.clone();
    report.senders = n_senders;
    report.sent = a.sent;
    report.deliveries = a.deliveries;
    report.expected_deliveries = expected;
    report.lost = lost;
    report.duplicates = dups.max(a.duplicates);
    report.reordered = reordered;
    report.foreign_lines = a.foreign;
    report.error_lines = a.error_lines;
    report.measured_s = measure_end.duration_since(measure_start).as_secs_f64();
    report.measured_sent = a.measured_sent;
    report.measured_deliveries = a.measured_deliveries;
    report.latency = Some(a.lat.summary());
    report.latency_uncorrected = Some(a.lat_uncorrected.summary());
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

fn run_ns(t0: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(t0).as_nanos() as u64
}

fn idle(run: &mut Run, events: &mut Events) -> io::Result<Report> {
    let join_time = run.join_all(events)?;
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
        if run.conns.len() < cfg.clients {
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
    fn feed_splits_lines_across_reads() {
        let mut events = Vec::new();
        let stream = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            TcpStream::from_std(s)
        };
        let mut conn = Conn {
            stream,
            state: State::Joining,
            nick: 1,
            partial: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            sender: None,
            trackers: vec![SeqTracker::default()],
            started: Instant::now(),
            dialect: Dialect::Line,
        };
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
        feed(&mut conn, b"* Welcome\n* The room con", 10, &mut acc);
        assert_eq!(conn.state, State::Joining);
        feed(&mut conn, b"tains: a\n[a] b0:0:0:x", 10, &mut acc);
        assert_eq!(conn.state, State::Joined);
        feed(
            &mut conn,
            b"xx\r\n[a] b0:1:0:\n[a] b0:1:0:\n[a] hello\n",
            2_000_000,
            &mut acc,
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
