//! Every limit and setting, its default, and the command line that sets it.
//!
//! Each limit is a named constant here and nowhere else, so the README's
//! table, `--help` and the code cannot disagree about a default.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server listens by default: loopback only, so a fresh
/// `cargo run` exposes nothing to the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// Connections the kernel may hold completed but not yet accepted. The
/// std/mio default of 128 overflows under a burst of connects (a room's
/// worth of clients reconnecting after a restart); the kernel caps it at
/// `net.core.somaxconn` anyway.
pub const LISTEN_BACKLOG: i32 = 1024;
/// Open connections (joined or not) before new ones are refused.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
/// Longest line accepted from a client, in bytes, without its `\n`.
/// Budget Chat requires at least 1000 characters.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// Unsent output one connection may hold before it is disconnected as a
/// slow reader. 256 KiB is about 3,000 chat lines: minutes of a busy room,
/// far more than a reading client ever falls behind, while 1,000 stuck
/// clients cannot take more than 256 MiB.
pub const DEFAULT_MAX_SENDQ: usize = 256 * 1024;
/// Own bytes (replies, private lines) one queue may gather during a turn
/// before they are written at once instead of at the turn's end.
pub const WRITE_OWN_EARLY: usize = 16 * 1024;
/// Output held for all connections together (shared broadcast chunks and
/// each connection's own bytes) before the connections owing the oldest
/// bytes are cut. A small host's budget: a broadcast is stored once, so
/// this is many minutes of a busy server's traffic owed to slow readers.
pub const DEFAULT_MAX_OUTPUT_MEMORY: usize = 64 << 20;
/// Lines per second one connection may send once its burst is spent.
pub const DEFAULT_MAX_RATE: u32 = 10;
/// Lines a connection may send at once before the rate applies.
pub const DEFAULT_BURST: u32 = 20;
/// A flooder is told (and the log says) at most this often.
pub const FLOOD_NOTICE_INTERVAL: Duration = Duration::from_secs(60);
/// Time to choose a nickname before the connection is closed.
pub const DEFAULT_REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections from one address (IPv6: one /64). IRC servers use 3 to 16.
pub const DEFAULT_MAX_PER_IP: usize = 10;
/// The server's name in the IRC dialect (`--server-name`): the source of
/// numerics and the host part of every user's `nick!user@host`.
pub const DEFAULT_SERVER_NAME: &str = "loopchat";
/// Rooms one IRC user may be in at once (`CHANLIMIT`): each room costs
/// memory, and a user's JOINs should not be able to make thousands.
pub const MAX_ROOMS_PER_USER: usize = 50;
/// The IRC `NETWORK` token (`--network`).
pub const DEFAULT_NETWORK: &str = "loopchat";
/// Longest IRC user name kept from `USER` (ngIRCd and others use 9-10).
pub const MAX_IRC_USER_LEN: usize = 10;
/// Longest IRC line accepted, without its CRLF and tags (RFC 1459: 512
/// with CRLF). Tags may add up to the framer's `--max-line`.
pub const IRC_MAX_LINE: usize = 510;
/// How long a new connection on the main port waits for its first line
/// before the line greeting is sent: IRC clients speak first and must not
/// see it, Budget Chat clients wait for it.
pub const GREETING_HOLD: Duration = Duration::from_millis(250);
/// The room a line user starts in, and that exists even when empty.
pub const DEFAULT_ROOM: &str = "#lobby";
/// How long a `/pm` invitation waits for `/accept` or `/decline`.
pub const DEFAULT_INVITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest password accepted when registering a new account.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Wrong passwords on one connection before it is closed.
pub const MAX_LOGIN_FAILURES: u32 = 3;
/// After a wrong password from an address, that address's next password
/// check waits this long, doubling per further failure...
pub const AUTH_DELAY_FIRST: Duration = Duration::from_secs(1);
/// ...up to this...
pub const AUTH_DELAY_MAX: Duration = Duration::from_secs(30);
/// ...and the address's failures are forgotten after this long without one.
pub const AUTH_FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses whose failures are remembered at once; past this, the ones
/// already forgiven are dropped (bounds memory under a spray of addresses).
pub const AUTH_PENALTY_TABLE: usize = 4096;
/// New accounts one address (IPv6: one /64) may register per hour. Each
/// costs a hash and a rewrite of the whole file on the loop, and the file
/// grows with them; logins of existing accounts are not counted.
pub const DEFAULT_NEW_ACCOUNTS_PER_IP: u32 = 5;
/// New accounts the whole server registers per minute (a spray of
/// addresses gets no further than this).
pub const DEFAULT_NEW_ACCOUNTS_PER_MINUTE: u32 = 60;
/// Group commit: registrations hashed while more password checks are ready
/// to run are held (not yet acknowledged) and saved together in one write,
/// once no check is ready, or once this many are held, or this long after
/// the first was hashed. A save costs two fsyncs on the loop
/// (docs/accounts-bench.md); the window bounds the first one's extra wait.
pub const GROUP_COMMIT_MAX: usize = 16;
pub const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(50);
/// Addresses whose registration budget is tracked at once; past this, the
/// ones whose budget is full again are dropped, then the oldest half.
pub const NEW_ACCOUNTS_TABLE: usize = 4096;
/// argon2id cost: memory in KiB, passes, lanes. 8 MiB and 2 passes cost a
/// few ms per hash on one core (docs/accounts-bench.md), which the single
/// loop can afford one per turn; see docs/architecture.md, "Accounts", for
/// why not OWASP's 19 MiB.
pub const ARGON2_M_KIB: u32 = 8 * 1024;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;
/// The idle ping's grace period is the idle timeout, capped at this.
pub const MAX_PING_GRACE: Duration = Duration::from_secs(60);
/// TCP keepalive: first probe after this much silence...
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// ...then a probe every interval, and the peer is declared dead after
/// `KEEPALIVE_RETRIES` unanswered probes: about two minutes in all.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_RETRIES: u32 = 6;
/// On SIGINT/SIGTERM, how long pending output may take to drain.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a closing connection (after /quit, or a refusal) may take to
/// receive its last lines before it is closed anyway.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long to stop accepting after running out of file descriptors when
/// even the spare descriptor could not be reopened.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(250);

