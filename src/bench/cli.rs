//! The command line: `loopchat-bench [WORKLOAD] [ADDR:PORT[,ADDR:PORT...]] [options]`.
//!
//! Parsing is separate from running so the benches can build a [`Config`]
//! directly and tests can check usage errors without a server.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// N clients join, S of them send, everyone receives.
    Fanout,
    /// N clients join and stay silent (memory per connection).
    Idle,
    /// Clients connect, join and leave, as fast as allowed.
    Churn,
    /// N clients join as fast as allowed and keep reading, while the first
    /// S of them (joined beforehand) chat: join rate and server memory.
    Storm,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fanout => "fanout",
            Workload::Idle => "idle",
            Workload::Churn => "churn",
            Workload::Storm => "storm",
        }
    }
}

/// `--lag`: how many receivers stop reading, as a count or a share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lag {
    Count(usize),
    /// 0.0 to 1.0 of the receivers.
    Fraction(f64),
}

impl Lag {
    /// `10` (a count), `0.25` or `25%` (a share of the receivers; `1.0` or
    /// `100%` is all of them).
    pub fn parse(text: &str) -> Option<Lag> {
        if let Some(pct) = text.strip_suffix('%') {
            let v: f64 = pct.parse().ok()?;
            return (0.0..=100.0)
                .contains(&v)
                .then_some(Lag::Fraction(v / 100.0));
        }
        if text.contains('.') {
            let v: f64 = text.parse().ok()?;
            return (0.0..=1.0).contains(&v).then_some(Lag::Fraction(v));
        }
        text.parse().ok().map(Lag::Count)
    }

    /// How many of `receivers` lag (a share rounds to the nearest).
    pub fn of(self, receivers: usize) -> usize {
        match self {
            Lag::Count(n) => n.min(receivers),
            Lag::Fraction(f) => ((receivers as f64 * f).round() as usize).min(receivers),
        }
    }
}

/// Everything a run needs. [`Config::new`] gives the command line's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    pub workload: Workload,
    /// The first (or only) server.
    pub addr: SocketAddr,
    /// More servers (`ADDR:PORT,ADDR:PORT`, e.g. processes bridged through
    /// Redis): the clients spread over `addr` and these (see
    /// [`super::targets`]).
    pub more_addrs: Vec<SocketAddr>,
    /// Clients to join (fanout, idle); connections in flight at once (churn).
    pub clients: usize,
    pub senders: usize,
    /// Total messages per second across the senders; 0 = closed loop.
    pub rate: f64,
    /// Closed loop: messages per sender not yet delivered to everyone.
    pub window: usize,
    /// Payload bytes (without the newline).
    pub size: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Total messages to send instead of a duration.
    pub messages: Option<u64>,
    /// New connections per second; infinite = as fast as the loop can.
    pub connect_rate: f64,
    /// Connections at most between connect and joined (storm, fanout, idle);
    /// `None`: no limit.
    pub max_joining: Option<usize>,
    /// Local addresses to bind client sockets to, round-robin.
    pub source_addrs: Vec<IpAddr>,
    /// How long to wait for every client to join.
    pub join_timeout: Duration,
    /// How long to wait for in-flight messages after sending stops.
    pub drain_timeout: Duration,
    pub allow_loss: bool,
    pub json: bool,
    /// No progress lines on stderr.
    pub quiet: bool,
    /// `--server-pid`: the server processes sampled (summed over them).
    pub server_pids: Vec<u32>,
    /// `--dialect`: the grammar the clients speak.
    pub dialect: super::dialect::Dialect,
    /// `--room`: the IRC channel to join and talk in, the Redis channel.
    pub room: String,
    /// `--lag`: fanout receivers that stop reading while the senders send.
    pub lag: Option<Lag>,
    /// `--lag-pause`: how long they stop reading (from the first send; with
    /// `lag_after_send`, until that long after the last message reached
    /// every receiver still reading: the server has handled them all).
    pub lag_pause: Duration,
    pub lag_after_send: bool,
    /// `--settle`: how long nothing must come from the server before the
    /// first send with `--lag`, and before a storm's end is measured.
    pub settle: Duration,
    /// `--rss-interval`: how often the server's RSS is sampled with
    /// `--server-pid`; zero: once a second.
    pub rss_interval: Duration,
    /// `--irc-oper NAME:PASSWORD`: IRC clients become operators after
    /// registering (before joining), and `--irc-umode` modes they then set
    /// on themselves (ngIRCd's `+F`, relaxed flood protection).
    pub irc_oper: Option<(String, String)>,
    pub irc_umode: Option<String>,
    /// `--hist-out`: where to write the corrected latency histogram
    /// (HdrHistogram's `.hgrm` text, milliseconds).
    pub hist_out: Option<std::path::PathBuf>,
    /// `--workers`: bench processes sharing the clients and the senders (1:
    /// this process alone).
    pub workers: usize,
    /// The hidden `--worker I,N,T0`: this process is worker I of N, its
    /// clock's origin is T0 (the parent's CLOCK_MONOTONIC, ns), and
    /// `clients` and `senders` are already its share.
    pub worker: Option<super::workers::Role>,
}

