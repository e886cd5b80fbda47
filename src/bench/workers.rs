//! `--workers N`: N bench processes against one server, one report.
//!
//! One bench loop is one core. To load a server harder than that, the
//! parent re-executes its own program N times with the same arguments plus
//! a hidden `--worker I,N,T0`; each worker is an ordinary single-threaded
//! bench with a share of the clients and of the senders ([`Share`]). No
//! threads anywhere: a process per core, like the server it measures is a
//! loop per process.
//!
//! What makes the merged report exact:
//!
//! - **One clock.** Latency is `receive time - intended send time`, and the
//!   intended time travels in the payload from a sender in one worker to a
//!   receiver in another. Every worker takes the parent's `CLOCK_MONOTONIC`
//!   reading `T0` (the clock `Instant` uses on Linux) as its origin, so the
//!   nanoseconds in a payload mean the same thing in every process.
//! - **One schedule.** Sender numbers are global (worker I's senders are
//!   `sender_base..sender_base + senders`), and each sender follows the
//!   single-process schedule for its global number among all the senders:
//!   together they send what one process would, at the same instants.
//! - **One start.** Workers connect and join, then print `READY` on stdout
//!   and wait; when all are ready the parent writes `GO <instant>` (the
//!   same `CLOCK_MONOTONIC` instant, a little ahead) on every worker's
//!   stdin.
//! - **Loss from every sender's total.** A receiver owes each other
//!   sender everything that sender sent, and the sender may live in
//!   another worker. So a worker does not judge loss: it reports, per
//!   global sender, how many of its receivers owe that sender's messages
//!   and how many distinct ones they received in all ([`PerSender`]), and
//!   its own senders' totals. The parent computes `expected = sum over
//!   senders of sent x receivers owing it` and `lost = expected -
//!   received`, which is exact because no receiver can receive more of a
//!   sender's messages than it sent. (While draining, a worker waits for
//!   the other workers' senders' *planned* counts, which the schedule
//!   fixes; a sender that fell behind only makes that wait time out.)
//! - **Whole histograms.** Each worker sends its histograms in
//!   HdrHistogram's V2 encoding ([`LatencyHist::to_hex`]) in one JSON line
//!   on stdout after the run; the parent adds them.
//!
//! Uncorrected latency needs a message's actual send time, which only the
//! sender's process knows: with workers it covers the deliveries of each
//! worker's own senders to its own receivers (a sample of all of them).

use super::cli::Config;
use super::report::{Cut, Report, ServerCost, WorkerInfo};
use super::stats::{LatencyHist, RunHists};
use serde_json::{Value, json};
use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// At most this many workers (a sanity bound: one per core is the point).
pub const MAX_WORKERS: usize = 64;
/// How far ahead of `GO` the common start is: time for every worker to
/// read it.
const GO_AHEAD: Duration = Duration::from_millis(100);

/// One worker's part of the clients and the senders: worker `index` of
/// `count`, the first ones taking one more when they do not divide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub index: usize,
    pub count: usize,
    pub clients: usize,
    pub senders: usize,
    /// The global number of this worker's first sender.
    pub sender_base: usize,
    /// Senders across all the workers.
    pub senders_total: usize,
    /// The global number of this worker's first client (its senders come
    /// first among its clients).
    pub client_base: usize,
}

impl Share {
    pub fn of(clients: usize, senders: usize, count: usize, index: usize) -> Share {
        let count = count.max(1);
        let part = |total: usize, i: usize| total / count + usize::from(i < total % count);
        Share {
            index,
            count,
            clients: part(clients, index),
            senders: part(senders, index),
            sender_base: (0..index).map(|i| part(senders, i)).sum(),
            senders_total: senders,
            client_base: (0..index).map(|i| part(clients, i)).sum(),
        }
    }
}

