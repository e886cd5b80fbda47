//! The client as a line tool, against the real server: piped clients talking,
//! a refused nickname, end of input, the server going away, and hostile
//! server lines. Everything synchronises on output lines with deadlines.

mod common;
#[path = "client_support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Stdio;

use common::TestServer;
use support::{Client, ServerOn};

fn join(server: &TestServer, nick: &str) -> Client {
    let mut c = Client::spawn(&[&server.addr.to_string(), "--nick", nick]);
    c.expect_prefix("* The room contains:");
    c
}

#[test]
fn two_piped_clients_exchange_messages() {
    let server = TestServer::start(&[]);
    let mut alice = join(&server, "alice");
    let mut bob = Client::spawn(&[&server.addr.to_string(), "--nick", "bob"]);
    bob.expect_line("* The room contains: alice");
    alice.expect_line("* bob has entered the room");

    bob.send("hello alice");
    alice.expect_line("[bob] hello alice");
    alice.send("hi bob");
    bob.expect_line("[alice] hi bob");
    alice.send("/msg bob psst");
    bob.expect_line("(alice) psst");
    alice.expect_line("(-> bob) psst");

    // One thread while connected.
    assert_eq!(alice.threads(), 1);
    assert_eq!(bob.threads(), 1);

    bob.close_stdin();
    alice.expect_line("* bob has left the room (quit)");
    assert!(bob.wait_exit().success());
    alice.close_stdin();
    assert!(alice.wait_exit().success());
}

#[test]
fn refused_nickname_is_shown_and_asked_again() {
    let server = TestServer::start(&[]);
    let mut alice = join(&server, "alice");
    // Taken, then invalid, then accepted: each refusal is followed by the
    // next stdin line as the new attempt; chat waits for the join.
    let mut other = Client::spawn(&[&server.addr.to_string(), "--nick", "ALICE"]);
    other.send("bad nick");
    other.send("alice2");
    other.send("hello from 2");
    other.expect_line("! Nickname ALICE is taken. Choose another.");
    other.expect_prefix("! Invalid nickname: ");
    other.expect_line("* The room contains: alice");
    alice.expect_line("* alice2 has entered the room");
    alice.expect_line("[alice2] hello from 2");
    other.close_stdin();
    alice.expect_line("* alice2 has left the room (quit)");
    assert!(other.wait_exit().success());
    let err = other.stderr_now().join("\n");
    assert!(err.contains("nickname refused"), "{err}");
}

#[test]
fn refused_nickname_without_more_input_exits_1() {
    let server = TestServer::start(&[]);
    let _alice = join(&server, "alice");
    let mut other = Client::spawn_with(
        &[&server.addr.to_string(), "--nick", "alice"],
        Stdio::null(),
    );
    other.expect_line("! Nickname alice is taken. Choose another.");
    assert_eq!(other.wait_exit().code(), Some(1));
}

#[test]
fn end_of_input_sends_then_quits_cleanly() {
    let server = TestServer::start(&[]);
    let mut alice = join(&server, "alice");
    // `printf 'hello\n' | loopchat --nick bot`, with stdin a regular file
    // (which epoll refuses) and with a pipe closed at once.
    let path =
        std::env::temp_dir().join(format!("loopchat-client-test-{}.txt", std::process::id()));
    std::fs::write(&path, "hello\nsecond line without newline").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut bot = Client::spawn_with(
        &[&server.addr.to_string(), "--nick", "bot"],
        Stdio::from(file),
    );
    alice.expect_line("* bot has entered the room");
    alice.expect_line("[bot] hello");
    alice.expect_line("[bot] second line without newline");
    alice.expect_line("* bot has left the room (quit)");
    assert_eq!(bot.wait_exit().code(), Some(0));
    assert!(bot.seen.iter().any(|l| l == "* Goodbye."), "{:?}", bot.seen);
    let _ = std::fs::remove_file(&path);

    let mut piped = Client::spawn(&[&server.addr.to_string(), "--nick", "piped"]);
    piped.send("one");
    piped.send("two");
    piped.close_stdin();
    alice.expect_line("[piped] one");
    alice.expect_line("[piped] two");
    alice.expect_line("* piped has left the room (quit)");
    assert_eq!(piped.wait_exit().code(), Some(0));

    // /dev/null: joins, then leaves at once.
    let mut quiet = Client::spawn_with(
        &[&server.addr.to_string(), "--nick", "quiet"],
        Stdio::null(),
    );
    alice.expect_line("* quiet has entered the room");
    alice.expect_line("* quiet has left the room (quit)");
    assert_eq!(quiet.wait_exit().code(), Some(0));
}

#[test]
fn server_going_away_exits_1() {
    let mut server = TestServer::start(&[]);
    let mut alice = join(&server, "alice");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert_eq!(alice.wait_exit().code(), Some(1));
}

#[test]
fn reconnects_with_the_same_nickname_when_asked() {
    let mut server = TestServer::start(&[]);
    let addr = server.addr.to_string();
    let mut alice = Client::spawn(&[&addr, "--nick", "alice", "--reconnect"]);
    alice.expect_line("* The room contains: ");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // The client retries after 1 s, then 2 s...; a new server on the same
    // port gets it back under the same name.
    let _server2 = ServerOn::start(&addr);
    let mut bob = Client::spawn(&[&addr, "--nick", "bob"]);
    bob.expect_prefix("* The room contains:");
    alice.expect_line("* The room contains: bob");
    bob.expect_line("* alice has entered the room");
    alice.send("back");
    bob.expect_line("[alice] back");
    assert_eq!(alice.threads(), 1);
}

