//! `cargo bench --bench peers [-- --quick | --runs N | --update-docs]`:
//! loopchat in each of its dialects beside the servers people compare it
//! with, in one run, with the same load generator and the same matrix.
//!
//! Targets: loopchat (line, irc, ws, ws-irc; one server binary, the client
//! chooses) and whichever peers are installed: ngIRCd and InspIRCd (spoken
//! to in `--dialect irc`) and Redis pub/sub (`--dialect resp`). Each peer
//! runs in the foreground as the current user, on a free loopback port,
//! from a configuration file under `benches/peers/` with its flood limits
//! opened (the files say which and why; docs/peers.md too). A peer that is
//! not installed is skipped with a note.
//!
//! The matrix, for each target, a fresh server per point:
//!
//! 1. fanout to 100 receivers, 4 senders, 64 B: the offered rate swept
//!    upward until two points in a row break; capacity is the highest rate
//!    with zero loss, p99 below 100 ms and the rate actually sent;
//! 2. the same to 1,000 receivers, finely from 2,000 to 6,000 msg/s;
//! 3. idle: 2,000 joined clients, the server's RSS per connection.
//!
//! `Size::only` can restrict a size to some dialects (the 10,000
//! receivers for line and Redis would be one; left out to keep a run
//! within about 15 minutes on a shared 2-core machine, `RUN_BUDGET` per
//! `--runs`).
//!
//! "Receivers" is exact in every dialect: a message reaches every other
//! client of the room, so line and IRC use receivers + 1 clients; Redis
//! publishers do not subscribe, so resp uses receivers + 4.
//!
//! For each capacity cell the report says what limited it: the server's CPU
//! and the bench's (from `--server-pid` and the bench's own /proc, over the
//! point's measured window and drain), and the machine's busy cores
//! (/proc/stat over the point), at the first point that broke.
//!
//! Output: a markdown table on stdout, the raw reports as JSON and SVG
//! charts under target/bench-results/, and with `--update-docs`
//! docs/peers.md and its charts. `--quick` (CI): loopchat only, each
//! dialect once at a low rate, checks zero loss, asserts no speed. Under
//! `cargo test --all-targets` (no `--bench` argument) it exits at once.

mod shared;

use loopchat::bench::{self, Config, Report, Workload, dialect::Dialect};
use serde_json::{Value, json};
use shared::{PeerConf, Server, ServerKind, busy_cores, chart, cpu_ticks, fmt, machine, median};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Capacity criteria.
const MAX_P99_US: u64 = 100_000;
/// The rate the latency figures are quoted at.
const REFERENCE_RATE: f64 = 1000.0;
const SENDERS: usize = 4;
/// The whole run stops starting new points after this long, per run
/// asked for (`--runs 3`: three times this).
const RUN_BUDGET: Duration = Duration::from_secs(15 * 60);

/// One thing measured: a server started one way, spoken to in one dialect.
struct Target {
    /// Column name, e.g. `loopchat irc`.
    name: &'static str,
    kind: ServerKind,
    dialect: Dialect,
    /// Extra bench settings (ngIRCd: oper and +F).
    irc_oper: bool,
    /// Its loopchat counterpart (the ratio's other side), by name.
    versus: Option<&'static str>,
    version: String,
}

struct Plan {
    quick: bool,
    sizes: Vec<Size>,
    warmup: Duration,
    duration: Duration,
    idle_clients: usize,
    idle_hold: Duration,
}

