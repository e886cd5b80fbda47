//! `cargo bench --bench output_memory [-- OPTIONS]`: the server's memory
//! under the two output loads of issue 11, each on a freshly started server.
//!
//! 1. **storm**: `--clients` (default 10,000) clients join as fast as the
//!    bench can (`--storm-rate`, default unpaced) and keep reading every
//!    socket. Every join is announced to everyone (N²/2 notices), so send
//!    queues fill while clients join faster than they are read. Reported:
//!    time to join, joins/s, the server's peak sampled RSS during the storm
//!    (and until the notices stop), VmHWM.
//! 2. **lag**: `--clients` receivers and 4 senders join (at `--lag-join-rate`,
//!    then the bench waits for 1.5 s of quiet, so the server has trimmed
//!    what the joins left); every receiver stops reading while each sender
//!    sends `--lag-bytes` (default 200 KiB) in `--size`-byte messages, stays
//!    paused until 2 s after the last message reached the senders (who read,
//!    and receive each other's messages: the server has then handled every
//!    message), then reads everything. Reported: the server's peak sampled
//!    RSS from the first send to the end of the drain, its RSS at the first
//!    send, VmHWM, and receivers the server cut (a cut receiver is not
//!    loss, but its backlog was not held: raise `--max-sendq`).
//!
//! Options: `--runs N` (default 1; the docs quote medians of 3), `--server
//! PATH` (default: this package's `loopchat-server`, which `cargo bench`
//! builds as target/release/loopchat-server), `--clients N`, `--dialect
//! line|irc`, `--storm-rate N|max`, `--max-joining N` (storm: connections
//! at most between connect and joined; without it an unpaced storm
//! overflows the server's listen queue and some joins wait for SYN
//! retransmits), `--chatters S` and `--chat-rate R` (storm: S clients join
//! first and chat at R msg/s in all during it, every delivery accounted
//! for; default 0), `--lag-join-rate N` (default 2000),
//! `--lag-bytes BYTES`, `--size BYTES` (default 1000; irc 400, under its
//! 510-byte line), `--max-sendq BYTES` (the lag server's; default 2 MiB,
//! more than one receiver's backlog, so nobody needs cutting), `--only
//! storm|lag`, `--quick` (CI: 300 clients, 20 KiB per sender, checks that
//! the runs are clean and the figures there; a few seconds).
//!
//! The servers run with `--max-clients 100000 --max-per-ip 0 --max-rate 0`.
//! This process raises its descriptor limit to the hard limit (the servers
//! it starts inherit it); each side needs `--clients` + a few descriptors.
//! Output: a table on stdout, every run's report as JSON in
//! target/bench-results/output-memory-{quick,full}.json. Under `cargo test
//! --all-targets` (no `--bench` argument) it exits at once.

use loopchat::bench::cli::Lag;
use loopchat::bench::{self, Config, Report, Workload};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: SocketAddr,
    pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(program: &PathBuf, extra: &[String]) -> Result<Server, String> {
    let mut child = Command::new(program)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--max-clients",
            "100000",
            "--max-per-ip",
            "0",
            "--max-rate",
            "0",
            "--log-level",
            "error",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut first = String::new();
    let _ = BufReader::new(stdout).read_line(&mut first);
    let Some(addr) = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{}: expected `listening on ADDR:PORT`, got {:?}",
            program.display(),
            first.trim()
        ));
    };
    let pid = child.id();
    Ok(Server { child, addr, pid })
}

struct Plan {
    quick: bool,
    runs: usize,
    server: PathBuf,
    clients: usize,
    dialect: bench::dialect::Dialect,
    storm_rate: f64,
    max_joining: Option<usize>,
    chatters: usize,
    chat_rate: f64,
    lag_join_rate: f64,
    lag_bytes: usize,
    size: usize,
    max_sendq: usize,
    storm: bool,
    lag: bool,
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match arg(args, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}: bad value {v:?}")),
    }
}

