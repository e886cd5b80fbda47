//! The chat as a user sees it: the real binary, real sockets, exact bytes.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::{Client, TestServer};

/// Three users join; each sees the others arrive, chat reaches everyone
/// else, and nobody gets their own line back.
#[test]
fn three_users_join_chat_and_no_echo() {
    let s = TestServer::start(&[]);
    let mut a = s.join("alice");
    let mut b = s.connect();
    b.expect("* Welcome to loopchat! What shall I call you?");
    b.send("bob");
    b.expect("* The room contains: alice");
    b.expect("* Welcome, bob! 2 users online in #lobby. Type /help for commands.");
    a.expect("* bob has entered the room");
    let mut c = s.join("carol");
    a.expect("* carol has entered the room");
    b.expect("* carol has entered the room");

    a.send("hello everyone");
    b.expect("[alice] hello everyone");
    c.expect("[alice] hello everyone");
    // The /who answer is the very next line for alice: no echo came first.
    assert_eq!(a.sync(), Vec::<String>::new());
}

/// The welcome line lists who is here; the room line follows Budget Chat.
#[test]
fn welcome_lists_users_and_alone_notice() {
    let s = TestServer::start(&[]);
    let mut a = s.connect();
    a.expect("* Welcome to loopchat! What shall I call you?");
    a.send("alice");
    a.expect("* The room contains: ");
    a.expect("* Welcome, alice! 1 user online in #lobby. Type /help for commands.");
    a.expect("* You are alone in the room.");
    a.send("anyone?");
    a.expect("* You are alone in the room; nobody received that.");
}

/// A taken nickname and an invalid one get errors; the connection stays
/// open and the next good name is accepted.
#[test]
fn taken_and_invalid_nicknames_are_asked_again() {
    let s = TestServer::start(&[]);
    let _bob = s.join("Bob");
    let mut c = s.connect();
    c.line();
    c.send("bob");
    c.expect("! Nickname bob is taken. Choose another.");
    c.send("bob smith");
    let err = c.line();
    assert!(
        err.starts_with("! Invalid nickname: ' ' is not allowed"),
        "{err}"
    );
    c.send(&"x".repeat(33));
    assert!(
        c.line()
            .starts_with("! Invalid nickname: a nickname has at most 32")
    );
    c.send("/msg bob hi");
    c.expect("! Choose a nickname first.");
    c.send("hello");
    c.expect("* The room contains: Bob");
}

/// Budget Chat's minimums: 16-character alphanumeric names, 1000-character
/// messages.
#[test]
fn budget_chat_minimums() {
    let s = TestServer::start(&[]);
    let long_name = "Abcdefghij012345";
    let mut a = s.join(long_name);
    let mut b = s.join("b");
    a.line();
    let text = "m".repeat(1000);
    a.send(&text);
    b.expect(&format!("[{long_name}] {text}"));
}

/// /who, /msg, /me, /nick and /quit with a reason, as the others see them.
#[test]
fn commands_work_end_to_end() {
    let s = TestServer::start(&[]);
    let mut a = s.join("alice");
    let mut b = s.join("bob");
    let mut c = s.join("carol");
    a.line();
    a.line();
    b.line();

    a.send("/who");
    a.expect("* 3 users online: alice, bob, carol");
    a.send("/msg BOB secret plan");
    a.expect("(-> bob) secret plan");
    b.expect("(alice) secret plan");
    a.send("/msg nobody hi");
    a.expect("! No such user: nobody.");
    a.send("/me waves");
    b.expect("~ alice waves");
    c.expect("~ alice waves");
    // carol never saw the private line: the action is her next line.
    a.send("/nick alicia");
    a.expect("* alice is now known as alicia");
    b.expect("* alice is now known as alicia");
    c.expect("* alice is now known as alicia");
    a.send("/HELP");
    assert_eq!(a.line(), "* Commands:");
    a.send("/dance");
    a.line_where(|l| l == "! Unknown command /dance. Type /help for the list.");
    a.send("/quit see you");
    a.expect("* Goodbye.");
    assert!(a.expect_closed().is_empty());
    b.expect("* alicia has left the room (quit: see you)");
    c.expect("* alicia has left the room (quit: see you)");
    b.send("/exit");
    b.expect("* Goodbye.");
    c.expect("* bob has left the room (quit)");
}

