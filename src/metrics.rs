//! `/metrics`: the server's numbers in Prometheus's text format.
//!
//! The loop keeps plain counters as it goes ([`Totals`], bumped from each
//! turn's [`TurnStats`](crate::turn_stats::TurnStats) and where
//! connections are refused or cut); a scrape takes a [`Snapshot`] of them
//! and of the gauges of the moment, and [`render`] writes the text. Every
//! metric has its `# HELP` and `# TYPE`; counters end in `_total`.

use std::fmt::Write as _;

/// Why connections were cut, as `reason` labels (see [`Totals::cut`]).
pub const CUT_REASONS: [&str; 6] = [
    "closed",
    "reset",
    "write_error",
    "sendq",
    "idle_timeout",
    "register_timeout",
];

/// Counters since the server started.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub accepted: u64,
    /// Refused at accept: server full, per-address limit, no descriptors.
    pub refused_full: u64,
    pub refused_per_address: u64,
    pub refused_descriptors: u64,
    /// `accept()` failures other than "would block".
    pub accept_errors: u64,
    pub lines: u64,
    pub broadcasts: u64,
    /// Byte strings queued for connections (a broadcast to N counts N).
    pub deliveries: u64,
    pub bytes_written: u64,
    pub write_syscalls: u64,
    pub flood_notices: u64,
    pub password_checks: u64,
    /// Writes of the accounts file (one per group of registrations).
    pub accounts_saves: u64,
    pub http_requests: u64,
    pub websocket_upgrades: u64,
    /// TLS handshakes completed, and TLS sessions that failed (a failed
    /// handshake, a plain-text client on a TLS port, a broken record).
    pub tls_handshakes: u64,
    pub tls_failures: u64,
    /// Connections that left, by [`CUT_REASONS`] index.
    pub cut: [u64; CUT_REASONS.len()],
}

impl Totals {
    /// Adds what one turn of the loop did.
    pub fn add_turn(&mut self, t: &crate::turn_stats::TurnStats) {
        self.lines += u64::from(t.lines);
        self.broadcasts += t.broadcasts;
        self.deliveries += t.queued;
        self.bytes_written += t.written_bytes;
        self.write_syscalls += u64::from(t.writes);
    }

    /// Counts one departure under `reason` (one of [`CUT_REASONS`]).
    pub fn count_cut(&mut self, reason: &str) {
        if let Some(i) = CUT_REASONS.iter().position(|&r| r == reason) {
            self.cut[i] += 1;
        }
    }
}

/// Everything one scrape shows.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub totals: Totals,
    /// Open connections by (transport, dialect) label pairs.
    pub connections: Vec<((&'static str, &'static str), u64)>,
    pub users: u64,
    pub rooms: u64,
    /// Bytes held for output (shared chunks and queues' own bytes), and
    /// the shared part alone.
    pub output_bytes: u64,
    pub output_chunk_bytes: u64,
    /// From /proc/self: resident bytes, CPU seconds, open descriptors.
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub start_time_seconds: f64,
    /// `--redis`: the bridge's counters (the `loopchat_bridge_*` metrics
    /// are only shown when bridging is on).
    pub bridge: Option<crate::bridge::Figures>,
}

/// The Prometheus text exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let t = &s.totals;
    metric(
        &mut out,
        "loopchat_users",
        "gauge",
        "Connections with a nickname.",
        s.users.to_string(),
    );
    metric(
        &mut out,
        "loopchat_rooms",
        "gauge",
        "Rooms that exist.",
        s.rooms.to_string(),
    );
    for (name, help, v) in [
        (
            "loopchat_accepted_total",
            "Connections accepted.",
            t.accepted,
        ),
        (
            "loopchat_accept_errors_total",
            "accept() calls that failed.",
            t.accept_errors,
        ),
        (
            "loopchat_lines_received_total",
            "Lines handed to the chat.",
            t.lines,
        ),
        (
            "loopchat_broadcasts_total",
            "Events sent to many, rendered once per dialect.",
            t.broadcasts,
        ),
        (
            "loopchat_deliveries_total",
            "Byte strings queued for connections (a broadcast to N counts N).",
            t.deliveries,
        ),
        (
            "loopchat_written_bytes_total",
            "Bytes the kernel took from the send queues.",
            t.bytes_written,
        ),
        (
            "loopchat_write_syscalls_total",
            "write()/writev() calls on connections.",
            t.write_syscalls,
        ),
        (
            "loopchat_flood_notices_total",
            "Times a flooding connection was told to slow down.",
            t.flood_notices,
        ),
        (
            "loopchat_password_checks_total",
            "Password hashes computed (--accounts).",
            t.password_checks,
        ),
        (
            "loopchat_accounts_saves_total",
            "Writes of the accounts file, each saving a group of new accounts (--accounts).",
            t.accounts_saves,
        ),
        (
            "loopchat_http_requests_total",
            "HTTP requests answered (WebSocket upgrades included).",
            t.http_requests,
        ),
        (
            "loopchat_websocket_upgrades_total",
            "Connections upgraded to WebSocket.",
            t.websocket_upgrades,
        ),
        (
            "loopchat_tls_handshakes_total",
            "TLS handshakes completed.",
            t.tls_handshakes,
        ),
        (
            "loopchat_tls_failures_total",
            "TLS sessions ended by a TLS error (failed handshake, not TLS, bad record).",
            t.tls_failures,
        ),
    ] {
        metric(&mut out, name, "counter", help, v.to_string());
    }
    let conns: Vec<(String, u64)> = s
        .connections
        .iter()
        .map(|((transport, dialect), n)| {
            (
                format!("transport=\"{transport}\",dialect=\"{dialect}\""),
                *n,
            )
        })
        .collect();
    labelled(
        &mut out,
        "loopchat_connections",
        "gauge",
        "Open connections by transport and dialect.",
        &conns,
    );
    let refused = [
        ("full", t.refused_full),
        ("per_address", t.refused_per_address),
        ("descriptors", t.refused_descriptors),
    ]
    .map(|(r, v)| (format!("reason=\"{r}\""), v));
    labelled(
        &mut out,
        "loopchat_refused_total",
        "counter",
        "Connections refused at accept, by limit.",
        &refused,
    );
    let cut: Vec<(String, u64)> = CUT_REASONS
        .iter()
        .zip(t.cut)
        .map(|(r, v)| (format!("reason=\"{r}\""), v))
        .collect();
    labelled(
        &mut out,
        "loopchat_disconnects_total",
        "counter",
        "Connections that ended, by reason (sendq: cut as slow readers).",
        &cut,
    );
    metric(
        &mut out,
        "loopchat_output_bytes",
        "gauge",
        "Bytes held for output: shared broadcast chunks and queues' own bytes.",
        s.output_bytes.to_string(),
    );
    metric(
        &mut out,
        "loopchat_output_chunk_bytes",
        "gauge",
        "Bytes held in shared broadcast chunks.",
        s.output_chunk_bytes.to_string(),
    );
    metric(
        &mut out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        s.rss_bytes.to_string(),
    );
    metric(
        &mut out,
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent in seconds.",
        format!("{:.2}", s.cpu_seconds),
    );
    metric(
        &mut out,
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        s.open_fds.to_string(),
    );
    metric(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        format!("{:.0}", s.start_time_seconds),
    );
    if let Some(b) = &s.bridge {
        bridge(&mut out, b);
    }
    out
}

