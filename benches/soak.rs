//! `cargo bench --bench soak [-- OPTIONS]`: the server for half an hour
//! under mixed load (issue 17), to show what short tests cannot: a
//! descriptor leaked per thousand reconnects, a few bytes kept per join.
//!
//! One release server (`--max-rate 100 --max-sendq 1m`), and at once:
//! - four `loopchat-bench fanout` processes, one per dialect (`line`,
//!   `irc`, `ws`, `ws-irc`), each in its own room, `--clients` clients of
//!   which 20 send `--rate` messages/s in all (each under `--max-rate`), for the whole run, every
//!   delivery accounted for (loss, duplicates, order);
//! - a `loopchat-bench churn` process: 10 connections in flight, each
//!   connecting, joining and leaving, all the time;
//! - this harness's own troublemakers, one round every 5 s: a user who
//!   renames itself and moves between rooms, an IRC user who joins, parts
//!   and changes nick; every third round a reader who joins the line
//!   bench's room and never reads (the server cuts it at `--max-sendq`; it leaves after
//!   two minutes if not)
//!   and a flooder who sends 2,000 lines at once (throttled at
//!   `--max-rate`, not cut).
//!
//! Every 10 s it samples the server: RSS, open descriptors, threads, CPU,
//! and from `/metrics` the output bytes held, connections and cuts. At the
//! end: each bench's loss accounting (all must be clean), the slopes of RSS
//! and descriptors after the warm-up (the first fifth of the run), and a
//! chart. Output in target/bench-results/: soak.csv, soak.json, soak.svg;
//! `--update-docs` copies the chart to docs/soak.svg.
//!
//! Options: `--minutes M` (default 30), `--clients N` per dialect (default
//! 200), `--rate R` per dialect (default 1000 msgs/s), `--quick` (CI: 40 s,
//! 30 clients, 100 msgs/s; checks the run is clean and the samples are
//! there). Under `cargo test --all-targets` (no `--bench`) it exits at once.

mod shared;

use serde_json::{Value, json};
use shared::{Server, ServerKind};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SERVER: &str = env!("CARGO_BIN_EXE_loopchat-server");
const BENCH: &str = env!("CARGO_BIN_EXE_loopchat-bench");
const DIALECTS: [(&str, &str); 4] = [
    ("line", "#soak-line"),
    ("irc", "#soak-irc"),
    ("ws", "#soak-ws"),
    ("ws-irc", "#soak-wsirc"),
];
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

struct Plan {
    seconds: u64,
    clients: u32,
    rate: u32,
    quick: bool,
    update_docs: bool,
}

fn plan(args: &[String]) -> Result<Plan, String> {
    let num = |name: &str, default: f64| -> Result<f64, String> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name}: expected a number")),
            None => Ok(default),
        }
    };
    let quick = args.iter().any(|a| a == "--quick");
    let (minutes, clients, rate) = if quick {
        (40.0 / 60.0, 30.0, 100.0)
    } else {
        (
            num("--minutes", 30.0)?,
            num("--clients", 200.0)?,
            num("--rate", 1000.0)?,
        )
    };
    Ok(Plan {
        seconds: (minutes * 60.0).round().max(20.0) as u64,
        clients: clients as u32,
        rate: rate as u32,
        quick,
        update_docs: args.iter().any(|a| a == "--update-docs"),
    })
}

/// The server: loopchat, started like the other benches start it.
fn start_server() -> Result<Server, String> {
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--max-clients",
        "100000",
        "--max-per-ip",
        "0",
        "--max-rate",
        "100",
        "--max-sendq",
        "1m",
        "--log-level",
        "warn",
    ];
    ServerKind {
        name: "loopchat",
        program: SERVER.into(),
        args: args.map(String::from).to_vec(),
        conf: None,
    }
    .start()
}

fn start_bench(args: &[String]) -> Result<Child, String> {
    Command::new(BENCH)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {BENCH}: {e}"))
}

/// One sample of the server.
#[derive(Default, Clone)]
struct Sample {
    at_s: f64,
    rss_kib: u64,
    fds: u64,
    threads: u64,
    cpu_s: f64,
    output_bytes: u64,
    connections: u64,
    cut_sendq: u64,
}

