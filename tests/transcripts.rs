//! Byte-for-byte transcripts of what each user receives, kept as golden
//! files in `tests/transcripts/`: scripted scenarios driven through the
//! socket-free core (`LineFramer` + `Hub`), and a few through the real
//! binary over TCP. They pin today's output so that a reshaped core can be
//! shown to send exactly the same bytes.
//!
//! To regenerate the golden files after an intended change of output:
//! `LOOPCHAT_BLESS=1 cargo test --test transcripts`, then review
//! `git diff tests/transcripts/`.

mod common;
mod golden;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use golden::Script;
use loopchat::accounts::AuthOutcome;
use loopchat::chat::{LeaveReason, Refusal};

/// Joining: the greeting, refused names (taken, invalid, too long, empty),
/// commands before joining, `/nick NAME` as the first line, being alone.
#[test]
fn join_sequence() {
    let mut s = Script::new(4096);
    s.connect(0);
    s.say(0, "alice");
    s.say(0, "/who");
    s.connect(1);
    s.say(1, "/who");
    s.say(1, "/help");
    s.say(1, "/pong");
    s.say(1, "ALICE");
    s.say(1, "bob smith");
    s.say(1, &"b".repeat(33));
    s.say(1, "/nick");
    s.say(1, "b@b");
    s.say(1, "/nick bob");
    s.connect(2);
    s.say(2, "  carol  ");
    s.connect(3);
    s.say(3, "/quit");
    golden::check("join_sequence", &s.transcript("join sequence"));
}

/// Chat and the lines that are refused instead of relayed.
#[test]
fn chat() {
    let mut s = Script::new(32);
    s.connect(0);
    s.say(0, "alice");
    s.say(0, "anyone?");
    s.connect(1);
    s.say(1, "bob");
    s.connect(2); // never joins: receives no chat
    s.say(0, "hello bob");
    s.say(1, "//slash at the start");
    s.send_bytes(1, b"crlf line\r\n");
    s.say(1, "   ");
    s.say(1, "tab\tinside");
    s.say(0, "bold \x1b[1m here");
    s.send_bytes(0, b"not utf-8 \xc3\x28\n");
    s.say(0, "caf\u{e9} \u{2713}");
    s.say(0, &"x".repeat(40));
    s.send_bytes(0, b"two lines\nin one read\n");
    s.send_bytes(0, b"split acr");
    s.send_bytes(0, b"oss reads\n");
    s.send_bytes(1, b"telnet \xff\xfb\x01IAC\n");
    golden::check("chat", &s.transcript("chat"));
}

/// The commands of a joined user.
#[test]
fn commands() {
    let mut s = Script::new(4096);
    for (c, nick) in ["alice", "bob", "carol"].iter().enumerate() {
        s.connect(c);
        s.say(c, nick);
    }
    s.say(0, "/help");
    s.say(0, "/WHO");
    s.say(0, "/me waves");
    s.say(0, "/me");
    s.say(0, "/msg BOB psst");
    s.say(0, "/msg dave hi");
    s.say(0, "/msg bob");
    s.say(0, "/msg");
    s.say(1, "/nick bob");
    s.say(1, "/nick Bob");
    s.say(1, "/nick robert");
    s.say(1, "/nick carol");
    s.say(1, "/nick no way");
    s.say(1, "/pong");
    s.say(1, "/frob it");
    s.say(2, "/who");
    golden::check("commands", &s.transcript("commands"));
}

/// Every way of leaving, as the others are told of it, and the ping.
#[test]
fn leaving() {
    let mut s = Script::new(4096);
    let nicks = [
        "stay", "q1", "q2", "q3", "q4", "eof", "rst", "wr", "sq", "idle", "reg",
    ];
    for (c, nick) in nicks.iter().enumerate() {
        s.connect(c);
        if *nick != "reg" {
            s.say(c, nick);
        }
    }
    s.say(1, "/quit see you");
    s.say(2, "/quit");
    s.say(3, "/exit bye");
    s.say(4, "/logout");
    s.gone(5, LeaveReason::Closed);
    s.gone(6, LeaveReason::Reset);
    s.gone(7, LeaveReason::WriteError);
    s.kick(
        8,
        Refusal::SendQueueExceeded,
        LeaveReason::SendQueueExceeded,
    );
    s.ping(9, 30);
    s.kick(
        9,
        Refusal::IdleTimeout { secs: 60 },
        LeaveReason::IdleTimeout,
    );
    s.kick(
        10,
        Refusal::RegisterTimeout { secs: 30 },
        LeaveReason::RegisterTimeout,
    );
    s.connect(11);
    s.say(11, "late");
    s.shutdown();
    golden::check("leaving", &s.transcript("leaving"));
}