/// What the hidden `--worker I,N,T0` says, with the share it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub index: usize,
    pub count: usize,
    /// The parent's `CLOCK_MONOTONIC` at its start, in ns: every worker's
    /// time origin.
    pub t0_mono_ns: u64,
    /// Filled in by [`Role::share`] (zeros until then).
    pub share: Share,
}

impl Role {
    pub fn parse(spec: &str) -> Option<Role> {
        let mut it = spec.split(',');
        let index: usize = it.next()?.parse().ok()?;
        let count: usize = it.next()?.parse().ok()?;
        let t0_mono_ns: u64 = it.next()?.parse().ok()?;
        if it.next().is_some() || count == 0 || count > MAX_WORKERS || index >= count {
            return None;
        }
        Some(Role {
            index,
            count,
            t0_mono_ns,
            share: Share::of(0, 0, count, index),
        })
    }

    /// This worker's share of `clients` and `senders` (the command line's
    /// totals); remembered in the role.
    pub fn share(&mut self, clients: usize, senders: usize) -> Share {
        self.share = Share::of(clients, senders, self.count, self.index);
        self.share
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `Instant` reads on Linux,
/// the same in every process of the machine.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The `Instant` that is `t0_mono_ns` on `CLOCK_MONOTONIC` (now, if the
/// clock cannot go back that far).
pub fn instant_at(t0_mono_ns: u64) -> Instant {
    let now = Instant::now();
    let now_mono = mono_ns();
    if t0_mono_ns <= now_mono {
        now.checked_sub(Duration::from_nanos(now_mono - t0_mono_ns))
            .unwrap_or(now)
    } else {
        now + Duration::from_nanos(t0_mono_ns - now_mono)
    }
}

/// Worker side of the barrier: says `READY` on stdout, waits for `GO
/// <mono ns>` on stdin, and returns that instant in the run's time base
/// (`t0` is the instant of `role.t0_mono_ns`).
pub fn ready_and_wait_go(role: &Role, t0: Instant) -> io::Result<Instant> {
    let mut out = io::stdout().lock();
    writeln!(out, "READY")?;
    out.flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    let start_mono: u64 = line
        .trim()
        .strip_prefix("GO ")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("worker: expected `GO <ns>` on stdin, got {line:?}"),
            )
        })?;
    Ok(t0 + Duration::from_nanos(start_mono.saturating_sub(role.t0_mono_ns)))
}

/// Per global sender, what one worker's receivers owed and received, and
/// its own senders' totals. Vectors are indexed by global sender number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerSender {
    /// Messages sent, by the senders of this worker (0 elsewhere).
    pub sent: Vec<u64>,
    /// Receivers still connected that owe each sender's messages, and the
    /// distinct messages of it they received.
    pub owers: Vec<u64>,
    pub received: Vec<u64>,
    /// The same for receivers the server cut.
    pub cut_owers: Vec<u64>,
    pub cut_received: Vec<u64>,
}

impl PerSender {
    pub fn new(senders: usize) -> PerSender {
        PerSender {
            sent: vec![0; senders],
            owers: vec![0; senders],
            received: vec![0; senders],
            cut_owers: vec![0; senders],
            cut_received: vec![0; senders],
        }
    }