#[derive(Clone)]
struct Size {
    receivers: usize,
    rates: Vec<f64>,
    /// Only these dialects (empty: all).
    only: Vec<Dialect>,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            quick: false,
            sizes: vec![
                Size {
                    receivers: 100,
                    rates: vec![1e3, 2e3, 5e3, 1e4, 2e4, 3e4, 5e4, 1e5],
                    only: vec![],
                },
                Size {
                    receivers: 1000,
                    rates: vec![200.0, 500.0, 1e3, 2e3, 3e3, 4e3, 5e3, 6e3, 8e3, 1e4],
                    only: vec![],
                },
            ],
            warmup: Duration::from_secs(1),
            duration: Duration::from_millis(1500),
            idle_clients: 2000,
            idle_hold: Duration::from_secs(1),
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            sizes: vec![Size {
                receivers: 10,
                rates: vec![500.0],
                only: vec![],
            }],
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(800),
            idle_clients: 0,
            idle_hold: Duration::ZERO,
        }
    }
}

/// One sweep point with the machine's load over it.
struct Point {
    report: Report,
    busy_cores: Option<f64>,
}

impl Point {
    /// Cores the server and the bench used over the cost window.
    fn cores(&self) -> (Option<f64>, Option<f64>) {
        let r = &self.report;
        let span = (r.measured_s + r.drain_s).max(1e-3);
        (
            r.server.map(|s| s.cpu_s / span),
            r.bench_cpu_s.map(|b| b / span),
        )
    }

    fn holds(&self) -> bool {
        let r = &self.report;
        let p99 = r.latency.map_or(u64::MAX, |l| l.p99);
        r.is_clean() && p99 < MAX_P99_US && r.sent_per_s() >= 0.95 * r.config.rate
    }
}

struct Sweep {
    receivers: usize,
    points: Vec<Point>,
    capacity: Option<usize>,
}

impl Sweep {
    fn capacity_point(&self) -> Option<&Point> {
        self.capacity.map(|i| &self.points[i])
    }

    /// The first point above capacity that broke: where the limit shows.
    fn broken_point(&self) -> Option<&Point> {
        let from = self.capacity.map_or(0, |i| i + 1);
        self.points[from..].iter().find(|p| !p.holds())
    }

    fn reference(&self) -> Option<&Point> {
        self.points
            .iter()
            .find(|p| p.report.config.rate == REFERENCE_RATE)
    }
}

fn config(t: &Target, workload: Workload, server: &Server) -> Config {
    let mut c = Config::new(workload, server.addr);
    c.quiet = true;
    c.server_pids = vec![server.pid];
    c.connect_rate = 5000.0;
    c.join_timeout = Duration::from_secs(60);
    c.dialect = t.dialect;
    if t.dialect == Dialect::Resp {
        c.room = "lobby".into();
    }
    if t.irc_oper {
        c.irc_oper = Some(("bench".into(), "bench".into()));
        c.irc_umode = Some("+F".into());
    }
    c
}

fn clients_for(dialect: Dialect, receivers: usize) -> usize {
    if dialect == Dialect::Resp {
        receivers + SENDERS
    } else {
        receivers + 1
    }
}

fn sweep(t: &Target, plan: &Plan, size: &Size, deadline: Instant) -> Result<Sweep, String> {
    let mut points: Vec<Point> = Vec::new();
    let mut capacity = None;
    let mut broken_in_a_row = 0;
    for &rate in &size.rates {
        if Instant::now() >= deadline {
            eprintln!("  {}: run budget spent, sweep stopped at {rate}", t.name);
            break;
        }
        let server = t.kind.start()?;
        let mut c = config(t, Workload::Fanout, &server);
        c.clients = clients_for(t.dialect, size.receivers);
        c.senders = SENDERS;
        c.rate = rate;
        c.warmup = plan.warmup;
        c.duration = plan.duration;
        let before = cpu_ticks();
        let r = bench::run(&c).map_err(|e| format!("{}: fanout: {e}", t.name))?;
        let p = Point {
            busy_cores: busy_cores(before, cpu_ticks()),
            report: r,
        };
        drop(server);
        let ok = p.holds();
        let r = &p.report;
        let lat = r.latency.unwrap_or_default();
        let (srv, bch) = p.cores();
        eprintln!(
            "  {:<16} {:>5} rcv {:>8} msg/s -> {:>10.0} dlv/s  p50 {:>7} us  p99 {:>8} us  lost {:<6} {:<6} server {} bench {} busy {} cores",
            t.name,
            size.receivers,
            rate,
            r.deliveries_per_s(),
            lat.p50,
            lat.p99,
            r.lost + r.cut.undelivered,
            if ok { "ok" } else { "BROKEN" },
            fmt(srv, 2),
            fmt(bch, 2),
            fmt(p.busy_cores, 2),
        );
        if plan.quick && !r.is_clean() {
            return Err(format!(
                "{}: quick fanout at {rate} msg/s was not clean: {}",
                t.name,
                r.to_json()
            ));
        }
        points.push(p);
        if ok {
            capacity = Some(points.len() - 1);
            broken_in_a_row = 0;
        } else {
            // Two broken points in a row end the sweep: one can be noise
            // on a shared machine, two are the limit.
            broken_in_a_row += 1;
            if broken_in_a_row >= 2 {
                break;
            }
        }
    }
    Ok(Sweep {
        receivers: size.receivers,
        points,
        capacity,
    })
}

