//! `--quiet-joins-above N` against the real binary, in both dialects: in a
//! room with more than N members (the one joining or leaving counted),
//! joins are not announced and leaves are not told to line users; an IRC
//! member sees a quiet joiner's JOIN right before its first words, and its
//! PART or QUIT only if it saw it join (or saw it in NAMES, having joined
//! after it). `/who` and NAMES list everyone. Without the option nothing
//! changes (tests/rooms.rs, tests/irc.rs, the golden transcripts).
//!
//! "Nothing arrived" is checked with a barrier, never a sleep: the other
//! side's action is complete (its own answer came back), then the observer
//! asks for something (`/who`, `PING`) and must get that answer first.

mod common;

use common::TestServer;
use common::irc::Irc;

/// Line users only, `--quiet-joins-above 2`: the first two joins are
/// announced, the third and fourth are not; `/who` lists all four; a quiet
/// joiner's words arrive with no "entered" line; leaves from the room of
/// four and three are not told, the leave from the room of two is.
#[test]
fn line_users_hear_no_comings_and_goings_in_a_big_room() {
    let s = TestServer::start(&["--quiet-joins-above", "2"]);
    let mut alice = s.join("alice");
    let mut bob = s.join("bob");
    alice.expect("* bob has entered the room");
    let mut carol = s.join("carol");
    let mut dave = s.join("dave");
    assert_eq!(alice.sync(), Vec::<String>::new(), "carol, dave: quiet");
    assert_eq!(bob.sync(), Vec::<String>::new());
    alice.send("/who");
    alice.expect("* 4 users online: alice, bob, carol, dave");

    carol.send("hi");
    alice.expect("[carol] hi");
    bob.expect("[carol] hi");
    dave.expect("[carol] hi");

    dave.send("/quit");
    dave.expect("* Goodbye.");
    carol.send("/quit bye");
    carol.expect("* Goodbye.");
    assert_eq!(alice.sync(), Vec::<String>::new(), "no leave told");
    bob.send("/quit");
    bob.expect("* Goodbye.");
    alice.expect("* bob has left the room (quit)");
}

/// IRC only, `--quiet-joins-above 2`: the third and fourth joiners' JOINs
/// are not sent; NAMES lists them; the fourth's first PRIVMSG comes right
/// after its JOIN to those who joined before it; a hidden member's QUIT
/// reaches only the member who joined after it (NAMES showed it there),
/// a revealed member's QUIT reaches everyone.
#[test]
fn irc_users_see_a_quiet_join_when_the_joiner_speaks() {
    let s = TestServer::start(&["--quiet-joins-above", "2"]);
    let mut i1 = Irc::register(s.addr, "i1");
    let mut i2 = Irc::register(s.addr, "i2");
    let mut i3 = Irc::register(s.addr, "i3");
    let mut i4 = Irc::register(s.addr, "i4");
    i1.join("#big");
    i2.join("#big");
    i1.expect(":i2!i2@loopchat JOIN #big");
    i3.join("#big");
    let own = i4.join("#big");
    assert_eq!(own[0], ":i4!i4@loopchat JOIN #big", "its own JOIN echo");
    assert!(
        own.contains(&":loopchat 353 i4 = #big :i1 i2 i3 i4".to_string()),
        "{own:?}"
    );
    for c in [&mut i1, &mut i2, &mut i3] {
        assert_eq!(c.sync(), Vec::<String>::new(), "{}: no quiet JOIN", c.nick);
    }
    i1.send("NAMES #big");
    i1.expect(":loopchat 353 i1 = #big :i1 i2 i3 i4");
    i1.expect(":loopchat 366 i1 #big :End of /NAMES list");

    i4.send("PRIVMSG #big :hello");
    for c in [&mut i1, &mut i2, &mut i3] {
        c.expect(":i4!i4@loopchat JOIN #big");
        c.expect(":i4!i4@loopchat PRIVMSG #big :hello");
    }
    i4.send("PRIVMSG #big :again");
    for c in [&mut i1, &mut i2, &mut i3] {
        c.expect(":i4!i4@loopchat PRIVMSG #big :again");
    }

    // i3 is still hidden: only i4 (joined after it) hears it go.
    i3.quit();
    i4.expect(":i3!i3@loopchat QUIT :Quit");
    assert_eq!(i1.sync(), Vec::<String>::new(), "no QUIT for a hidden one");
    assert_eq!(i2.sync(), Vec::<String>::new());

    // i4 was revealed: everyone hears it go.
    i4.quit();
    i1.expect(":i4!i4@loopchat QUIT :Quit");
    i2.expect(":i4!i4@loopchat QUIT :Quit");
}