    fn add(&mut self, other: &PerSender) {
        for (mine, theirs) in [
            (&mut self.sent, &other.sent),
            (&mut self.owers, &other.owers),
            (&mut self.received, &other.received),
            (&mut self.cut_owers, &other.cut_owers),
            (&mut self.cut_received, &other.cut_received),
        ] {
            if mine.len() < theirs.len() {
                mine.resize(theirs.len(), 0);
            }
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
    }

    /// (expected, lost, undelivered to the cut): exact over the senders of
    /// every worker (see the module header).
    pub fn loss(&self) -> (u64, u64, u64) {
        let (mut expected, mut lost, mut cut) = (0, 0, 0);
        for (g, &sent) in self.sent.iter().enumerate() {
            let at = |v: &Vec<u64>| v.get(g).copied().unwrap_or(0);
            let owed = sent * at(&self.owers);
            let owed_cut = sent * at(&self.cut_owers);
            expected += owed + owed_cut;
            lost += owed.saturating_sub(at(&self.received));
            cut += owed_cut.saturating_sub(at(&self.cut_received));
        }
        (expected, lost, cut)
    }

    fn to_json(&self) -> Value {
        json!({
            "sent": self.sent, "owers": self.owers, "received": self.received,
            "cut_owers": self.cut_owers, "cut_received": self.cut_received,
        })
    }

    fn from_json(v: &Value) -> PerSender {
        let list = |k: &str| -> Vec<u64> {
            v[k].as_array()
                .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
                .unwrap_or_default()
        };
        PerSender {
            sent: list("sent"),
            owers: list("owers"),
            received: list("received"),
            cut_owers: list("cut_owers"),
            cut_received: list("cut_received"),
        }
    }
}

/// Threads of this process (`/proc/self/task`): 1 for a bench process.
pub fn own_threads() -> u64 {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count() as u64)
}

fn hist_json(h: &LatencyHist) -> Value {
    json!({ "v2_hex": h.to_hex(), "out_of_range": h.out_of_range })
}

fn hist_from(v: &Value) -> Option<LatencyHist> {
    LatencyHist::from_hex(
        v["v2_hex"].as_str()?,
        v["out_of_range"].as_u64().unwrap_or(0),
    )
}

/// The line a worker prints on stdout when its run is over.
pub fn result_line(report: &Report) -> String {
    let hists = report.hists.as_ref();
    json!({
        "pid": std::process::id(),
        "threads": own_threads(),
        "report": report.to_json(),
        "latency": hists.map(|h| hist_json(&h.latency)),
        "latency_uncorrected": hists.map(|h| hist_json(&h.latency_uncorrected)),
        "join_latency": hists.map(|h| hist_json(&h.join)),
        "latency_same_target": hists.map(|h| hist_json(&h.same_target)),
        "latency_cross_target": hists.map(|h| hist_json(&h.cross_target)),
        "per_sender": report.per_sender.as_ref().map(PerSender::to_json),
    })
    .to_string()
}

/// A started worker.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // On the normal path the worker has exited already; on an error
        // it must not outlive the parent.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Reads one line from worker `i`; EOF is an error that says so.
fn read_line(w: &mut Worker, i: usize) -> io::Result<String> {
    let mut line = String::new();
    if w.stdout.read_line(&mut line)? == 0 {
        return Err(bad(format!(
            "worker {i} (pid {}) ended without a report (its stderr says why)",
            w.child.id()
        )));
    }
    Ok(line)
}