impl Plan {
    fn from_args(args: &[String]) -> Result<Plan, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let dialect = match arg(args, "--dialect") {
            None => bench::dialect::Dialect::Line,
            Some(d) => bench::dialect::Dialect::parse(d)
                .ok_or(format!("--dialect: line, irc, ws, ws-irc or resp: {d}"))?,
        };
        let default_size = if dialect == bench::dialect::Dialect::Irc {
            400
        } else {
            1000
        };
        let storm_rate = match arg(args, "--storm-rate") {
            None | Some("max") => f64::INFINITY,
            Some(v) => v
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r > 0.0)
                .ok_or(format!("--storm-rate: a rate or max: {v}"))?,
        };
        let only = arg(args, "--only");
        Ok(Plan {
            quick,
            runs: num(args, "--runs", 1usize)?.max(1),
            server: arg(args, "--server").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_loopchat-server")),
                PathBuf::from,
            ),
            clients: num(args, "--clients", if quick { 300 } else { 10_000 })?,
            dialect,
            storm_rate,
            max_joining: match arg(args, "--max-joining") {
                None => None,
                Some(v) => Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &usize| n > 0)
                        .ok_or(format!("--max-joining: a count > 0: {v}"))?,
                ),
            },
            chatters: num(args, "--chatters", 0)?,
            chat_rate: Some(num(args, "--chat-rate", 100.0f64)?)
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or("--chat-rate: a rate > 0")?,
            lag_join_rate: num(args, "--lag-join-rate", 2000.0)?,
            lag_bytes: num(
                args,
                "--lag-bytes",
                if quick { 20 << 10 } else { 200 << 10 },
            )?,
            size: num(args, "--size", default_size)?,
            max_sendq: num(args, "--max-sendq", 2 << 20)?,
            storm: only.is_none_or(|o| o == "storm"),
            lag: only.is_none_or(|o| o == "lag"),
        })
    }

    fn base(&self, workload: Workload, server: &Server) -> Config {
        let mut c = Config::new(workload, server.addr);
        c.quiet = true;
        c.server_pids = vec![server.pid];
        c.dialect = self.dialect;
        c.join_timeout = Duration::from_secs(if self.quick { 30 } else { 180 });
        c.drain_timeout = Duration::from_secs(if self.quick { 10 } else { 120 });
        c
    }

    fn storm(&self) -> Result<Report, String> {
        let server = start_server(&self.server, &[])?;
        let mut c = self.base(Workload::Storm, &server);
        c.clients = self.clients;
        c.senders = self.chatters.min(self.clients);
        c.rate = self.chat_rate;
        c.connect_rate = self.storm_rate;
        c.max_joining = self.max_joining;
        bench::run(&c).map_err(|e| format!("storm: {e}"))
    }

    fn lag(&self) -> Result<Report, String> {
        let server = start_server(
            &self.server,
            &["--max-sendq".into(), self.max_sendq.to_string()],
        )?;
        let mut c = self.base(Workload::Fanout, &server);
        c.senders = 4;
        c.clients = self.clients + c.senders;
        c.connect_rate = self.lag_join_rate;
        c.lag = Some(Lag::Fraction(1.0));
        c.lag_after_send = true;
        c.lag_pause = Duration::from_secs(if self.quick { 1 } else { 2 });
        // Longer than loopchat's one idle second before it trims its heap:
        // what the joins' notices left is not counted as the lag's.
        c.settle = Duration::from_millis(1500);
        c.size = self.size;
        let per_sender = self.lag_bytes.div_ceil(self.size.max(1)) as u64;
        c.messages = Some(per_sender * c.senders as u64);
        c.rate = 1000.0;
        c.warmup = Duration::ZERO;
        bench::run(&c).map_err(|e| format!("lag: {e}"))
    }
}