/// Line and IRC users in one room, `--quiet-joins-above 2`: a quiet line
/// joiner's first words bring its JOIN to the IRC member who joined
/// before it, not to the one who joined after it (it had it in NAMES)
/// nor anything extra to the line user; its QUIT from a big room reaches
/// the IRC users and not the line user; a hidden IRC user with nobody
/// after it leaves unheard; a PART from a room of two is told to the line
/// user again.
#[test]
fn a_mixed_room_with_quiet_joins() {
    let s = TestServer::start(&["--quiet-joins-above", "2"]);
    let mut alice = s.join("alice");
    let mut irma = Irc::register(s.addr, "irma");
    irma.join("#lobby");
    alice.expect("* irma has entered the room");
    let mut bob = s.join("bob");
    let mut ivan = Irc::register(s.addr, "ivan");
    let own = ivan.join("#lobby");
    assert!(
        own.contains(&":loopchat 353 ivan = #lobby :alice irma bob ivan".to_string()),
        "{own:?}"
    );
    assert_eq!(irma.sync(), Vec::<String>::new(), "bob, ivan: quiet");
    alice.send("/who");
    alice.expect("* 4 users online: alice, irma, bob, ivan");

    bob.send("hi");
    alice.expect("[bob] hi");
    irma.expect(":bob!bob@loopchat JOIN #lobby");
    irma.expect(":bob!bob@loopchat PRIVMSG #lobby :hi");
    ivan.expect(":bob!bob@loopchat PRIVMSG #lobby :hi");

    bob.send("/quit");
    bob.expect("* Goodbye.");
    irma.expect(":bob!bob@loopchat QUIT :Quit");
    ivan.expect(":bob!bob@loopchat QUIT :Quit");
    ivan.quit();
    assert_eq!(irma.sync(), Vec::<String>::new(), "ivan was hidden");
    assert_eq!(alice.sync(), Vec::<String>::new(), "quiet for line users");

    // alice and irma: a room of two is not above 2.
    irma.send("PART #lobby :done");
    irma.expect(":irma!irma@loopchat PART #lobby :done");
    alice.expect("* irma has left the room (left: done)");
}

/// A renamed quiet joiner: the rename reaches the members who joined after
/// it, not those before it, and its later JOIN names it by its new nick.
#[test]
fn a_hidden_member_renames_unseen_by_those_before_it() {
    let s = TestServer::start(&["--quiet-joins-above", "1"]);
    let mut i1 = Irc::register(s.addr, "i1");
    let mut i2 = Irc::register(s.addr, "i2");
    let mut i3 = Irc::register(s.addr, "i3");
    i1.join("#r");
    i2.join("#r");
    i3.join("#r");
    i2.send("NICK i2b");
    i2.expect(":i2!i2@loopchat NICK :i2b");
    i3.expect(":i2!i2@loopchat NICK :i2b");
    assert_eq!(i1.sync(), Vec::<String>::new(), "i1 never saw i2 join");
    i2.send("NOTICE #r :here");
    i1.expect(":i2b!i2@loopchat JOIN #r");
    i1.expect(":i2b!i2@loopchat NOTICE #r :here");
    i3.expect(":i2b!i2@loopchat NOTICE #r :here");
}
