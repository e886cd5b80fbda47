//! `cargo bench --bench fanout [-- --quick] [-- --update-docs]`: loopchat
//! against the thread-per-client baseline, the same matrix on each, one
//! after the other in the same run.
//!
//! 1. fanout, 100 clients, 4 senders, 64 B: the offered rate is swept upward
//!    until the server breaks; capacity is the highest rate with zero loss
//!    and p99 below 50 ms;
//! 2. the same with 1,000 clients;
//! 3. 10,000 idle joined clients: RSS per connection and threads;
//! 4. churn: joins per second.
//!
//! Every sweep point and every other group starts a fresh server process
//! (so one group's departures and memory do not pollute the next). The loopchat server is the package's
//! `loopchat-server` binary (built by `cargo bench` itself); the baseline is
//! this same bench executable re-run with `--serve-threaded`, which runs
//! `loopchat::bench::baseline` and nothing else. The load comes from the
//! bench library (`loopchat::bench::run`), in this process.
//!
//! Output: a markdown table on stdout, the raw reports as JSON and SVG charts
//! under target/bench-results/, and with `--update-docs` the charts copied
//! to docs/. `--quick` (CI) runs tiny sizes, checks that nothing was lost,
//! and asserts no speed. Under `cargo test --all-targets` (no `--bench`
//! argument) it exits at once.
//!
//! `--reduced` keeps the sizes and the point length but sweeps fewer rates
//! and skips the idle workload (see `Plan::reduced`; about 2 minutes per
//! server per run instead of 5). `--also-loopchat NAME=PATH` adds another
//! loopchat-server build to the same run, e.g. an older commit's for a
//! before/after comparison:
//! `cargo bench --bench fanout -- --runs 3 --reduced --also-loopchat
//! loopchat-e14533d=/path/to/old/target/release/loopchat-server`.

mod shared;

use loopchat::bench::{self, Config, Report, Workload};
use serde_json::{Value, json};
use shared::{Server, ServerKind, chart, fmt, machine, median};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Capacity criteria.
const MAX_P99_US: u64 = 50_000;

struct Plan {
    quick: bool,
    sweep_small_clients: usize,
    sweep_large_clients: usize,
    rates_small: Vec<f64>,
    rates_large: Vec<f64>,
    point_warmup: Duration,
    point_duration: Duration,
    idle_clients: usize,
    idle_hold: Duration,
    churn_duration: Duration,
    reference_rate: f64,
}

impl Plan {
    fn full() -> Plan {
        let rates = |v: &[f64]| v.to_vec();
        Plan {
            quick: false,
            sweep_small_clients: 100,
            sweep_large_clients: 1000,
            rates_small: rates(&[
                1e2, 2e2, 5e2, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6,
            ]),
            rates_large: rates(&[2e1, 5e1, 1e2, 2e2, 5e2, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5]),
            point_warmup: Duration::from_secs(1),
            point_duration: Duration::from_secs(3),
            idle_clients: 10_000,
            idle_hold: Duration::from_secs(2),
            churn_duration: Duration::from_secs(3),
            reference_rate: 1000.0,
        }
    }

    /// `--reduced`: the full plan's sizes and point length, fewer rates
    /// (from just below the thread-per-client capacity, through the
    /// 1,000 msg/s reference, up past loopchat's capacity) and no idle
    /// workload (the baseline's 10,000-client idle run alone takes up to
    /// 120 s per run). For a before/after comparison that fits a shared
    /// machine's time budget.
    fn reduced() -> Plan {
        Plan {
            rates_small: vec![5e2, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5],
            rates_large: vec![1e2, 2e2, 5e2, 1e3, 2e3, 5e3, 1e4],
            idle_clients: 0,
            ..Plan::full()
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            sweep_small_clients: 10,
            sweep_large_clients: 50,
            rates_small: vec![500.0, 1000.0],
            rates_large: vec![200.0],
            point_warmup: Duration::from_millis(200),
            point_duration: Duration::from_millis(800),
            idle_clients: 200,
            idle_hold: Duration::from_millis(300),
            churn_duration: Duration::from_secs(1),
            reference_rate: 1000.0,
        }
    }
}