// Valid ranges of the options (inclusive). Anything else is refused at
// start-up with exit status 2: a zero timeout would close every connection at
// once, and a huge line or queue limit is memory each connection may hold.
/// `--max-clients`.
pub const MAX_CLIENTS_RANGE: RangeInclusive<usize> = 1..=1_000_000;
/// `--max-line`, in bytes: Budget Chat needs 1000; above 64 KiB a line is a
/// file, and every connection may hold one in its framer.
pub const MAX_LINE_RANGE: RangeInclusive<usize> = 64..=65_536;
/// `--max-sendq`, in bytes: 1 KiB to 1 GiB.
pub const MAX_SENDQ_RANGE: RangeInclusive<usize> = 1024..=1 << 30;
/// `--max-output-memory`, in bytes: 1 MiB to 1 TiB.
pub const MAX_OUTPUT_MEMORY_RANGE: RangeInclusive<usize> = 1 << 20..=1 << 40;
/// `--max-rate`, lines per second; 0 = unlimited.
pub const MAX_RATE_RANGE: RangeInclusive<u32> = 0..=1_000_000;
/// `--burst`, lines.
pub const BURST_RANGE: RangeInclusive<u32> = 1..=1_000_000;
/// `--register-timeout`, seconds (fractions allowed).
pub const REGISTER_TIMEOUT_RANGE: RangeInclusive<u64> = 1..=3600;
/// `--idle-timeout`, seconds, when not `off` (`0` also means off).
pub const IDLE_TIMEOUT_RANGE: RangeInclusive<u64> = 1..=86_400;
/// `--max-per-ip`; 0 = unlimited.
pub const MAX_PER_IP_RANGE: RangeInclusive<usize> = 0..=1_000_000;
/// `--invite-timeout`, seconds.
pub const INVITE_TIMEOUT_RANGE: RangeInclusive<u64> = 1..=86_400;
/// `--quiet-joins-above`, members.
pub const QUIET_JOINS_RANGE: RangeInclusive<usize> = 0..=1_000_000;
/// `--new-accounts-per-ip` (per hour) and `--new-accounts-per-minute`;
/// 0 = unlimited.
pub const NEW_ACCOUNTS_RANGE: RangeInclusive<u32> = 0..=1_000_000;