/// Private conversations: invite, accept, talk, end; decline; the errors;
/// a partner who leaves; and an invitation that expires.
#[test]
fn private_conversations() {
    let mut s = Script::new(4096);
    for (c, nick) in ["alice", "bob", "carol", "dave"].iter().enumerate() {
        s.connect(c);
        s.say(c, nick);
    }
    s.say(0, "/pm");
    s.say(0, "/pm a b");
    s.say(0, "/pm zed");
    s.say(0, "/pm alice");
    s.say(0, "/endpm");
    s.say(1, "/accept alice");
    s.say(0, "/pm bob");
    s.say(0, "/pm bob");
    s.say(1, "/accept alice");
    s.say(0, "lunch?");
    s.say(1, "//sure");
    s.say(2, "hi all");
    s.say(0, "/me still here");
    s.say(2, "/pm alice");
    s.say(0, "/pm carol");
    s.say(0, "/accept carol");
    s.say(1, "/endpm");
    s.say(2, "/pm dave");
    s.say(3, "/decline carol");
    s.say(3, "/decline carol");
    s.say(0, "/pm bob");
    s.say(1, "/accept alice");
    s.gone(0, LeaveReason::Closed);
    s.say(1, "/endpm");
    s.say(2, "/pm dave");
    s.advance_and_expire(Duration::from_secs(59));
    s.advance_and_expire(Duration::from_secs(2));
    s.say(3, "/accept carol");
    golden::check(
        "private_conversations",
        &s.transcript("private conversations"),
    );
}

/// Accounts, with the password checks answered by hand (no hashing).
#[test]
fn accounts() {
    let mut s = Script::new(4096);
    s.room.set_accounts(true);
    s.connect(0);
    s.say(0, "alice");
    s.say(0, "short");
    s.auth_done(AuthOutcome::TooShort { min: 8 });
    s.say(0, "long enough");
    s.auth_done(AuthOutcome::SaveFailed);
    s.say(0, "long enough");
    s.auth_done(AuthOutcome::Registered {
        name: "alice".into(),
    });
    s.say(0, "/nick alicia");
    s.connect(1);
    s.say(1, "Alice");
    s.say(1, "bob smith");
    s.say(1, "BOB");
    s.say(1, "wrong one");
    s.auth_done(AuthOutcome::WrongPassword);
    s.say(1, "wrong two");
    s.auth_done(AuthOutcome::WrongPassword);
    s.say(1, "right one");
    s.auth_done(AuthOutcome::LoggedIn { name: "bob".into() });
    s.say(1, "hi alice");
    s.connect(2);
    s.say(2, "carol");
    s.say(2, "w1");
    s.auth_done(AuthOutcome::WrongPassword);
    s.say(2, "w2");
    s.auth_done(AuthOutcome::WrongPassword);
    s.say(2, "w3");
    s.auth_done(AuthOutcome::WrongPassword);
    s.connect(3);
    s.say(3, "dave");
    s.say(3, "/QUIT");
    s.say(0, "/logout");
    golden::check("accounts", &s.transcript("accounts"));
}

/// `--timestamps`: chat, private and action lines carry the time; notices
/// and errors do not.
#[test]
fn timestamps() {
    let mut s = Script::new(4096);
    s.clock(Some("09:05:01"));
    s.connect(0);
    s.say(0, "alice");
    s.connect(1);
    s.say(1, "bob");
    s.say(0, "hello");
    s.say(0, "/me waves");
    s.say(0, "/msg bob psst");
    s.say(0, "/msg nobody x");
    s.say(0, "/pm bob");
    s.say(1, "/accept alice");
    s.clock(Some("23:59:59"));
    s.say(1, "private");
    s.say(1, "/endpm");
    s.clock(None);
    s.say(0, "no stamp");
    golden::check("timestamps", &s.transcript("timestamps"));
}

/// A test client that keeps every byte it receives, for transcripts over
/// TCP. Waiting for a line is how a script knows the server has handled a
/// step before the next one starts, so the transcript is deterministic.
struct Recorder {
    stream: TcpStream,
    bytes: Vec<u8>,
    /// `bytes[..seen]` has been searched by `wait_for` already.
    seen: usize,
}

