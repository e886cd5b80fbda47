//! The results of a run: the human table and the JSON object.
//!
//! The JSON keys are a stable interface (docs/benchmarks.md documents them;
//! benches/fanout.rs and the tests read them), so they are written out by
//! hand here rather than derived from field names.

use super::cli::{Config, Workload};
use super::stats::LatencySummary;
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
    pub drain_s: f64,
    /// Deliveries between the start of the measured window and the end of
    /// the drain: the divisor of the server's per-delivery costs.
    pub cost_window_deliveries: u64,
    pub server: Option<ServerCost>,
    pub bench_cpu_s: Option<f64>,
    pub bench_rss_kib: Option<u64>,
    /// Idle: connections still joined at the end of the hold.
    pub held: u64,
    /// Churn: completed joins.
    pub joins: u64,
    pub in_flight_at_end: u64,
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
            drain_s: 0.0,
            cost_window_deliveries: 0,
            server: None,
            bench_cpu_s: None,
            bench_rss_kib: None,
            held: 0,
            joins: 0,
            in_flight_at_end: 0,
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

    /// Whether everyone requested joined (fanout, idle).
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
            "connect_rate": c.connect_rate,
            "source_addrs": c.source_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "join_timeout_s": c.join_timeout.as_secs_f64(),
            "drain_timeout_s": c.drain_timeout.as_secs_f64(),
            "server_pid": c.server_pid,
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
            "cost_window_deliveries": self.cost_window_deliveries,
            "latency_us": lat_json(&self.latency),
            "latency_uncorrected_us": lat_json(&self.latency_uncorrected),
            "joins": self.joins,
            "joins_per_s": self.joins_per_s(),
            "in_flight_at_end": self.in_flight_at_end,
            "server": server,
            "bench": {
                "cpu_s": self.bench_cpu_s,
                "rss_kib": self.bench_rss_kib,
            },
            "clean": self.is_clean(),
        })
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut t = String::new();
        let _ = writeln!(t, "loopchat-bench {} against {}", c.workload.name(), c.addr);
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
        match c.workload {
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
                for (name, l) in [
                    ("latency us (corrected)", &self.latency),
                    ("latency us (uncorrected)", &self.latency_uncorrected),
                ] {
                    if let Some(l) = l.filter(|l| l.count > 0) {
                        let oor = if l.out_of_range > 0 {
                            format!("  ({} OUT OF RANGE, recorded at the top)", l.out_of_range)
                        } else {
                            String::new()
                        };
                        row(
                            &mut t,
                            name,
                            format!(
                                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}{oor}",
                                l.p50, l.p90, l.p99, l.p999, l.max
                            ),
                        );
                    }
                }
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