struct Idle {
    report: Report,
    rss_empty_kib: u64,
}

impl Idle {
    fn bytes_per_conn(&self) -> Option<f64> {
        let s = self.report.server?;
        (self.report.held > 0).then(|| {
            s.rss_end_kib.saturating_sub(self.rss_empty_kib) as f64 * 1024.0
                / self.report.held as f64
        })
    }
}

fn idle(t: &Target, plan: &Plan) -> Result<Idle, String> {
    let server = t.kind.start()?;
    let mut c = config(t, Workload::Idle, &server);
    c.clients = plan.idle_clients;
    c.senders = 0;
    c.duration = plan.idle_hold;
    c.connect_rate = 2500.0;
    let r = bench::run(&c).map_err(|e| format!("{}: idle: {e}", t.name))?;
    let idle = Idle {
        report: r,
        rss_empty_kib: server.rss_empty_kib,
    };
    eprintln!(
        "  {:<16} idle: {} of {} joined in {:.1} s, {} B per connection",
        t.name,
        idle.report.held,
        idle.report.requested,
        idle.report.join_s,
        fmt(idle.bytes_per_conn(), 0)
    );
    Ok(idle)
}

struct Results {
    sweeps: Vec<Sweep>,
    idle: Option<Idle>,
}

fn run_target(t: &Target, plan: &Plan, deadline: Instant) -> Result<Results, String> {
    let mut sweeps = Vec::new();
    for size in &plan.sizes {
        if size.only.is_empty() || size.only.contains(&t.dialect) {
            sweeps.push(sweep(t, plan, size, deadline)?);
        }
    }
    let idle = if plan.idle_clients > 0 && Instant::now() < deadline {
        Some(idle(t, plan)?)
    } else {
        None
    };
    Ok(Results { sweeps, idle })
}

/// What limited a sweep, judged at its first broken point.
fn limit(s: &Sweep) -> String {
    let Some(p) = s.broken_point() else {
        return if s.points.is_empty() {
            "-".into()
        } else {
            "not reached (held every rate tried)".into()
        };
    };
    let (srv, bch) = p.cores();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy = p.busy_cores.unwrap_or(0.0);
    let mut why = match (srv, bch) {
        (Some(s), Some(b)) if s >= 0.85 && s >= b => "server CPU".to_string(),
        (Some(s), Some(b)) if b >= 0.85 && b > s => "bench CPU".to_string(),
        (Some(_), Some(_)) if busy >= 0.9 * cpus => "machine (all cores busy)".to_string(),
        (Some(s), Some(_)) if s < 0.5 => "server, not CPU (flood control or queueing)".to_string(),
        _ => "mixed".to_string(),
    };
    let _ = write!(
        why,
        " at {} msg/s: server {} / bench {} / machine {} cores",
        p.report.config.rate,
        fmt(srv, 2),
        fmt(bch, 2),
        fmt(Some(busy), 2)
    );
    why
}

