//! Operating a server with accounts (issue 15): registrations of a burst
//! are saved together (group commit) and acknowledged only once saved, and
//! SIGHUP re-reads the accounts file (when it changed) and the MOTD.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Barrier};

use common::accounts::{accounts_file_in, admin, begin, login, start};
use common::{Client, LINE_TIMEOUT, TestServer};

/// The sizes of the accounts file's saves, from the log's
/// `accounts saved: N new in one write` lines.
fn saves(log: &str) -> Vec<usize> {
    log.lines()
        .filter_map(|l| l.split("accounts saved: ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

/// 20 clients register at the same moment: every acknowledged account is
/// in the file after SIGKILL, the log shows fewer saves than registrations
/// (a save carries several), and the saves add up to the registrations.
#[test]
fn a_burst_of_registrations_is_saved_in_fewer_writes() {
    const N: usize = 20;
    let file = accounts_file_in("group-commit");
    let s = start(
        &file,
        &[
            "--max-rate",
            "0",
            "--new-accounts-per-ip",
            "0",
            "--new-accounts-per-minute",
            "0",
        ],
    );
    let at_prompt = Arc::new(Barrier::new(N));
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..N {
        let addr = s.addr;
        let at_prompt = at_prompt.clone();
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            let name = format!("burst{i}");
            let mut c = Client::connect(addr);
            c.expect("* Welcome to loopchat! What shall I call you?");
            c.send(&name);
            c.line();
            // Everyone is at the password prompt: send them together.
            at_prompt.wait();
            c.send("password-123");
            let answer = c.line();
            let _ = tx.send((name, answer));
        }));
    }
    drop(tx);
    let mut acked = Vec::new();
    for _ in 0..N {
        let (name, answer) = rx
            .recv_timeout(LINE_TIMEOUT * 2)
            .expect("every client gets an answer");
        assert_eq!(answer, format!("* Account {name} registered."));
        acked.push(name);
    }
    for t in threads {
        t.join().unwrap();
    }
    s.signal(libc::SIGKILL);
    let text = std::fs::read_to_string(&file).unwrap();
    for name in &acked {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name} $argon2id$"))),
            "{name} was acknowledged but is not in the file"
        );
    }
    let sizes = saves(&s.log());
    assert_eq!(sizes.iter().sum::<usize>(), N, "{sizes:?}");
    assert!(sizes.len() < N, "one save per registration: {sizes:?}");
}

/// `--add-user` and `--remove-user` work beside a running server: SIGHUP
/// makes the server re-read the changed file (and says so), a SIGHUP with
/// nothing changed re-reads nothing, and a registration saved before any
/// SIGHUP keeps the admin's edits (the save re-reads the changed file).
#[test]
fn sighup_rereads_an_accounts_file_changed_by_add_user() {
    let file = accounts_file_in("sighup-accounts");
    let s = start(&file, &[]);
    drop(login(&s, "alice", "alice-password"));
    assert_eq!(
        admin(&file, &["--add-user", "erin"], "erin-password\n").0,
        0
    );
    s.signal(libc::SIGHUP);
    let reread = format!(
        "SIGHUP: accounts file {} re-read: 2 accounts",
        file.display()
    );
    assert!(
        s.wait_until(LINE_TIMEOUT, |s| s.log().contains(&reread)),
        "{}",
        s.log()
    );
    // erin logs in with the password given to --add-user.
    let mut c = begin(&s, "erin");
    c.send("erin-password");
    c.line_where(|l| l.starts_with("* Welcome, erin!"));
    assert!(s.log().contains("logged in as erin"), "{}", s.log());

    s.signal(libc::SIGHUP);
    let unchanged = format!("SIGHUP: accounts file {} unchanged", file.display());
    assert!(
        s.wait_until(LINE_TIMEOUT, |s| s.log().contains(&unchanged)),
        "{}",
        s.log()
    );

    // No SIGHUP this time: bob's registration must not undo the edits.
    assert_eq!(admin(&file, &["--remove-user", "alice"], "").0, 0);
    assert_eq!(
        admin(&file, &["--add-user", "frank"], "frank-password\n").0,
        0
    );
    drop(login(&s, "bob", "bob-password"));
    let text = std::fs::read_to_string(&file).unwrap();
    for name in ["erin", "frank", "bob"] {
        assert!(text.contains(&format!("\n{name} $argon2id$")), "{text}");
    }
    assert!(!text.contains("\nalice "), "{text}");
    // The server has the merged file: frank logs in.
    let mut c = begin(&s, "frank");
    c.send("frank-password");
    c.line_where(|l| l.starts_with("* Welcome, frank!"));
    assert!(s.log().contains("logged in as frank"), "{}", s.log());
}

/// SIGHUP re-reads `--motd FILE`: an IRC client's `MOTD` shows the new
/// text without a restart.
#[test]
fn sighup_rereads_the_motd() {
    let dir = accounts_file_in("sighup-motd");
    let motd = dir.with_file_name("motd.txt");
    std::fs::write(&motd, "first text\n").unwrap();
    let s = TestServer::start(&["--motd", motd.to_str().unwrap()]);
    let mut c = s.connect();
    c.send_raw(b"NICK ivan\r\nUSER ivan 0 * :Ivan\r\n");
    c.line_where(|l| l.contains(" 372 ivan :- first text"));
    c.line_where(|l| l.contains(" 376 ivan "));
    std::fs::write(&motd, "second text\nand more\n").unwrap();
    s.signal(libc::SIGHUP);
    assert!(
        s.wait_until(LINE_TIMEOUT, |s| s.log().contains("MOTD re-read")),
        "{}",
        s.log()
    );
    c.send_raw(b"MOTD\r\n");
    c.line_where(|l| l.contains(" 372 ivan :- second text"));
    c.expect(":loopchat 372 ivan :- and more\r");
}
