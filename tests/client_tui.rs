//! The full-screen client end to end, in a real terminal: two clients run
//! under tmux (`new-session -x 100 -y 30`), keys go in with `send-keys`, the
//! screen comes out with `capture-pane`, polled until a deadline.
//!
//! Skipped with a note when tmux is not installed (CI installs it), and not
//! built without the `tui` feature (the client is then a line tool only).
#![cfg(feature = "tui")]

mod common;
#[path = "client_support.rs"]
mod support;

use std::thread;
use std::time::{Duration, Instant};

use common::TestServer;
use common::tmux;
use support::{ServerOn, TIMEOUT, threads_of};

/// A private tmux server (its own socket name), killed on drop.
/// The tmux server of one test, with the client's sessions.
struct Tmux(tmux::Tmux);

impl Tmux {
    fn available() -> bool {
        tmux::Tmux::available()
    }

    /// `tag` keeps tests running in parallel on separate tmux servers.
    fn new(tag: &str) -> Tmux {
        Tmux(tmux::Tmux::new(tag))
    }

    /// Starts `loopchat` full-screen in a new 100x30 session.
    fn client(&self, name: &str, addr: &str, args: &str) {
        let cmd = format!("exec {} {addr} {args}", env!("CARGO_BIN_EXE_loopchat"));
        self.0.session(name, 100, 30, &cmd);
    }

    fn screen(&self, name: &str) -> String {
        self.0.screen(name)
    }

    /// Polls the screen until `pred` holds; panics with the screen otherwise.
    fn wait_for(&self, name: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.0.wait_for(name, what, TIMEOUT, pred)
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        self.0.keys(name, keys);
    }

    fn pid(&self, name: &str) -> u32 {
        self.0.pane_pid(name)
    }

    fn run(&self, args: &[&str]) -> String {
        self.0.run(args)
    }
}

#[test]
fn message_typed_in_one_client_appears_in_the_other() {
    if !Tmux::available() {
        eprintln!("note: tmux is not installed; skipping the full-screen end-to-end test");
        return;
    }
    let server = TestServer::start(&[]);
    let tmux = Tmux::new("message");
    tmux.client("a", &server.addr.to_string(), "--nick alice");
    tmux.wait_for("a", "alice joined", |s| {
        s.contains("* The room contains:") && s.contains("connected")
    });
    tmux.client("b", &server.addr.to_string(), "--nick bob");
    tmux.wait_for("a", "bob's arrival", |s| {
        s.contains("* bob has entered the room")
    });
    tmux.wait_for("b", "bob joined", |s| s.contains("#lobby (2)"));

    // Bob starts a line; a message arriving meanwhile leaves it intact.
    tmux.keys("b", &["-l", "half typed"]);
    tmux.wait_for("b", "bob's input", |s| {
        s.lines()
            .last()
            .is_some_and(|l| l.starts_with("> half typed"))
    });
    tmux.keys("a", &["-l", "hello from alice"]);
    tmux.keys("a", &["Enter"]);
    let s = tmux.wait_for("b", "alice's message", |s| {
        s.contains("<alice> hello from alice")
    });
    assert!(
        s.lines()
            .last()
            .is_some_and(|l| l.starts_with("> half typed")),
        "{s}"
    );
    // Own lines are shown locally.
    tmux.wait_for("a", "alice's own line", |s| {
        s.contains("<alice> hello from alice")
    });

    // Editing keys: arrows, Home, word delete. (`-l` makes every argument
    // literal text, so key names go in separate calls.)
    tmux.keys("a", &["-l", "helo wrld"]);
    tmux.keys("a", &["C-w", "BSpace", "Left"]);
    tmux.keys("a", &["-l", "l"]);
    tmux.keys("a", &["End"]);
    tmux.keys("a", &["-l", " world"]);
    tmux.keys("a", &["Home"]);
    tmux.keys("a", &["-l", ">"]);
    tmux.keys("a", &["Enter"]);
    tmux.wait_for("b", "the edited line", |s| {
        s.contains("<alice> >hello world")
    });

    // A paste far longer than one read arrives whole.
    let paste = format!("{}END", "x".repeat(3000));
    tmux.keys("a", &["-l", &paste]);
    tmux.wait_for("a", "the whole paste", |s| {
        s.lines()
            .last()
            .is_some_and(|l| l.trim_end().ends_with("xxEND"))
    });
    tmux.keys("a", &["C-u"]);
    tmux.wait_for("a", "the emptied line", |s| {
        s.lines().last().is_some_and(|l| l.trim_end() == ">")
    });

    // One thread, in a real terminal.
    assert_eq!(threads_of(tmux.pid("a")), 1);

    // Ctrl-C leaves cleanly: the quit line reaches the server.
    tmux.keys("b", &["C-c"]);
    let s = tmux.wait_for("a", "bob's departure", |s| {
        s.contains("* bob has left the room (quit)")
    });
    assert!(s.contains("#lobby (1)"), "{s}");

    // The terminal going away (hang-up) ends the client too, instead of
    // leaving it spinning on a dead descriptor.
    let alice = tmux.pid("a");
    tmux.run(&["kill-server"]);
    let deadline = Instant::now() + TIMEOUT;
    while !exited(alice) {
        assert!(
            Instant::now() < deadline,
            "the client outlived its terminal"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Gone, or a zombie nobody has reaped yet.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => true,
    }
}

#[test]
fn asks_for_a_nickname_again_after_a_refusal_and_follows_resizes() {
    if !Tmux::available() {
        eprintln!("note: tmux is not installed; skipping the full-screen end-to-end test");
        return;
    }
    let mut server = TestServer::start(&[]);
    let tmux = Tmux::new("nick");
    tmux.client("a", &server.addr.to_string(), "--nick alice");
    tmux.wait_for("a", "alice joined", |s| s.contains("* The room contains:"));
    // No --nick: the client asks; a taken name shows the server's reason.
    tmux.client("c", &server.addr.to_string(), "");
    tmux.wait_for("c", "the nickname prompt", |s| {
        s.contains("type a nickname")
            && s.lines().last().is_some_and(|l| l.starts_with("nickname>"))
    });
    tmux.keys("c", &["-l", "Alice"]);
    tmux.keys("c", &["Enter"]);
    tmux.wait_for("c", "the refusal", |s| {
        s.contains("! Nickname Alice is taken. Choose another.")
            && s.lines().last().is_some_and(|l| l.starts_with("nickname>"))
    });
    tmux.keys("c", &["-l", "carol"]);
    tmux.keys("c", &["Enter"]);
    tmux.wait_for("c", "carol joined", |s| {
        s.contains("#lobby (2)") && s.contains("| carol |")
    });
    tmux.wait_for("a", "carol's arrival", |s| {
        s.contains("* carol has entered the room")
    });

    // A narrow window drops the user list; a wide one brings it back.
    tmux.run(&["resize-window", "-t", "c", "-x", "50", "-y", "12"]);
    tmux.wait_for("c", "the narrow layout", |s| {
        !s.contains("#lobby (") && s.lines().count() <= 12
    });
    tmux.run(&["resize-window", "-t", "c", "-x", "100", "-y", "30"]);
    tmux.wait_for("c", "the wide layout", |s| s.contains("#lobby (2)"));

    // The server goes away: the interface says so and keeps retrying.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    tmux.wait_for("c", "the lost connection", |s| {
        s.contains("connection lost") && s.contains("retrying in")
    });
    assert_eq!(threads_of(tmux.pid("c")), 1);
}

