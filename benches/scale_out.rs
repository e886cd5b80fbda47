//! `cargo bench --bench scale_out [-- --runs N | --quick | --update-docs]`:
//! what bridging through Redis costs, and what a second process gives
//! (issue 14, docs/scale-out.md).
//!
//! Three setups, each started fresh for every point (a `redis-server` on a
//! free loopback port with `--save '' --appendonly no`, release
//! `loopchat-server`s with `--max-rate 0`):
//!
//! - `one`: one process, no Redis;
//! - `one+redis`: one process with `--redis` (it publishes every line and
//!   hears it back from Redis, dropping its own echo: the bridge's whole
//!   cost with nobody else to deliver to);
//! - `two+redis`: two processes with `--redis`, the bench's clients spread
//!   over both (`loopchat-bench A,B`: senders and receivers alternate), so
//!   every line is delivered on its sender's process and across the bridge.
//!
//! Points (line dialect, 64-byte lines, the default room):
//!
//! 1. `ref`: 100 clients, 4 senders, 1,000 lines/s open loop: the CPU of
//!    every process per line and per delivery at the same load, and the
//!    latency, split in `two+redis` into same-process and cross-process
//!    deliveries (measured in the same run);
//! 2. `few`: 10 clients, 4 senders, 4,000 lines/s open loop: fewer
//!    deliveries per line, so the per-line cost of the bridge shows;
//! 3. `max100`, `max10`: the same sizes closed loop (`--rate 0`, a window
//!    of 256 lines per sender): the highest rate the setup sustains here.
//!
//! Each process's CPU (loopchat from /proc, Redis from `INFO cpu`:
//! used_cpu_sys + used_cpu_user, PUBLISH calls from `INFO commandstats`)
//! is read before and after the bench's whole run (join, warm-up,
//! measured window, drain) and divided by every line sent and every
//! delivery made in it. Each process also has one line user that joined
//! before the bench: with two processes each says `probe K` until the
//! other hears one (a line each way proves both listen to the room on the
//! bridge); then it is silent, a reader thread here discarding what it
//! gets. It keeps the room subscribed from before the first client joins
//! to after the last one leaves, and is one more receiver per process in
//! every setup.
//!
//! The bench runs in this process (`loopchat::bench`, one thread, one
//! `mio::Poll`): on a 2-core machine it shares the cores with the servers
//! and Redis, and the busy cores of the whole machine (/proc/stat) are
//! reported beside each point.
//!
//! Output: a markdown table (medians of `--runs`, default 3; ratios are
//! computed within each run, then their median), the raw reports under
//! target/bench-results/scale-out-{quick,full}.json, and with
//! `--update-docs` the `## Figures` section at the end of
//! docs/scale-out.md. `--quick` (CI): one run of tiny points, checks zero
//! loss, asserts no speed; without redis-server it skips, unless `CI` is
//! set (then it fails). Under `cargo test --all-targets` (no `--bench`
//! argument) it exits at once.

mod shared;

use loopchat::bench::{self, Config, Report, Workload};
use serde_json::{Value, json};
use shared::{Server, ServerKind, busy_cores, cpu_ticks, fmt, machine, median};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long Redis may take to answer, and the bridge to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const SENDERS: usize = 4;
/// Closed loop: lines per sender not yet delivered everywhere. Far larger
/// than the bench's default 16, so that the round trip through Redis does
/// not cap the rate before the CPU does.
const WINDOW: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    One,
    OneRedis,
    TwoRedis,
}

impl Setup {
    const ALL: [Setup; 3] = [Setup::One, Setup::OneRedis, Setup::TwoRedis];

    fn name(self) -> &'static str {
        match self {
            Setup::One => "one",
            Setup::OneRedis => "one+redis",
            Setup::TwoRedis => "two+redis",
        }
    }

    fn processes(self) -> usize {
        if self == Setup::TwoRedis { 2 } else { 1 }
    }

    fn redis(self) -> bool {
        self != Setup::One
    }
}

#[derive(Clone, Copy)]
struct PointSpec {
    name: &'static str,
    clients: usize,
    /// Lines/s across the senders; 0: closed loop.
    rate: f64,
    warmup: Duration,
    duration: Duration,
}

fn points(quick: bool) -> Vec<PointSpec> {
    let s = Duration::from_secs;
    if quick {
        return vec![
            PointSpec {
                name: "ref",
                clients: 20,
                rate: 200.0,
                warmup: Duration::from_millis(200),
                duration: s(1),
            },
            PointSpec {
                name: "max10",
                clients: 10,
                rate: 0.0,
                warmup: Duration::from_millis(200),
                duration: s(1),
            },
        ];
    }
    vec![
        PointSpec {
            name: "ref",
            clients: 100,
            rate: 1000.0,
            warmup: s(1),
            duration: s(6),
        },
        PointSpec {
            name: "few",
            clients: 10,
            rate: 4000.0,
            warmup: s(1),
            duration: s(5),
        },
        PointSpec {
            name: "max100",
            clients: 100,
            rate: 0.0,
            warmup: s(1),
            duration: s(4),
        },
        PointSpec {
            name: "max10",
            clients: 10,
            rate: 0.0,
            warmup: s(1),
            duration: s(4),
        },
    ]
}