impl Config {
    /// Whether connects are not paced at all.
    pub fn connect_unpaced(&self) -> bool {
        self.connect_rate.is_infinite()
    }

    /// Every server the clients connect to, `addr` first.
    pub fn targets(&self) -> Vec<SocketAddr> {
        std::iter::once(self.addr)
            .chain(self.more_addrs.iter().copied())
            .collect()
    }

    /// Server `i` of [`Config::targets`].
    pub fn target(&self, i: usize) -> SocketAddr {
        i.checked_sub(1)
            .and_then(|j| self.more_addrs.get(j).copied())
            .unwrap_or(self.addr)
    }
}

impl Config {
    pub fn new(workload: Workload, addr: SocketAddr) -> Config {
        Config {
            workload,
            addr,
            more_addrs: Vec::new(),
            clients: 100,
            senders: 4,
            rate: 1000.0,
            window: 16,
            size: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            messages: None,
            connect_rate: if workload == Workload::Storm {
                f64::INFINITY
            } else {
                1000.0
            },
            max_joining: None,
            source_addrs: Vec::new(),
            join_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            allow_loss: false,
            json: false,
            quiet: false,
            server_pids: Vec::new(),
            dialect: super::dialect::Dialect::Line,
            room: crate::config::DEFAULT_ROOM.to_string(),
            lag: None,
            lag_pause: Duration::from_secs(2),
            lag_after_send: false,
            settle: Duration::from_millis(200),
            rss_interval: Duration::from_millis(10),
            irc_oper: None,
            irc_umode: None,
            hist_out: None,
            workers: 1,
            worker: None,
        }
    }
}

/// The outcome of parsing the command line.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    /// `--help`: print this and exit 0.
    Help(String),
}

