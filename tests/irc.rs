//! The IRC dialect against the real binary: registration with and without
//! CAP, the command table's answers, sniffing in both orders, line and IRC
//! users in one room, `--irc-listen`, one thread. Real clients (irssi,
//! weechat, ii, sic) are in tests/irc_clients.rs.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::irc::Irc;

/// Registration without CAP: 001 to 005, LUSERS, 422; commands before it
/// get 451; NICK and USER errors.
#[test]
fn registration_and_its_errors() {
    let s = TestServer::start(&[]);
    let mut c = Irc::connect(s.addr);
    c.send("NICK bad!nick");
    assert!(
        c.line()
            .starts_with(":loopchat 432 * bad!nick :Erroneous nickname")
    );
    c.send("NICK");
    c.expect(":loopchat 431 * :No nickname given");
    c.send("USER x");
    c.expect(":loopchat 461 * USER :Not enough parameters");
    c.send("JOIN #lobby");
    c.expect(":loopchat 451 * :You have not registered");
    c.send("NICK amy");
    c.send("USER amy 0 * :Amy Pond");
    let burst = c.until(" 422 ");
    let codes: Vec<&str> = burst
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        [
            "001", "002", "003", "004", "005", "251", "252", "253", "254", "255", "422"
        ]
    );
    assert!(burst[0].starts_with(":loopchat 001 amy :Welcome to the loopchat IRC Network"));
    for token in [
        "CASEMAPPING=ascii",
        "CHANTYPES=#",
        "CHANMODES=,,,nt",
        "PREFIX=(o)@",
    ] {
        assert!(burst[4].contains(token), "{token} in {}", burst[4]);
    }
    c.send("USER amy 0 * :again");
    c.expect(":loopchat 462 amy :You may not reregister");
    // Taken nicknames, across dialects.
    let _line_user = s.join("rory");
    let mut d = Irc::connect(s.addr);
    d.send("NICK Rory");
    d.expect(":loopchat 433 * Rory :Nickname is already in use");
    c.send("NICK AMY");
    c.expect(":amy!amy@loopchat NICK :AMY");
    assert_eq!(s.threads(), 1);
}

/// CAP negotiation: LS answers (an empty list), REQ is refused, and
/// registration waits for CAP END.
#[test]
fn cap_negotiation_holds_registration() {
    let s = TestServer::start(&[]);
    let mut c = Irc::connect(s.addr);
    c.send("CAP LS 302");
    c.expect(":loopchat CAP * LS :");
    c.send("NICK kim");
    c.send("USER kim 0 * :Kim");
    c.send("CAP REQ :multi-prefix");
    c.expect(":loopchat CAP * NAK :multi-prefix");
    c.send("PING :before-end");
    c.expect(":loopchat PONG loopchat :before-end");
    c.send("CAP END");
    assert!(c.line().starts_with(":loopchat 001 kim "));
}

