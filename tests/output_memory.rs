//! The server-wide cap on output memory (`--max-output-memory`), against
//! the real binary: when the bytes held for all connections pass it, the
//! connections owing the oldest bytes are cut first, with the same line and
//! reason as a send-queue overflow, and nobody else loses anything.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Client, TestServer};

/// A client whose kernel buffer holds little, so what it does not read
/// stays in the server's memory.
fn join_with_small_rcvbuf(addr: SocketAddr, nick: &str) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut c = Client::from_stream(socket.into());
    c.send(nick);
    c.line_where(|l| l.starts_with("* Welcome"));
    c
}

const LINE: usize = 1000;

fn said(seq: usize) -> String {
    format!("{seq:06} {}", "p".repeat(LINE - 7))
}

/// Checks that `lines` hold `[s] said(first..)` in order with no gap, and
/// returns how many there were.
fn count_in_order(lines: &[String], first: usize) -> usize {
    let mut next = first;
    for l in lines.iter().filter(|l| l.starts_with("[s] ")) {
        assert_eq!(l[4..], said(next), "line {next} missing or out of order");
        next += 1;
    }
    next - first
}

/// `a` stops reading first and `b` later, in a server allowed 1 MiB of
/// output in all (and a per-connection cap far above it): once the held
/// bytes pass 1 MiB, `a`, which owes the oldest ones, is cut with "send
/// queue exceeded"; `b`, which owes less than the limit on its own, stays,
/// and on reading again gets every line in order; `c`, who reads all
/// along, loses nothing. The server stays one thread.
#[test]
fn max_output_memory_cuts_the_oldest_debtors_first() {
    let s = TestServer::start(&[
        "--max-rate",
        "0",
        "--max-sendq",
        "64m",
        "--max-output-memory",
        "1m",
    ]);
    let mut a = join_with_small_rcvbuf(s.addr, "a");
    let mut b = join_with_small_rcvbuf(s.addr, "b");
    let mut c = s.join("c");
    let mut sender = s.join("s");
    // Settled: everyone has seen everyone arrive.
    for (who, after) in [(&mut a, "b"), (&mut b, "c"), (&mut c, "s")] {
        who.line_where(|l| l == format!("* {after} has entered the room"));
    }
    a.line_where(|l| l == "* s has entered the room");
    b.line_where(|l| l == "* s has entered the room");

    let a_cut = Arc::new(AtomicBool::new(false));
    let mut sent = 0;
    let (c_lines, b_first) = std::thread::scope(|scope| {
        let seen = a_cut.clone();
        let reader = scope.spawn(move || {
            let mut lines = Vec::new();
            loop {
                let l = c.line();
                if l.starts_with("* a has left the room") {
                    seen.store(true, Ordering::Relaxed);
                }
                if l == "[s] END" {
                    return lines;
                }
                lines.push(l);
            }
        });
        // 600 KB that `b` reads, then more that only `c` reads, until `a`
        // is cut (bounded: 40 MB at most).
        for _ in 0..600 {
            sender.send(&said(sent));
            sent += 1;
        }
        let mut b_first = Vec::new();
        while b_first.len() < 600 {
            let l = b.line();
            if l.starts_with("[s] ") {
                b_first.push(l);
            }
        }
        while !a_cut.load(Ordering::Relaxed) && sent < 40_000 {
            for _ in 0..50 {
                sender.send(&said(sent));
                sent += 1;
            }
            // Let the reader catch up before the next batch: `c` must not
            // become a slow reader itself.
            sender.sync();
        }
        sender.send("END");
        (reader.join().unwrap(), b_first)
    });
    assert!(a_cut.load(Ordering::Relaxed), "a was never cut");
    assert!(
        !c_lines.iter().any(|l| l.starts_with("* b has left")),
        "b owed less than the limit and must stay"
    );
    assert_eq!(count_in_order(&c_lines, 0), sent, "c lost nothing");
    assert_eq!(count_in_order(&b_first, 0), 600);

    // b reads again: everything after the first 600, in order, and it is
    // still in the room.
    let mut b_rest = Vec::new();
    loop {
        let l = b.line();
        if l == "[s] END" {
            break;
        }
        b_rest.push(l);
    }
    assert_eq!(count_in_order(&b_rest, 600), sent - 600, "b lost nothing");
    b.sync();

    // a gets whole lines in order, then why it is being cut.
    let rest = a.expect_closed();
    let last = rest.last().cloned().unwrap_or_default();
    assert_eq!(
        last,
        "! Send queue exceeded; you were not reading fast enough."
    );
    let got = count_in_order(&rest, 0);
    assert!(got < sent, "a got {got} of {sent} lines before the cut");
    assert!(
        s.log().contains("passed --max-output-memory"),
        "the cut is logged: {}",
        s.log()
    );
    assert_eq!(s.threads(), 1);
}

/// Raises this process's descriptor limit to its hard limit, so the server
/// it starts (which inherits it) can hold thousands of clients.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A reconnect storm: 5,000 clients join as fast as `loopchat-bench` can
/// connect them while the 100 who were there first keep chatting (50
/// lines a second in all: by the end, 250,000 deliveries a second on top
/// of the storm's 12.5 million join notices, which the bench, one thread
/// like the server, must read too). Every
/// chat line reaches every client that was in the room when it was said
/// (the bench counts loss, duplicates and reordering), everyone gets in,
/// and the server stays one thread.
#[test]
fn a_storm_of_joins_while_users_chat_loses_nothing() {
    raise_nofile_limit();
    let s = TestServer::start(&[
        "--max-rate",
        "0",
        "--max-clients",
        "6000",
        "--log-level",
        "warn",
    ]);
    let pid = s.pid().to_string();
    let addr = s.addr.to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loopchat-bench"))
        .args([
            "storm",
            &addr,
            "--clients",
            "5100",
            "--senders",
            "100",
            "--rate",
            "50",
            "--max-joining",
            "512",
            "--server-pid",
            &pid,
            "--join-timeout",
            "120",
            "--drain-timeout",
            "20",
            "--json",
            "--quiet",
        ])
        .output()
        .expect("run loopchat-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    let j: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let n = |key: &str| j.pointer(key).and_then(serde_json::Value::as_u64);
    assert_eq!(out.status.code(), Some(0), "{j}");
    assert_eq!(n("/connections/joined"), Some(5100), "{j}");
    assert!(n("/sent").unwrap_or(0) > 0, "the chatters talked: {j}");
    assert_eq!(n("/deliveries"), n("/expected_deliveries"), "{j}");
    assert_eq!(n("/lost"), Some(0), "{j}");
    assert_eq!(n("/duplicates"), Some(0), "{j}");
    assert_eq!(n("/reordered"), Some(0), "{j}");
    assert_eq!(n("/cut/receivers"), Some(0), "{j}");
    assert_eq!(s.threads(), 1);
}