/// `--max-clients 2`: the third connection gets one error line and is
/// closed; joined users see nothing; a freed slot is usable at once.
#[test]
fn server_full_and_freed_slot_reused() {
    let s = TestServer::start(&["--max-clients", "2"]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    let mut third = s.connect();
    assert_eq!(
        third.expect_closed(),
        ["! Server is full (2 clients max). Try again later."]
    );
    b.send("/quit");
    b.expect("* Goodbye.");
    b.expect_closed();
    a.expect("* b has left the room (quit)");
    let mut again = s.join("c");
    a.expect("* c has entered the room");
    again.send("hi");
    a.expect("[c] hi");
}

/// An over-long line gets an error, then the same connection works.
#[test]
fn over_long_line_then_normal_line() {
    let s = TestServer::start(&["--max-line", "100"]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    let mut long = vec![b'y'; 100_000];
    long.push(b'\n');
    a.send_raw(&long);
    a.expect("! Line too long (max 100 bytes); discarded.");
    a.send("short one");
    b.expect("[a] short one");
}

/// Invalid UTF-8 gets an error and is not relayed.
#[test]
fn invalid_utf8_is_refused() {
    let s = TestServer::start(&[]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    a.send_raw(b"bad \xc3\x28 bytes\n");
    a.expect("! Line is not valid UTF-8; discarded.");
    a.send("fine: caf\u{e9}");
    b.expect("[a] fine: caf\u{e9}");
}

/// ESC (terminal escape injection) is never relayed.
#[test]
fn control_characters_are_not_relayed() {
    let s = TestServer::start(&[]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    a.send("\x1b]0;pwned\x07\x1b[2J");
    a.expect("! Control characters are not allowed; line discarded.");
    a.send("after\twards");
    b.expect("[a] after\twards");
}

/// A message written one byte per write arrives whole.
#[test]
fn message_one_byte_per_write() {
    let s = TestServer::start(&[]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    for byte in b"slow but whole\r\n" {
        a.stream.write_all(&[*byte]).unwrap();
        a.stream.flush().unwrap();
    }
    b.expect("[a] slow but whole");
}

/// 100 KB and 1 MB of lines in one write: every line arrives, in order
/// (the loop must drain readiness, not read once per event).
#[test]
fn burst_of_lines_in_one_write_arrives_whole() {
    // No rate limit, and a send queue large enough that this test's (slow,
    // debug-build) reader is not cut off as a slow reader: this test is
    // about draining readiness, tests/protections.rs about slow readers.
    let s = TestServer::start(&["--max-rate", "0", "--max-sendq", "4m"]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    for total in [100_000usize, 1_000_000] {
        let mut burst = Vec::new();
        let mut n = 0;
        while burst.len() < total {
            writeln!(burst, "line {n:07} {}", "z".repeat(50)).unwrap();
            n += 1;
        }
        // Write from another thread while b reads: a receiver that does not
        // read for 1 MB would (rightly) be cut off as a slow reader.
        let mut writer = a.stream.try_clone().unwrap();
        std::thread::scope(|scope| {
            scope.spawn(move || writer.write_all(&burst).unwrap());
            for i in 0..n {
                let got = b.line();
                assert_eq!(got, format!("[a] line {i:07} {}", "z".repeat(50)));
            }
        });
    }
}

/// CRLF line endings and telnet negotiation bytes work like plain `nc`
/// (the options are refused: WONT SGA, DONT NAWS; tests/telnet.rs has more).
#[test]
fn telnet_client_works() {
    let s = TestServer::start(&[]);
    let mut b = s.join("b");
    let mut t = s.connect();
    // IAC DO SUPPRESS-GO-AHEAD, IAC WILL NAWS, IAC SB NAWS 0 80 0 24 IAC SE
    t.send_raw(&[
        255, 253, 3, 255, 251, 31, 255, 250, 31, 0, 80, 0, 24, 255, 240,
    ]);
    // IAC WONT SGA, IAC DONT NAWS (as the lossy decoding shows them) come
    // at once; the greeting after its hold.
    t.expect(
        "\u{FFFD}\u{FFFD}\u{3}\u{FFFD}\u{FFFD}\u{1f}* Welcome to loopchat! What shall I call you?",
    );
    t.send_raw(b"telly\r\n");
    t.expect("* The room contains: b");
    b.expect("* telly has entered the room");
    t.send_raw(b"hi from telnet\r\n");
    b.expect("[telly] hi from telnet");
}

/// A client that half-closes after sending still has its lines relayed and
/// its pending output delivered; then it counts as gone.
#[test]
fn half_closed_client_lines_are_kept() {
    let s = TestServer::start(&[]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    b.send_raw(b"first\nsecond\n/who\npartial without newline");
    b.shutdown_write();
    a.expect("[b] first");
    a.expect("[b] second");
    a.expect("* b has left the room (connection closed)");
    // b still gets the /who answer, then the server closes.
    assert_eq!(b.expect_closed(), ["* 2 users online: a, b"]);
}

/// The server has exactly one thread while users chat.
#[test]
fn one_thread() {
    let s = TestServer::start(&["--max-rate", "0"]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    for i in 0..50 {
        a.send(&format!("msg {i}"));
        b.send(&format!("reply {i}"));
    }
    for i in 0..50 {
        b.expect(&format!("[a] msg {i}"));
        a.expect(&format!("[b] reply {i}"));
    }
    assert_eq!(s.threads(), 1);
}

/// 5,000 connect/join/quit cycles leave RSS within 1 MiB of where it was:
/// every connection's memory and slab slot are released.
#[test]
fn memory_returns_after_5000_join_quit_cycles() {
    let s = TestServer::start(&["--max-rate", "0"]);
    let mut watcher = s.join("watcher");
    let cycle = |i: usize| {
        let mut c = s.join(&format!("u{i}"));
        c.send("hello");
        c.send("/quit");
        c.line_where(|l| l == "* Goodbye.");
        c.expect_closed();
    };
    for i in 0..200 {
        cycle(i);
    }
    watcher.sync();
    let before = s.rss_kib();
    for i in 0..5000 {
        cycle(i);
    }
    watcher.sync();
    let after = s.rss_kib();
    assert!(
        after <= before + 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(s.threads(), 1);
}

/// SIGTERM: every user is told, the server exits 0.
#[test]
fn sigterm_notifies_and_exits_zero() {
    let mut s = TestServer::start(&[]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    s.signal(libc::SIGTERM);
    assert_eq!(a.expect_closed(), ["* Server is shutting down."]);
    assert_eq!(b.expect_closed(), ["* Server is shutting down."]);
    let status = s.wait_exit(Duration::from_secs(10)).expect("server exited");
    assert!(status.success(), "{status:?}");
}

/// Bad options exit 2 with a one-line message; a busy address exits 1.
#[test]
fn bad_command_lines() {
    let bin = env!("CARGO_BIN_EXE_loopchat-server");
    for args in [
        &["--max-clients", "many"][..],
        &["--listen", "not-an-address"],
        &["--max-line", "-5"],
        &["--nonsense"],
        &["--log-level", "chatty"],
    ] {
        let out = Command::new(bin).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.ends_with(" (try --help)\n"), "{args:?}: {err}");
    }
    let s = TestServer::start(&[]);
    let out = Command::new(bin)
        .args(["--listen", &s.addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--max-sendq"));
}

/// --timestamps prefixes chat lines with HH:MM:SS.
#[test]
fn timestamps_option() {
    let s = TestServer::start(&["--timestamps"]);
    let mut a = s.join("a");
    let mut b = s.join("b");
    a.line();
    a.send("tick");
    let got = b.line();
    let (stamp, rest) = got.split_at(9);
    assert_eq!(rest, "[a] tick");
    assert!(
        stamp.len() == 9 && &stamp[2..3] == ":" && &stamp[5..6] == ":" && stamp.ends_with(' '),
        "{got:?}"
    );
}

/// --log-file appends a timestamped log with joins and leaves, and no
/// message contents at the default level.
#[test]
fn log_file_records_joins_and_leaves() {
    let path = std::env::temp_dir().join(format!("loopchat-logfile-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let s = TestServer::start(&["--log-file", path.to_str().unwrap()]);
    let mut a = s.join("alice");
    let mut b = s.join("bob");
    a.line();
    a.send("top secret words");
    b.line();
    b.send("/quit");
    b.expect("* Goodbye.");
    a.expect("* bob has left the room (quit)");
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(log.contains("joined as alice"), "{log}");
    assert!(log.contains("bob (#1) left: quit"), "{log}");
    assert!(!log.contains("top secret"), "{log}");
    let _ = std::fs::remove_file(&path);
    drop(Client::connect(s.addr));
}