/// The parent: starts `cfg.workers` copies of this program with `args` (the
/// command line, without the program name) plus `--worker`, releases them
/// together, and merges what they report.
pub fn run_parent(cfg: &Config, args: &[String]) -> io::Result<Report> {
    let n = cfg.workers;
    let exe = std::env::current_exe()?;
    let t0_mono = mono_ns();
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let mut child = Command::new(&exe)
            .args(args)
            .arg("--worker")
            .arg(format!("{i},{n},{t0_mono}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| bad("worker: no stdout".into()))?;
        workers.push(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        });
    }
    // Every worker joins its clients (each within --join-timeout), then
    // says READY.
    for (i, w) in workers.iter_mut().enumerate() {
        let line = read_line(w, i)?;
        if line.trim() != "READY" {
            return Err(bad(format!("worker {i}: expected READY, got {line:?}")));
        }
    }
    let start = mono_ns() + GO_AHEAD.as_nanos() as u64;
    if !cfg.quiet {
        eprintln!("[workers] {n} ready; sending starts in {GO_AHEAD:?}");
    }
    for w in &mut workers {
        if let Some(stdin) = w.stdin.as_mut() {
            writeln!(stdin, "GO {start}")?;
            stdin.flush()?;
        }
        // Closing stdin: a worker reads nothing more.
        w.stdin = None;
    }
    let mut results = Vec::with_capacity(n);
    for (i, w) in workers.iter_mut().enumerate() {
        let line = read_line(w, i)?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| bad(format!("worker {i}: bad report ({e}): {line:?}")))?;
        let _ = w.child.wait();
        results.push(v);
    }
    Ok(merge(cfg, &results))
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// One report from the workers' result lines.
fn merge(cfg: &Config, results: &[Value]) -> Report {
    let mut r = Report::new(cfg.clone());
    let mut hists = RunHists::default();
    let mut per = PerSender::new(cfg.senders);
    for v in results {
        let w = &v["report"];
        let conns = &w["connections"];
        r.joined += u64_of(&conns["joined"]);
        r.join_s = r.join_s.max(f64_of(&conns["join_s"]));
        if let Some(f) = conns["failures"].as_object() {
            for (k, n) in f {
                *r.failures.entry(k.clone()).or_insert(0) += u64_of(n);
            }
        }
        r.senders += w["senders"].as_u64().unwrap_or(0) as usize;
        r.sent += u64_of(&w["sent"]);
        r.deliveries += u64_of(&w["deliveries"]);
        r.duplicates += u64_of(&w["duplicates"]);
        r.reordered += u64_of(&w["reordered"]);
        r.foreign_lines += u64_of(&w["foreign_lines"]);
        r.error_lines += u64_of(&w["error_lines"]);
        r.measured_s = r.measured_s.max(f64_of(&w["measured_s"]));
        r.measured_sent += u64_of(&w["measured_sent"]);
        r.measured_deliveries += u64_of(&w["measured_deliveries"]);
        r.drain_s = r.drain_s.max(f64_of(&w["drain_s"]));
        r.cost_window_deliveries += u64_of(&w["cost_window_deliveries"]);
        r.read_bytes += u64_of(&w["bench"]["read_bytes"]);
        if let Some(c) = w["bench"]["cpu_s"].as_f64() {
            r.bench_cpu_s = Some(r.bench_cpu_s.unwrap_or(0.0) + c);
        }
        if let Some(k) = w["bench"]["rss_kib"].as_u64() {
            r.bench_rss_kib = Some(r.bench_rss_kib.unwrap_or(0) + k);
        }
        let cut = &w["cut"];
        r.cut.receivers += u64_of(&cut["receivers"]);
        r.cut.lagging += u64_of(&cut["lagging"]);
        r.cut.with_error_line += u64_of(&cut["with_error_line"]);
        if w["server"].is_object() {
            r.server = Some(server_cost(&w["server"]));
        }
        for (key, slot) in [
            ("latency", &mut hists.latency),
            ("latency_uncorrected", &mut hists.latency_uncorrected),
            ("join_latency", &mut hists.join),
            ("latency_same_target", &mut hists.same_target),
            ("latency_cross_target", &mut hists.cross_target),
        ] {
            // None when the worker stopped before sending (its failures
            // say why).
            if let Some(h) = hist_from(&v[key]) {
                slot.merge(&h);
            }
        }
        per.add(&PerSender::from_json(&v["per_sender"]));
        r.workers.push(WorkerInfo {
            pid: v["pid"].as_u64().unwrap_or(0) as u32,
            threads: u64_of(&v["threads"]),
            clients: u64_of(&w["params"]["clients"]),
            senders: u64_of(&w["senders"]),
        });
    }
    let (expected, lost, undelivered) = per.loss();
    r.expected_deliveries = expected;
    r.lost = lost;
    r.cut = Cut {
        undelivered,
        ..r.cut
    };
    r.join_latency = hists.join.summary();
    r.latency = Some(hists.latency.summary());
    r.latency_uncorrected = Some(hists.latency_uncorrected.summary());
    if !cfg.more_addrs.is_empty() {
        r.latency_same_target = Some(hists.same_target.summary());
        r.latency_cross_target = Some(hists.cross_target.summary());
    }
    if let Some(s) = r.server.as_mut() {
        // Worker 0 sampled the server over the common window; its
        // per-delivery figures are over every worker's deliveries.
        let d = r.cost_window_deliveries;
        let per = |x: f64| (d > 0).then(|| x / d as f64);
        s.cpu_us_per_1k_deliveries = per(s.cpu_s * 1e9);
        s.write_syscalls_per_delivery = s.write_syscalls.and_then(|w| per(w as f64));
    }
    r.per_sender = Some(per);
    r.hists = Some(hists);
    r
}

