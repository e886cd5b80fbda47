//! `loopchat-bench --workers` and `--hist-out` against the real server:
//! several bench processes, one exact report; the histogram file in
//! HdrHistogram's text format.

mod common;

use common::TestServer;
use common::bench::{bench_json, n};
use std::path::PathBuf;
use std::process::Command;

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loopchat-{}-{name}", std::process::id()))
}

/// The `.hgrm` rows (value ms, percentile, total count) and the footer's
/// total count.
fn read_hgrm(path: &PathBuf) -> (Vec<(f64, f64, u64)>, u64) {
    let text = std::fs::read_to_string(path).expect("the --hist-out file");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        head,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"],
        "{text}"
    );
    let rows: Vec<(f64, f64, u64)> = lines
        .clone()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    let total = text
        .lines()
        .find_map(|l| l.split("Total count    =").nth(1))
        .and_then(|v| v.trim_end_matches(']').trim().parse().ok())
        .unwrap_or_else(|| panic!("no total count in {text}"));
    (rows, total)
}

/// Two workers split 20 clients and 4 senders, start together and report
/// as one: every message reaches every other client (the senders in one
/// worker are heard by the receivers in the other), the counts are the
/// exact schedule's, and the workers are separate single-threaded
/// processes.
#[test]
fn two_workers_merge_into_one_exact_report() {
    let s = TestServer::start(&["--max-rate", "0", "--log-level", "warn"]);
    let addr = s.addr.to_string();
    let pid = s.pid().to_string();
    let hist = temp_file("workers.hgrm");
    let (code, j) = bench_json(&[
        "fanout",
        &addr,
        "--clients",
        "20",
        "--senders",
        "4",
        "--rate",
        "400",
        "--warmup",
        "0.2",
        "--duration",
        "1",
        "--workers",
        "2",
        "--server-pid",
        &pid,
        "--hist-out",
        hist.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{j}");
    // 400 msg/s for 1.2 s on the one schedule: 480 messages, each owed to
    // the 19 other clients.
    assert_eq!(n(&j, "/sent"), 480, "{j}");
    assert_eq!(n(&j, "/expected_deliveries"), 480 * 19, "{j}");
    assert_eq!(n(&j, "/deliveries"), 480 * 19, "{j}");
    assert_eq!(
        (n(&j, "/lost"), n(&j, "/duplicates"), n(&j, "/reordered")),
        (0, 0, 0)
    );
    assert_eq!(n(&j, "/connections/joined"), 20);
    assert_eq!(n(&j, "/senders"), 4);
    assert_eq!(n(&j, "/measured_sent"), 400);
    assert_eq!(n(&j, "/latency_us/count"), 400 * 19);
    assert!(
        j["server"]["cpu_s"].is_number(),
        "worker 0 sampled the server: {j}"
    );

    assert_eq!(n(&j, "/workers/count"), 2);
    let parent = n(&j, "/workers/parent_pid");
    let procs = j["workers"]["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), 2);
    let pids: Vec<u64> = procs.iter().map(|p| n(p, "/pid")).collect();
    assert!(
        pids[0] != pids[1] && !pids.contains(&parent) && pids[0] > 0,
        "{pids:?} vs parent {parent}"
    );
    for p in procs {
        assert_eq!(n(p, "/threads"), 1, "a worker is one thread: {p}");
        assert_eq!((n(p, "/clients"), n(p, "/senders")), (10, 2), "{p}");
    }

    let (rows, total) = read_hgrm(&hist);
    let _ = std::fs::remove_file(&hist);
    assert_eq!(total, 400 * 19, "the merged histogram");
    let last = rows.last().expect("rows");
    assert_eq!((last.1, last.2), (1.0, total));
    for w in rows.windows(2) {
        assert!(w[1].0 >= w[0].0 && w[1].1 >= w[0].1 && w[1].2 >= w[0].2);
    }
}

/// One process: `--hist-out` holds the report's corrected latency
/// histogram, its max in milliseconds.
#[test]
fn hist_out_is_the_corrected_histogram() {
    let s = TestServer::start(&["--max-rate", "0", "--log-level", "warn"]);
    let addr = s.addr.to_string();
    let hist = temp_file("one.hgrm");
    let (code, j) = bench_json(&[
        "fanout",
        &addr,
        "--clients",
        "6",
        "--senders",
        "2",
        "--rate",
        "1000",
        "--messages",
        "200",
        "--warmup",
        "0",
        "--hist-out",
        hist.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{j}");
    assert_eq!(n(&j, "/workers/count"), 1);
    let (rows, total) = read_hgrm(&hist);
    let _ = std::fs::remove_file(&hist);
    assert_eq!(total, n(&j, "/latency_us/count"));
    assert_eq!(total, 200 * 5);
    let max_ms = rows.last().expect("rows").0;
    let max_us = n(&j, "/latency_us/max") as f64;
    assert!(
        (max_ms * 1000.0 - max_us).abs() <= max_us * 0.002 + 1.0,
        "{max_ms} ms vs {max_us} us"
    );
}

/// `--workers` refuses what it cannot split or merge.
#[test]
fn workers_usage() {
    for args in [
        &["--workers", "2", "--rate", "0"][..],
        &["idle", "--workers", "2"],
        &["--workers", "2", "--lag", "1"],
        &["--workers", "3", "--senders", "2"],
        &["--workers", "65"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loopchat-bench"))
            .args(args)
            .output()
            .expect("run loopchat-bench");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--workers"), "{args:?}: {err}");
    }
}
