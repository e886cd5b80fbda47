//! Private conversations (`/pm`, `/accept`, `/decline`, `/endpm`) against
//! the real binary: the pair talk privately, a third user sees none of it.

mod common;

use common::TestServer;

/// Invite, accept, talk, room lines still arrive, end; carol sees nothing
/// private and keeps chatting; the log names the start and end, never the
/// content.
#[test]
fn invite_accept_talk_and_end() {
    let s = TestServer::start(&["--log-level", "debug"]);
    let mut a = s.join("alice");
    let mut b = s.join("bob");
    let mut c = s.join("carol");
    a.line_where(|l| l == "* carol has entered the room");
    b.expect("* carol has entered the room");

    a.send("/pm bob");
    a.expect("* Invitation sent to bob; it expires in 60 s.");
    b.expect(
        "* alice invites you to a private conversation. Answer /accept alice or /decline alice (within 60 s).",
    );
    b.send("/accept alice");
    b.expect("* You are in a private conversation with alice: your lines go to alice only; /endpm to return to the room.");
    a.expect("* bob accepted. You are in a private conversation with bob: your lines go to bob only; /endpm to return to the room.");

    a.send("the cake is a lie");
    b.expect("(alice) the cake is a lie");
    a.expect("(-> bob) the cake is a lie");
    b.send("//slash stays private");
    a.expect("(bob) /slash stays private");
    b.expect("(-> alice) /slash stays private");

    // The room goes on, and still reaches the pair.
    c.send("room line");
    a.expect("[carol] room line");
    b.expect("[carol] room line");
    c.send("/pm alice");
    c.expect("! alice is already in a private conversation.");
    // Commands still work inside.
    assert!(a.sync().is_empty());

    b.send("/endpm");
    b.expect("* Private conversation with alice ended. You are back in the room.");
    a.expect("* bob ended the private conversation. You are back in the room.");
    a.send("public again");
    b.expect("[alice] public again");
    // carol saw nothing private: the next lines she gets are these.
    c.expect("[alice] public again");
    assert!(c.sync().is_empty());

    let log = s.log();
    assert!(
        log.contains("private conversation started: alice and bob"),
        "{log}"
    );
    assert!(
        log.contains("private conversation ended: bob and alice"),
        "{log}"
    );
    assert!(!log.contains("cake"), "private content logged: {log}");
    assert!(
        !log.contains("slash stays"),
        "private content logged: {log}"
    );
}

/// Decline, errors, expiry (with a 1 s timeout) and the partner quitting.
#[test]
fn decline_expire_and_partner_quits() {
    let s = TestServer::start(&["--invite-timeout", "1"]);
    let mut a = s.join("alice");
    let mut b = s.join("bob");
    let mut c = s.join("carol");
    a.line_where(|l| l == "* carol has entered the room");
    b.expect("* carol has entered the room");

    a.send("/pm alice");
    a.expect("! You cannot invite yourself.");
    a.send("/pm nobody");
    a.expect("! No such user: nobody.");
    a.send("/pm");
    a.expect("! Usage: /pm NICK");
    b.send("/accept alice");
    b.expect("! No invitation from alice (it may have expired).");

    a.send("/pm bob");
    a.expect("* Invitation sent to bob; it expires in 1 s.");
    b.line_where(|l| l.starts_with("* alice invites you"));
    b.send("/decline alice");
    b.expect("* You declined alice's invitation.");
    a.expect("* bob declined your invitation.");

    // Expiry: after 1 s both sides are told, and the invitation is gone.
    a.send("/pm bob");
    a.line_where(|l| l.starts_with("* Invitation sent to bob"));
    b.line_where(|l| l.starts_with("* alice invites you"));
    a.expect("* Your invitation to bob expired.");
    b.expect("* alice's invitation expired.");
    b.send("/accept alice");
    b.expect("! No invitation from alice (it may have expired).");

    // A conversation ends when the partner quits (/logout is /quit).
    a.send("/pm bob");
    a.line_where(|l| l.starts_with("* Invitation sent to bob"));
    b.line_where(|l| l.starts_with("* alice invites you"));
    b.send("/accept alice");
    b.line_where(|l| l.starts_with("* You are in a private conversation"));
    a.line_where(|l| l.starts_with("* bob accepted."));
    b.send("/logout");
    b.expect("* Goodbye.");
    b.expect_closed();
    a.expect("* bob left; your private conversation ended. You are back in the room.");
    a.expect("* bob has left the room (quit)");
    c.expect("* bob has left the room (quit)");
    a.send("hello carol");
    c.expect("[alice] hello carol");
}