/// Log lines of one kind about one address (accepts, refusals) logged per
/// window; the rest of the window's lines are summed up in one line, so a
/// connection storm cannot flood the log (see `logging::Limiter`).
pub const LOG_REPEATS: u32 = 5;
pub const LOG_REPEAT_WINDOW: Duration = Duration::from_secs(1);

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_clients: usize,
    pub max_line: usize,
    pub max_sendq: usize,
    /// Output held for all connections before the oldest debtors are cut.
    pub max_output_memory: usize,
    /// Lines per second; 0 = unlimited.
    pub max_rate: u32,
    pub burst: u32,
    pub register_timeout: Duration,
    /// `None` = no application-level idle timeout.
    pub idle_timeout: Option<Duration>,
    /// 0 = unlimited.
    pub max_per_ip: usize,
    pub limit_loopback: bool,
    pub timestamps: bool,
    pub log_file: Option<PathBuf>,
    pub log_level: log::LevelFilter,
    pub invite_timeout: Duration,
    /// `--trace-turns`: log one line per loop turn that did something.
    pub trace_turns: bool,
    /// `--default-room`: where line users start.
    pub default_room: String,
    /// `--quiet-joins-above N`: rooms of more than N members announce no
    /// joins (see [`crate::chat::Core::set_quiet_joins_above`]); `None`:
    /// off.
    pub quiet_joins_above: Option<usize>,
    /// `--irc-listen`: more listeners, IRC from the first byte.
    pub irc_listen: Vec<SocketAddr>,
    /// `--tls-cert`, `--tls-key`: TLS on `--tls-listen` ports, and on the
    /// main port for clients whose first byte is a ClientHello's (0x16).
    pub tls: Option<crate::tls::Files>,
    /// `--tls-listen`: more listeners, TLS from the first byte, then
    /// sniffed like the main port.
    pub tls_listen: Vec<SocketAddr>,
    /// `--allow-origin`: web pages on these origins may open a WebSocket
    /// here (besides the page this server serves).
    pub allow_origins: Vec<String>,
    /// `--metrics-from`: addresses besides loopback that may read
    /// `/metrics`.
    pub metrics_from: Vec<Cidr>,
    /// `--server-name`, `--network` (and the MOTD, read by the binary from
    /// `motd_file`).
    pub irc: crate::dialect::irc::IrcConfig,
    /// `--motd FILE`.
    pub motd_file: Option<PathBuf>,
    /// `--accounts FILE`: names need passwords, stored there.
    pub accounts: Option<PathBuf>,
    /// New accounts per hour per address; 0 = unlimited.
    pub new_accounts_per_ip: u32,
    /// New accounts per minute on the whole server; 0 = unlimited.
    pub new_accounts_per_minute: u32,
    /// `--redis`: bridge to other processes through this Redis (see
    /// [`crate::bridge`]); `None`: a standalone server.
    pub redis: Option<crate::bridge::Target>,
    /// `--node-id`: this process's name on the bridge (default: host name
    /// and process id).
    pub node_id: Option<String>,
    /// `--reuse-port`: SO_REUSEPORT on the listening sockets, so several
    /// processes share one port.
    pub reuse_port: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default address is valid"),
            max_clients: DEFAULT_MAX_CLIENTS,
            max_line: DEFAULT_MAX_LINE,
            max_sendq: DEFAULT_MAX_SENDQ,
            max_output_memory: DEFAULT_MAX_OUTPUT_MEMORY,
            max_rate: DEFAULT_MAX_RATE,
            burst: DEFAULT_BURST,
            register_timeout: DEFAULT_REGISTER_TIMEOUT,
            idle_timeout: None,
            max_per_ip: DEFAULT_MAX_PER_IP,
            limit_loopback: false,
            timestamps: false,
            log_file: None,
            log_level: log::LevelFilter::Info,
            invite_timeout: DEFAULT_INVITE_TIMEOUT,
            trace_turns: false,
            default_room: DEFAULT_ROOM.to_string(),
            quiet_joins_above: None,
            irc_listen: Vec::new(),
            tls: None,
            tls_listen: Vec::new(),
            allow_origins: Vec::new(),
            metrics_from: Vec::new(),
            irc: crate::dialect::irc::IrcConfig::default(),
            motd_file: None,
            accounts: None,
            new_accounts_per_ip: DEFAULT_NEW_ACCOUNTS_PER_IP,
            new_accounts_per_minute: DEFAULT_NEW_ACCOUNTS_PER_MINUTE,
            redis: None,
            node_id: None,
            reuse_port: false,
        }
    }
}

