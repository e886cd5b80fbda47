//! `--trace-turns`: one log line per loop turn that did something. With
//! three users, one chat line is one read, one broadcast and one write per
//! recipient, in the same turn.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;

#[test]
fn one_line_one_write_per_recipient() {
    let s = TestServer::start(&["--trace-turns"]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    let mut c = s.join("c");
    a.sync();
    b.sync();
    c.sync();
    let logged_before = s.log().lines().count();
    a.send("hi");
    b.expect("[a] hi");
    c.expect("[a] hi");
    // The turn's line is logged after its flush: poll the log for it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let line = loop {
        let log = s.log();
        let found = log
            .lines()
            .skip(logged_before)
            .find(|l| l.contains("read 1 line(s) from 1 conn(s); 1 broadcast(s)"))
            .map(str::to_string);
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < deadline, "no such turn in:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(line.contains("woke for 1 readable"), "{line}");
    assert!(line.contains("2 queued"), "{line}");
    assert!(line.contains("2 write(s)"), "{line}");
}