/// A target's runs.
struct Runs<'a> {
    target: &'a Target,
    runs: Vec<Results>,
}

/// Headline figures per target, each the median over the runs.
fn figures(r: &Runs, receivers: usize) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let sweeps: Vec<&Sweep> = r
        .runs
        .iter()
        .filter_map(|x| x.sweeps.iter().find(|s| s.receivers == receivers))
        .collect();
    let cap = median(
        sweeps
            .iter()
            .filter_map(|s| s.capacity_point().map(|p| p.report.config.rate))
            .collect(),
    );
    let dlv = median(
        sweeps
            .iter()
            .filter_map(|s| s.capacity_point().map(|p| p.report.deliveries_per_s()))
            .collect(),
    );
    let ref_p = |f: fn(&bench::stats::LatencySummary) -> u64| {
        median(
            sweeps
                .iter()
                .filter_map(|s| s.reference())
                .filter(|p| p.holds())
                .filter_map(|p| p.report.latency.map(|l| f(&l) as f64 / 1000.0))
                .collect(),
        )
    };
    (cap, dlv, ref_p(|l| l.p50), ref_p(|l| l.p99))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.1}x", a / b),
        _ => "-".into(),
    }
}

fn table(all: &[Runs], sizes: &[usize]) -> String {
    let mut t = String::new();
    for &n in sizes {
        let present: Vec<&Runs> = all
            .iter()
            .filter(|r| {
                r.runs
                    .iter()
                    .any(|x| x.sweeps.iter().any(|s| s.receivers == n))
            })
            .collect();
        if present.is_empty() {
            continue;
        }
        let _ = writeln!(t, "\n**{n} receivers** (4 senders, 64 B payloads)\n");
        let _ = writeln!(
            t,
            "| server | dialect | capacity (msg/s) | deliveries/s at capacity | p50 at {REFERENCE_RATE} msg/s (ms) | p99 at {REFERENCE_RATE} msg/s (ms) | loopchat's capacity / this |"
        );
        let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|");
        for r in &present {
            let (cap, dlv, p50, p99) = figures(r, n);
            let vs = r
                .target
                .versus
                .and_then(|name| all.iter().find(|x| x.target.name == name))
                .map(|x| ratio(figures(x, n).0, cap))
                .map(|v| format!("{v} ({})", r.target.versus.unwrap_or("")))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {vs} |",
                r.target.name,
                r.target.dialect.name(),
                fmt(cap, 0),
                fmt(dlv, 0),
                fmt(p50, 2),
                fmt(p99, 2)
            );
        }
    }
    let idle: Vec<(&str, Option<f64>, Option<f64>)> = all
        .iter()
        .map(|r| {
            let per = median(
                r.runs
                    .iter()
                    .filter_map(|x| x.idle.as_ref().and_then(Idle::bytes_per_conn))
                    .collect(),
            );
            let held = median(
                r.runs
                    .iter()
                    .filter_map(|x| x.idle.as_ref().map(|i| i.report.held as f64))
                    .collect(),
            );
            (r.target.name, held, per)
        })
        .filter(|x| x.1.is_some())
        .collect();
    if !idle.is_empty() {
        let _ = writeln!(t, "\n**Idle clients** (joined and silent)\n");
        let _ = writeln!(t, "| server | held | RSS per connection (bytes) |");
        let _ = writeln!(t, "|---|---:|---:|");
        for (name, held, per) in idle {
            let _ = writeln!(t, "| {name} | {} | {} |", fmt(held, 0), fmt(per, 0));
        }
    }
    let _ = writeln!(t, "\n**What limited each capacity** (last run)\n");
    let _ = writeln!(t, "| server | receivers | limit |");
    let _ = writeln!(t, "|---|---:|---|");
    for r in all {
        if let Some(last) = r.runs.last() {
            for s in &last.sweeps {
                let _ = writeln!(t, "| {} | {} | {} |", r.target.name, s.receivers, limit(s));
            }
        }
    }
    t
}

