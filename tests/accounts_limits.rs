//! Accounts under abuse, against the real binary: the budget of new
//! accounts (per address and server-wide), and a name typed without its
//! password, which must not lock the account's owner out.

mod common;

use common::accounts::{accounts_file_in, begin, login, password_prompt, start};

fn accounts_file() -> std::path::PathBuf {
    accounts_file_in("accounts-limits")
}

/// Loopback is one address: at the default budget of 5 new accounts per
/// hour, the sixth registration from 127.0.0.1 is refused with a clear
/// line and the name is asked again; logging in to existing accounts still
/// works, on that connection and on new ones.
#[test]
fn new_accounts_per_address_are_budgeted() {
    let file = accounts_file();
    let s = start(&file, &[]);
    for i in 1..=5 {
        let mut c = begin(&s, &format!("user{i}"));
        c.send("user-password");
        c.expect(&format!("* Account user{i} registered."));
    }
    let mut c = begin(&s, "user6");
    c.send("user-password");
    c.expect(
        "! Too many new accounts from your address (at most 5 per hour). \
         Try again in 12 min, or choose an existing account's name.",
    );
    // Back at the name prompt: an existing account logs in.
    c.send("user1");
    c.expect(&password_prompt("user1"));
    c.send("user-password");
    c.expect("* The room contains: ");
    c.expect("* Welcome, user1! 1 user online in #lobby. Type /help for commands.");
    drop(login(&s, "user2", "user-password"));

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\nuser5 $argon2id$"), "{text}");
    assert!(!text.contains("user6"), "{text}");
    let log = s.log();
    assert!(
        log.contains("new account user6 refused: 5 per hour from that address"),
        "{log}"
    );
}

/// The server-wide budget (here 2 a minute, the per-address one off):
/// the third registration is refused with its own line.
#[test]
fn new_accounts_per_server_are_budgeted() {
    let file = accounts_file();
    let s = start(
        &file,
        &[
            "--new-accounts-per-ip",
            "0",
            "--new-accounts-per-minute",
            "2",
        ],
    );
    for name in ["ann", "ben"] {
        let mut c = begin(&s, name);
        c.send("some-password");
        c.expect(&format!("* Account {name} registered."));
    }
    let mut c = begin(&s, "cat");
    c.send("some-password");
    c.expect(
        "! Too many new accounts on this server right now (at most 2 per minute). \
         Try again in 30 s, or choose an existing account's name.",
    );
    c.send("ann");
    c.expect(&password_prompt("ann"));
    c.send("some-password");
    c.expect("* The room contains: ");
}

/// A squatter types the owner's name and sits on the password prompt. The
/// owner can still log in: the first right password wins, and the squatter
/// is told and asked for another name. Same for a new name typed on two
/// connections: the first to register it wins.
#[test]
fn a_name_waiting_for_its_password_does_not_lock_out_the_owner() {
    let file = accounts_file();
    let s = start(&file, &[]);
    let mut a = login(&s, "alice", "alice-password");
    a.expect("* You are alone in the room.");
    a.send("/quit");
    a.expect("* Goodbye.");
    a.expect_closed();

    let mut squatter = begin(&s, "alice");
    let mut owner = begin(&s, "ALICE");
    owner.send("alice-password");
    owner.expect("* The room contains: ");
    owner.expect("* Welcome, alice! 1 user online in #lobby. Type /help for commands.");
    squatter.expect("! alice has just logged in on another connection. Choose another name.");
    squatter.send("alice");
    squatter.expect("! alice is already logged in (one session per account). Choose another name.");

    // A new name, on two connections at once.
    let mut first = begin(&s, "zoe");
    let mut second = begin(&s, "Zoe");
    first.send("zoe-password");
    first.expect("* Account zoe registered.");
    first.expect("* The room contains: alice");
    second.expect("! zoe has just logged in on another connection. Choose another name.");
    second.send("yann");
    second.expect(&password_prompt("yann"));
}