/// The answers irssi, weechat and hexchat wait for, row by row.
#[test]
fn command_table() {
    // Flood control off: this test sends far more than a client would.
    let s = TestServer::start(&["--motd", "tests/irc_motd.txt", "--max-rate", "0"]);
    let mut a = Irc::connect(s.addr);
    a.send("NICK ann");
    a.send("USER ann 0 * :Ann");
    let burst = a.until(" 376 ");
    assert!(
        burst
            .iter()
            .any(|l| l.contains(" 375 ann :- loopchat Message of the day"))
    );
    assert!(burst.iter().any(|l| l == ":loopchat 372 ann :- Be kind."));
    a.nick = "ann".into();
    let mut b = Irc::register(s.addr, "ben");

    a.send("PING");
    a.expect(":loopchat 409 ann :No origin specified");
    a.send("JOIN #a,#b");
    a.expect(":ann!ann@loopchat JOIN #a");
    a.expect(":loopchat 353 ann = #a :ann");
    a.expect(":loopchat 366 ann #a :End of /NAMES list");
    a.expect(":ann!ann@loopchat JOIN #b");
    a.until(" 366 ");
    a.send("JOIN bad");
    a.expect(":loopchat 403 ann bad :No such channel");
    b.send("JOIN #A");
    b.expect(":ben!ben@loopchat JOIN #a");
    b.expect(":loopchat 353 ben = #a :ann ben");
    b.until(" 366 ");
    a.expect(":ben!ben@loopchat JOIN #a");

    // PRIVMSG and NOTICE: relayed with the prefix, not echoed; errors.
    a.send("PRIVMSG #a :hello ben");
    b.expect(":ann!ann@loopchat PRIVMSG #a :hello ben");
    a.send("NOTICE ben :psst");
    b.expect(":ann!ann@loopchat NOTICE ben :psst");
    a.send("PRIVMSG");
    a.expect(":loopchat 411 ann :No recipient given (PRIVMSG)");
    a.send("PRIVMSG ben");
    a.expect(":loopchat 412 ann :No text to send");
    a.send("PRIVMSG zed :hi");
    a.expect(":loopchat 401 ann zed :No such nick/channel");
    a.send("PRIVMSG #nowhere :hi");
    a.expect(":loopchat 403 ann #nowhere :No such channel");
    b.send("PRIVMSG #b :hi");
    b.expect(":loopchat 404 ben #b :Cannot send to channel");
    a.send("NOTICE zed :nothing comes back");
    assert_eq!(a.sync(), Vec::<String>::new());

    // TOPIC, NAMES, LIST, WHO, WHOIS, MODE.
    a.send("TOPIC #a");
    a.expect(":loopchat 331 ann #a :No topic is set");
    a.send("TOPIC #a :tea time");
    a.expect(":ann!ann@loopchat TOPIC #a :tea time");
    b.expect(":ann!ann@loopchat TOPIC #a :tea time");
    b.send("TOPIC #b");
    b.expect(":loopchat 442 ben #b :You're not on that channel");
    b.send("NAMES #a");
    b.expect(":loopchat 353 ben = #a :ann ben");
    b.expect(":loopchat 366 ben #a :End of /NAMES list");
    b.send("LIST");
    let list = b.until(" 323 ");
    assert!(
        list.contains(&":loopchat 322 ben #a 2 :tea time".to_string()),
        "{list:?}"
    );
    assert!(
        list.contains(&":loopchat 322 ben #lobby 0 :".to_string()),
        "{list:?}"
    );
    b.send("WHO #a");
    b.expect(":loopchat 352 ben #a ann loopchat loopchat ann H :0 ann");
    b.expect(":loopchat 352 ben #a ben loopchat loopchat ben H :0 ben");
    b.expect(":loopchat 315 ben #a :End of /WHO list");
    b.send("WHO nobody");
    b.expect(":loopchat 315 ben nobody :End of /WHO list");
    b.send("WHOIS ann");
    b.expect(":loopchat 311 ben ann ann loopchat * :ann");
    b.expect(":loopchat 312 ben ann loopchat :loopchat");
    b.expect(":loopchat 319 ben ann :#a #b");
    b.expect(":loopchat 318 ben ann :End of /WHOIS list");
    b.send("WHOIS zed");
    b.expect(":loopchat 401 ben zed :No such nick/channel");
    b.expect(":loopchat 318 ben zed :End of /WHOIS list");
    b.send("MODE #a");
    b.expect(":loopchat 324 ben #a :+nt");
    b.send("MODE #a b");
    b.expect(":loopchat 368 ben #a :End of channel ban list");
    b.send("MODE #a +o ann");
    b.expect(":loopchat 482 ben #a :You're not channel operator");
    b.send("MODE ben");
    b.expect(":loopchat 221 ben :+");
    b.send("MODE ben +i");
    b.send("MODE ann");
    b.expect(":loopchat 502 ben :Can't change mode for other users");

    // The small ones.
    b.send("USERHOST ann zed");
    b.expect(":loopchat 302 ben :ann=+ann@loopchat");
    b.send("ISON zed ann");
    b.expect(":loopchat 303 ben :ann");
    b.send("AWAY :lunch");
    b.expect(":loopchat 306 ben :You have been marked as being away");
    b.send("AWAY");
    b.expect(":loopchat 305 ben :You are no longer marked as being away");
    b.send("LUSERS");
    let l = b.line();
    assert!(l.starts_with(":loopchat 251 ben :There are 2 users"), "{l}");
    b.until(" 255 ");
    b.send("VERSION");
    assert!(b.line().starts_with(":loopchat 351 ben loopchat-"));
    b.send("TIME");
    assert!(b.line().starts_with(":loopchat 391 ben loopchat :"));
    b.send("FROB x");
    b.expect(":loopchat 421 ben FROB :Unknown command");

    // PART is echoed to all; QUIT goes to those sharing a room.
    b.send("PART #a :bye now");
    b.expect(":ben!ben@loopchat PART #a :bye now");
    a.expect(":ben!ben@loopchat PART #a :bye now");
    b.send("PART #a");
    b.expect(":loopchat 442 ben #a :You're not on that channel");
    b.send("JOIN #b");
    b.until(" 366 ");
    a.expect(":ben!ben@loopchat JOIN #b");
    a.send("JOIN 0");
    a.expect(":ann!ann@loopchat PART #a");
    a.expect(":ann!ann@loopchat PART #b");
    b.expect(":ann!ann@loopchat PART #b");
    b.send("QUIT :see you");
    b.expect("ERROR :Closing link: quit");
    assert_eq!(s.threads(), 1);
}