fn config(workload: Workload, server: &Server) -> Config {
    let mut c = Config::new(workload, server.addr);
    c.quiet = true;
    c.server_pids = vec![server.pid];
    c.connect_rate = 5000.0;
    c.join_timeout = Duration::from_secs(60);
    c
}

/// One sweep point's verdict.
fn holds(r: &Report) -> bool {
    let p99 = r.latency.map_or(u64::MAX, |l| l.p99);
    r.is_clean() && p99 < MAX_P99_US && r.sent_per_s() >= 0.95 * r.config.rate
}

struct Sweep {
    clients: usize,
    points: Vec<Report>,
    capacity: Option<usize>,
}

/// Runs `rates` upward until two points in a row break (but at least up to
/// `must_reach`, the rate the latency figures are quoted at).
fn sweep(
    kind: &ServerKind,
    plan: &Plan,
    clients: usize,
    rates: &[f64],
    must_reach: f64,
) -> Result<Sweep, String> {
    let mut points = Vec::new();
    let mut capacity = None;
    let mut broken_in_a_row = 0;
    for &rate in rates {
        // A fresh server per point: the previous point's clients leaving
        // (every departure is announced to everyone) must not overlap.
        let server = kind.start()?;
        let mut c = config(Workload::Fanout, &server);
        c.clients = clients;
        c.senders = 4.min(clients - 1);
        c.rate = rate;
        c.warmup = plan.point_warmup;
        c.duration = plan.point_duration;
        let r = bench::run(&c).map_err(|e| format!("{}: fanout: {e}", kind.name))?;
        let ok = holds(&r);
        let lat = r.latency.unwrap_or_default();
        let cost = r.server.map_or(String::new(), |s| {
            format!(
                "  server CPU {:.2} s, bench CPU {:.2} s",
                s.cpu_s,
                r.bench_cpu_s.unwrap_or(0.0)
            )
        });
        eprintln!(
            "  {:<18} {:>5} clients {:>8} msg/s -> {:>10.0} deliveries/s  p50 {:>7} us  p99 {:>8} us  lost {} {}{cost}",
            kind.name,
            clients,
            rate,
            r.deliveries_per_s(),
            lat.p50,
            lat.p99,
            r.lost,
            if ok { "ok" } else { "BROKEN" },
        );
        if plan.quick && !r.is_clean() {
            return Err(format!(
                "{}: quick fanout at {rate} msg/s was not clean: {}",
                kind.name,
                r.to_json()
            ));
        }
        points.push(r);
        if ok {
            capacity = Some(points.len() - 1);
            broken_in_a_row = 0;
        } else {
            // Two broken points in a row end the sweep: one can be noise
            // on a shared machine, two are the server's limit.
            broken_in_a_row += 1;
            if broken_in_a_row >= 2 && rate >= must_reach {
                break;
            }
        }
    }
    Ok(Sweep {
        clients,
        points,
        capacity,
    })
}

struct ServerResults {
    name: &'static str,
    small: Sweep,
    large: Sweep,
    /// `None` when the plan has no idle workload.
    idle: Option<Report>,
    idle_rss_empty_kib: u64,
    churn: Report,
}