/// A bad command line: print it on one line (with a pointer to `--help`)
/// and exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt(
        "c",
        "clients",
        "clients to join (default 100); churn: connections in flight; storm: all the clients, chatters included",
        "N",
    );
    o.optopt(
        "s",
        "senders",
        "fanout: how many of the clients send (default 4); storm: chatters, joined before the storm, sending during it (default 0)",
        "S",
    );
    o.optopt("r", "rate", "fanout, storm: total messages/s across senders, open loop; 0 = closed loop, as fast as the window allows (fanout only; default 1000)", "MSGS");
    o.optopt(
        "",
        "window",
        "closed loop: messages per sender not yet delivered to every receiver (default 16)",
        "N",
    );
    o.optopt("", "size", "payload bytes (default 64)", "BYTES");
    o.optopt("d", "duration", "measured seconds (default 10)", "SECS");
    o.optopt(
        "",
        "warmup",
        "seconds of load before measuring (default 2)",
        "SECS",
    );
    o.optopt(
        "m",
        "messages",
        "fanout: send this many messages in total instead of a duration",
        "N",
    );
    o.optopt(
        "",
        "connect-rate",
        "new connections per second, or max: as fast as the bench can (default 1000; storm: max)",
        "N",
    );
    o.optopt(
        "",
        "max-joining",
        "connections at most between connect and joined, at any time (default: no limit)",
        "N",
    );
    o.optopt(
        "",
        "lag",
        "fanout: receivers that stop reading while the senders send: a count (10), or a share of the receivers (0.25, 25%); a receiver the server cuts for it is reported apart from loss",
        "N|SHARE",
    );
    o.optopt(
        "",
        "lag-pause",
        "seconds the --lag receivers stop reading, from the first send (default 2)",
        "SECS",
    );
    o.optflag(
        "",
        "lag-after-send",
        "the --lag receivers stop reading from the first send until --lag-pause seconds after the last message reached every receiver still reading (the whole backlog waits for them; with none reading, after the last send)",
    );
    o.optopt(
        "",
        "settle",
        "lag: before the first send, and storm: after the last join, read until nothing came from the server for this long (default 0.2; more than 1 lets loopchat trim its heap, which it does after 1 s idle)",
        "SECS",
    );
    o.optopt(
        "",
        "rss-interval",
        "with --server-pid: milliseconds between samples of the server's RSS (default 10; 0: once a second)",
        "MS",
    );
    o.optopt(
        "",
        "source-addrs",
        "bind client sockets round-robin to these local addresses",
        "IP,IP,...",
    );
    o.optopt(
        "",
        "join-timeout",
        "seconds to wait for every client to join (default 30)",
        "SECS",
    );
    o.optopt(
        "",
        "drain-timeout",
        "seconds to wait for in-flight messages after sending (default 5)",
        "SECS",
    );
    o.optopt(
        "",
        "dialect",
        "what the clients speak: line (loopchat, Budget Chat; default); irc (NICK/USER, JOIN --room, PRIVMSG); ws (the line grammar over WebSocket, GET /ws, a line per text frame); ws-irc (IRC over WebSocket, subprotocol text.ircv3.net); resp (Redis pub/sub: the --senders publish on connections of their own, the other clients SUBSCRIBE to --room)",
        "NAME",
    );
    o.optopt(
        "",
        "room",
        "the room to join and talk in (default #lobby; line, ws: with /join after the nickname); resp: the channel (any name)",
        "NAME",
    );
    o.optopt(
        "",
        "server-pid",
        "sample the server's RSS (peak, by phase, VmHWM), CPU and write syscalls from /proc; several servers: their PIDs, comma-separated, summed (threads: the most of any)",
        "PID[,PID...]",
    );
    o.optopt(
        "",
        "irc-oper",
        "irc, ws-irc: after registering, every client sends OPER NAME PASSWORD (before joining)",
        "NAME:PASSWORD",
    );
    o.optopt(
        "",
        "irc-umode",
        "irc, ws-irc: after registering (and --irc-oper), every client sends MODE <nick> MODES, e.g. +F: ngIRCd's relaxed flood protection, for operators",
        "MODES",
    );
    o.optopt(
        "",
        "hist-out",
        "write the corrected latency histogram to FILE in HdrHistogram's percentile-distribution text (.hgrm, milliseconds, as wrk2 prints it)",
        "FILE",
    );
    o.optopt(
        "",
        "workers",
        "fanout, open loop: run N bench processes (each one thread, one poll) that share the clients and the senders, start sending at the same instant, and merge their histograms and loss accounting into one report (default 1)",
        "N",
    );
    // Internal: a worker of `--workers` (see src/bench/workers.rs).
    o.optopt("", "worker", "", "I,N,T0");
    o.optflag(
        "",
        "allow-loss",
        "exit 0 even with loss, duplicates, reordering or failed joins",
    );
    o.optflag("", "json", "print one JSON object instead of the table");
    o.optflag("q", "quiet", "no progress lines on stderr");
    o.optflag("h", "help", "print this help");
    o
}

pub fn usage() -> String {
    options().usage(
        "Usage: loopchat-bench [fanout|idle|churn|storm] [ADDR:PORT[,ADDR:PORT...]] [options]\n\n\
         Load generator for loopchat and any Budget Chat, IRC or Redis server\n\
         (default: fanout against 127.0.0.1:7878). Exit status: 0 clean, 1 loss/\n\
         duplicates/reordering/failed joins, 2 bad usage.\n\n\
         Several servers (loopchat processes bridged with --redis): give a\n\
         comma-separated list, 127.0.0.1:7001,127.0.0.1:7002. Senders and\n\
         receivers are each spread round-robin over the list (sender k on\n\
         server k mod N; numbered across --workers too), loss is counted over\n\
         all of them, and the report adds the latency of same-server and\n\
         cross-server deliveries.\n\n\
         Dialects (--dialect): line, irc, ws and ws-irc (the same over WebSocket,\n\
         GET /ws), resp (Redis pub/sub). In resp the first --senders clients only\n\
         PUBLISH and the others SUBSCRIBE, so each message is owed to --clients\n\
         minus --senders receivers (elsewhere to every other client).\n\n\
         storm: --clients join as fast as the bench can (or at --connect-rate)\n\
         and keep reading; the first --senders of them join first and chat at\n\
         --rate during the storm, every delivery accounted for. Reports the\n\
         join rate and, with --server-pid, the server's peak RSS.",
    )
}

fn num<T: std::str::FromStr>(m: &getopts::Matches, name: &str) -> Result<Option<T>, UsageError> {
    match m.opt_str(name) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| UsageError(format!("--{name}: not a valid number: {s:?}"))),
    }
}