/// Line users and IRC users in one room see each other's lines, actions,
/// joins, leaves, renames and private lines; `/pm` to an IRC user says to
/// use `/msg`; a long line is split into 512-byte PRIVMSGs on character
/// boundaries.
#[test]
fn line_and_irc_users_share_a_room() {
    let s = TestServer::start(&["--max-line", "2000"]);
    let mut nc = s.join("nelly");
    let mut irc = Irc::register(s.addr, "ivan");
    irc.send("JOIN #lobby");
    irc.expect(":ivan!ivan@loopchat JOIN #lobby");
    irc.expect(":loopchat 353 ivan = #lobby :nelly ivan");
    irc.until(" 366 ");
    nc.expect("* ivan has entered the room");

    nc.send("hello irc");
    irc.expect(":nelly!nelly@loopchat PRIVMSG #lobby :hello irc");
    nc.send("/me waves");
    irc.expect(":nelly!nelly@loopchat PRIVMSG #lobby :\u{1}ACTION waves\u{1}");
    nc.send("/msg ivan psst");
    irc.expect(":nelly!nelly@loopchat PRIVMSG ivan :psst");
    nc.expect("(-> ivan) psst");
    irc.send("PRIVMSG #lobby :hello line");
    nc.expect("[ivan] hello line");
    irc.send("PRIVMSG #lobby :\u{1}ACTION bows\u{1}");
    nc.expect("~ ivan bows");
    irc.send("PRIVMSG nelly :just you");
    nc.expect("(ivan) just you");
    irc.send("PRIVMSG #lobby :\u{1b}[2J colours");
    irc.expect(":loopchat NOTICE ivan :Control characters are not allowed; message discarded");
    nc.send("/pm ivan");
    nc.expect("! ivan is on IRC, where private conversations do not exist; use /msg ivan TEXT.");
    irc.send("NICK ivana");
    irc.expect(":ivan!ivan@loopchat NICK :ivana");
    nc.expect("* ivan is now known as ivana");
    nc.send("/nick nell");
    irc.expect(":nelly!nelly@loopchat NICK :nell");
    nc.expect("* nelly is now known as nell");

    // 1,500 bytes of two-, three- and four-byte characters.
    let long = "é€😀".repeat(167);
    nc.send(&long);
    let mut got = String::new();
    while got.len() < long.len() {
        let l = irc.line();
        let text = l
            .strip_prefix(":nell!nell@loopchat PRIVMSG #lobby :")
            .unwrap_or_else(|| panic!("{l:?}"));
        got.push_str(text);
    }
    assert_eq!(got, long);

    irc.send("PART #lobby :off");
    nc.expect("* ivana has left the room (left: off)");
    irc.send("JOIN #lobby");
    irc.until(" 366 ");
    nc.expect("* ivana has entered the room");
    irc.send("QUIT :bye");
    nc.expect("* ivana has left the room (quit: bye)");
    drop(nc);
}

