//! How a session ends in the client: `/logout` leaves like `/quit`, even
//! with `--reconnect` (it used to reconnect a second later and, with a saved
//! password, log straight back in).

mod common;
#[path = "client_support.rs"]
mod support;

use common::TestServer;
use support::Client;

/// `/logout` with `--reconnect`: the server sees the user leave once, and
/// the client exits 0 instead of reconnecting.
#[test]
fn logout_leaves_and_does_not_reconnect() {
    let server = TestServer::start(&[]);
    let addr = server.addr.to_string();
    let mut bob = Client::spawn(&[&addr, "--nick", "bob"]);
    bob.expect_prefix("* The room contains:");
    let mut alice = Client::spawn(&[&addr, "--nick", "alice", "--reconnect"]);
    alice.expect_line("* The room contains: bob");
    bob.expect_line("* alice has entered the room");
    alice.send("/logout");
    bob.expect_line("* alice has left the room (quit)");
    assert_eq!(alice.wait_exit().code(), Some(0));
    // Nothing came back in the meantime: the next line bob sees after his
    // own probe is the server's answer to it, not alice entering again.
    bob.send("/who");
    let who = bob.expect_prefix("* ");
    assert!(who.contains("online: bob"), "{who}");
}