fn sample(pid: u32, addr: SocketAddr, at_s: f64) -> Sample {
    let proc = loopchat::bench::proc_stats::sample(pid).unwrap_or_default();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    let metrics = http_get(addr, "/metrics").unwrap_or_default();
    let metric = |prefix: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    Sample {
        at_s,
        rss_kib: proc.rss_kib,
        fds,
        threads: proc.threads,
        cpu_s: proc.cpu_s,
        output_bytes: metric("loopchat_output_bytes "),
        connections: metric("loopchat_connections{"),
        cut_sendq: metric("loopchat_disconnects_total{reason=\"sendq\"}"),
    }
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// What the troublemakers did, and what went wrong for them.
#[derive(Default)]
struct Trouble {
    rounds: AtomicU64,
    moves: AtomicU64,
    irc_rounds: AtomicU64,
    slow_readers: AtomicU64,
    floods: AtomicU64,
    flood_lines: AtomicU64,
    errors: AtomicU64,
}

/// A line-grammar user: sends `lines`, then reads until every `want` was
/// seen in order (each within 10 s).
fn line_user(addr: SocketAddr, lines: &[String], want: &[&str]) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    for l in lines {
        s.write_all(format!("{l}\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
    }
    expect(&mut s, want)?;
    Ok(s)
}

fn expect(s: &mut TcpStream, want: &[&str]) -> Result<(), String> {
    let mut reader = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut seen = Vec::new();
    for w in want {
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(format!("waiting for {w:?}, got {seen:?}")),
                Ok(_) => {}
            }
            let hit = line.contains(w);
            seen.push(line);
            if hit {
                break;
            }
        }
    }
    Ok(())
}