impl Config {
    /// The grace period after the idle ping.
    pub fn ping_grace(&self) -> Option<Duration> {
        self.idle_timeout.map(|t| t.min(MAX_PING_GRACE))
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    /// `--add-user NAME`: add an account to the file (password on stdin).
    AddUser {
        accounts: PathBuf,
        name: String,
    },
    /// `--remove-user NAME`: remove an account from the file.
    RemoveUser {
        accounts: PathBuf,
        name: String,
    },
    Help(String),
    Version,
}

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt("l", "listen", &format!("address to listen on, IPv4 or IPv6; port 0 picks a free port (default {DEFAULT_LISTEN})"), "ADDR:PORT");
    o.optopt(
        "m",
        "max-clients",
        &format!(
            "open connections before refusing new ones ({}; default {DEFAULT_MAX_CLIENTS})",
            span(&MAX_CLIENTS_RANGE)
        ),
        "N",
    );
    o.optopt(
        "",
        "max-line",
        &format!(
            "longest line accepted, in bytes ({}; default {DEFAULT_MAX_LINE})",
            span(&MAX_LINE_RANGE)
        ),
        "BYTES",
    );
    o.optopt(
        "",
        "max-sendq",
        &format!(
            "unsent output per connection before it is dropped as a slow reader; k/m suffixes allowed (1k to {}m; default {}k)",
            MAX_SENDQ_RANGE.end() >> 20,
            DEFAULT_MAX_SENDQ / 1024
        ),
        "BYTES",
    );
    o.optopt(
        "",
        "max-output-memory",
        &format!(
            "output held for all connections together; past it, the connections owing the oldest bytes are dropped as slow readers; k/m/g suffixes allowed (1m to {}g; default {}m)",
            MAX_OUTPUT_MEMORY_RANGE.end() >> 30,
            DEFAULT_MAX_OUTPUT_MEMORY >> 20
        ),
        "BYTES",
    );
    o.optopt(
        "",
        "max-rate",
        &format!(
            "lines per second per connection, 0 = unlimited ({}; default {DEFAULT_MAX_RATE})",
            span(&MAX_RATE_RANGE)
        ),
        "LINES_PER_S",
    );
    o.optopt(
        "",
        "burst",
        &format!(
            "lines a connection may send at once before --max-rate applies ({}; default {DEFAULT_BURST})",
            span(&BURST_RANGE)
        ),
        "LINES",
    );
    o.optopt(
        "",
        "register-timeout",
        &format!(
            "seconds to choose a nickname ({}; default {})",
            span(&REGISTER_TIMEOUT_RANGE),
            DEFAULT_REGISTER_TIMEOUT.as_secs()
        ),
        "SECS",
    );
    o.optopt(
        "",
        "idle-timeout",
        &format!(
            "ping a connection silent this long, close it if the ping gets no answer (off or {}; 0 also means off; default off)",
            span(&IDLE_TIMEOUT_RANGE)
        ),
        "SECS",
    );
    o.optopt(
        "",
        "max-per-ip",
        &format!(
            "connections from one address (IPv6: one /64), 0 = unlimited ({}; default {DEFAULT_MAX_PER_IP})",
            span(&MAX_PER_IP_RANGE)
        ),
        "N",
    );
    o.optopt(
        "",
        "invite-timeout",
        &format!(
            "seconds a /pm invitation stays valid ({}; default {})",
            span(&INVITE_TIMEOUT_RANGE),
            DEFAULT_INVITE_TIMEOUT.as_secs()
        ),
        "SECS",
    );
    o.optflag(
        "",
        "trace-turns",
        "log one line per loop turn that did something: why poll() woke, lines read, broadcasts, writes (for learning how the loop works)",
    );
    o.optmulti(
        "",
        "allow-origin",
        "let web pages from ORIGIN (e.g. https://chat.example.org) open a WebSocket here; the page this server serves is always allowed (repeatable)",
        "ORIGIN",
    );
    o.optmulti(
        "",
        "metrics-from",
        "let addresses in CIDR (e.g. 10.0.0.0/8) read /metrics; loopback always may (repeatable)",
        "CIDR",
    );
    o.optmulti(
        "",
        "irc-listen",
        "also listen on ADDR:PORT for IRC clients only (no greeting hold; repeatable), e.g. 127.0.0.1:6667",
        "ADDR:PORT",
    );
    o.optopt(
        "",
        "tls-cert",
        "TLS certificate chain (PEM, leaf first); with --tls-key, the main port also takes TLS clients, and SIGHUP reloads both files",
        "FILE",
    );
    o.optopt("", "tls-key", "TLS private key (PEM)", "FILE");
    o.optmulti(
        "",
        "tls-listen",
        "also listen on ADDR:PORT for TLS clients only (chat, IRC, HTTPS and wss:// inside; repeatable), e.g. 0.0.0.0:6697; needs --tls-cert",
        "ADDR:PORT",
    );
    o.optopt(
        "",
        "server-name",
        &format!("the server's name for IRC clients (default {DEFAULT_SERVER_NAME})"),
        "NAME",
    );
    o.optopt(
        "",
        "network",
        &format!("the IRC network name (default {DEFAULT_NETWORK})"),
        "NAME",
    );
    o.optopt(
        "",
        "motd",
        "a message of the day for IRC clients, read from FILE at start-up and on SIGHUP",
        "FILE",
    );
    o.optopt(
        "",
        "default-room",
        &format!(
            "the room line users start in, # and 1 to 32 letters, digits, _ or - (default {DEFAULT_ROOM})"
        ),
        "NAME",
    );
    o.optopt(
        "",
        "quiet-joins-above",
        &format!(
            "in a room with more than N members (the one joining or leaving counted), joins are not announced and leaves are not told to line users; IRC clients see a quiet joiner's JOIN when it first speaks, and its PART or QUIT only if they saw it join; /who and NAMES list everyone; 0 = every room ({}; default off)",
            span(&QUIET_JOINS_RANGE)
        ),
        "N",
    );
    o.optflag(
        "",
        "limit-loopback",
        "apply --max-per-ip to loopback addresses too",
    );
    o.optflag(
        "",
        "timestamps",
        "prefix chat lines with the server's time (HH:MM:SS)",
    );
    o.optopt(
        "",
        "log-file",
        "append a dated log to this file (besides stderr); created mode 0640, reopened on SIGHUP (logrotate)",
        "PATH",
    );
    o.optopt(
        "",
        "log-level",
        "off, error, warn, info, debug or trace (default info)",
        "LEVEL",
    );
    o.optopt(
        "",
        "accounts",
        "user accounts: a name needs a password; unknown names are registered in FILE (default: off, nicknames only). WARNING: there is no TLS yet, so passwords cross the network in clear text; use it only on a trusted network or through a tunnel",
        "FILE",
    );
    o.optopt(
        "",
        "new-accounts-per-ip",
        &format!(
            "with --accounts: new accounts one address (IPv6: one /64) may register per hour, 0 = unlimited ({}; default {DEFAULT_NEW_ACCOUNTS_PER_IP})",
            span(&NEW_ACCOUNTS_RANGE)
        ),
        "N",
    );
    o.optopt(
        "",
        "new-accounts-per-minute",
        &format!(
            "with --accounts: new accounts the whole server registers per minute, 0 = unlimited ({}; default {DEFAULT_NEW_ACCOUNTS_PER_MINUTE})",
            span(&NEW_ACCOUNTS_RANGE)
        ),
        "N",
    );
    o.optopt(
        "",
        "add-user",
        "add account NAME to --accounts FILE and exit; the password is typed twice at a prompt on a terminal, else read from stdin (one line); works beside a running server, which re-reads FILE on SIGHUP",
        "NAME",
    );
    o.optopt(
        "",
        "remove-user",
        "remove account NAME from --accounts FILE and exit; works beside a running server, which re-reads FILE on SIGHUP",
        "NAME",
    );
    o.optopt(
        "",
        "redis",
        "bridge rooms and private lines with other loopchat processes through this Redis (docs/scale-out.md); the host name is resolved once, at start",
        "HOST:PORT|redis://[:PASSWORD@]HOST:PORT[/DB]",
    );
    o.optopt(
        "",
        "node-id",
        "this process's name on the Redis bridge (default: host name and process id)",
        "ID",
    );
    o.optflag(
        "",
        "reuse-port",
        "set SO_REUSEPORT on the listening sockets, so several processes share a port (the kernel spreads connections over them)",
    );
    o.optflag("h", "help", "print this help");
    o.optflag("V", "version", "print the version");
    o
}

