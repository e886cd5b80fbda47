//! Rooms over TCP, against the real binary: a line user starts in the
//! default room (`#lobby`, or `--default-room`), `/join` moves it, the two
//! rooms do not hear each other, `/rooms` and `/topic` work, and the
//! server stays one thread.

mod common;

use common::TestServer;

/// Two rooms are isolated: chat, joins and quits stay in their room; a
/// mover is announced with where it went; `/rooms` counts members.
#[test]
fn a_line_user_moves_between_isolated_rooms() {
    let s = TestServer::start(&[]);
    let mut alice = s.join("alice");
    let mut bob = s.join("bob");
    let mut carol = s.join("carol");
    alice.expect("* bob has entered the room");
    alice.expect("* carol has entered the room");
    bob.expect("* carol has entered the room");

    carol.send("/join #rust");
    carol.expect("* The room contains: ");
    carol.expect("* You are now in #rust.");
    alice.expect("* carol has left the room (moved to #rust)");
    bob.expect("* carol has left the room (moved to #rust)");

    bob.send("/join #RUST");
    bob.expect("* The room contains: carol");
    bob.expect("* You are now in #rust.");
    carol.expect("* bob has entered the room");
    alice.expect("* bob has left the room (moved to #rust)");

    carol.send("in rust");
    bob.expect("[carol] in rust");
    alice.send("in the lobby");
    alice.expect("* You are alone in the room; nobody received that.");
    bob.send("/topic ownership");
    bob.expect("* bob set the topic of #rust: ownership");
    carol.expect("* bob set the topic of #rust: ownership");

    alice.send("/rooms");
    alice.expect("* Rooms: #lobby (1), #rust (2)");
    drop(carol);
    bob.expect("* carol has left the room (connection closed)");
    // alice never shared a room with carol since the move: the next thing
    // she hears is her own /who.
    assert_eq!(alice.sync(), Vec::<String>::new());
    assert_eq!(s.threads(), 1, "one thread");
}

/// `--default-room` names the room newcomers start in, and an invalid
/// name is refused at start-up with exit status 2.
#[test]
fn default_room_option() {
    let s = TestServer::start(&["--default-room", "#Main"]);
    let mut a = s.join("a");
    a.send("/rooms");
    a.expect("* Rooms: #Main (1)");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .args(["--listen", "127.0.0.1:0", "--default-room", "lobby"])
        .output()
        .expect("run the server");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--default-room"), "{err}");
}
