//! Accounts (`--accounts FILE`) against the real binary: registration,
//! login, wrong passwords and the per-address delay, one session per name,
//! the file (hashes only, atomic writes), the admin commands.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Client;
use common::accounts::{accounts_file_in, admin, begin, login, start};

/// A fresh folder for one test's accounts file; returns the file's path.
fn accounts_file() -> PathBuf {
    accounts_file_in("accounts")
}

/// Register, log out, log in again; a short password and a second login
/// get clear errors; the file holds argon2id hashes and no password, and
/// neither does the debug log.
#[test]
fn register_login_and_nothing_in_clear() {
    let file = accounts_file();
    let s = start(&file, &["--log-level", "debug"]);
    let mut a = begin(&s, "alice");
    a.send("tiny7");
    a.expect("! Password too short: a new account needs at least 8 characters. Send another password for alice.");
    a.send("alice-secret-1");
    a.expect("* Account alice registered.");
    a.expect("* The room contains: ");
    a.expect("* Welcome, alice! 1 user online in #lobby. Type /help for commands.");
    a.expect("* You are alone in the room.");

    // One session per account: the name is refused while alice is on.
    let mut again = s.connect();
    again.line();
    again.send("alice");
    again.expect("! alice is already logged in (one session per account). Choose another name.");

    a.send("/logout");
    a.expect("* Goodbye.");
    a.expect_closed();

    // Now it works, with the case of the registered name.
    again.send("ALICE");
    again.line_where(|l| l.starts_with("* Password for ALICE?"));
    again.send("alice-secret-1");
    again.expect("* The room contains: ");
    again.expect("* Welcome, alice! 1 user online in #lobby. Type /help for commands.");

    let text = std::fs::read_to_string(&file).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("alice "))
        .expect("alice in the file");
    assert!(
        line.starts_with("alice $argon2id$v=19$m=8192,t=2,p=1$"),
        "{line}"
    );
    let log = s.log();
    for secret in ["alice-secret-1", "tiny7"] {
        assert!(!text.contains(secret), "password in the file: {text}");
        assert!(!log.contains(secret), "password in the log: {log}");
    }
    assert!(log.contains("registered alice"), "{log}");
    assert!(log.contains("logged in as alice"), "{log}");
}

/// Wrong passwords: an error and asked again; the address waits 1 s, then
/// 2 s before its next checks; the third failure closes the connection.
/// Another address (here: none) is not slowed; the room is not frozen.
#[test]
fn wrong_passwords_are_delayed_and_three_close() {
    let file = accounts_file();
    let s = start(&file, &[]);
    drop(login(&s, "bob", "bob-password"));
    let mut watcher = login(&s, "carol", "carol-password");

    let mut c = begin(&s, "bob");
    let t0 = Instant::now();
    c.send("nope-nope-1");
    c.expect("! Wrong password for bob. Try again (2 attempts left).");
    let t1 = Instant::now();
    c.send("nope-nope-2");
    c.expect("! Wrong password for bob. Try again (1 attempt left).");
    let t2 = Instant::now();
    // While that address waits, the room answers at once.
    let quick = Instant::now();
    watcher.sync();
    assert!(quick.elapsed() < Duration::from_millis(900), "room frozen");
    c.send("nope-nope-3");
    c.expect("! Wrong password. Too many failures; goodbye.");
    let t3 = Instant::now();
    c.expect_closed();
    assert!(
        t1 - t0 < Duration::from_millis(900),
        "first check is not delayed"
    );
    assert!(t2 - t1 >= Duration::from_millis(950), "{:?}", t2 - t1);
    assert!(t3 - t2 >= Duration::from_millis(1950), "{:?}", t3 - t2);
    let log = s.log();
    assert!(log.contains("wrong password for bob"), "{log}");
    assert!(!log.contains("nope-nope"), "{log}");
}

/// A registration that cannot be saved is refused and not kept.
#[test]
fn failed_save_is_not_a_registration() {
    let file = accounts_file();
    let s = start(&file, &[]);
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
    let mut c = begin(&s, "dave");
    c.send("dave-password");
    c.expect("! Could not register dave: the server could not save the account. Try again later.");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    c.send("dave-password");
    c.expect("* Account dave registered.");
}

/// A malformed file stops the server with the line number.
#[test]
fn malformed_file_refuses_to_start() {
    let file = accounts_file();
    std::fs::write(&file, "# ok\n\nalice not-a-hash\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .args(["--listen", "127.0.0.1:0", "--accounts"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("accounts file {} line 3: ", file.display())),
        "{err}"
    );
}

/// `--add-user` and `--remove-user`: 0 on success, 1 on error, 2 on bad
/// usage; an added user can log in.
#[test]
fn admin_commands() {
    let file = accounts_file();
    assert_eq!(
        admin(&file, &["--add-user", "erin"], "erin-password\n").0,
        0
    );
    assert_eq!(
        admin(&file, &["--add-user", "erin"], "other-password\n").0,
        1
    );
    assert_eq!(
        admin(&file, &["--add-user", "bad name"], "whatever-long\n").0,
        1
    );
    let (code, err) = admin(&file, &["--add-user", "frank"], "short\n");
    assert_eq!(code, 1);
    assert!(err.contains("at least 8 characters"), "{err}");
    assert_eq!(admin(&file, &["--remove-user", "nobody"], "").0, 1);
    let no_file = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .args(["--add-user", "erin"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(no_file.code(), Some(2));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("erin $argon2id$") && !text.contains("erin-password"));

    {
        let s = start(&file, &[]);
        let mut c = begin(&s, "erin");
        c.send("wrong-password");
        c.expect("! Wrong password for erin. Try again (2 attempts left).");
        drop(c);
        let mut c = begin(&s, "ERIN");
        c.send("erin-password");
        c.line_where(|l| l.starts_with("* Welcome, erin!"));
    }
    assert_eq!(admin(&file, &["--remove-user", "Erin"], "").0, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("erin"), "{text}");
}

/// SIGKILL in the middle of a burst of registrations from several clients:
/// every acknowledged account is in the file afterwards, and the file loads.
#[test]
fn kill_during_registration_loses_no_acknowledged_account() {
    let file = accounts_file();
    // Every registration comes from 127.0.0.1: no budget of new accounts.
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
    let addr = s.addr;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut threads = Vec::new();
    for t in 0..4 {
        let acked = acked.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..200 {
                let name = format!("u{t}x{i}");
                let Ok(stream) = std::net::TcpStream::connect(addr) else {
                    return;
                };
                let mut c = Client::from_stream(stream);
                let send = |c: &mut Client, l: &str| {
                    use std::io::Write as _;
                    c.stream.write_all(format!("{l}\n").as_bytes()).is_ok()
                };
                if c.try_line().is_none() || !send(&mut c, &name) || c.try_line().is_none() {
                    return;
                }
                if !send(&mut c, "password-123") {
                    return;
                }
                match c.try_line() {
                    Some(l) if l == format!("* Account {name} registered.") => {
                        acked.lock().unwrap().push(name);
                    }
                    _ => return, // killed
                }
            }
        }));
    }
    // Kill once some registrations have been acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.signal(libc::SIGKILL);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "only {} registrations", acked.len());
    let text = std::fs::read_to_string(&file).unwrap();
    for name in &acked {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name} $argon2id$"))),
            "{name} was acknowledged but is not in the file"
        );
    }
    // The file still loads: a server starts on it.
    drop(s);
    let again = start(&file, &[]);
    drop(login(&again, &acked[0], "password-123"));
}