/// The usage text for `--help` (errors print one line and point here).
pub fn usage() -> String {
    options().usage("Usage: loopchat-server [options]\n\nA single-threaded chat server. Connect with `loopchat`, `nc` or `telnet`.")
}

/// Parses the arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let m = options().parse(args).map_err(|e| e.to_string())?;
    if m.opt_present("help") {
        return Ok(Command::Help(usage()));
    }
    if m.opt_present("version") {
        return Ok(Command::Version);
    }
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument: {extra}"));
    }
    let accounts = m.opt_str("accounts").map(PathBuf::from);
    match (m.opt_str("add-user"), m.opt_str("remove-user"), &accounts) {
        (Some(_), Some(_), _) => {
            return Err("--add-user and --remove-user exclude each other".into());
        }
        (Some(_), None, None) | (None, Some(_), None) => {
            return Err("--add-user and --remove-user need --accounts FILE".into());
        }
        (Some(name), None, Some(file)) => {
            return Ok(Command::AddUser {
                accounts: file.clone(),
                name,
            });
        }
        (None, Some(name), Some(file)) => {
            return Ok(Command::RemoveUser {
                accounts: file.clone(),
                name,
            });
        }
        (None, None, _) => {}
    }
    let mut c = Config {
        accounts,
        ..Config::default()
    };
    if let Some(addr) = m.opt_str("listen") {
        c.listen = parse_addr(&addr)?;
    }
    if let Some(v) = m.opt_str("max-clients") {
        c.max_clients = parse_num("--max-clients", &v, MAX_CLIENTS_RANGE)?;
    }
    if let Some(v) = m.opt_str("max-line") {
        c.max_line = parse_num("--max-line", &v, MAX_LINE_RANGE)?;
    }
    if let Some(v) = m.opt_str("max-sendq") {
        c.max_sendq = parse_size("--max-sendq", &v, MAX_SENDQ_RANGE)?;
    }
    if let Some(v) = m.opt_str("max-output-memory") {
        c.max_output_memory = parse_size("--max-output-memory", &v, MAX_OUTPUT_MEMORY_RANGE)?;
    }
    if let Some(v) = m.opt_str("max-rate") {
        c.max_rate = parse_num("--max-rate", &v, MAX_RATE_RANGE)?;
    }
    if let Some(v) = m.opt_str("burst") {
        c.burst = parse_num("--burst", &v, BURST_RANGE)?;
    }
    if let Some(v) = m.opt_str("register-timeout") {
        c.register_timeout = parse_secs("--register-timeout", &v, REGISTER_TIMEOUT_RANGE)?;
    }
    if let Some(v) = m.opt_str("idle-timeout") {
        let off = v.trim() == "off" || v.trim().parse::<f64>().is_ok_and(|t| t == 0.0);
        c.idle_timeout = if off {
            None
        } else {
            Some(parse_secs("--idle-timeout", &v, IDLE_TIMEOUT_RANGE)?)
        };
    }
    if let Some(v) = m.opt_str("max-per-ip") {
        c.max_per_ip = parse_num("--max-per-ip", &v, MAX_PER_IP_RANGE)?;
    }
    if let Some(v) = m.opt_str("invite-timeout") {
        c.invite_timeout = parse_secs("--invite-timeout", &v, INVITE_TIMEOUT_RANGE)?;
    }
    c.trace_turns = m.opt_present("trace-turns");
    for v in m.opt_strs("allow-origin") {
        if !v.contains("://") {
            return Err(format!(
                "--allow-origin: {v:?} is not an origin (e.g. https://chat.example.org)"
            ));
        }
        c.allow_origins.push(v);
    }
    for v in m.opt_strs("metrics-from") {
        c.metrics_from
            .push(v.parse().map_err(|e| format!("--metrics-from: {e}"))?);
    }
    for v in m.opt_strs("irc-listen") {
        c.irc_listen.push(parse_addr(&v)?);
    }
    c.tls = match (m.opt_str("tls-cert"), m.opt_str("tls-key")) {
        (Some(cert), Some(key)) => Some(crate::tls::Files {
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None) => None,
        (Some(_), None) => return Err("--tls-cert needs --tls-key".to_string()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert".to_string()),
    };
    for v in m.opt_strs("tls-listen") {
        c.tls_listen.push(parse_addr(&v)?);
    }
    if !c.tls_listen.is_empty() && c.tls.is_none() {
        return Err("--tls-listen needs --tls-cert and --tls-key".to_string());
    }
    if c.tls.is_some() && !crate::tls::AVAILABLE {
        return Err(
            "--tls-cert: this loopchat-server was built without the `tls` feature".to_string(),
        );
    }
    if let Some(v) = m.opt_str("server-name") {
        let ok = (1..=63).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(format!(
                "--server-name: {v:?} is not a host name (letters, digits, '.', '-')"
            ));
        }
        c.irc.server = v;
    }
    if let Some(v) = m.opt_str("network") {
        let ok = (1..=32).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "--network: {v:?}: use 1 to 32 letters, digits, '-' or '_'"
            ));
        }
        c.irc.network = v;
    }
    if let Some(v) = m.opt_str("motd") {
        c.motd_file = Some(PathBuf::from(v));
    }
    if let Some(v) = m.opt_str("default-room") {
        crate::chat::validate_room(&v).map_err(|_| {
            format!(
                "--default-room: {v:?} is not a room name: # and 1 to 32 letters, digits, _ or -"
            )
        })?;
        c.default_room = v;
    }
    if let Some(v) = m.opt_str("quiet-joins-above") {
        c.quiet_joins_above = Some(parse_num("--quiet-joins-above", &v, QUIET_JOINS_RANGE)?);
    }
    if let Some(v) = m.opt_str("new-accounts-per-ip") {
        c.new_accounts_per_ip = parse_num("--new-accounts-per-ip", &v, NEW_ACCOUNTS_RANGE)?;
    }
    if let Some(v) = m.opt_str("new-accounts-per-minute") {
        c.new_accounts_per_minute = parse_num("--new-accounts-per-minute", &v, NEW_ACCOUNTS_RANGE)?;
    }
    if let Some(v) = m.opt_str("redis") {
        c.redis = Some(crate::bridge::Target::parse(&v)?);
    }
    if let Some(v) = m.opt_str("node-id") {
        let ok = (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(format!(
                "--node-id: {v:?}: use 1 to 64 printable characters, no spaces"
            ));
        }
        c.node_id = Some(v);
    }
    c.reuse_port = m.opt_present("reuse-port");
    c.limit_loopback = m.opt_present("limit-loopback");
    c.timestamps = m.opt_present("timestamps");
    c.log_file = m.opt_str("log-file").map(PathBuf::from);
    if let Some(v) = m.opt_str("log-level") {
        c.log_level = v.parse().map_err(|_| {
            format!("--log-level: {v:?} is not one of off, error, warn, info, debug, trace")
        })?;
    }
    Ok(Command::Run(Box::new(c)))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let mut addrs = s.to_socket_addrs().map_err(|e| {
        format!(
            "--listen: {s:?} is not an address (ADDR:PORT, e.g. 0.0.0.0:7878 or [::]:7878): {e}"
        )
    })?;
    addrs
        .next()
        .ok_or_else(|| format!("--listen: {s:?} resolves to no address"))
}