/// A `redis-server` of our own on a free loopback port.
struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    fn start() -> Result<Redis, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        let r = Redis { child, port };
        let deadline = Instant::now() + START_TIMEOUT;
        // redis-server says nothing we could read when it is ready: ask.
        while r.info("server").is_err() {
            if Instant::now() >= deadline {
                return Err(format!("redis-server never answered on port {port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(r)
    }

    /// `INFO section` as `key:value` pairs.
    fn info(&self, section: &str) -> Result<Vec<(String, String)>, String> {
        let mut s =
            TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| format!("redis: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let cmd = format!("*2\r\n$4\r\nINFO\r\n${}\r\n{section}\r\n", section.len());
        s.write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
        let mut r = BufReader::new(s);
        let mut head = String::new();
        r.read_line(&mut head).map_err(|e| e.to_string())?;
        let len: usize = head
            .trim()
            .strip_prefix('$')
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("redis INFO: unexpected reply {head:?}"))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }

    /// Redis's own CPU seconds so far and PUBLISH calls.
    fn counters(&self) -> Result<(f64, u64), String> {
        let cpu = self.info("cpu")?;
        let get = |k: &str| {
            cpu.iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cpu_s = get("used_cpu_sys") + get("used_cpu_user");
        let publishes = self
            .info("commandstats")?
            .iter()
            .find(|(n, _)| n == "cmdstat_publish")
            .and_then(|(_, v)| {
                v.split(',')
                    .find_map(|f| f.strip_prefix("calls="))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0);
        Ok((cpu_s, publishes))
    }
}

/// A line user in the default room: it probes the bridge, then a thread
/// discards what it reads until the connection closes.
struct Holder {
    stream: TcpStream,
    nick: String,
    /// Unread bytes of a line cut by a read timeout (while probing).
    partial: Vec<u8>,
    reader: Option<JoinHandle<()>>,
}

/// How long a probe line may take before the next one is sent.
const PROBE_WAIT: Duration = Duration::from_millis(200);

impl Holder {
    fn join(addr: SocketAddr, nick: &str) -> Result<Holder, String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("holder: {e}"))?;
        stream
            .write_all(format!("{nick}\n").as_bytes())
            .map_err(|e| format!("holder: {e}"))?;
        stream
            .set_read_timeout(Some(PROBE_WAIT))
            .map_err(|e| format!("holder: {e}"))?;
        Ok(Holder {
            stream,
            nick: nick.to_string(),
            partial: Vec::new(),
            reader: None,
        })
    }

    /// Says `probe K` until one reaches `to` (on another bridged process):
    /// then `to`'s process listens to the room and ours publishes to it.
    /// A line said before Redis confirmed the subscription is lost, hence
    /// the repeats; each waits at most `PROBE_WAIT` on `to`'s reads.
    fn probe(&mut self, to: &mut Holder) -> Result<(), String> {
        let want = format!("[{}] probe ", self.nick);
        let deadline = Instant::now() + START_TIMEOUT;
        for k in 0u64.. {
            if Instant::now() >= deadline {
                return Err(format!("no probe from {} reached {}", self.nick, to.nick));
            }
            self.stream
                .write_all(format!("probe {k}\n").as_bytes())
                .map_err(|e| format!("holder: {e}"))?;
            if to.read_until(&want)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads lines until one starts with `prefix` (true) or nothing comes
    /// for `PROBE_WAIT` (false).
    fn read_until(&mut self, prefix: &str) -> Result<bool, String> {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(format!("{}: closed by the server", self.nick)),
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.partial.drain(..=end).collect();
                        if line.starts_with(prefix.as_bytes()) {
                            return Ok(true);
                        }
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Ok(false);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{}: {e}", self.nick)),
            }
        }
    }

    /// From now on a thread reads and drops whatever comes.
    fn discard(&mut self) -> Result<(), String> {
        let mut read = self.stream.try_clone().map_err(|e| e.to_string())?;
        read.set_read_timeout(None).map_err(|e| e.to_string())?;
        self.reader = Some(std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while matches!(read.read(&mut buf), Ok(n) if n > 0) {}
        }));
        Ok(())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// One metric's value from a server's `/metrics` (`None` if unreadable).
fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A setup running: Redis (if any), the servers, their holders.
struct Cluster {
    // Dropped in this order: the holders, then the servers, then Redis.
    _holders: Vec<Holder>,
    servers: Vec<Server>,
    redis: Option<Redis>,
}

impl Cluster {
    fn start(setup: Setup, program: &Path) -> Result<Cluster, String> {
        let redis = if setup.redis() {
            Some(Redis::start()?)
        } else {
            None
        };
        let mut servers = Vec::new();
        let mut holders = Vec::new();
        for i in 0..setup.processes() {
            let mut args = shared::loopchat_args();
            if let Some(r) = &redis {
                args.extend([
                    "--redis".to_string(),
                    format!("127.0.0.1:{}", r.port),
                    "--node-id".to_string(),
                    format!("p{i}"),
                ]);
            }
            let kind = ServerKind {
                name: "loopchat",
                program: program.to_path_buf(),
                args,
                conf: None,
            };
            let server = kind.start()?;
            if redis.is_some() {
                // A bridged process refuses logins until it can claim
                // names in Redis: wait for its links (a metric changes
                // silently, so it is polled).
                let deadline = Instant::now() + START_TIMEOUT;
                while metric(server.addr, "loopchat_bridge_up") != Some(1) {
                    if Instant::now() >= deadline {
                        return Err(format!("{}: the bridge did not come up", server.addr));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            holders.push(Holder::join(server.addr, &format!("holder{i}"))?);
            servers.push(server);
        }
        // Two processes: a line each way proves both listen to the room.
        if let [a, b] = holders.as_mut_slice() {
            a.probe(b)?;
            b.probe(a)?;
        }
        for h in &mut holders {
            h.discard()?;
        }
        Ok(Cluster {
            _holders: holders,
            servers,
            redis,
        })
    }

    fn cpu(&self) -> (Vec<f64>, Option<(f64, u64)>) {
        let servers = self
            .servers
            .iter()
            .map(|s| bench::proc_stats::sample(s.pid).map_or(0.0, |p| p.cpu_s))
            .collect();
        (servers, self.redis.as_ref().and_then(|r| r.counters().ok()))
    }
}

/// What one point measured in one setup.
struct Point {
    setup: Setup,
    spec: PointSpec,
    report: Report,
    /// Wall time of the bench's whole run, and CPU seconds over it.
    wall_s: f64,
    server_cpu_s: Vec<f64>,
    redis_cpu_s: Option<f64>,
    publishes: Option<u64>,
    bench_cpu_s: f64,
    busy_cores: Option<f64>,
}

impl Point {
    fn lines(&self) -> f64 {
        self.report.sent.max(1) as f64
    }

    fn server_cpu(&self) -> f64 {
        self.server_cpu_s.iter().sum()
    }

    fn server_us_per_line(&self) -> f64 {
        self.server_cpu() * 1e6 / self.lines()
    }

    fn server_s_per_m_deliveries(&self) -> f64 {
        self.server_cpu() * 1e6 / self.report.deliveries.max(1) as f64
    }

    fn redis_us_per_line(&self) -> Option<f64> {
        self.redis_cpu_s.map(|c| c * 1e6 / self.lines())
    }

    fn cores(&self, cpu_s: f64) -> f64 {
        cpu_s / self.wall_s.max(1e-3)
    }

    /// loopchat's and Redis's CPU per line together.
    fn chat_us_per_line(&self) -> f64 {
        self.server_us_per_line() + self.redis_us_per_line().unwrap_or(0.0)
    }

    /// The machine's busy cores that were not ours (loopchat, Redis, this
    /// process): the other tenants of a shared machine.
    fn other_cores(&self) -> Option<f64> {
        let ours = self.server_cpu() + self.redis_cpu_s.unwrap_or(0.0) + self.bench_cpu_s;
        self.busy_cores.map(|b| (b - self.cores(ours)).max(0.0))
    }

    fn to_json(&self) -> Value {
        json!({
            "setup": self.setup.name(),
            "point": self.spec.name,
            "wall_s": self.wall_s,
            "server_cpu_s": self.server_cpu_s,
            "redis_cpu_s": self.redis_cpu_s,
            "publishes": self.publishes,
            "bench_cpu_s": self.bench_cpu_s,
            "busy_cores": self.busy_cores,
            "server_us_per_line": self.server_us_per_line(),
            "server_s_per_million_deliveries": self.server_s_per_m_deliveries(),
            "redis_us_per_line": self.redis_us_per_line(),
            "report": self.report.to_json(),
        })
    }
}

fn measure(setup: Setup, spec: PointSpec, program: &Path) -> Result<Point, String> {
    let cluster = Cluster::start(setup, program)?;
    let mut cfg = Config::new(Workload::Fanout, cluster.servers[0].addr);
    cfg.more_addrs = cluster.servers[1..].iter().map(|s| s.addr).collect();
    cfg.clients = spec.clients;
    cfg.senders = SENDERS;
    cfg.rate = spec.rate;
    cfg.window = WINDOW;
    cfg.warmup = spec.warmup;
    cfg.duration = spec.duration;
    cfg.quiet = true;
    cfg.server_pids = cluster.servers.iter().map(|s| s.pid).collect();
    let own = std::process::id();
    let (srv0, redis0) = cluster.cpu();
    let bench0 = bench::proc_stats::sample(own).map_or(0.0, |s| s.cpu_s);
    let ticks0 = cpu_ticks();
    let t0 = Instant::now();
    let report = bench::run(&cfg).map_err(|e| format!("{} {}: {e}", setup.name(), spec.name))?;
    let wall_s = t0.elapsed().as_secs_f64();
    let ticks1 = cpu_ticks();
    let bench1 = bench::proc_stats::sample(own).map_or(0.0, |s| s.cpu_s);
    let (srv1, redis1) = cluster.cpu();
    let (redis_cpu_s, publishes) = match (redis0, redis1) {
        (Some((c0, p0)), Some((c1, p1))) => (Some((c1 - c0).max(0.0)), Some(p1.saturating_sub(p0))),
        _ => (None, None),
    };
    Ok(Point {
        setup,
        spec,
        wall_s,
        server_cpu_s: srv1
            .iter()
            .zip(&srv0)
            .map(|(b, a)| (b - a).max(0.0))
            .collect(),
        redis_cpu_s,
        publishes,
        bench_cpu_s: (bench1 - bench0).max(0.0),
        busy_cores: busy_cores(ticks0, ticks1),
        report,
    })
}

/// One run: every point in every setup, the setups alternating per point.
type Run = Vec<Point>;

fn find<'a>(run: &'a Run, setup: Setup, point: &str) -> Option<&'a Point> {
    run.iter()
        .find(|p| p.setup == setup && p.spec.name == point)
}

/// A figure of a point, per setup: the median over the runs.
fn med(runs: &[Run], setup: Setup, point: &str, f: &dyn Fn(&Point) -> Option<f64>) -> Option<f64> {
    median(
        runs.iter()
            .filter_map(|r| find(r, setup, point).and_then(f))
            .collect(),
    )
}

/// The median over the runs of `setup`'s figure divided by `base`'s in the
/// same run.
fn ratio(
    runs: &[Run],
    setup: Setup,
    base: Setup,
    point: &str,
    f: &dyn Fn(&Point) -> Option<f64>,
) -> Option<f64> {
    median(
        runs.iter()
            .filter_map(|r| {
                let a = find(r, setup, point).and_then(f)?;
                let b = find(r, base, point).and_then(f)?;
                (b > 0.0).then(|| a / b)
            })
            .collect(),
    )
}

type Figure = (
    &'static str,
    &'static str,
    Box<dyn Fn(&Point) -> Option<f64>>,
    usize,
);

fn figures() -> Vec<Figure> {
    let us = |l: Option<loopchat::bench::stats::LatencySummary>| {
        l.filter(|l| l.count > 0).map(|l| l.p50 as f64 / 1000.0)
    };
    let us99 = |l: Option<loopchat::bench::stats::LatencySummary>| {
        l.filter(|l| l.count > 0).map(|l| l.p99 as f64 / 1000.0)
    };
    vec![
        (
            "ref",
            "deliveries/s",
            Box::new(|p: &Point| Some(p.report.deliveries_per_s())),
            0,
        ),
        (
            "ref",
            "loopchat CPU per line, all processes (us)",
            Box::new(|p: &Point| Some(p.server_us_per_line())),
            1,
        ),
        (
            "ref",
            "loopchat CPU per million deliveries (s)",
            Box::new(|p: &Point| Some(p.server_s_per_m_deliveries())),
            3,
        ),
        (
            "ref",
            "Redis CPU per line (us)",
            Box::new(|p: &Point| p.redis_us_per_line()),
            1,
        ),
        (
            "ref",
            "PUBLISH per line",
            Box::new(|p: &Point| p.publishes.map(|n| n as f64 / p.lines())),
            3,
        ),
        (
            "ref",
            "loopchat cores (sum)",
            Box::new(|p: &Point| Some(p.cores(p.server_cpu()))),
            2,
        ),
        (
            "ref",
            "bench cores",
            Box::new(|p: &Point| Some(p.cores(p.bench_cpu_s))),
            2,
        ),
        (
            "ref",
            "machine busy cores",
            Box::new(|p: &Point| p.busy_cores),
            2,
        ),
        (
            "ref",
            "other processes' cores (busy - ours)",
            Box::new(|p: &Point| p.other_cores()),
            2,
        ),
        (
            "ref",
            "p50 (ms)",
            Box::new(move |p: &Point| us(p.report.latency)),
            2,
        ),
        (
            "ref",
            "p99 (ms)",
            Box::new(move |p: &Point| us99(p.report.latency)),
            2,
        ),
        (
            "ref",
            "p50 same process (ms)",
            Box::new(move |p: &Point| us(p.report.latency_same_target)),
            2,
        ),
        (
            "ref",
            "p50 across processes (ms)",
            Box::new(move |p: &Point| us(p.report.latency_cross_target)),
            2,
        ),
        (
            "ref",
            "p99 same process (ms)",
            Box::new(move |p: &Point| us99(p.report.latency_same_target)),
            2,
        ),
        (
            "ref",
            "p99 across processes (ms)",
            Box::new(move |p: &Point| us99(p.report.latency_cross_target)),
            2,
        ),
        (
            "few",
            "loopchat CPU per line, all processes (us)",
            Box::new(|p: &Point| Some(p.server_us_per_line())),
            1,
        ),
        (
            "few",
            "Redis CPU per line (us)",
            Box::new(|p: &Point| p.redis_us_per_line()),
            1,
        ),
        (
            "few",
            "loopchat + Redis CPU per line (us)",
            Box::new(|p: &Point| Some(p.chat_us_per_line())),
            1,
        ),
        (
            "few",
            "p50 (ms)",
            Box::new(move |p: &Point| us(p.report.latency)),
            2,
        ),
        (
            "few",
            "p99 (ms)",
            Box::new(move |p: &Point| us99(p.report.latency)),
            2,
        ),
        (
            "few",
            "p99 across processes (ms)",
            Box::new(move |p: &Point| us99(p.report.latency_cross_target)),
            2,
        ),
        (
            "max100",
            "lines/s sustained",
            Box::new(|p: &Point| Some(p.report.sent_per_s())),
            0,
        ),
        (
            "max100",
            "deliveries/s sustained",
            Box::new(|p: &Point| Some(p.report.deliveries_per_s())),
            0,
        ),
        (
            "max100",
            "loopchat cores (sum)",
            Box::new(|p: &Point| Some(p.cores(p.server_cpu()))),
            2,
        ),
        (
            "max100",
            "Redis cores",
            Box::new(|p: &Point| p.redis_cpu_s.map(|c| p.cores(c))),
            2,
        ),
        (
            "max100",
            "bench cores",
            Box::new(|p: &Point| Some(p.cores(p.bench_cpu_s))),
            2,
        ),
        (
            "max100",
            "machine busy cores",
            Box::new(|p: &Point| p.busy_cores),
            2,
        ),
        (
            "max100",
            "other processes' cores (busy - ours)",
            Box::new(|p: &Point| p.other_cores()),
            2,
        ),
        (
            "max10",
            "lines/s sustained",
            Box::new(|p: &Point| Some(p.report.sent_per_s())),
            0,
        ),
        (
            "max10",
            "loopchat CPU per line, all processes (us)",
            Box::new(|p: &Point| Some(p.server_us_per_line())),
            1,
        ),
        (
            "max10",
            "Redis CPU per line (us)",
            Box::new(|p: &Point| p.redis_us_per_line()),
            1,
        ),
        (
            "max10",
            "loopchat + Redis CPU per line (us)",
            Box::new(|p: &Point| Some(p.chat_us_per_line())),
            1,
        ),
        (
            "max10",
            "loopchat cores (sum)",
            Box::new(|p: &Point| Some(p.cores(p.server_cpu()))),
            2,
        ),
        (
            "max10",
            "Redis cores",
            Box::new(|p: &Point| p.redis_cpu_s.map(|c| p.cores(c))),
            2,
        ),
        (
            "max10",
            "bench cores",
            Box::new(|p: &Point| Some(p.cores(p.bench_cpu_s))),
            2,
        ),
        (
            "max10",
            "machine busy cores",
            Box::new(|p: &Point| p.busy_cores),
            2,
        ),
        (
            "max10",
            "other processes' cores (busy - ours)",
            Box::new(|p: &Point| p.other_cores()),
            2,
        ),
    ]
}

fn point_title(name: &str, specs: &[PointSpec]) -> String {
    let Some(s) = specs.iter().find(|s| s.name == name) else {
        return name.to_string();
    };
    let load = if s.rate > 0.0 {
        format!("{} lines/s open loop", s.rate)
    } else {
        format!("closed loop, window {WINDOW}")
    };
    format!("`{name}`: {} clients, {SENDERS} senders, {load}", s.clients)
}

/// The markdown table: medians per setup, and the ratios within a run.
fn table(runs: &[Run], specs: &[PointSpec]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| point | figure | one | one+redis | two+redis | one+redis / one | two+redis / one |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|");
    let mut last = "";
    for (point, name, f, digits) in figures() {
        if !specs.iter().any(|s| s.name == point) {
            continue;
        }
        let cells: Vec<String> = Setup::ALL
            .iter()
            .map(|&s| fmt(med(runs, s, point, &*f), digits))
            .collect();
        if cells.iter().all(|c| c == "-") {
            continue;
        }
        let r1 = ratio(runs, Setup::OneRedis, Setup::One, point, &*f);
        let r2 = ratio(runs, Setup::TwoRedis, Setup::One, point, &*f);
        let shown = if point == last {
            String::new()
        } else {
            point_title(point, specs)
        };
        last = point;
        let _ = writeln!(
            t,
            "| {shown} | {name} | {} | {} | {} | {} | {} |",
            cells[0],
            cells[1],
            cells[2],
            r1.map_or("-".into(), |r| format!("{r:.2}x")),
            r2.map_or("-".into(), |r| format!("{r:.2}x")),
        );
    }
    t
}

/// The lowest and highest of some values (NaN for none).
fn min_max(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// The lowest and highest value of a figure over the runs.
fn range(runs: &[Run], setup: Setup, point: &str, f: &dyn Fn(&Point) -> Option<f64>) -> (f64, f64) {
    let v: Vec<f64> = runs
        .iter()
        .filter_map(|r| find(r, setup, point).and_then(f))
        .collect();
    min_max(&v)
}

/// The lowest and highest within-run ratio of `setup`'s figure to `base`'s.
fn ratio_range(
    runs: &[Run],
    setup: Setup,
    base: Setup,
    point: &str,
    f: &dyn Fn(&Point) -> Option<f64>,
) -> (f64, f64) {
    let v: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let a = find(r, setup, point).and_then(f)?;
            let b = find(r, base, point).and_then(f)?;
            (b > 0.0).then(|| a / b)
        })
        .collect();
    min_max(&v)
}

/// Cross-process latency against same-process latency, within each run of
/// `two+redis` (the same run, the same load): the median ratio.
fn cross_over_same(runs: &[Run], point: &str, p99: bool) -> Option<f64> {
    median(
        runs.iter()
            .filter_map(|r| {
                let p = find(r, Setup::TwoRedis, point)?;
                let pick = |l: Option<loopchat::bench::stats::LatencySummary>| {
                    l.filter(|l| l.count > 0)
                        .map(|l| if p99 { l.p99 } else { l.p50 } as f64)
                };
                let c = pick(p.report.latency_cross_target)?;
                let s = pick(p.report.latency_same_target)?;
                (s > 0.0).then(|| c / s)
            })
            .collect(),
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The `## Figures` section of docs/scale-out.md, from a run.
fn figures_doc(
    runs: &[Run],
    specs: &[PointSpec],
    md: &str,
    m: &Value,
    load: (&str, &str),
    when: (&str, &str),
) -> String {
    let n = runs.len();
    let g = |s: Setup, p: &str, f: &dyn Fn(&Point) -> Option<f64>| med(runs, s, p, f);
    let per_line = |p: &Point| Some(p.server_us_per_line());
    let redis_line = |p: &Point| p.redis_us_per_line();
    let lines_s = |p: &Point| Some(p.report.sent_per_s());
    // The bridge's cost per line, from the `few` point (most lines per
    // delivery) and the `ref` one.
    let bridge_few = g(Setup::OneRedis, "few", &per_line)
        .zip(g(Setup::One, "few", &per_line))
        .map(|(a, b)| a - b);
    let bridge_ref = g(Setup::OneRedis, "ref", &per_line)
        .zip(g(Setup::One, "ref", &per_line))
        .map(|(a, b)| a - b);
    // Whether the `ref` difference stands out of that point's own noise
    // (how far `one` alone moved between runs).
    let (lo, hi) = range(runs, Setup::One, "ref", &per_line);
    let (rlo, rhi) = ratio_range(runs, Setup::OneRedis, Setup::One, "ref", &per_line);
    let ref_note = match bridge_ref {
        Some(d) if d.abs() <= hi - lo => format!(
            ", lost in the noise: `one` alone ranged over {lo:.0}-{hi:.0} us per line across the runs"
        ),
        Some(_) => format!(
            " (`one` alone ranged over {lo:.0}-{hi:.0} us across the runs, and within each run the bridged process used {rlo:.2}x to {rhi:.2}x the CPU per line): more than at `few`: a few syscalls per line, counted in docs/scale-out.md, \"Where the bridge's cost per line goes\""
        ),
        None => String::new(),
    };
    let bridge_max = g(Setup::OneRedis, "max10", &per_line)
        .zip(g(Setup::One, "max10", &per_line))
        .map(|(a, b)| a - b);
    // From the closed-loop point: the most lines, so Redis's own timers
    // and loopchat's PINGs weigh least per line.
    let redis1 = g(Setup::OneRedis, "max10", &redis_line);
    let redis2 = g(Setup::TwoRedis, "max10", &redis_line);
    // Redis's cost per line = a (the PUBLISH) + b per subscribing process:
    // one+redis has one subscriber (the echo), two+redis two.
    let redis_b = redis1.zip(redis2).map(|(x, y)| (y - x).max(0.0));
    let redis_a = redis1.zip(redis_b).map(|(x, b)| (x - b).max(0.0));
    let max_one = g(Setup::One, "max10", &lines_s);
    let max_two = g(Setup::TwoRedis, "max10", &lines_s);
    let chat_line = |p: &Point| Some(p.chat_us_per_line());
    let chat_one = g(Setup::One, "max10", &chat_line);
    let chat_two = g(Setup::TwoRedis, "max10", &chat_line);
    let ours =
        |p: &Point| Some(p.cores(p.server_cpu() + p.redis_cpu_s.unwrap_or(0.0) + p.bench_cpu_s));
    let ours_one = g(Setup::One, "max10", &ours);
    let ours_two = g(Setup::TwoRedis, "max10", &ours);
    let others = g(Setup::TwoRedis, "max10", &|p: &Point| p.other_cores());
    let bench_two = g(Setup::TwoRedis, "max10", &|p: &Point| {
        Some(p.cores(p.bench_cpu_s))
    });
    let f1 = |v: Option<f64>| fmt(v, 1);
    let mut d = String::new();
    let _ = writeln!(
        d,
        "## Figures

Written by `cargo bench --bench scale_out -- --runs {n} --update-docs`
(benches/scale_out.rs), {} to {}, on {} CPUs ({}), Linux {}. Load
average (1, 5, 15 min) {} at the start and {} at the end: **the machine
was shared** (see docs/benchmarks.md, \"Scale-out through Redis\", for what
else ran), so the latency tails below say as much about the scheduler as
about loopchat. Medians of {n} runs; a ratio is computed within each run
(the setups alternate point by point) and its median is shown.

Setups, each started fresh for every point: **one** (one process, no
Redis), **one+redis** (one process with `--redis`: it publishes every line
and hears it back, dropping its own echo: the bridge's whole cost with
nobody to deliver to), **two+redis** (two processes, the bench's senders
and receivers alternating over both, `loopchat-bench A,B`, so every line
is delivered on its sender's process and across the bridge). Each process
also has one line user, joined before the bench, that keeps the room
subscribed (with two processes, a line each way proved the bridge carried
the room before the bench started; then it is silent). CPU is each process's over the bench's whole run (join,
warm-up, measured window, drain; loopchat from /proc, Redis from `INFO
cpu`), divided by every line sent and every delivery made in it. Lines
are 64 bytes; the bench runs in the same process as the harness, one
thread.
",
        when.0,
        when.1,
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        load.0,
        load.1,
    );
    d.push_str(md);
    let _ = writeln!(
        d,
        "
Points: {}.

### What it says

- **The bridge's cost per line.** One process with `--redis` spends {} us
  more CPU per line than without at the `few` point (10 clients, 4,000
  lines/s) and {} us more at full speed (`max10`, where every cost per
  line is lowest: more lines per loop turn): one PUBLISH encoded and
  written, the line read back from Redis, decoded and dropped as an echo.
  At the `ref` point (100 clients) the difference is {} us per line{}.
  The cost is per line, not per delivery: at 100 receivers it is spread
  over 100 deliveries. The spread between `few` and `max10` is batching: at 4,000
  lines/s a line mostly comes alone, and its PUBLISH costs a `write()` to
  Redis and its echo a wake-up and a `read()`; at full speed one of each
  carries many lines.
- **Redis per line** at full speed (`max10`): {} us with one subscribing
  process and {} us with two, i.e. about {} us for the PUBLISH itself and
  {} us per subscribing process it delivers to. At the open-loop points the
  figure per line (one subscribing process) is {}x that at `few` and {}x
  at `ref`, for the same reason as above
  (a read and a write per line; Redis idle costs about 1.4 ms of CPU per
  second here, which is not it). PUBLISH per line is a little above 1:
  joins, leaves and the `sync`/`here` exchange are published too.
- **Two processes against one, here.** The highest rate at 10 clients
  (`max10`) is {} lines/s for one process and {} for two through Redis: not
  twice, and here not even more. The CPU figures say why. Two processes
  and Redis spend {} us of CPU per line in all (loopchat and Redis, `max10`)
  against {} us for one process alone: each process still handles every
  line of the room (it hears all of them from Redis; only the deliveries
  are split), and each line crosses three more sockets. And the cores
  were not ours to fill: this machine has {} and they were busy
  throughout (the table's busy cores); our processes together used {}
  cores with one process and {} with two (the bench alone {}), other
  processes {}. In a closed loop a line waits for the bench, its sender's
  process, Redis and the receivers' process to run in turn; with no idle
  core each of those wake-ups waits for one, and two processes add two
  hops per line. A second process pays off only with a core of its own
  and a room whose deliveries, not its lines, are the work (many
  receivers per process; see the projection).
- **Cross-process latency**, in the same run and under the same load
  (`two+redis`, `ref`): p50 {} ms across processes against {} ms on the
  sender's own process ({}x), p99 {} against {} ms ({}x): one more hop
  through Redis and one more loop turn on each side.

### Projection on paper: N cores, N hosts

Let a room have R receivers and L lines/s, spread over N processes (one
per core, or one per host). Per line, every process that has members in
the room pays the line's receipt from Redis (about the bridge's cost above)
and delivers it to its R/N local members; the process of the sender also
parses it and publishes it. So one process's core holds while

    L x (c_bridge + (R/N) x c_delivery) + (L/N) x c_parse  <  1 core

and N processes raise a room's deliveries about N times while R/N x
c_delivery dominates (large rooms), but the line rate of one room is
bounded by 1 / c_bridge per process whatever N is: every process hears
every line of the rooms it serves. Many rooms spread this: a process hears
only the rooms it has members in.

Redis is single-threaded: per line it pays one PUBLISH (a, about {} us
here, from `max10` above) and one write per subscribing process (b, about
{} us), so

    L x (a + N x b)  <  1 core of Redis

With these figures one Redis core carries about {} lines/s with 2
processes, {} with 8 and {} with 32 (all subscribed to the room), and
its output is L x N x (line + about 100 bytes of envelope and RESP
framing): at 64-byte lines, 8 processes and 100,000 lines/s, about
130 MB/s. Across hosts the
arithmetic is the same; the cross-process latency gains two network
one-way trips (sender's process to Redis, Redis to the receiver's), and a
Redis on its own host costs loopchat nothing but its link. Past one Redis
core, the paths are Redis's I/O threads (`io-threads`, for the writes)
or several Redis instances sharded by room (Redis Cluster's sharded
pub/sub), which loopchat does not support yet (the `{{loopchat}}` hash tag
would have to give way to one per room).
",
        specs
            .iter()
            .map(|s| point_title(s.name, specs))
            .collect::<Vec<_>>()
            .join("; "),
        f1(bridge_few),
        f1(bridge_max),
        f1(bridge_ref),
        ref_note,
        f1(redis1),
        f1(redis2),
        f1(redis_a),
        f1(redis_b),
        fmt(
            g(Setup::OneRedis, "few", &redis_line)
                .zip(redis1)
                .map(|(x, y)| x / y),
            0
        ),
        fmt(
            g(Setup::OneRedis, "ref", &redis_line)
                .zip(redis1)
                .map(|(x, y)| x / y),
            0
        ),
        sig(max_one),
        sig(max_two),
        f1(chat_two),
        f1(chat_one),
        m["cpus"],
        fmt(ours_one, 2),
        fmt(ours_two, 2),
        fmt(bench_two, 2),
        fmt(others, 2),
        fmt(
            g(Setup::TwoRedis, "ref", &|p: &Point| p
                .report
                .latency_cross_target
                .filter(|l| l.count > 0)
                .map(|l| l.p50 as f64 / 1000.0)),
            2
        ),
        fmt(
            g(Setup::TwoRedis, "ref", &|p: &Point| p
                .report
                .latency_same_target
                .filter(|l| l.count > 0)
                .map(|l| l.p50 as f64 / 1000.0)),
            2
        ),
        fmt(cross_over_same(runs, "ref", false), 2),
        fmt(
            g(Setup::TwoRedis, "ref", &|p: &Point| p
                .report
                .latency_cross_target
                .filter(|l| l.count > 0)
                .map(|l| l.p99 as f64 / 1000.0)),
            2
        ),
        fmt(
            g(Setup::TwoRedis, "ref", &|p: &Point| p
                .report
                .latency_same_target
                .filter(|l| l.count > 0)
                .map(|l| l.p99 as f64 / 1000.0)),
            2
        ),
        fmt(cross_over_same(runs, "ref", true), 2),
        f1(redis_a),
        f1(redis_b),
        sig(redis_a.zip(redis_b).map(|(a, b)| 1e6 / (a + 2.0 * b))),
        sig(redis_a.zip(redis_b).map(|(a, b)| 1e6 / (a + 8.0 * b))),
        sig(redis_a.zip(redis_b).map(|(a, b)| 1e6 / (a + 32.0 * b))),
    );
    d
}

/// A rate to two significant figures, with thousands separated
/// (`150,000`): a projection is no more precise than that.
fn sig(v: Option<f64>) -> String {
    let Some(v) = v.filter(|v| v.is_finite() && *v >= 1.0) else {
        return "-".into();
    };
    let scale = 10f64.powi(v.log10().floor() as i32 - 1);
    let n = ((v / scale).round() * scale) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Replaces (or appends) the `## Figures` section, the last of the file.
fn update_doc(path: &std::path::Path, section: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let head = match text.find("\n## Figures\n") {
        Some(i) => &text[..=i],
        None => text.as_str(),
    };
    let mut out = head.trim_end().to_string();
    out.push_str("\n\n");
    out.push_str(section.trim_end());
    out.push('\n');
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() {
    let Some(cli) = shared::Args::from_env("scale_out") else {
        return;
    };
    let (quick, update_docs) = (cli.quick, cli.update_docs);
    let n_runs = cli.runs(if quick { 1 } else { 3 }, 9);
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        if std::env::var_os("CI").is_some() {
            eprintln!("scale_out: redis-server is not installed (CI is set: this is a failure)");
            std::process::exit(1);
        }
        eprintln!(
            "scale_out: SKIPPED: redis-server is not installed (apt-get install redis-server)"
        );
        return;
    }
    bench::proc_stats::raise_nofile_limit();
    let program = PathBuf::from(env!("CARGO_BIN_EXE_loopchat-server"));
    let specs = points(quick);
    let started = Instant::now();
    let (load_start, when_start) = (loadavg(), utc_now());
    let mut runs: Vec<Run> = Vec::new();
    let mut failed = false;
    for run in 0..n_runs {
        let mut points = Vec::new();
        for spec in &specs {
            for setup in Setup::ALL {
                eprintln!(
                    "== run {} of {n_runs}: {} {} (load {})",
                    run + 1,
                    spec.name,
                    setup.name(),
                    loadavg()
                );
                match measure(setup, *spec, &program) {
                    Ok(p) => {
                        let r = &p.report;
                        eprintln!(
                            "   {:.0} lines/s, {:.0} deliveries/s, lost {} dup {} reord {}, loopchat {:.1} us/line, redis {} us/line",
                            r.sent_per_s(),
                            r.deliveries_per_s(),
                            r.lost,
                            r.duplicates,
                            r.reordered,
                            p.server_us_per_line(),
                            fmt(p.redis_us_per_line(), 1)
                        );
                        if !r.is_clean() {
                            eprintln!(
                                "scale_out: {} {} not clean: {}",
                                setup.name(),
                                spec.name,
                                r.to_json()
                            );
                            failed = true;
                        }
                        points.push(p);
                    }
                    Err(e) => {
                        eprintln!("scale_out: {e}");
                        failed = true;
                    }
                }
            }
        }
        runs.push(points);
    }
    let md = table(&runs, &specs);
    println!("{md}");
    let (load_end, when_end) = (loadavg(), utc_now());
    let machine = machine();
    let tag = if quick { "quick" } else { "full" };
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = manifest.join("target").join("bench-results");
    let _ = std::fs::create_dir_all(&out_dir);
    let raw = json!({
        "mode": tag,
        "machine": machine,
        "load_average": { "start": load_start, "end": load_end },
        "when": { "start": when_start, "end": when_end },
        "elapsed_s": started.elapsed().as_secs_f64(),
        "runs": runs.iter().map(|r| r.iter().map(Point::to_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "table_markdown": md,
    });
    let json_path = out_dir.join(format!("scale-out-{tag}.json"));
    match serde_json::to_string_pretty(&raw) {
        Ok(text) => match std::fs::write(&json_path, text) {
            Ok(()) => eprintln!("raw results: {}", json_path.display()),
            Err(e) => eprintln!("scale_out: writing {}: {e}", json_path.display()),
        },
        Err(e) => eprintln!("scale_out: JSON: {e}"),
    }
    let section = figures_doc(
        &runs,
        &specs,
        &md,
        &machine,
        (&load_start, &load_end),
        (&when_start, &when_end),
    );
    if update_docs && !quick {
        let dest = manifest.join("docs").join("scale-out.md");
        match update_doc(&dest, &section) {
            Ok(()) => eprintln!("wrote the Figures section of {}", dest.display()),
            Err(e) => {
                eprintln!("scale_out: {e}");
                failed = true;
            }
        }
    } else {
        let path = out_dir.join(format!("scale-out-{tag}.md"));
        let _ = std::fs::write(&path, &section);
        eprintln!(
            "figures section (not written to the docs): {}",
            path.display()
        );
    }
    eprintln!(
        "scale_out: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failed {
        std::process::exit(1);
    }
}
