//! `loopchat-bench` against two `loopchat-server --redis` processes
//! bridged through a real `redis-server` (docs/scale-out.md): the clients
//! spread over both, every message reaches every other client once and in
//! order wherever it was sent, and the report's same-server and
//! cross-server latency counts are exactly what the round-robin spread
//! implies. Skipped without redis-server, unless `CI` is set.

mod common;

use common::TestServer;
use common::bench::{bench_json, n};
use common::irc::Irc;
use common::redis::{Redis, probe};

const ROOM: &str = "#bench";

/// Two bridged servers, each with an IRC user in `ROOM`, and a line from
/// each side seen on the other: both processes listen to the room on the
/// bridge. The users stay joined (and silent) so that the subscriptions
/// outlive the bench's first and last clients.
fn two_bridged(redis: &Redis) -> (TestServer, TestServer, Vec<Irc>) {
    let a = redis.bridged("A", &["--max-rate", "0", "--log-level", "warn"]);
    let b = redis.bridged("B", &["--max-rate", "0", "--log-level", "warn"]);
    let mut hold_a = Irc::register(a.addr, "holdA");
    hold_a.join(ROOM);
    let mut hold_b = Irc::register(b.addr, "holdB");
    hold_b.join(ROOM);
    probe(&mut hold_a, &mut hold_b, ROOM);
    probe(&mut hold_b, &mut hold_a, ROOM);
    (a, b, vec![hold_a, hold_b])
}

/// 20 clients, 4 senders, 200 messages over servers A and B: senders 0
/// and 2 on A, 1 and 3 on B, 8 receivers on each. Each message is owed
/// to the 19 other clients: the 9 on its sender's server and the 10 on
/// the other.
#[test]
fn fanout_over_two_bridged_servers_is_exact() {
    let Some(redis) = Redis::start() else { return };
    let (a, b, _holders) = two_bridged(&redis);
    let targets = format!("{},{}", a.addr, b.addr);
    let pids = format!("{},{}", a.pid(), b.pid());
    // Idle now, as the bench starts: the sum it samples first.
    let idle_kib = rss_kib(a.pid()) + rss_kib(b.pid());
    let (code, j) = bench_json(&[
        "fanout",
        &targets,
        "--room",
        ROOM,
        "--clients",
        "20",
        "--senders",
        "4",
        "--messages",
        "200",
        "--rate",
        "500",
        "--warmup",
        "0",
        "--server-pid",
        &pids,
    ]);
    assert_eq!(code, 0, "{j:#}\nA: {}\nB: {}", a.log(), b.log());
    // Both servers sampled, summed; each still has one thread.
    assert_eq!(
        j["params"]["server_pids"],
        serde_json::json!([a.pid(), b.pid()])
    );
    assert_eq!(n(&j, "/server/threads"), 1, "{j}");
    let start = n(&j, "/server_memory/rss_start_kib");
    assert!(
        start * 10 >= idle_kib * 9 && start * 10 <= idle_kib * 11,
        "sampled {start} KiB, the two servers had {idle_kib} KiB: {j}"
    );
    assert_eq!(n(&j, "/connections/joined"), 20, "{j}");
    assert_eq!(n(&j, "/sent"), 200, "{j}");
    assert_eq!(n(&j, "/expected_deliveries"), 200 * 19, "{j}");
    assert_eq!(n(&j, "/deliveries"), 200 * 19, "{j}");
    for key in ["/lost", "/duplicates", "/reordered", "/foreign_lines"] {
        assert_eq!(n(&j, key), 0, "{key}: {j}");
    }
    assert_eq!(
        j["params"]["targets"],
        serde_json::json!([a.addr.to_string(), b.addr.to_string()])
    );
    assert_eq!(n(&j, "/latency_by_path_us/same_server/count"), 200 * 9);
    assert_eq!(n(&j, "/latency_by_path_us/cross_server/count"), 200 * 10);
    assert_eq!(n(&j, "/latency_us/count"), 200 * 19);
}

/// The same through two bench processes (`--workers 2`, open loop): the
/// spread is global (each worker's sender on a different server), and the
/// merged report is as exact.
#[test]
fn workers_spread_over_two_bridged_servers() {
    let Some(redis) = Redis::start() else { return };
    let (a, b, _holders) = two_bridged(&redis);
    let targets = format!("{},{}", a.addr, b.addr);
    let (code, j) = bench_json(&[
        "fanout",
        &targets,
        "--room",
        ROOM,
        "--clients",
        "20",
        "--senders",
        "2",
        "--workers",
        "2",
        "--rate",
        "200",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(code, 0, "{j:#}\nA: {}\nB: {}", a.log(), b.log());
    let sent = n(&j, "/sent");
    assert!(sent >= 150, "{j}");
    assert_eq!(n(&j, "/expected_deliveries"), sent * 19, "{j}");
    assert_eq!(n(&j, "/deliveries"), sent * 19, "{j}");
    for key in ["/lost", "/duplicates", "/reordered"] {
        assert_eq!(n(&j, key), 0, "{key}: {j}");
    }
    // One sender per server; 9 receivers on each: 9 others on the
    // sender's server, 10 on the other.
    assert_eq!(n(&j, "/latency_by_path_us/same_server/count"), sent * 9);
    assert_eq!(n(&j, "/latency_by_path_us/cross_server/count"), sent * 10);
}

/// VmRSS of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}