/// `1 to 3600`: a range as `--help` and the errors show it.
fn span<T: std::fmt::Display>(r: &RangeInclusive<T>) -> String {
    format!("{} to {}", r.start(), r.end())
}

fn parse_num<T>(name: &str, s: &str, range: RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match s.trim().parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        Ok(_) => Err(format!("{name}: {s} is out of range ({})", span(&range))),
        Err(_) => Err(format!(
            "{name}: {s:?} is not a whole number ({})",
            span(&range)
        )),
    }
}

/// Seconds, fractions allowed, within `range` (whole seconds).
fn parse_secs(name: &str, s: &str, range: RangeInclusive<u64>) -> Result<Duration, String> {
    let (lo, hi) = (*range.start() as f64, *range.end() as f64);
    match s.trim().parse::<f64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(Duration::from_secs_f64(v)),
        Ok(v) if !v.is_nan() => Err(format!(
            "{name}: {s} is out of range ({} seconds)",
            span(&range)
        )),
        _ => Err(format!(
            "{name}: {s:?} is not a number of seconds ({})",
            span(&range)
        )),
    }
}

/// `65536`, `64k`, `64KiB`, `1m`, `2g`, within `range`.
fn parse_size(name: &str, s: &str, range: RangeInclusive<usize>) -> Result<usize, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let not_a_size = || format!("{name}: {s:?} is not a size (e.g. 262144, 256k, 1m)");
    let mult = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(not_a_size()),
    };
    let n: usize = digits.parse().map_err(|_| not_a_size())?;
    match n.checked_mul(mult) {
        Some(v) if range.contains(&v) => Ok(v),
        _ => Err(format!(
            "{name}: {s} is out of range ({} to {})",
            show_size(*range.start()),
            show_size(*range.end())
        )),
    }
}

