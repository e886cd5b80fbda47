//! What the fanout, peers, scale_out and soak benches share (`mod
//! shared;` in each): their command line, a server process started for one
//! measurement and stopped when dropped, the machine's description,
//! medians, and the SVG charts.
//!
//! A server is either loopchat (it prints `listening on ADDR:PORT` on its
//! first line, so it can bind port 0) or a peer started from a
//! configuration template under `benches/peers/`: the bench picks a free
//! loopback port, writes the template into a temp dir with `@PORT@` and
//! `@DIR@` replaced, runs the peer in the foreground, and waits until the
//! port accepts.

// Each bench uses part of this module.
#![allow(dead_code)]

use loopchat::bench;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a peer has to start listening.
const PEER_START: Duration = Duration::from_secs(15);

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    pub rss_empty_kib: u64,
    /// A peer's temp dir (configuration, pid and log files), removed with it.
    dir: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A peer's configuration: the template, and the file name to write it to.
#[derive(Clone)]
pub struct PeerConf {
    pub template: PathBuf,
    pub file: &'static str,
}

/// A `harness = false` bench's command line.
pub struct Args {
    pub all: Vec<String>,
    /// `--quick`: the short run of `.ci/run`.
    pub quick: bool,
    /// `--update-docs`: rewrite the bench's section of the docs.
    pub update_docs: bool,
}

impl Args {
    /// The arguments, or `None` (after saying so) under `cargo test
    /// --all-targets`, which runs benches without `--bench`.
    pub fn from_env(name: &str) -> Option<Args> {
        let all: Vec<String> = std::env::args().skip(1).collect();
        if !all.iter().any(|a| a == "--bench") {
            eprintln!(
                "{name}: run with `cargo bench --bench {name} [-- --quick]`; nothing to do under `cargo test`"
            );
            return None;
        }
        Some(Args {
            quick: all.iter().any(|a| a == "--quick"),
            update_docs: all.iter().any(|a| a == "--update-docs"),
            all,
        })
    }

    /// Whether `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.all.iter().any(|a| a == flag)
    }

    /// `--runs N` (default `default`), kept within 1..=`max`.
    pub fn runs(&self, default: usize, max: usize) -> usize {
        self.all
            .iter()
            .position(|a| a == "--runs")
            .and_then(|i| self.all.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
            .clamp(1, max)
    }
}

/// The arguments every bench gives loopchat: any port, no flood control,
/// room for every client, quiet.
pub fn loopchat_args() -> Vec<String> {
    [
        "--listen",
        "127.0.0.1:0",
        "--max-rate",
        "0",
        "--max-clients",
        "100000",
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[derive(Clone)]
pub struct ServerKind {
    pub name: &'static str,
    pub program: PathBuf,
    /// Arguments; for a peer, `@CONF@` is replaced by the written file.
    pub args: Vec<String>,
    /// `None`: loopchat, which says where it listens.
    pub conf: Option<PeerConf>,
}

/// A loopback port free right now (the peer binds it a moment later).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

impl ServerKind {
    pub fn start(&self) -> Result<Server, String> {
        match &self.conf {
            None => self.start_loopchat(),
            Some(conf) => self.start_peer(conf),
        }
    }

    fn start_loopchat(&self) -> Result<Server, String> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "{}: cannot start {}: {e}",
                    self.name,
                    self.program.display()
                )
            })?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{}: expected `listening on ADDR:PORT`, got {:?}",
                self.name,
                first.trim()
            ));
        };
        let pid = child.id();
        let rss_empty_kib = bench::proc_stats::sample(pid).map_or(0, |s| s.rss_kib);
        Ok(Server {
            child,
            addr,
            pid,
            rss_empty_kib,
            dir: None,
        })
    }

    fn start_peer(&self, conf: &PeerConf) -> Result<Server, String> {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "loopchat-peers-{}-{}-{n}",
            std::process::id(),
            self.name
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // ngIRCd, started by root, drops to `nobody` and must still write
        // its pid file here.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        }
        let port = free_port()?;
        let template = std::fs::read_to_string(&conf.template)
            .map_err(|e| format!("{}: {e}", conf.template.display()))?;
        let text = template
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", &dir.to_string_lossy());
        let path = dir.join(conf.file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.replace("@CONF@", &path.to_string_lossy()))
            .collect();
        let log = std::fs::File::create(dir.join("output.log"))
            .map_err(|e| format!("{}: output.log: {e}", self.name))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(&self.program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                format!(
                    "{}: cannot start {}: {e}",
                    self.name,
                    self.program.display()
                )
            })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let give_up = Instant::now() + PEER_START;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let out = std::fs::read_to_string(dir.join("output.log")).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!(
                    "{}: exited at start ({status}): {}",
                    self.name,
                    out.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() >= give_up {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!(
                    "{}: not listening on {addr} after {PEER_START:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = child.id();
        let rss_empty_kib = bench::proc_stats::sample(pid).map_or(0, |s| s.rss_kib);
        Ok(Server {
            child,
            addr,
            pid,
            rss_empty_kib,
            dir: Some(dir),
        })
    }
}

/// The machine's CPU time so far, from the first line of /proc/stat, in
/// ticks: (busy, total). Busy is everything but idle and iowait.
pub fn cpu_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Busy cores between two `cpu_ticks` readings.
pub fn busy_cores(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (a?, b?);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let dt = t1.checked_sub(t0).filter(|&d| d > 0)? as f64;
    Some(b1.saturating_sub(b0) as f64 / dt * cpus)
}

pub fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The median of the runs' values that exist.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
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

pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .ok();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": kernel,
    })
}

pub fn chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), String> {
    use plotters::prelude::*;
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    if all.is_empty() {
        return Ok(());
    }
    let (xmin, xmax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut ch = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (xmin.max(1.0) * 0.8..xmax.max(2.0) * 1.25).log_scale(),
            (ymin.max(1.0) * 0.8..ymax.max(2.0) * 1.25).log_scale(),
        )
        .map_err(|e| e.to_string())?;
    ch.configure_mesh()
        .x_desc("offered rate (messages/s)")
        .y_desc(y_label)
        .draw()
        .map_err(|e| e.to_string())?;
    let colors = [
        RED,
        BLUE,
        GREEN,
        MAGENTA,
        CYAN,
        BLACK,
        RGBColor(230, 140, 0),
        RGBColor(120, 60, 160),
    ];
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        ch.draw_series(LineSeries::new(
            pts.iter().map(|&(x, y)| (x, y.max(1.0))),
            color.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(*name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