fn secs(m: &getopts::Matches, name: &str) -> Result<Option<Duration>, UsageError> {
    match num::<f64>(m, name)? {
        None => Ok(None),
        Some(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => {
            Ok(Some(Duration::from_secs_f64(v)))
        }
        Some(v) => Err(UsageError(format!("--{name}: out of range: {v}"))),
    }
}

/// A free argument that is not a workload: it must be `ADDR:PORT`. Says
/// which mistake it looks like (a port left out, or a misspelt workload).
fn free_address(arg: &str) -> Result<String, UsageError> {
    if arg.contains(':') && !arg.ends_with(':') && arg.parse::<IpAddr>().is_err() {
        return Ok(arg.to_string());
    }
    if arg.parse::<u16>().is_ok() {
        return Err(UsageError(format!(
            "{arg:?} is a port without an address: give ADDR:PORT (e.g. 127.0.0.1:{arg})"
        )));
    }
    let looks_like_host = arg.parse::<IpAddr>().is_ok()
        || arg.ends_with(':')
        || arg.contains('.')
        || arg == "localhost";
    if looks_like_host {
        let host = arg.trim_end_matches(':');
        Err(UsageError(format!(
            "{arg:?} has no port: give ADDR:PORT (e.g. {host}:7878, or [::1]:7878 for IPv6)"
        )))
    } else {
        Err(UsageError(format!(
            "unknown workload {arg:?}: fanout, idle, churn or storm"
        )))
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Parsed, UsageError> {
    let m = options()
        .parse(args)
        .map_err(|e| UsageError(e.to_string()))?;
    if m.opt_present("help") {
        return Ok(Parsed::Help(usage()));
    }
    let mut workload = None;
    let mut addr_text = None;
    for arg in &m.free {
        let w = match arg.as_str() {
            "fanout" => Some(Workload::Fanout),
            "idle" => Some(Workload::Idle),
            "churn" => Some(Workload::Churn),
            "storm" => Some(Workload::Storm),
            _ => None,
        };
        match (w, workload) {
            (Some(w), None) => workload = Some(w),
            (Some(w), Some(first)) => {
                return Err(UsageError(format!(
                    "two workloads given: {} and {}; choose one",
                    first.name(),
                    w.name()
                )));
            }
            (None, _) => {
                if let Some(first) = &addr_text {
                    return Err(UsageError(format!(
                        "two addresses given: {first} and {arg}; for several servers give one comma-separated list ({first},{arg})"
                    )));
                }
                addr_text = Some(arg.clone());
                for one in arg.split(',') {
                    if one.trim().is_empty() {
                        return Err(UsageError(format!(
                            "{arg:?}: an empty address in the list (ADDR:PORT,ADDR:PORT)"
                        )));
                    }
                    free_address(one.trim())?;
                }
            }
        }
    }
    let workload = workload.unwrap_or(Workload::Fanout);
    let addr_text = addr_text.unwrap_or_else(|| "127.0.0.1:7878".to_string());
    let mut addrs = Vec::new();
    for one in addr_text.split(',') {
        let one = one.trim();
        let addr = one
            .to_socket_addrs()
            .map_err(|e| UsageError(format!("bad address {one:?}: {e}")))?
            .next()
            .ok_or_else(|| UsageError(format!("bad address {one:?}")))?;
        if addrs.contains(&addr) {
            return Err(UsageError(format!(
                "{one} is listed twice: each server once"
            )));
        }
        addrs.push(addr);
    }
    let (addr, more) = addrs
        .split_first()
        .ok_or_else(|| UsageError("no address given".into()))?;

    let mut c = Config::new(workload, *addr);
    c.more_addrs = more.to_vec();
    if let Some(v) = num(&m, "clients")? {
        c.clients = v;
    }
    match num(&m, "senders")? {
        Some(v) => c.senders = v,
        // A storm has no chatters unless asked for.
        None if workload == Workload::Storm => c.senders = 0,
        // The default 4, unless there are fewer clients.
        None => c.senders = c.senders.min(c.clients),
    }
    if let Some(v) = num::<f64>(&m, "rate")? {
        if !v.is_finite() || v < 0.0 {
            return Err(UsageError(format!("--rate: out of range: {v}")));
        }
        c.rate = v;
    }
    if let Some(v) = num(&m, "window")? {
        c.window = v;
    }
    if let Some(v) = num(&m, "size")? {
        c.size = v;
    }
    if let Some(v) = secs(&m, "duration")? {
        c.duration = v;
    }
    if let Some(v) = secs(&m, "warmup")? {
        c.warmup = v;
    }
    c.messages = num(&m, "messages")?;
    if m.opt_str("connect-rate").as_deref() == Some("max") {
        c.connect_rate = f64::INFINITY;
    } else if let Some(v) = num::<f64>(&m, "connect-rate")? {
        if !v.is_finite() || v <= 0.0 {
            return Err(UsageError(format!(
                "--connect-rate: must be > 0 (or max): {v}"
            )));
        }
        c.connect_rate = v;
    }
    c.max_joining = num(&m, "max-joining")?;
    if c.max_joining == Some(0) {
        return Err(UsageError("--max-joining must be at least 1".into()));
    }
    if let Some(v) = m.opt_str("lag") {
        c.lag = Some(Lag::parse(&v).ok_or_else(|| {
            UsageError(format!(
                "--lag: {v:?} is neither a count nor a share (0.25, 25%)"
            ))
        })?);
    }
    if let Some(v) = secs(&m, "lag-pause")? {
        c.lag_pause = v;
    }
    c.lag_after_send = m.opt_present("lag-after-send");
    if let Some(v) = secs(&m, "settle")? {
        c.settle = v;
    }
    if let Some(v) = num::<u64>(&m, "rss-interval")? {
        c.rss_interval = Duration::from_millis(v);
    }
    if let Some(list) = m.opt_str("source-addrs") {
        for a in list.split(',').filter(|a| !a.is_empty()) {
            let ip = a
                .trim()
                .parse()
                .map_err(|_| UsageError(format!("--source-addrs: not an IP address: {a:?}")))?;
            c.source_addrs.push(ip);
        }
    }
    if let Some(v) = secs(&m, "join-timeout")? {
        c.join_timeout = v;
    }
    if let Some(v) = secs(&m, "drain-timeout")? {
        c.drain_timeout = v;
    }
    if let Some(v) = m.opt_str("server-pid") {
        c.server_pids = v
            .split(',')
            .map(|p| p.trim().parse().ok().filter(|&p: &u32| p > 0))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| {
                UsageError(format!(
                    "--server-pid: {v:?} is not a process id or a comma-separated list of them"
                ))
            })?;
    }
    if let Some(v) = m.opt_str("dialect") {
        c.dialect = super::dialect::Dialect::parse(&v).ok_or_else(|| {
            UsageError(format!(
                "--dialect: unknown dialect {v:?}: {}",
                super::dialect::Dialect::NAMES
            ))
        })?;
    }
    if let Some(v) = m.opt_str("room") {
        if c.dialect == super::dialect::Dialect::Resp {
            // A Redis channel is any binary string; one word keeps it
            // readable in the report.
            if v.is_empty() || v.len() > 200 || v.bytes().any(|b| b <= b' ' || b == 0x7F) {
                return Err(UsageError(format!(
                    "--room: {v:?} is not a channel name: 1 to 200 printable characters, no spaces"
                )));
            }
        } else if crate::chat::validate_room(&v).is_err() {
            return Err(UsageError(format!(
                "--room: {v:?} is not a room name: # and 1 to 32 letters, digits, _ or -"
            )));
        }
        c.room = v;
    }
    c.allow_loss = m.opt_present("allow-loss");
    c.json = m.opt_present("json");
    c.quiet = m.opt_present("quiet");
    if let Some(v) = m.opt_str("irc-oper") {
        let ok = |t: &str| !t.is_empty() && t.bytes().all(|b| b > b' ' && b != 0x7F);
        match v.split_once(':') {
            Some((name, pass)) if ok(name) && ok(pass) => {
                c.irc_oper = Some((name.to_string(), pass.to_string()));
            }
            _ => {
                return Err(UsageError(format!(
                    "--irc-oper: {v:?} is not NAME:PASSWORD (no spaces)"
                )));
            }
        }
    }
    if let Some(v) = m.opt_str("irc-umode") {
        if v.is_empty()
            || v.len() > 32
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'+' || b == b'-')
        {
            return Err(UsageError(format!(
                "--irc-umode: {v:?} is not a mode string like +F"
            )));
        }
        c.irc_umode = Some(v);
    }
    c.hist_out = m.opt_str("hist-out").map(std::path::PathBuf::from);
    if let Some(v) = num::<usize>(&m, "workers")? {
        if !(1..=super::workers::MAX_WORKERS).contains(&v) {
            return Err(UsageError(format!(
                "--workers: between 1 and {}: {v}",
                super::workers::MAX_WORKERS
            )));
        }
        c.workers = v;
    }
    validate(&c)?;
    if let Some(spec) = m.opt_str("worker") {
        let mut role = super::workers::Role::parse(&spec)
            .ok_or_else(|| UsageError(format!("--worker: bad spec {spec:?}")))?;
        let share = role.share(c.clients, c.senders);
        c.clients = share.clients;
        c.senders = share.senders;
        c.workers = 1;
        c.quiet = true;
        if share.index != 0 {
            // The server's costs are sampled once, by worker 0.
            c.server_pids.clear();
        }
        c.worker = Some(role);
    }
    Ok(Parsed::Run(Box::new(c)))
}

/// Checks the combinations that cannot run.
pub fn validate(c: &Config) -> Result<(), UsageError> {
    if c.clients == 0 {
        return Err(UsageError("--clients must be at least 1".into()));
    }
    if c.workload == Workload::Fanout {
        if c.senders == 0 || c.senders > c.clients {
            return Err(UsageError(format!(
                "--senders must be between 1 and --clients ({})",
                c.clients
            )));
        }
        if c.clients < 2 {
            return Err(UsageError("fanout needs at least 2 clients".into()));
        }
        if c.rate == 0.0 && c.window == 0 {
            return Err(UsageError("--window must be at least 1".into()));
        }
        if c.dialect == super::dialect::Dialect::Resp && c.senders >= c.clients {
            return Err(UsageError(
                "resp: the --senders publish on connections of their own: --clients must be more than --senders"
                    .into(),
            ));
        }
    }
    if c.workload == Workload::Storm {
        if c.senders > c.clients {
            return Err(UsageError(format!(
                "--senders (storm chatters) must be at most --clients ({})",
                c.clients
            )));
        }
        if c.senders > 0 && c.rate == 0.0 {
            return Err(UsageError(
                "storm: chatters send open loop: --rate must be > 0".into(),
            ));
        }
    }
    if let Some(lag) = c.lag {
        if c.workload != Workload::Fanout {
            return Err(UsageError("--lag: fanout only".into()));
        }
        let receivers = c.clients.saturating_sub(c.senders);
        if let Lag::Count(n) = lag {
            if n > receivers {
                return Err(UsageError(format!(
                    "--lag: {n} is more than the {receivers} receivers (--clients minus --senders)"
                )));
            }
        }
    }
    if c.workers > 1 {
        let n = c.workers;
        if c.workload != Workload::Fanout || c.rate == 0.0 {
            return Err(UsageError(
                "--workers: fanout with an open-loop --rate only".into(),
            ));
        }
        if c.lag.is_some() || c.messages.is_some() {
            return Err(UsageError(
                "--workers: not with --lag or --messages (use --duration)".into(),
            ));
        }
        if c.senders < n || c.clients < 2 * n {
            return Err(UsageError(format!(
                "--workers {n}: each worker needs a sender and two clients: --senders at least {n}, --clients at least {}",
                2 * n
            )));
        }
        let resp = c.dialect == super::dialect::Dialect::Resp;
        if resp
            && (0..n).any(|i| {
                let s = super::workers::Share::of(c.clients, c.senders, n, i);
                s.clients <= s.senders
            })
        {
            return Err(UsageError(
                "--workers: resp: each worker needs more clients than senders".into(),
            ));
        }
    }
    if c.size > 1_000_000 {
        return Err(UsageError("--size: at most 1000000".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, UsageError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn server_pids() {
        let Ok(Parsed::Run(c)) = p(&["--server-pid", "12"]) else {
            panic!()
        };
        assert_eq!(c.server_pids, [12]);
        let Ok(Parsed::Run(c)) = p(&["--server-pid", "12, 34"]) else {
            panic!()
        };
        assert_eq!(c.server_pids, [12, 34]);
    }

    #[test]
    fn defaults() {
        let Ok(Parsed::Run(c)) = p(&[]) else { panic!() };
        assert_eq!(c.workload, Workload::Fanout);
        assert_eq!(c.addr, "127.0.0.1:7878".parse().unwrap());
        assert_eq!((c.clients, c.senders, c.size), (100, 4, 64));
    }

    #[test]
    fn options_and_workloads() {
        let Ok(Parsed::Run(c)) = p(&[
            "idle",
            "127.0.0.1:9",
            "--clients",
            "7",
            "--source-addrs",
            "127.0.0.1,127.0.0.2",
            "--rate",
            "0",
            "--json",
        ]) else {
            panic!()
        };
        assert_eq!(c.workload, Workload::Idle);
        assert_eq!(c.clients, 7);
        assert_eq!(c.source_addrs.len(), 2);
        assert_eq!(c.rate, 0.0);
        assert!(c.json);
        assert!(matches!(p(&["--help"]), Ok(Parsed::Help(_))));
        let Ok(Parsed::Run(c)) = p(&["127.0.0.1:9", "churn", "--clients", "2"]) else {
            panic!()
        };
        assert_eq!((c.workload, c.senders), (Workload::Churn, 2));
    }

    #[test]
    fn storm_and_lag_options() {
        let Ok(Parsed::Run(c)) = p(&["storm", "--clients", "500"]) else {
            panic!()
        };
        assert_eq!(c.workload, Workload::Storm);
        assert_eq!(c.senders, 0, "a storm has no chatters by default");
        assert!(c.connect_unpaced(), "a storm connects as fast as it can");
        let Ok(Parsed::Run(c)) = p(&[
            "storm",
            "--clients",
            "500",
            "--senders",
            "100",
            "--rate",
            "200",
            "--connect-rate",
            "5000",
            "--max-joining",
            "256",
            "--rss-interval",
            "5",
            "--settle",
            "1.5",
        ]) else {
            panic!()
        };
        assert_eq!((c.senders, c.rate, c.connect_rate), (100, 200.0, 5000.0));
        assert_eq!(c.max_joining, Some(256));
        assert_eq!(c.rss_interval, Duration::from_millis(5));
        assert_eq!(c.settle, Duration::from_millis(1500));
        let Ok(Parsed::Run(c)) = p(&["--connect-rate", "max"]) else {
            panic!()
        };
        assert!(c.connect_unpaced());

        let Ok(Parsed::Run(c)) = p(&[
            "fanout",
            "--clients",
            "54",
            "--lag",
            "10",
            "--lag-pause",
            "0.5",
            "--lag-after-send",
        ]) else {
            panic!()
        };
        assert_eq!(c.lag, Some(Lag::Count(10)));
        assert_eq!(c.lag_pause, Duration::from_millis(500));
        assert!(c.lag_after_send);
        let Ok(Parsed::Run(c)) = p(&["--lag", "25%"]) else {
            panic!()
        };
        assert_eq!(c.lag, Some(Lag::Fraction(0.25)));
        assert!(!c.lag_after_send);
        assert_eq!(c.lag_pause, Duration::from_secs(2));
        assert_eq!(Lag::parse("1.0").map(|l| l.of(96)), Some(96));
        assert_eq!(Lag::parse("1").map(|l| l.of(96)), Some(1));
        assert_eq!(Lag::parse("0.25").map(|l| l.of(10)), Some(3));
        assert_eq!(Lag::parse("100%").map(|l| l.of(7)), Some(7));
    }

    #[test]
    fn workers_and_hist_out() {
        let Ok(Parsed::Run(c)) = p(&["--workers", "2", "--hist-out", "/tmp/x.hgrm"]) else {
            panic!()
        };
        assert_eq!(c.workers, 2);
        assert_eq!(
            c.hist_out.as_deref(),
            Some(std::path::Path::new("/tmp/x.hgrm"))
        );
        // Worker 1 of 2 out of 101 clients and 5 senders: 50 clients,
        // senders 3 and 4.
        let Ok(Parsed::Run(c)) = p(&[
            "--clients",
            "101",
            "--senders",
            "5",
            "--workers",
            "2",
            "--worker",
            "1,2,77",
        ]) else {
            panic!()
        };
        assert_eq!((c.clients, c.senders, c.workers), (50, 2, 1));
        let role = c.worker.unwrap();
        assert_eq!(role.t0_mono_ns, 77);
        assert_eq!((role.share.sender_base, role.share.senders_total), (3, 5));
    }

    /// Several servers: one comma-separated list, spaces allowed after the
    /// commas; each is resolved; the first is `addr`.
    #[test]
    fn several_targets() {
        let Ok(Parsed::Run(c)) = p(&["fanout", "127.0.0.1:7001,127.0.0.1:7002,[::1]:7003"]) else {
            panic!()
        };
        assert_eq!(c.addr, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(
            c.targets(),
            ["127.0.0.1:7001", "127.0.0.1:7002", "[::1]:7003"]
                .map(|a| a.parse::<SocketAddr>().unwrap())
        );
        assert_eq!(c.target(2), "[::1]:7003".parse().unwrap());
        let Ok(Parsed::Run(c)) = p(&["127.0.0.1:1, 127.0.0.1:2", "--workers", "2"]) else {
            panic!("workers take several servers too")
        };
        assert_eq!(c.targets().len(), 2);
        let err = |args: &[&str]| match p(args) {
            Err(e) => e.0,
            Ok(other) => panic!("{args:?} parsed as {other:?}"),
        };
        assert_eq!(
            err(&["127.0.0.1:1", "127.0.0.1:2"]),
            "two addresses given: 127.0.0.1:1 and 127.0.0.1:2; for several servers give one comma-separated list (127.0.0.1:1,127.0.0.1:2)"
        );
        assert_eq!(
            err(&["127.0.0.1:1,127.0.0.1:1"]),
            "127.0.0.1:1 is listed twice: each server once"
        );
        assert_eq!(
            err(&["127.0.0.1:1,"]),
            "\"127.0.0.1:1,\": an empty address in the list (ADDR:PORT,ADDR:PORT)"
        );
        assert_eq!(
            err(&["127.0.0.1:1,7002"]),
            "\"7002\" is a port without an address: give ADDR:PORT (e.g. 127.0.0.1:7002)"
        );
    }

    #[test]
    fn bad_usage() {
        for args in [
            &["--clients", "x"][..],
            &["--bogus"],
            &["nope"],
            &["fanout", "127.0.0.1:1", "extra"],
            &["fanout", "idle"],
            &["127.0.0.1:1", "127.0.0.1:2"],
            &["127.0.0.1"],
            &["::1"],
            &["--senders", "5", "--clients", "4"],
            &["--rate", "-1"],
            &["--source-addrs", "foo"],
            &["--duration", "inf"],
            &["--lag", "x"],
            &["--lag", "1.5"],
            &["--lag", "101%"],
            &["--lag", "97", "--clients", "100"],
            &["idle", "--lag", "1"],
            &["storm", "--clients", "5", "--senders", "6"],
            &["storm", "--senders", "2", "--rate", "0"],
            &["--connect-rate", "fast"],
            &["--max-joining", "0"],
            &["--dialect", "smtp"],
            &["--dialect", "resp", "--clients", "4", "--senders", "4"],
            &["--dialect", "resp", "--room", "two words"],
            &["--dialect", "ws", "--room", "lobby"],
            &["--workers", "0"],
            &["--workers", "2", "--rate", "0"],
            &["idle", "--workers", "2"],
            &["--workers", "2", "--messages", "10"],
            &["--workers", "3", "--senders", "2"],
            &["--workers", "2", "--clients", "3"],
            &["--worker", "nonsense"],
            &["--server-pid", "12,x"],
            &["--server-pid", "0"],
            &["--server-pid", ""],
        ] {
            assert!(p(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        let err = |args: &[&str]| match p(args) {
            Err(e) => e.0,
            Ok(other) => panic!("{args:?} parsed as {other:?}"),
        };
        assert_eq!(
            err(&["127.0.0.1"]),
            "\"127.0.0.1\" has no port: give ADDR:PORT (e.g. 127.0.0.1:7878, or [::1]:7878 for IPv6)"
        );
        assert_eq!(
            err(&["localhost:"]),
            "\"localhost:\" has no port: give ADDR:PORT (e.g. localhost:7878, or [::1]:7878 for IPv6)"
        );
        assert_eq!(
            err(&["fanuot", "127.0.0.1:9"]),
            "unknown workload \"fanuot\": fanout, idle, churn or storm"
        );
        assert_eq!(
            err(&["idle", "churn"]),
            "two workloads given: idle and churn; choose one"
        );
        assert_eq!(
            err(&["churn", "7878"]),
            "\"7878\" is a port without an address: give ADDR:PORT (e.g. 127.0.0.1:7878)"
        );
        assert!(matches!(p(&["[::1]:9"]), Ok(Parsed::Run(_))));
        assert_eq!(
            err(&["--dialect", "smtp"]),
            "--dialect: unknown dialect \"smtp\": line, irc, ws, ws-irc or resp"
        );
        let Ok(Parsed::Run(c)) = p(&["--dialect", "resp", "--room", "lobby"]) else {
            panic!("a Redis channel needs no #")
        };
        assert_eq!(c.room, "lobby");
        let Ok(Parsed::Run(c)) = p(&["--dialect", "ws-irc"]) else {
            panic!()
        };
        assert_eq!(c.dialect, super::super::dialect::Dialect::WsIrc);
    }
}