fn charts(all: &[Runs], sizes: &[usize], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for &n in sizes {
        let pick = |f: fn(&Point) -> Option<f64>| -> Vec<(&str, Vec<(f64, f64)>)> {
            all.iter()
                .filter_map(|r| {
                    let s = r.runs.last()?.sweeps.iter().find(|s| s.receivers == n)?;
                    Some((
                        r.target.name,
                        s.points
                            .iter()
                            .filter_map(|p| f(p).map(|y| (p.report.config.rate, y)))
                            .collect(),
                    ))
                })
                .collect()
        };
        let deliveries = pick(|p| Some(p.report.deliveries_per_s()));
        if deliveries.is_empty() {
            continue;
        }
        let f = dir.join(format!("peers-{n}-deliveries.svg"));
        chart(
            &f,
            &format!("fan-out to {n} receivers: deliveries/s"),
            "deliveries/s",
            &deliveries,
        )?;
        files.push(f);
        let p99 = pick(|p| p.report.latency.map(|l| l.p99 as f64));
        let f = dir.join(format!("peers-{n}-p99.svg"));
        chart(
            &f,
            &format!("fan-out to {n} receivers: p99 latency (corrected)"),
            "p99 (us)",
            &p99,
        )?;
        files.push(f);
    }
    Ok(files)
}

fn sweep_json(s: &Sweep) -> Value {
    json!({
        "receivers": s.receivers,
        "capacity_rate": s.capacity_point().map(|p| p.report.config.rate),
        "limit": limit(s),
        "points": s.points.iter().map(|p| {
            let (srv, bch) = p.cores();
            json!({
                "report": p.report.to_json(),
                "server_cores": srv,
                "bench_cores": bch,
                "machine_busy_cores": p.busy_cores,
                "holds": p.holds(),
            })
        }).collect::<Vec<_>>(),
    })
}