/// With accounts: the password is typed as `*`, never shown, and the
/// client logs in again by itself after the server comes back.
#[test]
fn password_is_masked_and_reused_on_reconnect() {
    if !Tmux::available() {
        eprintln!("note: tmux is not installed; skipping the full-screen end-to-end test");
        return;
    }
    let dir = std::env::temp_dir().join(format!("loopchat-tui-accounts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let accounts = dir.join("accounts.txt");
    let accounts = accounts.to_str().unwrap();
    let mut server = TestServer::start(&["--accounts", accounts]);
    let addr = server.addr.to_string();
    let tmux = Tmux::new("password");
    tmux.client("a", &addr, "--nick alice");
    let is_prompt = |s: &str| s.lines().last().is_some_and(|l| l.starts_with("password>"));
    tmux.wait_for("a", "the password prompt", |s| {
        s.contains("* Password for alice?") && is_prompt(s)
    });
    tmux.keys("a", &["-l", "short"]);
    tmux.wait_for("a", "five stars", |s| {
        s.lines().last().map(str::trim_end) == Some("password> *****")
    });
    tmux.keys("a", &["Enter"]);
    tmux.wait_for("a", "the refusal", |s| {
        s.contains("! Password too short") && is_prompt(s)
    });
    tmux.keys("a", &["-l", "Sw0rdfish pw"]);
    let s = tmux.wait_for("a", "twelve stars", |s| {
        s.lines().last().map(str::trim_end) == Some("password> ************")
    });
    assert!(!s.contains("Sw0rdfish"), "{s}");
    tmux.keys("a", &["Enter"]);
    let s = tmux.wait_for("a", "alice joined", |s| {
        s.contains("* Account alice registered.") && s.contains("* The room contains:")
    });
    assert!(!s.contains("Sw0rdfish"), "{s}");
    // Not in the history either: Up brings back nothing.
    tmux.keys("a", &["Up"]);
    thread::sleep(Duration::from_millis(200));
    let s = tmux.screen("a");
    assert!(!s.contains("Sw0rdfish"), "{s}");
    assert_eq!(s.lines().last().map(str::trim_end), Some(">"), "{s}");

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    tmux.wait_for("a", "the lost connection", |s| {
        s.contains("connection lost")
    });
    let _server2 = ServerOn::start_with(&addr, &["--accounts", accounts]);
    let s = tmux.wait_for("a", "the automatic login", |s| {
        s.contains("logging in with the saved password")
            && s.matches("* The room contains:").count() == 2
    });
    assert!(!s.contains("Sw0rdfish"), "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A line entered while disconnected is "kept": after the reconnection it
/// is still in the input line (not dropped), and Enter sends it.
#[test]
fn a_line_kept_while_disconnected_is_sent_after_reconnecting() {
    if !Tmux::available() {
        eprintln!("note: tmux is not installed; skipping the full-screen end-to-end test");
        return;
    }
    let mut server = TestServer::start(&[]);
    let addr = server.addr.to_string();
    let tmux = Tmux::new("kept");
    tmux.client("a", &addr, "--nick alice");
    tmux.wait_for("a", "alice joined", |s| s.contains("* The room contains:"));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    tmux.wait_for("a", "the lost connection", |s| {
        s.contains("connection lost")
    });
    tmux.keys("a", &["-l", "kept line"]);
    tmux.keys("a", &["Enter"]);
    tmux.wait_for("a", "the line kept", |s| s.contains("the line was kept"));
    let _server2 = ServerOn::start(&addr);
    let mut bob = support::Client::spawn(&[&addr, "--nick", "bob"]);
    bob.expect_prefix("* The room contains:");
    let s = tmux.wait_for("a", "the rejoin with the line still typed", |s| {
        s.matches("* The room contains:").count() == 2
            && s.lines().last().map(str::trim_end) == Some("> kept line")
    });
    assert!(!s.contains("dropped"), "{s}");
    tmux.keys("a", &["Enter"]);
    bob.expect_line("[alice] kept line");
}

/// Rooms in a real terminal, against a server whose default room is not
/// `#lobby`: the status bar and the list follow a `/join`, a rule marks the
/// move, the topic shows, `/rooms` reaches the server, and after a
/// reconnection the client returns to the room it was in.
#[test]
fn joining_another_room_shows_it() {
    if !Tmux::available() {
        eprintln!("note: tmux is not installed; skipping the full-screen end-to-end test");
        return;
    }
    let mut server = TestServer::start(&["--default-room", "#main"]);
    let addr = server.addr.to_string();
    // carol (a line bot) waits in #rust, with a topic.
    let mut carol = support::Client::spawn(&[&addr, "--nick", "carol"]);
    carol.expect_prefix("* Welcome, carol!");
    carol.send("/join #rust");
    carol.expect_line("* You are now in #rust.");
    carol.send("/topic be kind");
    carol.expect_line("* carol set the topic of #rust: be kind");
    let mut bob = support::Client::spawn(&[&addr, "--nick", "bob"]);
    bob.expect_prefix("* Welcome, bob!");

    let tmux = Tmux::new("rooms");
    tmux.client("a", &addr, "--nick alice");
    tmux.wait_for("a", "alice in #main", |s| {
        s.contains("| alice | #main | 2 online | connected") && s.contains("#main (2)")
    });
    tmux.keys("a", &["-l", "/join #rust"]);
    tmux.keys("a", &["Enter"]);
    let s = tmux.wait_for("a", "alice in #rust", |s| {
        s.contains("| alice | #rust | 2 online | connected | topic: be kind")
    });
    assert!(s.contains("#rust (2)") && !s.contains("#main (2)"), "{s}");
    assert!(s.contains("── now in #rust ──"), "{s}");
    assert!(s.contains("* The room contains: carol"), "{s}");
    carol.expect_line("* alice has entered the room");
    bob.expect_line("* alice has left the room (moved to #rust)");

    // Departures from the new room are followed; /rooms is answered.
    carol.send("/join #main");
    carol.expect_line("* You are now in #main.");
    tmux.wait_for("a", "carol's departure", |s| {
        s.contains("* carol has left the room (moved to #main)")
            && s.contains("#rust (1)")
            && s.contains("| #rust | 1 online |")
    });
    tmux.keys("a", &["-l", "/rooms"]);
    tmux.keys("a", &["Enter"]);
    tmux.wait_for("a", "the room list", |s| {
        s.contains("* Rooms: #main (2), #rust (1)")
    });

    // The server restarts, its default room now #lobby: the client
    // reconnects and goes back to #rust by itself.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    tmux.wait_for("a", "the lost connection", |s| {
        s.contains("connection lost")
    });
    let _again = ServerOn::start(&addr);
    tmux.wait_for("a", "alice back in #rust", |s| {
        s.contains("-- rejoining #rust") && s.contains("| alice | #rust | 1 online | connected")
    });
}