fn server_cost(v: &Value) -> ServerCost {
    ServerCost {
        rss_start_kib: u64_of(&v["rss_start_kib"]),
        rss_peak_kib: u64_of(&v["rss_peak_kib"]),
        rss_end_kib: u64_of(&v["rss_end_kib"]),
        threads: u64_of(&v["threads"]),
        cpu_s: f64_of(&v["cpu_s"]),
        cpu_us_per_1k_deliveries: v["cpu_us_per_1k_deliveries"].as_f64(),
        write_syscalls: v["write_syscalls"].as_u64(),
        write_syscalls_source: if v["write_syscalls_source"].as_str() == Some("perf") {
            "perf"
        } else {
            "syscw"
        },
        write_syscalls_per_delivery: v["write_syscalls_per_delivery"].as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once() {
        for (clients, senders, n) in [(100, 4, 2), (101, 5, 2), (1000, 7, 3), (9, 4, 4)] {
            let shares: Vec<Share> = (0..n).map(|i| Share::of(clients, senders, n, i)).collect();
            assert_eq!(shares.iter().map(|s| s.clients).sum::<usize>(), clients);
            assert_eq!(shares.iter().map(|s| s.senders).sum::<usize>(), senders);
            let mut next = 0;
            let mut next_client = 0;
            for s in &shares {
                assert_eq!(s.sender_base, next, "senders numbered without gaps");
                assert_eq!(s.senders_total, senders);
                assert_eq!(s.client_base, next_client, "clients too");
                next += s.senders;
                next_client += s.clients;
            }
        }
        assert_eq!(
            Role::parse("1,2,5").map(|r| (r.index, r.count)),
            Some((1, 2))
        );
        for bad in ["2,2,5", "0,0,5", "a,2,5", "0,2", "0,2,5,6", "0,65,1"] {
            assert!(Role::parse(bad).is_none(), "{bad}");
        }
    }

    /// Two workers, two senders (one each), three receivers each: a
    /// sender does not owe itself. Worker 1's receivers missed 3 of sender
    /// 0's messages; worker 0 had a receiver cut that got 1 of 10.
    #[test]
    fn loss_is_counted_from_every_workers_senders() {
        let a = PerSender {
            sent: vec![10, 0],
            owers: vec![2, 2], // its sender owes sender 1 only
            received: vec![20, 40],
            cut_owers: vec![1, 1],
            cut_received: vec![1, 0],
        };
        let b = PerSender {
            sent: vec![0, 20],
            owers: vec![3, 2],
            received: vec![27, 40],
            cut_owers: vec![0, 0],
            cut_received: vec![0, 0],
        };
        let mut all = PerSender::new(2);
        all.add(&a);
        all.add(&b);
        let (expected, lost, cut) = all.loss();
        assert_eq!(expected, 10 * 5 + 20 * 4 + 10 + 20);
        assert_eq!(lost, 3);
        assert_eq!(cut, 9 + 20);
        assert_eq!(PerSender::from_json(&all.to_json()), all);
    }

    #[test]
    fn instants_from_the_monotonic_clock() {
        let m = mono_ns();
        let t = instant_at(m);
        let back = Instant::now().saturating_duration_since(t);
        assert!(back < Duration::from_millis(50), "{back:?}");
        let ahead = instant_at(m + 1_000_000_000);
        let d = ahead.saturating_duration_since(t);
        assert!((999..=1001).contains(&d.as_millis()), "{d:?}");
    }
}
