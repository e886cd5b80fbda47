//! The client as a line tool against a server with accounts
//! (`--accounts FILE`): the password is the next stdin line (or the first
//! line of `--password-file`), registration then login, wrong passwords,
//! and a reconnection that answers the prompt by itself.
//!
//! A wrong password typed (piped) by the user is shown with the server's
//! error and the next stdin line is the next attempt; at end of input the
//! client exits 1 without having joined. A wrong password from
//! `--password-file` (or remembered across a reconnection) ends the client
//! at once with status 1, so a chat line is never sent as a password.

mod common;
#[path = "client_support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestServer;
use support::{Client, ServerOn};

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh folder for one test's files; returns it.
fn temp_dir() -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "loopchat-client-accounts-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start(accounts: &Path) -> TestServer {
    TestServer::start(&["--accounts", accounts.to_str().unwrap()])
}

/// A client that registers (or logs in) `name` with `password` on stdin and
/// waits until it is in the room.
fn join(addr: &str, name: &str, password: &str) -> Client {
    let mut c = Client::spawn(&[addr, "--nick", name]);
    c.send(password);
    c.expect_prefix("* The room contains:");
    c
}

/// Everything an exited client wrote to stderr: read to its end, since the
/// reader thread may lag behind the exit.
fn stderr_all(c: &Client) -> String {
    c.err.iter().collect::<Vec<_>>().join("\n")
}

fn prompt(name: &str) -> String {
    format!(
        "* Password for {name}? (A new name is registered with the password you send now: at least 8 characters.)"
    )
}

#[test]
fn piped_client_registers_chats_then_logs_in_again() {
    let dir = temp_dir();
    let server = start(&dir.join("accounts.txt"));
    let addr = server.addr.to_string();
    let mut alice = join(&addr, "alice", "alice-pass-1");

    // `printf 'secret123\nhello\n' | loopchat --nick bot`
    let mut bot = Client::spawn(&[&addr, "--nick", "bot"]);
    bot.send("secret123");
    bot.send("hello");
    bot.close_stdin();
    alice.expect_line("* bot has entered the room");
    alice.expect_line("[bot] hello");
    alice.expect_line("* bot has left the room (quit)");
    assert_eq!(bot.wait_exit().code(), Some(0));
    assert!(bot.seen.contains(&prompt("bot")), "{:?}", bot.seen);
    assert!(
        bot.seen.iter().any(|l| l == "* Account bot registered."),
        "{:?}",
        bot.seen
    );
    // The password is sent, never shown (the server does not echo it).
    assert!(!bot.seen.iter().any(|l| l.contains("secret123")));

    // Again, without --nick: name, password, chat, all from stdin; the
    // account exists now, so this is a login.
    let mut bot = Client::spawn(&[&addr]);
    bot.send("bot");
    bot.send("secret123");
    bot.send("back again");
    bot.close_stdin();
    alice.expect_line("* bot has entered the room");
    alice.expect_line("[bot] back again");
    alice.expect_line("* bot has left the room (quit)");
    assert_eq!(bot.wait_exit().code(), Some(0));
    assert!(!bot.seen.iter().any(|l| l == "* Account bot registered."));

    // With --password-file, stdin carries only the chat.
    let pw = dir.join("bot.pw");
    std::fs::write(&pw, "secret123\n").unwrap();
    let mut bot = Client::spawn(&[
        &addr,
        "--nick",
        "bot",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    bot.send("from a file");
    bot.close_stdin();
    alice.expect_line("* bot has entered the room");
    alice.expect_line("[bot] from a file");
    alice.expect_line("* bot has left the room (quit)");
    assert_eq!(bot.wait_exit().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_password_is_shown_and_input_end_exits_1() {
    let dir = temp_dir();
    let server = start(&dir.join("accounts.txt"));
    let addr = server.addr.to_string();
    let mut alice = join(&addr, "alice", "alice-pass-1");
    alice.close_stdin();
    assert_eq!(alice.wait_exit().code(), Some(0));

    // A short password for a new name, then end of input: not registered.
    let mut short = Client::spawn(&[&addr, "--nick", "newbie"]);
    short.send("tiny");
    short.close_stdin();
    short.expect_line(
        "! Password too short: a new account needs at least 8 characters. Send another password for newbie.",
    );
    assert_eq!(short.wait_exit().code(), Some(1));

    // A wrong password, then end of input: the server's error is shown,
    // the client never joined, and it exits 1.
    let mut wrong = Client::spawn(&[&addr, "--nick", "alice"]);
    wrong.send("not-the-password");
    wrong.close_stdin();
    wrong.expect_line("! Wrong password for alice. Try again (2 attempts left).");
    assert_eq!(wrong.wait_exit().code(), Some(1));
    assert!(
        !wrong
            .seen
            .iter()
            .any(|l| l.starts_with("* The room contains")),
        "{:?}",
        wrong.seen
    );
    let err = stderr_all(&wrong);
    assert!(err.contains("password refused"), "{err}");

    // Asked again: the next stdin line is the next attempt.
    let mut retry = Client::spawn(&[&addr, "--nick", "alice"]);
    retry.send("still wrong");
    retry.send("alice-pass-1");
    retry.send("/who");
    retry.expect_line("! Wrong password for alice. Try again (2 attempts left).");
    retry.expect_line("* The room contains: ");
    retry.expect_prefix("* 1 user");
    retry.close_stdin();
    assert_eq!(retry.wait_exit().code(), Some(0));

    // A wrong --password-file: exit 1 at once; the stdin line that follows
    // is chat, and is neither sent as a password nor as chat.
    let pw = dir.join("wrong.pw");
    std::fs::write(&pw, "not-alices\n").unwrap();
    let mut observer = join(&addr, "watcher", "watcher-pass");
    let mut filed = Client::spawn(&[
        &addr,
        "--nick",
        "alice",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    filed.send("a chat line");
    filed.expect_prefix("! Wrong password for alice.");
    assert_eq!(filed.wait_exit().code(), Some(1));
    let err = stderr_all(&filed);
    assert!(err.contains("saved password"), "{err}");
    // The account still works with its password (one failure left it
    // two more); the watcher saw nobody but alice's real login.
    let _alice = join(&addr, "alice", "alice-pass-1");
    observer.expect_line("* alice has entered the room");
    assert!(
        !observer.seen.iter().any(|l| l.contains("a chat line")),
        "{:?}",
        observer.seen
    );

    // An unreadable password file is an error before connecting.
    let mut missing = Client::spawn_with(
        &[&addr, "--password-file", dir.join("nope").to_str().unwrap()],
        Stdio::null(),
    );
    assert_eq!(missing.wait_exit().code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reconnect_answers_the_password_prompt_by_itself() {
    let dir = temp_dir();
    let accounts = dir.join("accounts.txt");
    let mut server = start(&accounts);
    let addr = server.addr.to_string();
    let mut alice = Client::spawn(&[&addr, "--nick", "alice", "--reconnect"]);
    alice.send("alice-pass-1");
    alice.expect_line("* Account alice registered.");
    alice.expect_line("* The room contains: ");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // Same accounts file, same port: the client logs in again with the
    // password it kept in memory, without another stdin line.
    let _server2 = ServerOn::start_with(&addr, &["--accounts", accounts.to_str().unwrap()]);
    let mut bob = join(&addr, "bob", "bob-pass-12");
    alice.expect_line("* The room contains: bob");
    bob.expect_line("* alice has entered the room");
    alice.send("back");
    bob.expect_line("[alice] back");
    let _ = std::fs::remove_dir_all(&dir);
}