/// A row of the table: its label, the figure of one run, its digits.
type Figure = (&'static str, fn(&Report) -> f64, usize);

fn kib(v: u64) -> String {
    format!("{:.1} MiB", v as f64 / 1024.0)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn mem(r: &Report) -> (u64, u64) {
    (
        r.load_peak_rss_kib().unwrap_or(0),
        r.memory.as_ref().map_or(0, |m| m.hwm_kib),
    )
}

fn describe_storm(r: &Report) -> String {
    let (peak, hwm) = mem(r);
    let chat = if r.senders > 0 {
        format!(
            "; chat: {} sent, {} deliveries, lost {}, cut {}, p99 {} us",
            r.sent,
            r.deliveries,
            r.lost,
            r.cut.receivers,
            r.latency.map_or(0, |l| l.p99)
        )
    } else {
        String::new()
    };
    format!(
        "{} of {} joined in {:.2} s ({:.0} joins/s), peak RSS {} (VmHWM {}), read {:.0} MiB, failures {:?}{chat}",
        r.joined,
        r.requested,
        r.join_s,
        r.joins_per_s(),
        kib(peak),
        kib(hwm),
        r.read_bytes as f64 / (1024.0 * 1024.0),
        r.failures,
    )
}

fn describe_lag(r: &Report) -> String {
    let (peak, hwm) = mem(r);
    let before = r.memory.as_ref().map_or(0, |m| m.start_of("send"));
    format!(
        "{} receivers paused {:.1} s, {} msgs of {} B; peak RSS {} (at the first send {}, VmHWM {}); lost {}, cut {} ({} messages undelivered), failures {:?}",
        r.lag.map_or(0, |l| l.receivers),
        r.lag.map_or(0.0, |l| l.paused_s),
        r.sent,
        r.config.size,
        kib(peak),
        kib(before),
        kib(hwm),
        r.lost,
        r.cut.receivers,
        r.cut.undelivered,
        r.failures,
    )
}

/// What the quick mode (CI) insists on: a clean run with the figures there.
fn check(r: &Report, what: &str) -> Result<(), String> {
    let (peak, hwm) = mem(r);
    if !r.is_clean() || r.cut.receivers > 0 || peak == 0 || hwm == 0 {
        return Err(format!(
            "{what}: not clean or no memory figures: {}",
            r.to_json()
        ));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, and must not start a 10,000-client storm.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "output_memory: run with `cargo bench --bench output_memory [-- --quick]`; nothing to do under `cargo test`"
        );
        return;
    }
    let plan = match Plan::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("output_memory: {e}");
            std::process::exit(2);
        }
    };
    let nofile = bench::proc_stats::raise_nofile_limit();
    if nofile < plan.clients as u64 + 64 {
        eprintln!(
            "output_memory: the descriptor limit is {nofile}, {} clients need more (raise the hard limit: ulimit -Hn)",
            plan.clients
        );
    }
    let started = Instant::now();
    eprintln!(
        "output_memory: server {}, {} clients, {} run(s)",
        plan.server.display(),
        plan.clients,
        plan.runs
    );
    let mut storms = Vec::new();
    let mut lags = Vec::new();
    let mut failed = false;
    for run in 1..=plan.runs {
        if plan.storm {
            match plan.storm() {
                Ok(r) => {
                    eprintln!("  storm run {run}: {}", describe_storm(&r));
                    if plan.quick {
                        if let Err(e) = check(&r, "storm") {
                            eprintln!("output_memory: {e}");
                            failed = true;
                        }
                    }
                    storms.push(r);
                }
                Err(e) => {
                    eprintln!("output_memory: {e}");
                    failed = true;
                }
            }
        }
        if plan.lag {
            match plan.lag() {
                Ok(r) => {
                    eprintln!("  lag run {run}:   {}", describe_lag(&r));
                    if plan.quick {
                        if let Err(e) = check(&r, "lag") {
                            eprintln!("output_memory: {e}");
                            failed = true;
                        }
                    }
                    lags.push(r);
                }
                Err(e) => {
                    eprintln!("output_memory: {e}");
                    failed = true;
                }
            }
        }
    }

    let med = |rs: &[Report], f: fn(&Report) -> f64| median(rs.iter().map(f).collect());
    let cell = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    let mut t = String::new();
    t.push_str(&format!(
        "| figure (median of {} run(s), {} dialect) | value |\n|---|---:|\n",
        plan.runs,
        plan.dialect.name()
    ));
    if !storms.is_empty() {
        let rows: [Figure; 5] = [
            ("storm: clients joined", |r| r.joined as f64, 0),
            ("storm: seconds to join them all", |r| r.join_s, 2),
            ("storm: joins/s", |r| r.joins_per_s(), 0),
            (
                "storm: server peak sampled RSS (MiB)",
                |r| mem(r).0 as f64 / 1024.0,
                1,
            ),
            ("storm: server VmHWM (MiB)", |r| mem(r).1 as f64 / 1024.0, 1),
        ];
        for (label, f, d) in rows {
            t.push_str(&format!(
                "| {label} ({} clients) | {} |\n",
                plan.clients,
                cell(med(&storms, f), d)
            ));
        }
    }
    if !lags.is_empty() {
        let rows: [Figure; 5] = [
            (
                "lag: server RSS at the first send (MiB)",
                |r| r.memory.as_ref().map_or(0, |m| m.start_of("send")) as f64 / 1024.0,
                1,
            ),
            (
                "lag: server peak sampled RSS, send to drain (MiB)",
                |r| mem(r).0 as f64 / 1024.0,
                1,
            ),
            ("lag: server VmHWM (MiB)", |r| mem(r).1 as f64 / 1024.0, 1),
            (
                "lag: receivers cut by the server",
                |r| r.cut.receivers as f64,
                0,
            ),
            (
                "lag: messages lost by receivers still connected",
                |r| r.lost as f64,
                0,
            ),
        ];
        for (label, f, d) in rows {
            t.push_str(&format!(
                "| {label} ({} receivers, 4 x {} KiB) | {} |\n",
                plan.clients,
                plan.lag_bytes / 1024,
                cell(med(&lags, f), d)
            ));
        }
    }
    println!("\n{t}");

    let tag = if plan.quick { "quick" } else { "full" };
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-results");
    let _ = std::fs::create_dir_all(&out_dir);
    let raw = json!({
        "mode": tag,
        "server": plan.server.display().to_string(),
        "clients": plan.clients,
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "elapsed_s": started.elapsed().as_secs_f64(),
        "storm": storms.iter().map(Report::to_json).collect::<Vec<Value>>(),
        "lag": lags.iter().map(Report::to_json).collect::<Vec<Value>>(),
        "table_markdown": t,
    });
    let path = out_dir.join(format!("output-memory-{tag}.json"));
    match serde_json::to_string_pretty(&raw) {
        Ok(text) => match std::fs::write(&path, text) {
            Ok(()) => eprintln!("raw results: {}", path.display()),
            Err(e) => eprintln!("output_memory: writing {}: {e}", path.display()),
        },
        Err(e) => eprintln!("output_memory: JSON: {e}"),
    }
    eprintln!(
        "output_memory: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failed {
        std::process::exit(1);
    }
}