fn idle(kind: &ServerKind, plan: &Plan) -> Result<(Report, u64), String> {
    let server = kind.start()?;
    let mut c = config(Workload::Idle, &server);
    c.clients = plan.idle_clients;
    c.duration = plan.idle_hold;
    c.connect_rate = 500.0;
    c.join_timeout = Duration::from_secs(if plan.quick { 20 } else { 120 });
    let r = bench::run(&c).map_err(|e| format!("{}: idle: {e}", kind.name))?;
    eprintln!(
        "  {:<18} idle: {} of {} joined in {:.1} s, RSS {} KiB (empty {} KiB), {} threads",
        kind.name,
        r.joined,
        r.requested,
        r.join_s,
        r.server.map_or(0, |s| s.rss_end_kib),
        server.rss_empty_kib,
        r.server.map_or(0, |s| s.threads)
    );
    if plan.quick && !r.is_clean() {
        return Err(format!(
            "{}: quick idle not clean: {}",
            kind.name,
            r.to_json()
        ));
    }
    Ok((r, server.rss_empty_kib))
}

fn churn(kind: &ServerKind, plan: &Plan) -> Result<Report, String> {
    let server = kind.start()?;
    let mut c = config(Workload::Churn, &server);
    c.clients = 32;
    c.duration = plan.churn_duration;
    c.connect_rate = 1_000_000.0;
    c.join_timeout = Duration::from_secs(10);
    let r = bench::run(&c).map_err(|e| format!("{}: churn: {e}", kind.name))?;
    eprintln!(
        "  {:<18} churn: {:.0} joins/s, failures {:?}",
        kind.name,
        r.joins_per_s(),
        r.failures
    );
    if plan.quick && (r.joins == 0 || r.failures_total() > 0) {
        return Err(format!(
            "{}: quick churn not clean: {}",
            kind.name,
            r.to_json()
        ));
    }
    Ok(r)
}

fn run_server(kind: &ServerKind, plan: &Plan) -> Result<ServerResults, String> {
    let small = sweep(
        kind,
        plan,
        plan.sweep_small_clients,
        &plan.rates_small,
        plan.reference_rate,
    )?;
    let large = sweep(kind, plan, plan.sweep_large_clients, &plan.rates_large, 0.0)?;
    let (idle, idle_rss_empty_kib) = if plan.idle_clients > 0 {
        let (r, empty) = idle(kind, plan)?;
        (Some(r), empty)
    } else {
        (None, 0)
    };
    let churn = churn(kind, plan)?;
    Ok(ServerResults {
        name: kind.name,
        small,
        large,
        idle,
        idle_rss_empty_kib,
        churn,
    })
}

/// The headline figures of one server.
#[derive(Default, Clone, Copy)]
struct Headline {
    cap_small_rate: Option<f64>,
    cap_small_deliveries: Option<f64>,
    ref_p50: Option<f64>,
    ref_p99: Option<f64>,
    cap_small_p99: Option<f64>,
    cap_large_rate: Option<f64>,
    cap_large_deliveries: Option<f64>,
    cap_large_p99: Option<f64>,
    ref_large_p99: Option<f64>,
    cap_large_cpu_s_per_m: Option<f64>,
    cap_large_writes: Option<f64>,
    cap_large_bench_cpu_share: Option<f64>,
    idle_rss_per_conn_b: Option<f64>,
    idle_threads: Option<f64>,
    idle_joined: Option<f64>,
    churn_joins: Option<f64>,
}