fn troublemakers(addr: SocketAddr, stop: Arc<AtomicBool>, t: Arc<Trouble>) {
    let mut slow: Vec<(Instant, TcpStream)> = Vec::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let nick = format!("mover{round}");
        // Renames and room moves.
        let moved = line_user(
            addr,
            &[
                nick.clone(),
                format!("/nick {nick}x"),
                "/join #soak-a".into(),
                "/join #soak-b".into(),
                "/rooms".into(),
            ],
            &[
                "Welcome, ",
                " is now known as ",
                "#soak-a",
                "#soak-b",
                "Rooms:",
            ],
        );
        match moved {
            Ok(_) => t.moves.fetch_add(1, Ordering::Relaxed),
            Err(_) => t.errors.fetch_add(1, Ordering::Relaxed),
        };
        // IRC: register, join, part, nick, quit.
        let irc = line_user(
            addr,
            &[
                format!("NICK irc{round}\r"),
                format!("USER irc{round} 0 * :soak\r"),
                "JOIN #soak-a\r".into(),
                "PART #soak-a :bye\r".into(),
                format!("NICK irc{round}x\r"),
                "QUIT :done\r".into(),
            ],
            &[" 001 ", " 366 ", " PART #soak-a", " NICK ", "ERROR"],
        );
        match irc {
            Ok(_) => t.irc_rounds.fetch_add(1, Ordering::Relaxed),
            Err(_) => t.errors.fetch_add(1, Ordering::Relaxed),
        };
        if round % 3 == 1 {
            // A reader that never reads, in the busiest line room: the
            // server cuts it at --max-sendq (counted from /metrics).
            match line_user(
                addr,
                &[format!("slow{round}"), "/join #soak-line".into()],
                &["Welcome, ", "#soak-line"],
            ) {
                Ok(s) => {
                    t.slow_readers.fetch_add(1, Ordering::Relaxed);
                    slow.push((Instant::now(), s));
                }
                Err(_) => {
                    t.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A flood: 2,000 lines at once into a room of its own; it is
            // throttled, not cut, and its last line arrives.
            let flood = (|| -> Result<u64, String> {
                let mut s = line_user(
                    addr,
                    &[format!("flood{round}"), "/join #soak-flood".into()],
                    &["Welcome, ", "#soak-flood"],
                )?;
                let mut listener = line_user(
                    addr,
                    &[format!("hear{round}"), "/join #soak-flood".into()],
                    &["Welcome, ", "#soak-flood"],
                )?;
                let mut text = String::new();
                for i in 0..2000 {
                    text.push_str(&format!("flood line {i}\n"));
                }
                s.set_write_timeout(Some(Duration::from_secs(60)))
                    .map_err(|e| e.to_string())?;
                s.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
                listener
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .map_err(|e| e.to_string())?;
                expect(&mut listener, &["flood line 1999"])?;
                Ok(2000)
            })();
            match flood {
                Ok(n) => {
                    t.floods.fetch_add(1, Ordering::Relaxed);
                    t.flood_lines.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => {
                    t.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Slow readers go after two minutes whether or not they were cut
        // (the kernel's loopback buffers take a few MB before the server's
        // queue even starts to fill).
        slow.retain(|(since, _)| since.elapsed() < Duration::from_secs(120));
        t.rounds.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100)); // pacing, not synchronisation
        }
    }
}

/// Least-squares slope of `y` over `x` (per unit of x).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

/// A series: its name and (seconds, value) points.
type Series = (&'static str, Vec<(f64, f64)>);

/// Two panels: RSS and descriptors; output bytes held and CPU %.
fn chart(samples: &[Sample], warm_s: f64) -> String {
    let (w, h, pad) = (900.0, 260.0, 50.0);
    let t_max = samples.last().map_or(1.0, |s| s.at_s).max(1.0);
    let x = |t: f64| pad + (w - 2.0 * pad) * t / t_max;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * h
    );
    let cpu: Vec<f64> = samples
        .windows(2)
        .map(|p| 100.0 * (p[1].cpu_s - p[0].cpu_s) / (p[1].at_s - p[0].at_s).max(0.001))
        .collect();
    let series = |f: &dyn Fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        samples.iter().map(|s| (s.at_s, f(s))).collect()
    };
    let cpu_points: Vec<(f64, f64)> = samples
        .iter()
        .skip(1)
        .zip(&cpu)
        .map(|(s, c)| (s.at_s, *c))
        .collect();
    // Each panel: a series on the left scale (in its colour), one on the
    // right (red).
    let panels: [(Series, &str, Series); 2] = [
        (
            ("server RSS (MiB)", series(&|s| s.rss_kib as f64 / 1024.0)),
            "#1f77b4",
            ("open descriptors", series(&|s| s.fds as f64)),
        ),
        (
            (
                "output bytes held (KiB)",
                series(&|s| s.output_bytes as f64 / 1024.0),
            ),
            "#2ca02c",
            ("server CPU (% of a core)", cpu_points),
        ),
    ];
    for (i, ((left, lpts), lcolor, (right, rpts))) in panels.iter().enumerate() {
        let top = i as f64 * h;
        let y0 = top + h - pad;
        let span = h - 2.0 * pad;
        let scale = |pts: &[(f64, f64)]| pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
        let (lmax, rmax) = (scale(lpts), scale(rpts));
        svg += &format!(
            "<line x1=\"{pad}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"#888\"/>\n",
            w - pad
        );
        let wx = x(warm_s);
        svg += &format!(
            "<line x1=\"{wx}\" y1=\"{}\" x2=\"{wx}\" y2=\"{y0}\" stroke=\"#ccc\" stroke-dasharray=\"4\"/>\n",
            top + pad
        );
        for (pts, max, color) in [(lpts, lmax, *lcolor), (rpts, rmax, "#d62728")] {
            let line: Vec<String> = pts
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.0), y0 - span * p.1 / max))
                .collect();
            svg += &format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
                line.join(" ")
            );
        }
        svg += &format!(
            "<text x=\"{pad}\" y=\"{}\" fill=\"{lcolor}\">{left} (top {lmax:.1})</text>\n",
            top + pad - 8.0
        );
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"#d62728\" text-anchor=\"end\">{right} (top {rmax:.1})</text>\n",
            w - pad,
            top + pad - 8.0
        );
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds (0 to {t_max:.0}; dashed: end of warm-up)</text>\n",
            w / 2.0,
            y0 + 30.0
        );
    }
    svg + "</svg>\n"
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return; // `cargo test --all-targets` builds and runs benches without it
    }
    if let Err(e) = run(&args) {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let plan = plan(args)?;
    raise_nofile_limit();
    let server = start_server()?;
    let pid = server.pid;
    let addr = server.addr;
    let secs = plan.seconds.to_string();
    println!(
        "soak: {} s against {addr} (pid {pid}); per dialect {} clients, {} msgs/s",
        plan.seconds, plan.clients, plan.rate
    );
    let started = Instant::now();
    let mut benches: Vec<(String, Child)> = Vec::new();
    for (dialect, room) in DIALECTS {
        let a: Vec<String> = [
            "fanout",
            &addr.to_string(),
            "--dialect",
            dialect,
            "--room",
            room,
            "--clients",
            &plan.clients.to_string(),
            "--senders",
            "20",
            "--rate",
            &plan.rate.to_string(),
            "--duration",
            &secs,
            "--warmup",
            "5",
            "--join-timeout",
            "60",
            "--drain-timeout",
            "10",
            "--json",
        ]
        .map(String::from)
        .to_vec();
        benches.push((format!("fanout {dialect}"), start_bench(&a)?));
    }
    let churn: Vec<String> = [
        "churn",
        &addr.to_string(),
        "--room",
        "#soak-churn",
        "--clients",
        "10",
        "--duration",
        &(plan.seconds + 5).to_string(),
        "--join-timeout",
        "60",
        "--json",
    ]
    .map(String::from)
    .to_vec();
    benches.push(("churn".into(), start_bench(&churn)?));

    let stop = Arc::new(AtomicBool::new(false));
    let trouble = Arc::new(Trouble::default());
    let maker = {
        let (stop, trouble) = (Arc::clone(&stop), Arc::clone(&trouble));
        std::thread::spawn(move || troublemakers(addr, stop, trouble))
    };

    let mut samples = Vec::new();
    let end = started + Duration::from_secs(plan.seconds + 5);
    let mut next = started;
    while Instant::now() < end {
        let s = sample(pid, addr, started.elapsed().as_secs_f64());
        if !plan.quick || samples.is_empty() {
            println!(
                "[{:>6.0}s] rss {} KiB  fds {}  threads {}  cpu {:.1} s  output {} B  conns {}  cut {}",
                s.at_s,
                s.rss_kib,
                s.fds,
                s.threads,
                s.cpu_s,
                s.output_bytes,
                s.connections,
                s.cut_sendq
            );
        }
        samples.push(s);
        next += if plan.quick {
            Duration::from_secs(2)
        } else {
            SAMPLE_EVERY
        };
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // the sampling period itself
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = maker.join();

    let mut reports = Vec::new();
    let mut clean = true;
    for (name, child) in benches {
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{name}: {e}"))?;
        let report: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{name}: no JSON report ({e})"))?;
        let ok = report["clean"].as_bool() == Some(true);
        clean &= ok;
        println!(
            "{name:<14} clean {ok:<5} sent {:>9}  deliveries {:>11} of {:>11}  lost {} dup {} reord {}  p50 {} us  p99 {} us  max {} us  joins {}",
            report["sent"],
            report["deliveries"],
            report["expected_deliveries"],
            report["lost"],
            report["duplicates"],
            report["reordered"],
            report["latency_us"]["p50"],
            report["latency_us"]["p99"],
            report["latency_us"]["max"],
            report["joins"],
        );
        reports.push(json!({"name": name, "report": report}));
    }
    let last = sample(pid, addr, started.elapsed().as_secs_f64());
    samples.push(last.clone());

    let warm_s = plan.seconds as f64 / 5.0;
    let after: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_s >= warm_s && s.at_s <= plan.seconds as f64)
        .collect();
    let per_hour = |f: &dyn Fn(&Sample) -> f64| {
        slope(&after.iter().map(|s| (s.at_s, f(s))).collect::<Vec<_>>()) * 3600.0
    };
    let rss_slope = per_hour(&|s| s.rss_kib as f64);
    let fd_slope = per_hour(&|s| s.fds as f64);
    let max_threads = samples.iter().map(|s| s.threads).max().unwrap_or(0);
    let cpu = match (after.first(), after.last()) {
        (Some(a), Some(b)) if b.at_s > a.at_s => 100.0 * (b.cpu_s - a.cpu_s) / (b.at_s - a.at_s),
        _ => 0.0,
    };
    let t = &trouble;
    let summary = json!({
        "seconds": plan.seconds,
        "clients_per_dialect": plan.clients,
        "rate_per_dialect": plan.rate,
        "warmup_s": warm_s,
        "rss_kib": {
            "after_warmup": after.first().map(|s| s.rss_kib),
            "end": after.last().map(|s| s.rss_kib),
            "max": samples.iter().map(|s| s.rss_kib).max(),
            "slope_per_hour": rss_slope,
        },
        "fds": {
            "after_warmup": after.first().map(|s| s.fds),
            "end": after.last().map(|s| s.fds),
            "max": samples.iter().map(|s| s.fds).max(),
            "after_benches": last.fds,
            "slope_per_hour": fd_slope,
        },
        "threads_max": max_threads,
        "cpu_percent_after_warmup": cpu,
        "output_bytes_max": samples.iter().map(|s| s.output_bytes).max(),
        "cut_sendq": last.cut_sendq,
        "trouble": {
            "rounds": t.rounds.load(Ordering::Relaxed),
            "moves": t.moves.load(Ordering::Relaxed),
            "irc_rounds": t.irc_rounds.load(Ordering::Relaxed),
            "slow_readers": t.slow_readers.load(Ordering::Relaxed),
            "floods": t.floods.load(Ordering::Relaxed),
            "flood_lines": t.flood_lines.load(Ordering::Relaxed),
            "errors": t.errors.load(Ordering::Relaxed),
        },
        "clean": clean,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut csv =
        String::from("at_s,rss_kib,fds,threads,cpu_s,output_bytes,connections,cut_sendq\n");
    for s in &samples {
        csv += &format!(
            "{:.1},{},{},{},{:.2},{},{},{}\n",
            s.at_s,
            s.rss_kib,
            s.fds,
            s.threads,
            s.cpu_s,
            s.output_bytes,
            s.connections,
            s.cut_sendq
        );
    }
    let svg = chart(&samples, warm_s);
    let all = json!({"summary": summary, "benches": reports});
    for (name, body) in [
        ("soak.csv", csv),
        ("soak.svg", svg.clone()),
        (
            "soak.json",
            serde_json::to_string_pretty(&all).unwrap_or_default(),
        ),
    ] {
        std::fs::write(dir.join(name), body).map_err(|e| format!("{name}: {e}"))?;
    }
    if plan.update_docs {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/soak.svg");
        std::fs::write(&docs, svg).map_err(|e| format!("docs/soak.svg: {e}"))?;
    }
    println!("wrote {}/soak.{{csv,json,svg}}", dir.display());

    // What must hold, in any mode.
    let mut problems = Vec::new();
    if !clean {
        problems.push(
            "a bench was not clean (loss, duplicates, reordering or failed joins)".to_string(),
        );
    }
    if max_threads != 1 {
        problems.push(format!("the server ran {max_threads} threads"));
    }
    if t.errors.load(Ordering::Relaxed) > 0 {
        problems.push(format!(
            "{} troublemaker rounds went wrong",
            t.errors.load(Ordering::Relaxed)
        ));
    }
    if t.floods.load(Ordering::Relaxed) == 0 || t.moves.load(Ordering::Relaxed) == 0 {
        problems.push("no flood or no move round completed".into());
    }
    if samples.len() < 5 {
        problems.push(format!("only {} samples", samples.len()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The descriptor limit raised to the hard limit (children inherit it).
fn raise_nofile_limit() {
    let _ = loopchat::bench::proc_stats::raise_nofile_limit();
}