/// Sniffing: an IRC client that speaks at once is never greeted; a line
/// user who waits gets the greeting after the hold; one who answers before
/// the greeting is greeted and its line taken as its name.
#[test]
fn the_first_line_picks_the_dialect() {
    let s = TestServer::start(&[]);
    let mut irc = Irc::connect(s.addr);
    irc.send("NICK quick");
    irc.send("USER quick 0 * :Q");
    assert!(irc.line().starts_with(":loopchat 001 quick "));

    let start = Instant::now();
    let mut waiter = s.connect();
    waiter.expect("* Welcome to loopchat! What shall I call you?");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "the greeting is held"
    );
    waiter.send("patient");
    waiter.expect("* The room contains: ");

    let mut eager = s.connect();
    eager.send("eager");
    eager.expect("* Welcome to loopchat! What shall I call you?");
    eager.expect("* The room contains: patient");
    // A Budget Chat name never has a space, so "NICK" alone is a name.
    let mut odd = s.connect();
    odd.send("NICK");
    odd.expect("* Welcome to loopchat! What shall I call you?");
    odd.expect("* The room contains: patient, eager");
}

/// `--irc-listen` adds a port where every connection is IRC from the first
/// byte: no hold, and a line that would be a name elsewhere is IRC there.
#[test]
fn irc_listen_port() {
    let s = TestServer::start(&["--irc-listen", "127.0.0.1:0"]);
    let irc_addr = s.irc_addr().expect("an irc listening line");
    let mut c = Irc::connect(irc_addr);
    c.send("hello");
    c.expect(":loopchat 451 * :You have not registered");
    let mut c = Irc::register(irc_addr, "porter");
    c.send("JOIN #lobby");
    c.until(" 366 ");
    let mut nc = s.join("liner");
    c.expect(":liner!liner@loopchat JOIN #lobby");
    nc.send("over here");
    c.expect(":liner!liner@loopchat PRIVMSG #lobby :over here");
}

/// A fresh accounts file path in a directory of its own.
fn accounts_path(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loopchat-irc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("accounts.txt")
}