fn headline(r: &ServerResults, plan: &Plan) -> Headline {
    let mut h = Headline::default();
    if let Some(i) = r.small.capacity {
        let p = &r.small.points[i];
        h.cap_small_rate = Some(p.config.rate);
        h.cap_small_deliveries = Some(p.deliveries_per_s());
        h.cap_small_p99 = p.latency.map(|l| l.p99 as f64);
    }
    if let Some(p) = r
        .small
        .points
        .iter()
        .find(|p| p.config.rate == plan.reference_rate)
    {
        h.ref_p50 = p.latency.map(|l| l.p50 as f64);
        h.ref_p99 = p.latency.map(|l| l.p99 as f64);
    }
    if let Some(p) = r
        .large
        .points
        .iter()
        .find(|p| p.config.rate == plan.reference_rate)
    {
        h.ref_large_p99 = p.latency.map(|l| l.p99 as f64);
    }
    if let Some(i) = r.large.capacity {
        let p = &r.large.points[i];
        h.cap_large_rate = Some(p.config.rate);
        h.cap_large_deliveries = Some(p.deliveries_per_s());
        h.cap_large_p99 = p.latency.map(|l| l.p99 as f64);
        if let Some(s) = p.server {
            h.cap_large_cpu_s_per_m = s.cpu_us_per_1k_deliveries.map(|v| v / 1000.0);
            h.cap_large_writes = s.write_syscalls_per_delivery;
            if let Some(b) = p.bench_cpu_s {
                h.cap_large_bench_cpu_share = Some(b / p.measured_s.max(1e-9));
            }
        }
    }
    if let Some(idle) = &r.idle {
        if let Some(s) = idle.server {
            if idle.held > 0 {
                let grown = s.rss_end_kib.saturating_sub(r.idle_rss_empty_kib) as f64 * 1024.0;
                h.idle_rss_per_conn_b = Some(grown / idle.held as f64);
            }
            h.idle_threads = Some(s.threads as f64);
        }
        h.idle_joined = Some(idle.held as f64);
    }
    h.churn_joins = Some(r.churn.joins_per_s());
    h
}

/// Each server's runs.
struct Runs {
    name: &'static str,
    runs: Vec<ServerResults>,
}

fn table(all: &[Runs], plan: &Plan) -> String {
    let heads: Vec<Vec<Headline>> = all
        .iter()
        .map(|k| k.runs.iter().map(|r| headline(r, plan)).collect())
        .collect();
    let names: Vec<&str> = all.iter().map(|k| k.name).collect();
    let mut t = String::new();
    t.push_str(&format!(
        "| figure | {} | ratio |\n|---|",
        names.join(" | ")
    ));
    t.push_str(&"---:|".repeat(names.len() + 1));
    t.push('\n');
    let (s, l) = (plan.sweep_small_clients, plan.sweep_large_clients);
    type Get = fn(&Headline) -> Option<f64>;
    let rows: Vec<(String, Get, usize, bool)> = vec![
        (
            format!("capacity, {s} clients (msg/s)"),
            |h| h.cap_small_rate,
            0,
            true,
        ),
        (
            format!("deliveries/s at capacity, {s} clients"),
            |h| h.cap_small_deliveries,
            0,
            true,
        ),
        (
            format!("p99 at capacity, {s} clients (us)"),
            |h| h.cap_small_p99,
            0,
            false,
        ),
        (
            format!("p50 at {} msg/s, {s} clients (us)", plan.reference_rate),
            |h| h.ref_p50,
            0,
            false,
        ),
        (
            format!("p99 at {} msg/s, {s} clients (us)", plan.reference_rate),
            |h| h.ref_p99,
            0,
            false,
        ),
        (
            format!("capacity, {l} clients (msg/s)"),
            |h| h.cap_large_rate,
            0,
            true,
        ),
        (
            format!("deliveries/s at capacity, {l} clients"),
            |h| h.cap_large_deliveries,
            0,
            true,
        ),
        (
            format!("p99 at capacity, {l} clients (us)"),
            |h| h.cap_large_p99,
            0,
            false,
        ),
        (
            format!("p99 at {} msg/s, {l} clients (us)", plan.reference_rate),
            |h| h.ref_large_p99,
            0,
            false,
        ),
        (
            format!("server CPU s per million deliveries at capacity, {l} clients"),
            |h| h.cap_large_cpu_s_per_m,
            3,
            false,
        ),
        (
            format!("server write syscalls per delivery at capacity, {l} clients"),
            |h| h.cap_large_writes,
            3,
            false,
        ),
        (
            format!("bench CPU (cores) at capacity, {l} clients"),
            |h| h.cap_large_bench_cpu_share,
            2,
            false,
        ),
        (
            format!("idle clients joined (of {})", plan.idle_clients),
            |h| h.idle_joined,
            0,
            true,
        ),
        (
            "RSS per idle joined connection (bytes)".into(),
            |h| h.idle_rss_per_conn_b,
            0,
            false,
        ),
        (
            "server threads with the idle clients".into(),
            |h| h.idle_threads,
            0,
            false,
        ),
        ("churn (joins/s)".into(), |h| h.churn_joins, 0, true),
    ];
    for (label, get, digits, higher_better) in rows {
        if plan.idle_clients == 0 && label.contains("idle") {
            continue;
        }
        let vals: Vec<Option<f64>> = heads
            .iter()
            .map(|runs| median(runs.iter().filter_map(get).collect()))
            .collect();
        let ratio = match (
            vals.first().copied().flatten(),
            vals.get(1).copied().flatten(),
        ) {
            (Some(a), Some(b)) if a > 0.0 && b > 0.0 => {
                let r = if higher_better { a / b } else { b / a };
                format!("{r:.1}x")
            }
            _ => "-".into(),
        };
        let cells: Vec<String> = vals.iter().map(|v| fmt(*v, digits)).collect();
        t.push_str(&format!("| {label} | {} | {ratio} |\n", cells.join(" | ")));
    }
    let n_runs = all.iter().map(|k| k.runs.len()).max().unwrap_or(0);
    t.push_str(&format!(
        "\nFigures are medians of {n_runs} run(s) per server, the servers alternating. "
    ));
    t.push_str("ratio: how many times better the first column is (higher-is-better figures: first/second; lower-is-better: second/first).\n");
    t
}