fn first_line(program: &str, arg: &str) -> String {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_default()
}

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn targets(manifest: &Path, quick: bool) -> Vec<Target> {
    let loopchat = ServerKind {
        name: "loopchat",
        program: PathBuf::from(env!("CARGO_BIN_EXE_loopchat-server")),
        args: shared::loopchat_args(),
        conf: None,
    };
    let version = format!("loopchat {}", env!("CARGO_PKG_VERSION"));
    let t: Vec<Target> = [
        ("loopchat line", Dialect::Line),
        ("loopchat irc", Dialect::Irc),
        ("loopchat ws", Dialect::Ws),
        ("loopchat ws-irc", Dialect::WsIrc),
    ]
    .into_iter()
    .map(|(name, dialect)| Target {
        name,
        kind: loopchat.clone(),
        dialect,
        irc_oper: false,
        versus: None,
        version: version.clone(),
    })
    .collect();
    if quick {
        return t;
    }
    // Each peer right after its loopchat counterpart, so that a run cut
    // short by the time budget still compares like with like.
    let (ws, line_irc): (Vec<Target>, Vec<Target>) =
        t.into_iter().partition(|x| x.dialect.websocket());
    let mut t = line_irc;
    let confs = manifest.join("benches").join("peers");
    let root = unsafe_is_root();
    match find_program(&[
        "/usr/sbin/ngircd",
        "/usr/bin/ngircd",
        "/usr/local/sbin/ngircd",
    ]) {
        Some(p) => t.push(Target {
            name: "ngIRCd",
            version: first_line(&p.to_string_lossy(), "--version"),
            kind: ServerKind {
                name: "ngIRCd",
                program: p,
                args: strings(&["-n", "-f", "@CONF@"]),
                conf: Some(PeerConf {
                    template: confs.join("ngircd.conf"),
                    file: "ngircd.conf",
                }),
            },
            dialect: Dialect::Irc,
            irc_oper: true,
            versus: Some("loopchat irc"),
        }),
        None => eprintln!("peers: ngIRCd is not installed (apt install ngircd): skipped"),
    }
    match find_program(&[
        "/usr/sbin/inspircd",
        "/usr/bin/inspircd",
        "/usr/local/sbin/inspircd",
    ]) {
        Some(p) => {
            let mut args = strings(&["--nofork", "--config", "@CONF@"]);
            if root {
                // InspIRCd refuses root unless told; this bench's machine
                // runs everything as root.
                args.push("--runasroot".into());
            }
            t.push(Target {
                name: "InspIRCd",
                version: first_line(&p.to_string_lossy(), "--version"),
                kind: ServerKind {
                    name: "InspIRCd",
                    program: p,
                    args,
                    conf: Some(PeerConf {
                        template: confs.join("inspircd.conf"),
                        file: "inspircd.conf",
                    }),
                },
                dialect: Dialect::Irc,
                irc_oper: false,
                versus: Some("loopchat irc"),
            })
        }
        None => eprintln!("peers: InspIRCd is not installed (apt install inspircd): skipped"),
    }
    match find_program(&["/usr/bin/redis-server", "/usr/local/bin/redis-server"]) {
        Some(p) => t.push(Target {
            name: "Redis",
            version: first_line(&p.to_string_lossy(), "--version"),
            kind: ServerKind {
                name: "Redis",
                program: p,
                args: strings(&["@CONF@"]),
                conf: Some(PeerConf {
                    template: confs.join("redis.conf"),
                    file: "redis.conf",
                }),
            },
            dialect: Dialect::Resp,
            irc_oper: false,
            versus: Some("loopchat line"),
        }),
        None => {
            eprintln!("peers: redis-server is not installed (apt install redis-server): skipped")
        }
    }
    // line, Redis, irc, ngIRCd, InspIRCd, then the WebSocket dialects.
    if let Some(redis) = t.iter().position(|x| x.dialect == Dialect::Resp) {
        let r = t.remove(redis);
        t.insert(1, r);
    }
    t.extend(ws);
    t
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// docs/peers.md from a run.
fn doc(
    all: &[Runs],
    md: &str,
    machine: &Value,
    load: (&str, &str),
    elapsed: Duration,
    runs: usize,
) -> String {
    let mut d = String::new();
    let _ = writeln!(
        d,
        "# loopchat beside its peers

Written by `cargo bench --bench peers -- --runs {runs} --update-docs` (benches/peers.rs); \
every figure below is from that command, the peers measured in the same run as loopchat, \
alternating, with the same load generator (`loopchat::bench`, one thread, one `mio::Poll`).

## Method

- **Fan-out**: 4 senders and N receivers in one room (an IRC channel, a Redis channel), \
64-byte payloads, open loop (every message has an intended send time fixed by the rate, \
and latency is measured from it, so a stall shows instead of hiding: no coordinated \
omission). A fresh server for every point; 1 s of warm-up, then 1.5 s measured, then a \
bounded drain. Every delivery is accounted for: loss, duplicates, reordering.
- **Capacity**: the highest offered rate (messages/s into the room) with zero loss, p99 \
below 100 ms and at least 95 % of the rate actually sent. The 100-receiver sweep goes \
from 1,000 to 100,000 msg/s, the 1,000-receiver sweep from 200 to 10,000 (steps of \
1,000 from 2,000 to 6,000); a sweep stops after two broken points in a row. The \
10,000-receiver size of the issue is not in this run (time).
- **Receivers** are exact: line and IRC rooms hold N + 1 clients (a sender does not \
receive its own message), Redis N subscribers plus 4 publishers.
- **Idle**: {{idle}} clients joined and silent; RSS growth per connection.
- **What limited it**: at the first broken point, the server's CPU and the bench's \
(cores, from /proc over the measured window and drain) and the machine's busy cores \
(/proc/stat). One core used up is the limit of a single-threaded process; the bench is \
one too.
- Figures are medians of {runs} run(s) per target.

## Machine

{machine}, load average {load_start} at the start and {load_end} at the end of the run \
({elapsed:.0} s). The bench runs on the same machine as the server under test: on 2 \
cores, the two compete, and other work on the machine (the load average above) makes \
figures low and noisy; compare columns, which were measured under the same conditions.

Versions: {versions}.

## Configuration changes

Each peer runs from a file under `benches/peers/`, in the foreground, on a free \
loopback port, with its pid and log files in a temp dir. What was changed from the \
defaults, and why (the bench is one host, 127.0.0.1, sending thousands of lines a \
second from a handful of connections):

- **ngIRCd** (`ngircd.conf`): `MaxConnectionsIP = 0` (default 5 per IP), \
`MaxConnections = 0`, `MaxJoins = 0`; `DNS = no`, `Ident = no`, `PAM = no`; long \
`PingTimeout`. ngIRCd's flood control cannot be turned off in its configuration: a \
client that sends more than 3 lines in one pass is throttled for a second. Its \
documented way out is user mode `+F` (\"relaxed flood protection, only settable by IRC \
Operators\"): an `[Operator]` block, and the bench's `--irc-oper bench:bench \
--irc-umode +F`, so every bench client opers up and sets `+F` on itself before joining. \
Even with `+F` a client's commands are handled at most 10 per pass of ngIRCd's loop, \
and its write buffer is capped (\"Write buffer space exhausted\" closes a slow reader). \
When started as root, ngIRCd runs as `nobody` (it refuses ServerUID 0).
- **InspIRCd** (`inspircd.conf`): one `<connect>` class with `localmax`/`globalmax`/\
`limit` at 100,000 (default 3 per IP), `threshold=\"1000000\" commandrate=\"1000000000\" \
fakelag=\"no\"` (default: 1 command/s with a penalty threshold of 10, so a sender is \
cut or delayed at once), `recvq` 16 MB, `softsendq` 64 MB and `hardsendq` 256 MB \
(default 8 KB / 256 KB: a receiver a fraction of a second behind at 1,000 receivers is \
cut), `resolvehostnames=\"no\"`, `useident=\"no\"`; `<performance softlimit=\"100000\" \
somaxconn=\"4096\" clonesonconnect=\"no\">`. Run with `--runasroot` when the bench \
runs as root. InspIRCd registers a client asynchronously, so the bench's IRC dialect \
sends JOIN after `001`.
- **Redis** (`redis.conf`): `client-output-buffer-limit pubsub 1gb 512mb 60` (default \
32 MB hard, 8 MB for 60 s: a subscriber behind by that much is cut), `maxclients \
100000` (Redis lowers it to the file limit), `save \"\"`, `appendonly no` (no disk), \
`tcp-backlog 4096`, `timeout 0`, `protected-mode no` (loopback only).
- **loopchat**: `--max-rate 0` (no per-client line rate), `--max-clients 100000`, \
`--log-level warn`; one server binary for the four dialects (line, IRC, WebSocket and \
IRC over WebSocket on the same port).

## Results
{md}

![deliveries/s, 100 receivers](peers-100-deliveries.svg)
![p99, 100 receivers](peers-100-p99.svg)
![deliveries/s, 1,000 receivers](peers-1000-deliveries.svg)
![p99, 1,000 receivers](peers-1000-p99.svg)

The raw reports (every point, with its server and bench CPU and the machine's busy \
cores) are in `target/bench-results/peers-full.json` after a run.
",
        machine = machine_text(machine),
        load_start = load.0,
        load_end = load.1,
        elapsed = elapsed.as_secs_f64(),
        versions =
            all.iter()
                .filter(|r| !r.target.name.starts_with("loopchat ")
                    || r.target.dialect == Dialect::Line)
                .map(|r| r.target.version.clone())
                .collect::<Vec<_>>()
                .join("; "),
    );
    d
}

fn machine_text(m: &Value) -> String {
    format!(
        "{} CPUs ({}), Linux {}",
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?")
    )
}

fn main() {
    let Some(cli) = shared::Args::from_env("peers") else {
        return;
    };
    let (quick, update_docs) = (cli.quick, cli.update_docs);
    let runs = cli.runs(1, 5);
    let plan = if quick { Plan::quick() } else { Plan::full() };
    bench::proc_stats::raise_nofile_limit();
    let started = Instant::now();
    let deadline = started + RUN_BUDGET * runs as u32;
    let load_start = loadavg();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let targets = targets(&manifest, quick);
    let mut all: Vec<Runs> = targets
        .iter()
        .map(|t| Runs {
            target: t,
            runs: Vec::new(),
        })
        .collect();
    let mut failed = false;
    for run in 0..runs {
        for slot in all.iter_mut() {
            eprintln!("== {} (run {} of {runs}) ==", slot.target.name, run + 1);
            match run_target(slot.target, &plan, deadline) {
                Ok(r) => slot.runs.push(r),
                Err(e) => {
                    eprintln!("peers bench: {e}");
                    failed = true;
                }
            }
        }
    }
    all.retain(|r| !r.runs.is_empty());
    let sizes: Vec<usize> = plan.sizes.iter().map(|s| s.receivers).collect();
    let md = table(&all, &sizes);
    println!("{md}");
    let tag = if quick { "quick" } else { "full" };
    let out_dir = manifest.join("target").join("bench-results");
    let _ = std::fs::create_dir_all(&out_dir);
    let machine = machine();
    let load_end = loadavg();
    let raw = json!({
        "mode": tag,
        "machine": machine,
        "load_average": { "start": load_start, "end": load_end },
        "elapsed_s": started.elapsed().as_secs_f64(),
        "targets": all.iter().map(|r| json!({
            "name": r.target.name,
            "dialect": r.target.dialect.name(),
            "version": r.target.version,
            "runs": r.runs.iter().map(|x| json!({
                "sweeps": x.sweeps.iter().map(sweep_json).collect::<Vec<_>>(),
                "idle": x.idle.as_ref().map(|i| json!({
                    "report": i.report.to_json(),
                    "rss_empty_kib": i.rss_empty_kib,
                    "bytes_per_connection": i.bytes_per_conn(),
                })),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "table_markdown": md,
    });
    let json_path = out_dir.join(format!("peers-{tag}.json"));
    match serde_json::to_string_pretty(&raw) {
        Ok(text) => match std::fs::write(&json_path, text) {
            Ok(()) => eprintln!("raw results: {}", json_path.display()),
            Err(e) => eprintln!("peers bench: writing {}: {e}", json_path.display()),
        },
        Err(e) => eprintln!("peers bench: JSON: {e}"),
    }
    match charts(&all, &sizes, &out_dir) {
        Ok(files) => {
            for f in &files {
                eprintln!("chart: {}", f.display());
                if update_docs && !quick {
                    if let Some(name) = f.file_name() {
                        let dest = manifest.join("docs").join(name);
                        if let Err(e) = std::fs::copy(f, &dest) {
                            eprintln!("peers bench: copying to {}: {e}", dest.display());
                        }
                    }
                }
            }
        }
        Err(e) => eprintln!("peers bench: charts: {e}"),
    }
    if update_docs && !quick {
        let text = doc(
            &all,
            &md,
            &machine,
            (&load_start, &load_end),
            started.elapsed(),
            runs,
        )
        .replace("{idle}", &plan.idle_clients.to_string());
        let dest = manifest.join("docs").join("peers.md");
        match std::fs::write(&dest, text) {
            Ok(()) => eprintln!("wrote {}", dest.display()),
            Err(e) => eprintln!("peers bench: writing {}: {e}", dest.display()),
        }
    }
    eprintln!(
        "peers bench: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failed {
        std::process::exit(1);
    }
}