/// With `--accounts`: SASL PLAIN registers, then logs in (903 before
/// `CAP END`, the welcome after it); a wrong password gets 904 and the
/// connection ends; `PASS` works without CAP; no password at all is 464.
#[test]
fn accounts_with_sasl_and_pass() {
    let file = accounts_path("sasl");
    let path = file.to_str().expect("utf-8 path");
    let s = TestServer::start(&["--accounts", path]);
    let plain = |user: &str, pw: &str| {
        // base64 of "\0user\0pw", by hand: the test has no base64 crate.
        let raw = format!("\0{user}\0{pw}");
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in raw.as_bytes().chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let sasl = |nick: &str, pw: &str| {
        let mut c = Irc::connect(s.addr);
        c.send("CAP LS 302");
        c.expect(":loopchat CAP * LS :sasl");
        c.send(&format!("NICK {nick}"));
        c.send(&format!("USER {nick} 0 * :{nick}"));
        c.send("CAP REQ :sasl");
        c.expect(":loopchat CAP * ACK :sasl");
        c.send("AUTHENTICATE PLAIN");
        c.expect("AUTHENTICATE +");
        c.send(&format!("AUTHENTICATE {}", plain(nick, pw)));
        c
    };
    let mut c = sasl("sam", "sam-secret");
    c.expect(":loopchat NOTICE * :Account sam registered.");
    c.expect(":loopchat 900 sam sam!sam@loopchat sam :You are now logged in as sam");
    c.expect(":loopchat 903 sam :SASL authentication successful");
    c.send("CAP END");
    assert!(c.line().starts_with(":loopchat 001 sam "));
    c.until(" 422 ");
    c.send("QUIT");
    c.until("ERROR");

    let mut c = sasl("sam", "sam-secret");
    c.expect(":loopchat 900 sam sam!sam@loopchat sam :You are now logged in as sam");
    c.expect(":loopchat 903 sam :SASL authentication successful");
    c.send("QUIT");
    c.until("ERROR");
    let mut wrong = sasl("sam", "not-the-one");
    wrong.expect(":loopchat 904 * :SASL authentication failed");
    wrong.expect("ERROR :Closing link: quit");

    let mut p = Irc::connect(s.addr);
    p.send("PASS pat-secret");
    p.send("NICK pat");
    p.send("USER pat 0 * :Pat");
    p.expect(":loopchat NOTICE * :Account pat registered.");
    assert!(p.line().starts_with(":loopchat 001 pat "));
    let mut none = Irc::connect(s.addr);
    none.send("NICK nopass");
    none.send("USER nopass 0 * :N");
    none.expect(":loopchat 464 * :Password incorrect");
    none.expect("ERROR :Closing link: quit");
}

/// Protections apply to IRC connections unchanged, in IRC's words: the
/// registration timeout and the idle ping (`:loopchat PING :loopchat`, answered by
/// any line), then the idle timeout.
#[test]
fn protections_speak_irc() {
    let s = TestServer::start(&["--register-timeout", "1", "--idle-timeout", "1"]);
    let mut lazy = Irc::connect(s.addr);
    lazy.send("CAP LS");
    lazy.expect(":loopchat CAP * LS :");
    lazy.expect("ERROR :Registration timeout: not registered within 1 s");
    let mut idle = Irc::register(s.addr, "idle");
    idle.expect(":loopchat PING :loopchat");
    idle.send("PONG :loopchat");
    idle.expect(":loopchat PING :loopchat");
    idle.expect("ERROR :Ping timeout: 1 seconds");
}

/// An IRC user may be in at most 50 rooms at once (`CHANLIMIT=#:50`);
/// every JOIN past that gets 405.
#[test]
fn room_limit_per_user() {
    let s = TestServer::start(&["--max-rate", "0"]);
    let mut a = Irc::register(s.addr, "ann");
    // Long names: WHOIS's room list then needs more than one 319 line.
    let many: Vec<String> = (0..52)
        .map(|i| format!("#r{i}{}", "x".repeat(28)))
        .collect();
    for some in many.chunks(10) {
        a.send(&format!("JOIN {}", some.join(",")));
    }
    let answers = a.until(" 405 ");
    assert_eq!(
        answers.last().map(String::as_str),
        Some(
            format!(
                ":loopchat 405 ann {} :You have joined too many channels",
                many[50]
            )
            .as_str()
        )
    );
    a.expect(&format!(
        ":loopchat 405 ann {} :You have joined too many channels",
        many[51]
    ));
    a.send("WHOIS ann");
    let whois = a.until(" 318 ");
    let rooms: usize = whois
        .iter()
        .filter(|l| l.contains(" 319 "))
        .map(|l| l.matches('#').count())
        .sum();
    assert_eq!(rooms, 50);
    assert!(whois.iter().filter(|l| l.contains(" 319 ")).count() > 1);
}

/// Odd and hostile IRC lines get answers, never a crash (the tests run a
/// debug build, whose assertions are on): parameters that cannot be echoed
/// as they are come back as `*`.
#[test]
fn hostile_irc_lines() {
    let s = TestServer::start(&["--max-rate", "0"]);
    let mut c = Irc::register(s.addr, "eve");
    for line in [
        "JOIN ::x",
        "PART ,#a",
        "PRIVMSG :x :y",
        "PART #nowhere, ",
        ":",
        "@",
        "@a :b",
        "NICK :",
        "MODE :",
        "WHOIS :",
        "TOPIC :",
        "CAP",
        "PRIVMSG #lobby \u{0}",
        &format!("PRIVMSG eve :{}", "x".repeat(600)),
    ] {
        c.send(line);
    }
    let answers = c.sync();
    assert!(
        answers
            .iter()
            .any(|l| l == ":loopchat 403 eve * :No such channel"),
        "{answers:?}"
    );
    assert!(answers.iter().any(|l| l.contains(" 417 ")), "{answers:?}");
    assert_eq!(s.threads(), 1);
    let mut other = Irc::register(s.addr, "bob");
    other.send("WHOIS eve");
    other.until(" 318 ");
}