#[test]
fn hostile_server_lines_are_made_safe_and_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut c = Client::spawn(&[&addr, "--nick", "x"]);
    let (mut sock, _) = listener.accept().unwrap();
    sock.write_all(b"* Welcome to loopchat! What shall I call you?\n")
        .unwrap();
    let mut nick = [0u8; 2];
    sock.read_exact(&mut nick).unwrap();
    assert_eq!(&nick, b"x\n");
    sock.write_all(b"* The room contains: \n").unwrap();
    sock.write_all(b"[ev\x1bil] \x1b[2J\x07bell \xff\xfe end\n")
        .unwrap();
    // A line far longer than the client keeps, in pieces.
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..16 {
        sock.write_all(&chunk).unwrap();
    }
    sock.write_all(b"\n[ok] after\n").unwrap();
    c.expect_line("[ev^[il] ^[[2J^Gbell \u{fffd}\u{fffd} end");
    let long = c.expect("the long line", |l: &str| l.starts_with("aaaa"));
    assert!(
        long.len() <= 64 * 1024 + 32 && long.ends_with("[line truncated]"),
        "{}",
        long.len()
    );
    c.expect_line("[ok] after");
    drop(sock);
    assert_eq!(c.wait_exit().code(), Some(1));
}

#[test]
fn answers_pings_so_an_idle_bot_stays() {
    let server = TestServer::start(&["--idle-timeout", "1"]);
    let mut bot = join(&server, "idlebot");
    // A second ping proves the first was answered within its grace period.
    bot.expect_prefix("* PING");
    bot.expect_prefix("* PING");
    assert!(
        !bot.seen.iter().any(|l| l.starts_with("! Idle timeout")),
        "{:?}",
        bot.seen
    );
    bot.close_stdin();
    assert_eq!(bot.wait_exit().code(), Some(0));
}

#[test]
fn ipv6_and_host_names() {
    let v6 = ServerOn::start("[::1]:0");
    assert!(v6.addr.starts_with("[::1]:"), "{}", v6.addr);
    let mut a = Client::spawn(&[&v6.addr, "--nick", "six"]);
    a.expect_prefix("* The room contains:");
    a.close_stdin();
    assert_eq!(a.wait_exit().code(), Some(0));

    let v4 = TestServer::start(&[]);
    let by_name = format!("localhost:{}", v4.addr.port());
    let mut b = Client::spawn(&[&by_name, "--nick", "named"]);
    b.expect_prefix("* The room contains:");
    b.close_stdin();
    assert_eq!(b.wait_exit().code(), Some(0));
}

#[test]
fn end_of_input_waits_for_a_rate_limited_server() {
    // 70 lines at 10 lines/s take the server 7 s, longer than the client's
    // base wait: the client must still wait for the server's goodbye.
    let server = TestServer::start(&["--max-rate", "10", "--burst", "1"]);
    let mut alice = join(&server, "alice");
    let path =
        std::env::temp_dir().join(format!("loopchat-client-rate-{}.txt", std::process::id()));
    let text: String = (1..=70).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut bot = Client::spawn_with(
        &[&server.addr.to_string(), "--nick", "bot"],
        Stdio::from(file),
    );
    for i in 1..=70 {
        alice.expect_line(&format!("[bot] line {i}"));
    }
    alice.expect_line("* bot has left the room (quit)");
    assert_eq!(bot.wait_exit().code(), Some(0));
    assert_eq!(bot.seen.last().map(String::as_str), Some("* Goodbye."));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_signal_leaves_like_quit() {
    let server = TestServer::start(&[]);
    let mut alice = join(&server, "alice");
    let mut bot = join(&server, "bot");
    alice.expect_line("* bot has entered the room");
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(bot.child.id() as i32, libc::SIGTERM);
    }
    alice.expect_line("* bot has left the room (quit)");
    assert_eq!(bot.wait_exit().code(), Some(0));
}

/// Rooms change nothing in line mode: `/join`, `/topic` and `/rooms` go to
/// the server as typed, its answers come out verbatim, nothing is added to
/// stdout or stderr, and the bot keeps chatting in the room it moved to.
#[test]
fn room_commands_pass_through_unchanged() {
    let server = TestServer::start(&[]);
    let mut alice = join(&server, "alice");
    let mut bob = join(&server, "bob");
    alice.expect_line("* bob has entered the room");
    bob.send("/join #rust");
    bob.send("/topic be kind");
    bob.send("/rooms");
    bob.send("hello rust");
    for line in [
        "* The room contains: ",
        "* You are now in #rust.",
        "* bob set the topic of #rust: be kind",
        "* Rooms: #lobby (1), #rust (1)",
        "* You are alone in the room; nobody received that.",
    ] {
        bob.expect_line(line);
    }
    alice.expect_line("* bob has left the room (moved to #rust)");
    alice.send("/join #rust");
    alice.expect_line("* Topic: be kind");
    bob.expect_line("* alice has entered the room");
    bob.send("hi alice");
    alice.expect_line("[bob] hi alice");
    bob.close_stdin();
    assert!(bob.wait_exit().success());
    // Bob's whole output since joining #rust is the server's lines.
    let start = bob
        .seen
        .iter()
        .position(|l| l == "* The room contains: ")
        .unwrap();
    for l in &bob.seen[start..] {
        assert!(l.starts_with("* ") || l.starts_with('['), "{l:?}");
    }
    assert!(bob.stderr_now().is_empty(), "{:?}", bob.stderr_now());
}