impl Recorder {
    fn connect(s: &common::TestServer) -> Recorder {
        let stream = TcpStream::connect(s.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set a read timeout");
        Recorder {
            stream,
            bytes: Vec::new(),
            seen: 0,
        }
    }

    fn say(&mut self, line: &str) {
        use std::io::Write;
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    /// Reads until a whole line equal to `line` (or starting with it, if it
    /// ends in `*`) has arrived after the previous wait. Bounded by
    /// `LINE_TIMEOUT`.
    #[track_caller]
    fn wait_for(&mut self, line: &str) {
        let deadline = Instant::now() + common::LINE_TIMEOUT;
        loop {
            while let Some(i) = self.bytes[self.seen..].iter().position(|&b| b == b'\n') {
                let got =
                    String::from_utf8_lossy(&self.bytes[self.seen..self.seen + i]).into_owned();
                self.seen += i + 1;
                let hit = match line.strip_suffix('*') {
                    Some(prefix) => got.starts_with(prefix),
                    None => got == line,
                };
                if hit {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {line:?} in {:?}",
                golden::escape(&self.bytes)
            );
            self.read_some();
        }
    }

    /// One read; false at EOF.
    fn read_some(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.bytes.extend_from_slice(&buf[..n]);
                true
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                true
            }
            Err(_) => false,
        }
    }

    /// Reads until the server closes the connection (bounded).
    #[track_caller]
    fn until_closed(&mut self) {
        let deadline = Instant::now() + common::LINE_TIMEOUT;
        while self.read_some() {
            assert!(
                Instant::now() < deadline,
                "never closed: {:?}",
                golden::escape(&self.bytes)
            );
        }
    }
}

/// Over TCP, with the real binary: join, chat, `/me`, `/msg`, `/who`, a
/// refused name, `/nick`, a quit with a reason, a too-long line, and the
/// shutdown notice. Each client's whole byte stream is the transcript.
#[test]
fn over_tcp() {
    let mut server = common::TestServer::start(&["--max-line", "64"]);
    let mut alice = Recorder::connect(&server);
    alice.wait_for("* Welcome to loopchat! What shall I call you?");
    alice.say("alice");
    alice.wait_for("* You are alone in the room.");
    let mut bob = Recorder::connect(&server);
    bob.wait_for("* Welcome to loopchat!*");
    bob.say("ALICE");
    bob.wait_for("! Nickname ALICE is taken. Choose another.");
    bob.say("bob");
    alice.wait_for("* bob has entered the room");
    bob.say("hi all");
    alice.wait_for("[bob] hi all");
    alice.say("/me waves");
    bob.wait_for("~ alice waves");
    alice.say("/msg bob psst");
    alice.wait_for("(-> bob) psst");
    bob.wait_for("(alice) psst");
    bob.say(&"y".repeat(100));
    bob.wait_for("! Line too long*");
    let mut carol = Recorder::connect(&server);
    carol.wait_for("* Welcome to loopchat!*");
    carol.say("/nick carol");
    bob.wait_for("* carol has entered the room");
    alice.wait_for("* carol has entered the room");
    carol.say("/nick carol");
    carol.wait_for("* Your nickname is already carol.");
    carol.say("/nick Carol");
    bob.wait_for("* carol is now known as Carol");
    alice.wait_for("* carol is now known as Carol");
    bob.say("/who");
    bob.wait_for("* 3 users online: alice, bob, Carol");
    carol.say("/quit see you");
    carol.until_closed();
    alice.wait_for("* Carol has left the room (quit: see you)");
    bob.wait_for("* Carol has left the room (quit: see you)");
    alice.say("/who");
    alice.wait_for("* 2 users online: alice, bob");
    server.signal(libc::SIGTERM);
    alice.until_closed();
    bob.until_closed();
    assert!(
        server.wait_exit(common::LINE_TIMEOUT).is_some(),
        "the server exits"
    );

    let mut t = String::from("# over TCP: each client's whole byte stream\n");
    for (name, r) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        t.push_str(&format!("\nreceived by {name}:\n"));
        let mut lines = Vec::new();
        golden::push_lines(&mut lines, 0, &r.bytes);
        for (_, l) in lines {
            t.push_str(&format!("{l}\n"));
        }
    }
    golden::check("over_tcp", &t);
}