/// The `loopchat_bridge_*` metrics (`--redis`).
fn bridge(out: &mut String, b: &crate::bridge::Figures) {
    let rows: [(&str, &str, &str, u64); 12] = [
        (
            "loopchat_bridge_up",
            "gauge",
            "1 while both links to Redis are up.",
            u64::from(b.up),
        ),
        (
            "loopchat_bridge_published_total",
            "counter",
            "Messages PUBLISHed to Redis (lines, joins, leaves, renames, private lines, presence).",
            b.published,
        ),
        (
            "loopchat_bridge_received_total",
            "counter",
            "Messages from other processes received through Redis (own echoes not counted).",
            b.received,
        ),
        (
            "loopchat_bridge_gaps_total",
            "counter",
            "Messages from other processes missing in their per-room sequence numbers.",
            b.gaps,
        ),
        (
            "loopchat_bridge_reconnects_total",
            "counter",
            "Links to Redis established again after being lost.",
            b.reconnects,
        ),
        (
            "loopchat_bridge_lost_total",
            "counter",
            "Messages not published because the link to Redis was down.",
            b.lost,
        ),
        (
            "loopchat_bridge_unreadable_total",
            "counter",
            "Messages from Redis that were not loopchat envelopes.",
            b.unreadable,
        ),
        (
            "loopchat_bridge_channels",
            "gauge",
            "Redis channels subscribed (rooms with local members, local nicknames).",
            b.subscribed,
        ),
        (
            "loopchat_bridge_lease_renewals_total",
            "counter",
            "Times this process found its lease in Redis lapsed (Redis restarted, or it was silent too long) and claimed its nicknames again.",
            b.lease_renewals,
        ),
        (
            "loopchat_bridge_nodes_down_total",
            "counter",
            "Other processes found dead (lease expired) and their users forgotten.",
            b.nodes_down,
        ),
        (
            "loopchat_bridge_claims_taken_total",
            "counter",
            "Nicknames refused because a user of another process has them.",
            b.claims_taken,
        ),
        (
            "loopchat_bridge_collisions_total",
            "counter",
            "Users renamed because their nickname was taken elsewhere while Redis was unreachable.",
            b.collisions,
        ),
    ];
    for (name, kind, help, value) in rows {
        metric(out, name, kind, help, value.to_string());
    }
}

/// One unlabelled metric: its help, its type and its value.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: String) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

/// One metric with a sample per label set (`rows`: labels, value).
fn labelled(out: &mut String, name: &str, kind: &str, help: &str, rows: &[(String, u64)]) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// This process's resident bytes, CPU seconds and open descriptors, from
/// /proc (zeros where it cannot be read).
pub fn process_figures() -> (u64, f64, u64) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_size());
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses.
            let rest = s.get(s.rfind(')')? + 2..)?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / clock_ticks())
        })
        .unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    (rss, cpu, fds)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_type() {
        let mut s = Snapshot::default();
        s.totals.lines = 3;
        s.totals.count_cut("sendq");
        s.connections = vec![(("tcp", "line"), 2), (("websocket", "irc"), 1)];
        s.bridge = Some(crate::bridge::Figures {
            gaps: 2,
            ..Default::default()
        });
        let text = render(&s);
        assert!(text.contains("loopchat_lines_received_total 3\n"), "{text}");
        assert!(text.contains("loopchat_bridge_gaps_total 2\n"), "{text}");
        assert!(text.contains("loopchat_disconnects_total{reason=\"sendq\"} 1\n"));
        assert!(text.contains("loopchat_connections{transport=\"websocket\",dialect=\"irc\"} 1\n"));
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap_or_default().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                assert!(typed.contains(name), "{name} has no TYPE");
            }
        }
    }

    #[test]
    fn reads_its_own_process() {
        let (rss, _cpu, fds) = process_figures();
        assert!(rss > 0 && fds > 0);
    }
}