/// `1024` as `1k`, `1 << 20` as `1m`: how sizes are shown in errors.
fn show_size(n: usize) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}g", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}m", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}k", n >> 10),
        n => n.to_string(),
    }
}

/// An address block, `10.0.0.0/8` or `2001:db8::/32` (a bare address is
/// a block of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block (an IPv4 address seen as
    /// `::ffff:a.b.c.d` counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?} is not an address block (e.g. 10.0.0.0/8, 2001:db8::/32)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_blocks() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Command::Run(c) => Ok(*c),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.max_clients, DEFAULT_MAX_CLIENTS);
        let c = parse(&[
            "-l",
            "[::1]:0",
            "-m",
            "5",
            "--max-sendq",
            "64k",
            "--idle-timeout",
            "1.5",
        ])
        .unwrap();
        assert!(c.listen.is_ipv6());
        assert_eq!(c.max_clients, 5);
        assert_eq!(c.max_sendq, 65536);
        assert_eq!(c.idle_timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn accounts_and_admin_commands() {
        let c = parse(&["--accounts", "a.txt", "--invite-timeout", "1"]).unwrap();
        assert_eq!(c.accounts, Some(PathBuf::from("a.txt")));
        assert_eq!(c.invite_timeout, Duration::from_secs(1));
        assert_eq!(c.new_accounts_per_ip, DEFAULT_NEW_ACCOUNTS_PER_IP);
        assert_eq!(c.quiet_joins_above, None, "off by default");
        let c = parse(&[
            "--new-accounts-per-ip",
            "0",
            "--new-accounts-per-minute",
            "7",
        ])
        .unwrap();
        assert_eq!((c.new_accounts_per_ip, c.new_accounts_per_minute), (0, 7));
        let args = ["--accounts", "a.txt", "--add-user", "bob"].map(String::from);
        assert!(matches!(
            parse_args(args),
            Ok(Command::AddUser { name, .. }) if name == "bob"
        ));
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            &["-m", "lots"][..],
            &["-m", "0"],
            &["--max-line", "-1"],
            &["--max-sendq", "12q"],
            &["--listen", "nowhere"],
            &["--log-level", "loud"],
            &["--bogus"],
            &["extra"],
            &["--invite-timeout", "soon"],
            &["--new-accounts-per-ip", "-1"],
            &["--new-accounts-per-minute", "many"],
            &["--add-user", "alice"],
            &["--remove-user", "alice"],
            &["--accounts", "f", "--add-user", "a", "--remove-user", "b"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn ranges_are_enforced_at_both_ends() {
        for bad in [
            &["--register-timeout", "0"][..],
            &["--register-timeout", "3601"],
            &["--invite-timeout", "0"],
            &["--invite-timeout", "86401"],
            &["--idle-timeout", "86401"],
            &["--idle-timeout", "0.5"],
            &["--idle-timeout", "-1"],
            &["--idle-timeout", "NaN"],
            &["--max-line", "63"],
            &["--max-line", "65537"],
            &["--max-line", "99999999999"],
            &["--max-clients", "1000001"],
            &["--burst", "0"],
            &["--max-rate", "1000001"],
            &["--max-per-ip", "1000001"],
            &["--max-sendq", "1023"],
            &["--max-sendq", "1025m"],
            &["--max-sendq", "99999999999999999999k"],
            &["--quiet-joins-above", "-1"],
            &["--quiet-joins-above", "1000001"],
            &["--quiet-joins-above", "some"],
        ] {
            let e = parse(bad).expect_err(&format!("{bad:?} should fail"));
            assert!(e.starts_with(bad[0]), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{bad:?}: {e}");
        }
        let e = parse(&["--register-timeout", "0"]).unwrap_err();
        assert_eq!(
            e,
            "--register-timeout: 0 is out of range (1 to 3600 seconds)"
        );
        let e = parse(&["--max-line", "70000"]).unwrap_err();
        assert_eq!(e, "--max-line: 70000 is out of range (64 to 65536)");
        let c = parse(&[
            "--register-timeout",
            "3600",
            "--invite-timeout",
            "1",
            "--max-line",
            "65536",
            "--max-sendq",
            "1024m",
            "--max-rate",
            "0",
            "--max-per-ip",
            "0",
        ])
        .unwrap();
        assert_eq!(c.register_timeout, Duration::from_secs(3600));
        assert_eq!(c.max_line, 65536);
        for (n, want) in [("0", 0), ("1000000", 1_000_000)] {
            let c = parse(&["--quiet-joins-above", n]).unwrap();
            assert_eq!(c.quiet_joins_above, Some(want));
        }
        assert_eq!(c.max_sendq, 1 << 30);
    }

    #[test]
    fn idle_timeout_off() {
        for off in ["off", "0", " off ", "0.0"] {
            let c = parse(&["--idle-timeout", off]).unwrap();
            assert_eq!(c.idle_timeout, None, "{off:?}");
        }
        let c = parse(&["--idle-timeout", "86400"]).unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(86_400)));
    }
}
