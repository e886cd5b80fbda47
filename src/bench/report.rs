//! The results of a run: the human table and the JSON object.
//!
//! The JSON keys are a stable interface (docs/benchmarks.md documents them;
//! benches/fanout.rs and the tests read them), so they are written out by
//! hand here rather than derived from field names.

use super::cli::{Config, Lag, Workload};
use super::proc_stats::RssTrack;
use super::stats::{LatencySummary, RunHists};
use super::workers::PerSender;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What the server cost over the measured window (`--server-pid`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerCost {
    pub rss_start_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_end_kib: u64,
    pub threads: u64,
    pub cpu_s: f64,
    pub cpu_us_per_1k_deliveries: Option<f64>,
    /// Write-like syscalls in the window, and where the count came from
    /// (`perf` tracepoints, or `syscw` which misses `send`).
    pub write_syscalls: Option<u64>,
    pub write_syscalls_source: &'static str,
    pub write_syscalls_per_delivery: Option<f64>,
}

/// Receivers that left after joining because the server closed them (a
/// slow reader cut at `--max-sendq`, typically). What they did not get is
/// counted here, not in `lost`, which is about receivers still connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    pub receivers: u64,
    /// Of which `--lag` receivers (whose cut is not a failure).
    pub lagging: u64,
    /// Of which had received an error line (`! ...`, IRC `ERROR`) first.
    pub with_error_line: u64,
    /// Messages owed to them and not received.
    pub undelivered: u64,
}

/// What `--lag` did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LagStats {
    pub receivers: u64,
    /// From the first send to the resume.
    pub paused_s: f64,
}

/// One process of `--workers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    pub pid: u32,
    /// Its threads when it finished (`/proc/self/task`): 1.
    pub threads: u64,
    pub clients: u64,
    pub senders: u64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub config: Config,
    /// Connections asked for (churn: attempts started).
    pub requested: usize,
    /// Clients that joined.
    pub joined: u64,
    /// Time until all joined (or the join timeout); churn: the run's length.
    pub join_s: f64,
    /// Connect to `* The room contains` per client.
    pub join_latency: LatencySummary,
    /// Failures by kind (connect_refused, nick_refused, join_timeout, ...).
    pub failures: BTreeMap<String, u64>,
    pub senders: usize,
    pub sent: u64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Chat lines that were not bench payloads (other users).
    pub foreign_lines: u64,
    /// `! ` lines received after joining.
    pub error_lines: u64,
    /// Length of the measured window (after warm-up).
    pub measured_s: f64,
    pub measured_sent: u64,
    pub measured_deliveries: u64,
    pub latency: Option<LatencySummary>,
    pub latency_uncorrected: Option<LatencySummary>,
    /// Several servers: the corrected latency split by path (the sender
    /// on the receiver's server, or on another; `None` with one server).
    pub latency_same_target: Option<LatencySummary>,
    pub latency_cross_target: Option<LatencySummary>,
    pub drain_s: f64,
    /// Reading until nothing came for a while: before the first send with
    /// `--lag` (the join notices), after the storm (the last joins' notices).
    pub settle_s: f64,
    /// Deliveries between the start of the measured window and the end of
    /// the drain: the divisor of the server's per-delivery costs.
    pub cost_window_deliveries: u64,
    pub server: Option<ServerCost>,
    pub bench_cpu_s: Option<f64>,
    pub bench_rss_kib: Option<u64>,
    /// Bytes the clients read from the server over the whole run.
    pub read_bytes: u64,
    /// Idle: connections still joined at the end of the hold.
    pub held: u64,
    /// Churn, storm: completed joins (storm: not counting the chatters).
    pub joins: u64,
    pub in_flight_at_end: u64,
    pub cut: Cut,
    pub lag: Option<LagStats>,
    /// With `--server-pid`: the server's RSS sampled every `--rss-interval`
    /// over the whole run.
    pub memory: Option<RssTrack>,
    /// The whole histograms (fanout, storm): `--hist-out` and `--workers`.
    pub hists: Option<RunHists>,
    /// Loss by sender, which `--workers` adds up across processes.
    pub per_sender: Option<PerSender>,
    /// `--workers`: the processes that ran (empty: this one alone).
    pub workers: Vec<WorkerInfo>,
}

