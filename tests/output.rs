//! What users receive: long replies arrive whole, a kicked reader gets
//! whole lines, and the small wording fixes of `/who` and `/nick`.

mod common;

use common::TestServer;

/// A reply longer than `--max-sendq` (the room's list at join, `/who`)
/// is one answer, not a reader falling behind: 2,000 users join a server
/// whose cap is 4 KiB, and each gets its whole `/who` (about 14 KB).
#[test]
fn replies_longer_than_the_send_queue_cap_arrive_whole() {
    const USERS: usize = 2000;
    let s = TestServer::start(&[
        "--max-sendq",
        "4k",
        "--max-clients",
        "2100",
        "--max-rate",
        "0",
    ]);
    let nicks: Vec<String> = (0..USERS).map(|i| format!("user{i:04}")).collect();
    let mut clients = Vec::with_capacity(USERS);
    // seen[i]: the arrivals client i has read (it arrived itself at i).
    let mut seen: Vec<usize> = Vec::with_capacity(USERS);
    // Reads the arrivals each client is owed, so that none falls behind by
    // more than its kernel buffers and the 4 KiB cap hold (the test is
    // about one long reply, not about slow readers).
    let catch_up = |clients: &mut Vec<common::Client>, seen: &mut Vec<usize>| {
        let joined = clients.len();
        for (c, next) in clients.iter_mut().zip(seen.iter_mut()) {
            for nick in &nicks[*next..joined] {
                c.expect(&format!("* {nick} has entered the room"));
            }
            *next = joined;
        }
    };
    for (i, nick) in nicks.iter().enumerate() {
        let mut c = s.connect();
        c.send(nick);
        c.expect("* Welcome to loopchat! What shall I call you?");
        c.expect(&format!("* The room contains: {}", nicks[..i].join(", ")));
        c.line_where(|l| l.starts_with("* Welcome, "));
        if i == 0 {
            c.expect("* You are alone in the room.");
        }
        clients.push(c);
        seen.push(i + 1);
        if clients.len() % 100 == 0 {
            catch_up(&mut clients, &mut seen);
        }
    }
    catch_up(&mut clients, &mut seen);
    let who = format!("* {USERS} users online: {}", nicks.join(", "));
    assert!(who.len() > 3 * 4096, "the answer is longer than the cap");
    for c in &mut clients {
        c.send("/who");
    }
    for c in &mut clients {
        c.expect(&who);
    }
}

/// `/nick` to one's own name tells nobody else anything (it used to
/// announce "bob is now known as bob" to the room); a change of case is a
/// rename. `/who` alone says "1 user", not "1 users".
#[test]
fn nick_to_the_same_name_and_who_alone() {
    let s = TestServer::start(&[]);
    let mut bob = s.join("bob");
    bob.send("/nick bob");
    bob.expect("* Your nickname is already bob.");
    bob.send("/who");
    bob.expect("* 1 user online: bob");
    let mut carol = s.join("carol");
    bob.expect("* carol has entered the room");
    bob.send("/nick bob");
    bob.expect("* Your nickname is already bob.");
    bob.send("/nick Bob");
    bob.expect("* bob is now known as Bob");
    // carol's first line after joining is the rename: nothing came before.
    carol.expect("* bob is now known as Bob");
}