fn sweep_json(s: &Sweep) -> Value {
    json!({
        "clients": s.clients,
        "capacity_rate": s.capacity.map(|i| s.points[i].config.rate),
        "points": s.points.iter().map(Report::to_json).collect::<Vec<_>>(),
    })
}

fn charts(results: &[&ServerResults], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for large in [false, true] {
        let clients = if large {
            results.first().map_or(0, |r| r.large.clients)
        } else {
            results.first().map_or(0, |r| r.small.clients)
        };
        fn pick(r: &ServerResults, large: bool) -> &[Report] {
            if large {
                &r.large.points
            } else {
                &r.small.points
            }
        }
        let deliveries: Vec<(&str, Vec<(f64, f64)>)> = results
            .iter()
            .map(|r| {
                (
                    r.name,
                    pick(r, large)
                        .iter()
                        .map(|p| (p.config.rate, p.deliveries_per_s()))
                        .collect(),
                )
            })
            .collect();
        let p99: Vec<(&str, Vec<(f64, f64)>)> = results
            .iter()
            .map(|r| {
                (
                    r.name,
                    pick(r, large)
                        .iter()
                        .filter_map(|p| p.latency.map(|l| (p.config.rate, l.p99 as f64)))
                        .collect(),
                )
            })
            .collect();
        let f = dir.join(format!("fanout-{clients}-deliveries.svg"));
        chart(
            &f,
            &format!("fanout, {clients} clients: deliveries/s"),
            "deliveries/s",
            &deliveries,
        )?;
        files.push(f);
        let f = dir.join(format!("fanout-{clients}-p99.svg"));
        chart(
            &f,
            &format!("fanout, {clients} clients: p99 latency (corrected)"),
            "p99 (us)",
            &p99,
        )?;
        files.push(f);
    }
    Ok(files)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve-threaded") {
        std::process::exit(bench::baseline::main_with_args(&args[1..]));
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, and must not start a 15-minute matrix.
    let Some(cli) = shared::Args::from_env("fanout") else {
        return;
    };
    let (quick, update_docs) = (cli.quick, cli.update_docs);
    let reduced = cli.has("--reduced");
    let plan = if quick {
        Plan::quick()
    } else if reduced {
        Plan::reduced()
    } else {
        Plan::full()
    };
    // `--also-loopchat NAME=PATH` (repeatable): another loopchat-server
    // build (e.g. an older commit's), measured with the same plan and the
    // same arguments, alternating with the others in every run. The
    // ratio column still compares the first two columns.
    let also: Vec<(&'static str, PathBuf)> = args
        .windows(2)
        .filter(|w| w[0] == "--also-loopchat")
        .filter_map(|w| {
            let (name, path) = w[1].split_once('=')?;
            Some((
                &*Box::leak(name.to_string().into_boxed_str()),
                PathBuf::from(path),
            ))
        })
        .collect();
    bench::proc_stats::raise_nofile_limit();
    let started = Instant::now();

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let self_exe = std::env::current_exe().expect("own executable path");
    let mut kinds = vec![
        ServerKind {
            name: "loopchat",
            program: PathBuf::from(env!("CARGO_BIN_EXE_loopchat-server")),
            args: shared::loopchat_args(),
            conf: None,
        },
        ServerKind {
            name: "thread-per-client",
            program: self_exe,
            args: ["--serve-threaded", "--listen", "127.0.0.1:0"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            conf: None,
        },
    ];
    for (name, path) in also {
        let mut k = kinds[0].clone();
        k.name = name;
        k.program = path;
        kinds.push(k);
    }
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut all: Vec<Runs> = kinds
        .iter()
        .map(|k| Runs {
            name: k.name,
            runs: Vec::new(),
        })
        .collect();
    let mut failed = false;
    for run in 0..runs {
        for (kind, slot) in kinds.iter().zip(all.iter_mut()) {
            eprintln!("== {} (run {} of {runs}) ==", kind.name, run + 1);
            match run_server(kind, &plan) {
                Ok(r) => slot.runs.push(r),
                Err(e) => {
                    eprintln!("fanout bench: {e}");
                    failed = true;
                }
            }
        }
    }
    all.retain(|k| !k.runs.is_empty());
    // Charts and the per-point JSON of the last run of each server.
    let results: Vec<&ServerResults> = all.iter().filter_map(|k| k.runs.last()).collect();

    let out_dir = manifest.join("target").join("bench-results");
    let _ = std::fs::create_dir_all(&out_dir);
    let md = table(&all, &plan);
    println!("\n{md}");
    let tag = if quick {
        "quick"
    } else if reduced {
        "reduced"
    } else {
        "full"
    };
    let raw = json!({
        "mode": tag,
        "machine": machine(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "elapsed_s": started.elapsed().as_secs_f64(),
        "servers": all.iter().map(|k| json!({
            "name": k.name,
            "runs": k.runs.iter().map(|r| json!({
                "fanout_small": sweep_json(&r.small),
                "fanout_large": sweep_json(&r.large),
                "idle": r.idle.as_ref().map(Report::to_json),
                "idle_rss_empty_kib": r.idle_rss_empty_kib,
                "churn": r.churn.to_json(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "table_markdown": md,
    });
    let json_path = out_dir.join(format!("fanout-{tag}.json"));
    match serde_json::to_string_pretty(&raw) {
        Ok(text) => {
            if let Err(e) = std::fs::write(&json_path, text) {
                eprintln!("fanout bench: writing {}: {e}", json_path.display());
            } else {
                eprintln!("raw results: {}", json_path.display());
            }
        }
        Err(e) => eprintln!("fanout bench: JSON: {e}"),
    }
    match charts(&results, &out_dir) {
        Ok(files) => {
            for f in &files {
                eprintln!("chart: {}", f.display());
                if update_docs {
                    if let Some(name) = f.file_name() {
                        let dest = manifest.join("docs").join(name);
                        if let Err(e) = std::fs::copy(f, &dest) {
                            eprintln!("fanout bench: copying to {}: {e}", dest.display());
                        }
                    }
                }
            }
        }
        Err(e) => eprintln!("fanout bench: charts: {e}"),
    }
    eprintln!(
        "fanout bench: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failed {
        std::process::exit(1);
    }
}