fn per_s(n: u64, s: f64) -> f64 {
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

fn lat_json(l: &Option<LatencySummary>) -> Value {
    match l {
        Some(l) if l.count > 0 => json!({
            "p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999, "max": l.max,
            "count": l.count, "out_of_range": l.out_of_range,
        }),
        _ => Value::Null,
    }
}

impl Report {
    pub fn new(config: Config) -> Report {
        Report {
            requested: config.clients,
            config,
            joined: 0,
            join_s: 0.0,
            join_latency: LatencySummary::default(),
            failures: BTreeMap::new(),
            senders: 0,
            sent: 0,
            deliveries: 0,
            expected_deliveries: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            foreign_lines: 0,
            error_lines: 0,
            measured_s: 0.0,
            measured_sent: 0,
            measured_deliveries: 0,
            latency: None,
            latency_uncorrected: None,
            latency_same_target: None,
            latency_cross_target: None,
            drain_s: 0.0,
            settle_s: 0.0,
            cost_window_deliveries: 0,
            server: None,
            bench_cpu_s: None,
            bench_rss_kib: None,
            read_bytes: 0,
            held: 0,
            joins: 0,
            in_flight_at_end: 0,
            cut: Cut::default(),
            lag: None,
            memory: None,
            hists: None,
            per_sender: None,
            workers: Vec::new(),
        }
    }

    pub fn deliveries_per_s(&self) -> f64 {
        per_s(self.measured_deliveries, self.measured_s)
    }

    pub fn sent_per_s(&self) -> f64 {
        per_s(self.measured_sent, self.measured_s)
    }

    pub fn joins_per_s(&self) -> f64 {
        per_s(self.joins, self.measured_s)
    }

    pub fn failures_total(&self) -> u64 {
        self.failures.values().sum()
    }

    /// The server's highest sampled RSS over the phases that are the
    /// workload's load (storm: the storm; fanout: from the first send),
    /// leaving out the joining before them. `None` without `--server-pid`.
    pub fn load_peak_rss_kib(&self) -> Option<u64> {
        let m = self.memory.as_ref()?;
        Some(match self.config.workload {
            Workload::Storm => m.peak_in(&["storm", "drain", "settle"]),
            Workload::Fanout => m.peak_in(&["send", "lag", "drain"]),
            Workload::Idle | Workload::Churn => m.peak_kib,
        })
    }

    /// Whether everyone requested joined (fanout, idle, storm).
    pub fn all_joined(&self) -> bool {
        self.config.workload == Workload::Churn || self.joined >= self.requested as u64
    }

    /// No loss, duplicates, reordering or failures: exit status 0.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.reordered == 0
            && self.failures_total() == 0
            && self.all_joined()
    }

    pub fn to_json(&self) -> Value {
        let c = &self.config;
        let params = json!({
            "addr": c.addr.to_string(),
            "targets": c.targets().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "dialect": c.dialect.name(),
            "room": c.room,
            "clients": c.clients,
            "senders": c.senders,
            "rate": c.rate,
            "window": c.window,
            "size": c.size,
            "duration_s": c.duration.as_secs_f64(),
            "warmup_s": c.warmup.as_secs_f64(),
            "messages": c.messages,
            // null: unpaced (`--connect-rate max`).
            "connect_rate": c.connect_rate,
            "max_joining": c.max_joining,
            "lag": match c.lag {
                None => Value::Null,
                Some(Lag::Count(n)) => json!({ "count": n }),
                Some(Lag::Fraction(f)) => json!({ "share": f }),
            },
            "lag_pause_s": c.lag_pause.as_secs_f64(),
            "lag_after_send": c.lag_after_send,
            "settle_s": c.settle.as_secs_f64(),
            "rss_interval_ms": c.rss_interval.as_secs_f64() * 1000.0,
            "source_addrs": c.source_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "join_timeout_s": c.join_timeout.as_secs_f64(),
            "drain_timeout_s": c.drain_timeout.as_secs_f64(),
            "server_pid": c.server_pids.first(),
            "server_pids": c.server_pids,
        });
        let server = self.server.map_or(Value::Null, |s| {
            json!({
                "rss_start_kib": s.rss_start_kib,
                "rss_peak_kib": s.rss_peak_kib,
                "rss_end_kib": s.rss_end_kib,
                "threads": s.threads,
                "cpu_s": s.cpu_s,
                "cpu_us_per_1k_deliveries": s.cpu_us_per_1k_deliveries,
                "write_syscalls": s.write_syscalls,
                "write_syscalls_source": s.write_syscalls_source,
                "write_syscalls_per_delivery": s.write_syscalls_per_delivery,
            })
        });
        let memory = self.memory.as_ref().map_or(Value::Null, |m| {
            json!({
                "samples": m.samples,
                "rss_start_kib": m.start_kib,
                "rss_peak_kib": m.peak_kib,
                "rss_peak_at_s": m.peak_at_s,
                "rss_peak_phase": m.peak_phase,
                "rss_peak_by_phase_kib": m.by_phase.iter().map(|&(p, k)| (p.to_string(), json!(k))).collect::<serde_json::Map<_, _>>(),
                "rss_start_by_phase_kib": m.phase_start.iter().map(|&(p, k)| (p.to_string(), json!(k))).collect::<serde_json::Map<_, _>>(),
                "rss_load_peak_kib": self.load_peak_rss_kib(),
                "rss_end_kib": m.last_kib,
                "hwm_kib": m.hwm_kib,
            })
        });
        json!({
            "workload": c.workload.name(),
            "params": params,
            "connections": {
                "requested": self.requested,
                "joined": self.joined,
                "all_joined": self.all_joined(),
                "join_s": self.join_s,
                "join_latency_us": lat_json(&Some(self.join_latency)),
                "failures": self.failures,
                "held": self.held,
            },
            "senders": self.senders,
            "sent": self.sent,
            "deliveries": self.deliveries,
            "expected_deliveries": self.expected_deliveries,
            "measured_s": self.measured_s,
            "measured_sent": self.measured_sent,
            "measured_deliveries": self.measured_deliveries,
            "sent_per_s": self.sent_per_s(),
            "deliveries_per_s": self.deliveries_per_s(),
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "foreign_lines": self.foreign_lines,
            "error_lines": self.error_lines,
            "drain_s": self.drain_s,
            "settle_s": self.settle_s,
            "cost_window_deliveries": self.cost_window_deliveries,
            "latency_us": lat_json(&self.latency),
            "latency_uncorrected_us": lat_json(&self.latency_uncorrected),
            "latency_by_path_us": if self.latency_same_target.is_some() || self.latency_cross_target.is_some() {
                json!({
                    "same_server": lat_json(&self.latency_same_target),
                    "cross_server": lat_json(&self.latency_cross_target),
                })
            } else {
                Value::Null
            },
            "joins": self.joins,
            "joins_per_s": self.joins_per_s(),
            "in_flight_at_end": self.in_flight_at_end,
            "cut": {
                "receivers": self.cut.receivers,
                "lagging": self.cut.lagging,
                "with_error_line": self.cut.with_error_line,
                "undelivered": self.cut.undelivered,
            },
            "lag": self.lag.map_or(Value::Null, |l| json!({
                "receivers": l.receivers,
                "paused_s": l.paused_s,
            })),
            "server": server,
            "server_memory": memory,
            "bench": {
                "cpu_s": self.bench_cpu_s,
                "rss_kib": self.bench_rss_kib,
                "read_bytes": self.read_bytes,
            },
            "workers": {
                "count": self.workers.len().max(1),
                "parent_pid": std::process::id(),
                "processes": self.workers.iter().map(|w| json!({
                    "pid": w.pid, "threads": w.threads, "clients": w.clients, "senders": w.senders,
                })).collect::<Vec<_>>(),
            },
            "clean": self.is_clean(),
        })
    }

    /// The chat latency rows of the table (fanout, storm with chatters).
    fn latency_rows(&self, t: &mut String) {
        for (name, l) in [
            ("latency us (corrected)", &self.latency),
            ("latency us (uncorrected)", &self.latency_uncorrected),
            ("  same server", &self.latency_same_target),
            ("  across servers", &self.latency_cross_target),
        ] {
            if let Some(l) = l.filter(|l| l.count > 0) {
                let oor = if l.out_of_range > 0 {
                    format!("  ({} OUT OF RANGE, recorded at the top)", l.out_of_range)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    t,
                    "  {name:<28} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}{oor}",
                    l.p50, l.p90, l.p99, l.p999, l.max
                );
            }
        }
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "loopchat-bench {} against {} ({})",
            c.workload.name(),
            c.targets()
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            c.dialect.name()
        );
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<28} {v}");
        };
        row(
            &mut t,
            "connections joined",
            format!(
                "{} of {} requested in {:.2} s{}",
                self.joined,
                self.requested,
                self.join_s,
                if self.all_joined() {
                    ""
                } else {
                    "  (NOT ALL JOINED)"
                }
            ),
        );
        if self.failures.is_empty() {
            row(&mut t, "failures", "none".into());
        } else {
            let list: Vec<String> = self
                .failures
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            row(&mut t, "failures", list.join(", "));
        }
        if let Some(l) = self.lag {
            row(
                &mut t,
                "lagging receivers",
                format!(
                    "{} paused {:.2} s{} (after {:.2} s settling)",
                    l.receivers,
                    l.paused_s,
                    if c.lag_after_send {
                        " until after the last send"
                    } else {
                        ""
                    },
                    self.settle_s
                ),
            );
        }
        if self.cut.receivers > 0 {
            row(
                &mut t,
                "cut by the server",
                format!(
                    "{} receivers ({} lagging, {} told why), {} messages undelivered to them",
                    self.cut.receivers,
                    self.cut.lagging,
                    self.cut.with_error_line,
                    self.cut.undelivered
                ),
            );
        }
        match c.workload {
            Workload::Storm => {
                let chatters = c.senders.min(c.clients) as u64;
                row(
                    &mut t,
                    "storm",
                    format!(
                        "{} joins in {:.2} s = {:.0} joins/s ({})",
                        self.joins,
                        self.measured_s,
                        self.joins_per_s(),
                        if c.connect_unpaced() {
                            "connects unpaced".to_string()
                        } else {
                            format!("{} connects/s asked", c.connect_rate)
                        }
                    ),
                );
                if chatters > 0 {
                    row(
                        &mut t,
                        "chatters",
                        format!(
                            "{} senders, {} msg/s open loop, {} B payload",
                            self.senders, c.rate, c.size
                        ),
                    );
                    row(
                        &mut t,
                        "sent / deliveries / owed",
                        format!(
                            "{} / {} / {}",
                            self.sent, self.deliveries, self.expected_deliveries
                        ),
                    );
                    row(
                        &mut t,
                        "lost / duplicates / reordered",
                        format!("{} / {} / {}", self.lost, self.duplicates, self.reordered),
                    );
                    self.latency_rows(&mut t);
                }
            }
            Workload::Fanout => {
                let rate = if c.rate > 0.0 {
                    format!("{} msg/s open loop", c.rate)
                } else {
                    format!("closed loop, window {}", c.window)
                };
                row(
                    &mut t,
                    "load",
                    format!("{} senders, {rate}, {} B payload", self.senders, c.size),
                );
                row(
                    &mut t,
                    "measured window",
                    format!(
                        "{:.2} s after {:.1} s warm-up",
                        self.measured_s,
                        c.warmup.as_secs_f64()
                    ),
                );
                row(
                    &mut t,
                    "sent (all / measured)",
                    format!(
                        "{} / {}  ({:.0} msg/s)",
                        self.sent,
                        self.measured_sent,
                        self.sent_per_s()
                    ),
                );
                row(
                    &mut t,
                    "deliveries (all / expected)",
                    format!("{} / {}", self.deliveries, self.expected_deliveries),
                );
                row(
                    &mut t,
                    "deliveries/s (measured)",
                    format!("{:.0}", self.deliveries_per_s()),
                );
                row(
                    &mut t,
                    "lost / duplicates / reordered",
                    format!("{} / {} / {}", self.lost, self.duplicates, self.reordered),
                );
                if self.foreign_lines + self.error_lines > 0 {
                    row(
                        &mut t,
                        "foreign / error lines",
                        format!("{} / {}", self.foreign_lines, self.error_lines),
                    );
                }
                self.latency_rows(&mut t);
            }
            Workload::Idle => {
                row(
                    &mut t,
                    "held joined",
                    format!("{} for {:.1} s", self.held, self.measured_s),
                );
            }
            Workload::Churn => {
                row(
                    &mut t,
                    "joins",
                    format!(
                        "{} in {:.2} s = {:.0} joins/s",
                        self.joins,
                        self.measured_s,
                        self.joins_per_s()
                    ),
                );
            }
        }
        let jl = self.join_latency;
        if jl.count > 0 {
            row(
                &mut t,
                "join latency us",
                format!("p50 {}  p99 {}  max {}", jl.p50, jl.p99, jl.max),
            );
        }
        if let Some(m) = &self.memory {
            let phases: Vec<String> = m.by_phase.iter().map(|(p, k)| format!("{p} {k}")).collect();
            row(
                &mut t,
                "server RSS sampled KiB",
                format!(
                    "start {}  peak {} ({} at {:.2} s)  end {}  ({} samples)",
                    m.start_kib, m.peak_kib, m.peak_phase, m.peak_at_s, m.last_kib, m.samples
                ),
            );
            row(&mut t, "server RSS peak by phase", phases.join(", "));
            if let Some(p) = self.load_peak_rss_kib() {
                row(
                    &mut t,
                    "server RSS peak under load",
                    format!("{p} KiB = {:.1} MiB", p as f64 / 1024.0),
                );
            }
            row(
                &mut t,
                "server VmHWM (lifetime)",
                format!("{} KiB = {:.1} MiB", m.hwm_kib, m.hwm_kib as f64 / 1024.0),
            );
        }
        if let Some(s) = &self.server {
            row(
                &mut t,
                "server",
                format!(
                    "RSS start/peak/end {}/{}/{} KiB, {} threads, CPU {:.3} s",
                    s.rss_start_kib, s.rss_peak_kib, s.rss_end_kib, s.threads, s.cpu_s
                ),
            );
            if let Some(v) = s.cpu_us_per_1k_deliveries {
                row(&mut t, "server CPU us / 1k deliveries", format!("{v:.1}"));
            }
            if let Some(v) = s.write_syscalls_per_delivery {
                row(&mut t, "server writes / delivery", format!("{v:.4}"));
            }
        }
        if let Some(cpu) = self.bench_cpu_s {
            row(&mut t, "bench CPU", format!("{cpu:.3} s"));
        }
        if !self.workers.is_empty() {
            let list: Vec<String> = self
                .workers
                .iter()
                .map(|w| {
                    format!(
                        "pid {} ({} clients, {} senders)",
                        w.pid, w.clients, w.senders
                    )
                })
                .collect();
            row(
                &mut t,
                "bench processes",
                format!("{}: {}", self.workers.len(), list.join(", ")),
            );
        }
        row(
            &mut t,
            "bench read",
            format!("{:.1} MiB", self.read_bytes as f64 / (1024.0 * 1024.0)),
        );
        row(
            &mut t,
            "result",
            if self.is_clean() {
                "clean".into()
            } else {
                "NOT CLEAN".into()
            },
        );
        t
    }
}
