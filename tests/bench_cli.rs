//! The real `loopchat-bench` binary, briefly, against the real server (and
//! the thread-per-client baseline): its JSON must show a clean run with the
//! exact expected counts, and bad usage must exit 2 with one line saying
//! what is wrong.

mod common;

use common::TestServer;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopchat-bench"))
        .args(args)
        .output()
        .expect("run loopchat-bench")
}

/// Runs a workload with `--json --quiet` and returns (exit code, JSON).
fn bench_json(addr: SocketAddr, args: &[&str]) -> (i32, Value) {
    let addr = addr.to_string();
    let mut all = vec![
        addr.as_str(),
        "--json",
        "--quiet",
        "--join-timeout",
        "10",
        "--drain-timeout",
        "5",
    ];
    all.extend_from_slice(args);
    let out = bench(&all);
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn n(v: &Value, key: &str) -> u64 {
    v.pointer(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn server() -> TestServer {
    TestServer::start(&["--max-rate", "0", "--log-level", "warn"])
}

#[test]
fn fanout_open_loop_is_clean_and_exact() {
    let s = server();
    let pid = s.pid().to_string();
    let (code, j) = bench_json(
        s.addr,
        &[
            "fanout",
            "--clients",
            "10",
            "--senders",
            "3",
            "--rate",
            "2000",
            "--messages",
            "300",
            "--warmup",
            "0.05",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["workload"], "fanout");
    assert_eq!(n(&j, "/connections/requested"), 10);
    assert_eq!(n(&j, "/connections/joined"), 10);
    assert_eq!(n(&j, "/sent"), 300);
    assert_eq!(n(&j, "/deliveries"), 300 * 9);
    assert_eq!(n(&j, "/lost"), 0);
    assert_eq!(n(&j, "/duplicates"), 0);
    assert_eq!(n(&j, "/reordered"), 0);
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(j["latency_us"][key].is_u64(), "{key}: {j}");
        assert!(j["latency_uncorrected_us"][key].is_u64(), "{key}: {j}");
    }
    assert!(j["server"]["rss_peak_kib"].as_u64().unwrap_or(0) > 0, "{j}");
    assert!(j["server"]["cpu_s"].is_number(), "{j}");
    assert_eq!(j["params"]["clients"], 10);
}

#[test]
fn fanout_closed_loop_delivers_everything() {
    let s = server();
    let (code, j) = bench_json(
        s.addr,
        &[
            "--clients",
            "5",
            "--senders",
            "5",
            "--rate",
            "0",
            "--window",
            "4",
            "--messages",
            "1000",
            "--warmup",
            "0",
        ],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!(n(&j, "/sent"), 1000);
    assert_eq!(n(&j, "/deliveries"), 1000 * 4);
    assert_eq!(n(&j, "/lost"), 0);
}

#[test]
fn idle_and_churn() {
    let s = server();
    let (code, j) = bench_json(
        s.addr,
        &[
            "idle",
            "--clients",
            "50",
            "--duration",
            "0.2",
            "--source-addrs",
            "127.0.0.1,127.0.0.2",
        ],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!(n(&j, "/connections/joined"), 50);
    assert_eq!(n(&j, "/connections/held"), 50);

    let (code, j) = bench_json(
        s.addr,
        &[
            "churn",
            "--clients",
            "4",
            "--duration",
            "0.5",
            "--connect-rate",
            "100000",
        ],
    );
    assert_eq!(code, 0, "{j}");
    assert!(n(&j, "/joins") > 0, "{j}");
    assert_eq!(j["connections"]["failures"], serde_json::json!({}), "{j}");
}

#[test]
fn against_the_thread_per_client_baseline() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || loopchat::bench::baseline::serve_listener(listener));
    let (code, j) = bench_json(
        addr,
        &[
            "--clients",
            "6",
            "--senders",
            "2",
            "--rate",
            "1000",
            "--messages",
            "100",
            "--warmup",
            "0",
        ],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!(n(&j, "/deliveries"), 100 * 5);
    assert_eq!(n(&j, "/lost"), 0);
}

#[test]
fn nothing_listening_is_a_failure_not_a_hang() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (code, j) = bench_json(port, &["--clients", "3", "--messages", "10"]);
    assert_eq!(code, 1, "{j}");
    assert_eq!(n(&j, "/connections/joined"), 0);
    assert_eq!(n(&j, "/connections/failures/connect_refused"), 3);
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["--clients", "many"][..],
        &["sideways"],
        &["--senders", "0"],
        &["--no-such-option"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.ends_with(" (try --help)\n"), "{args:?}: {err}");
    }
    // Each mistake is named, not reported as "unexpected argument".
    for (args, want) in [
        (
            &["fanout", "127.0.0.1"][..],
            "loopchat-bench: \"127.0.0.1\" has no port: give ADDR:PORT (e.g. 127.0.0.1:7878, or [::1]:7878 for IPv6) (try --help)\n",
        ),
        (
            &["fanuot", "127.0.0.1:7878"],
            "loopchat-bench: unknown workload \"fanuot\": fanout, idle or churn (try --help)\n",
        ),
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), want);
    }
    let help = bench(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("Usage: loopchat-bench"));
}

/// `--dialect irc`: the same fan-out, spoken as IRC (NICK/USER, JOIN,
/// PRIVMSG) against loopchat's IRC dialect, exact and lossless.
#[test]
fn fanout_over_irc() {
    let s = server();
    let (code, j) = bench_json(
        s.addr,
        &[
            "fanout",
            "--dialect",
            "irc",
            "--room",
            "#bench",
            "--clients",
            "10",
            "--senders",
            "2",
            "--rate",
            "1000",
            "--messages",
            "200",
            "--warmup",
            "0.05",
        ],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["params"]["dialect"], "irc");
    assert_eq!(n(&j, "/connections/joined"), 10);
    assert_eq!(n(&j, "/deliveries"), 200 * 9);
    assert_eq!(n(&j, "/lost"), 0);
    assert_eq!(n(&j, "/duplicates"), 0);
}
