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
