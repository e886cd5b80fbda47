//! Every limit and setting, its default, and the command line that sets it.
//!
//! Each limit is a named constant here and nowhere else, so the README's
//! table, `--help` and the code cannot disagree about a default.

use std::net::{SocketAddr, ToSocketAddrs};
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

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_clients: usize,
    pub max_line: usize,
    pub max_sendq: usize,
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
    /// `--accounts FILE`: names need passwords, stored there.
    pub accounts: Option<PathBuf>,
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
            accounts: None,
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
    Run(Config),
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
        &format!("open connections before refusing new ones (default {DEFAULT_MAX_CLIENTS})"),
        "N",
    );
    o.optopt(
        "",
        "max-line",
        &format!("longest line accepted, in bytes (default {DEFAULT_MAX_LINE})"),
        "BYTES",
    );
    o.optopt("", "max-sendq", &format!("unsent output per connection before it is dropped as a slow reader; k/m suffixes allowed (default {}k)", DEFAULT_MAX_SENDQ / 1024), "BYTES");
    o.optopt(
        "",
        "max-rate",
        &format!("lines per second per connection, 0 = unlimited (default {DEFAULT_MAX_RATE})"),
        "LINES_PER_S",
    );
    o.optopt("", "burst", &format!("lines a connection may send at once before --max-rate applies (default {DEFAULT_BURST})"), "LINES");
    o.optopt(
        "",
        "register-timeout",
        &format!(
            "seconds to choose a nickname (default {})",
            DEFAULT_REGISTER_TIMEOUT.as_secs()
        ),
        "SECS",
    );
    o.optopt(
        "",
        "idle-timeout",
        "ping a connection silent this long, close it if the ping gets no answer (default: off)",
        "SECS",
    );
    o.optopt("", "max-per-ip", &format!("connections from one address (IPv6: one /64), 0 = unlimited (default {DEFAULT_MAX_PER_IP})"), "N");
    o.optopt(
        "",
        "invite-timeout",
        &format!(
            "seconds a /pm invitation stays valid (default {})",
            DEFAULT_INVITE_TIMEOUT.as_secs()
        ),
        "SECS",
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
        "append a timestamped log to this file (besides stderr)",
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
        "user accounts: a name needs a password; unknown names are registered in FILE (default: off, nicknames only)",
        "FILE",
    );
    o.optopt(
        "",
        "add-user",
        "add account NAME to --accounts FILE, the password read from stdin (one line), and exit; use while the server is stopped",
        "NAME",
    );
    o.optopt(
        "",
        "remove-user",
        "remove account NAME from --accounts FILE and exit; use while the server is stopped",
        "NAME",
    );
    o.optflag("h", "help", "print this help");
    o.optflag("V", "version", "print the version");
    o
}

/// The usage text for `--help` and for errors.
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
        c.max_clients = parse_num("--max-clients", &v, 1)?;
    }
    if let Some(v) = m.opt_str("max-line") {
        c.max_line = parse_num("--max-line", &v, 64)?;
    }
    if let Some(v) = m.opt_str("max-sendq") {
        c.max_sendq = parse_size("--max-sendq", &v)?;
    }
    if let Some(v) = m.opt_str("max-rate") {
        c.max_rate = parse_num("--max-rate", &v, 0)?;
    }
    if let Some(v) = m.opt_str("burst") {
        c.burst = parse_num("--burst", &v, 1)?;
    }
    if let Some(v) = m.opt_str("register-timeout") {
        c.register_timeout = parse_secs("--register-timeout", &v)?;
    }
    if let Some(v) = m.opt_str("idle-timeout") {
        let t = parse_secs("--idle-timeout", &v)?;
        c.idle_timeout = (!t.is_zero()).then_some(t);
    }
    if let Some(v) = m.opt_str("max-per-ip") {
        c.max_per_ip = parse_num("--max-per-ip", &v, 0)?;
    }
    if let Some(v) = m.opt_str("invite-timeout") {
        c.invite_timeout = parse_secs("--invite-timeout", &v)?;
    }
    c.limit_loopback = m.opt_present("limit-loopback");
    c.timestamps = m.opt_present("timestamps");
    c.log_file = m.opt_str("log-file").map(PathBuf::from);
    if let Some(v) = m.opt_str("log-level") {
        c.log_level = v.parse().map_err(|_| {
            format!("--log-level: {v:?} is not one of off, error, warn, info, debug, trace")
        })?;
    }
    Ok(Command::Run(c))
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

fn parse_num<T>(name: &str, s: &str, min: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match s.trim().parse::<T>() {
        Ok(v) if v >= min => Ok(v),
        Ok(_) => Err(format!("{name}: must be at least {min}, not {s}")),
        Err(_) => Err(format!("{name}: {s:?} is not a whole number")),
    }
}

fn parse_secs(name: &str, s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0 * 365.0).contains(&v) => {
            Ok(Duration::from_secs_f64(v))
        }
        _ => Err(format!("{name}: {s:?} is not a number of seconds")),
    }
}

/// `65536`, `64k`, `64KiB`, `1m`.
fn parse_size(name: &str, s: &str) -> Result<usize, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let mult = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => {
            return Err(format!(
                "{name}: {s:?} is not a size (e.g. 262144, 256k, 1m)"
            ));
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{name}: {s:?} is not a size (e.g. 262144, 256k, 1m)"))?;
    match n.checked_mul(mult) {
        Some(v) if v >= 1024 => Ok(v),
        _ => Err(format!(
            "{name}: {s:?} must be between 1k and the memory you have"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Command::Run(c) => Ok(c),
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
            &["--add-user", "alice"],
            &["--remove-user", "alice"],
            &["--accounts", "f", "--add-user", "a", "--remove-user", "b"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
