//! The core's events as IRC lines: every byte an IRC client receives from
//! the chat goes through [`render`] (ngIRCd's `irc-write.c` idea: one
//! writer). Lines end in CRLF and never pass 512 bytes; a long text is
//! split into several messages at UTF-8 character boundaries.
//!
//! Every user's prefix is `nick!user@SERVER`: a line user's user name is
//! its nickname, and no address is shown.

use super::commands::{lusers_reply, motd_reply, names_reply, numeric};
use super::message::{self, split_utf8, text_room};
use super::{IrcConfig, VERSION};
use crate::chat::{Event, LeaveReason, NameHolder, Refusal, TextKind};

/// Appends `event` as IRC lines for a client whose nick is `me` (`*`
/// before registration; unused for events to many, which never depend on
/// the recipient). `negotiating`: the client is inside CAP negotiation
/// (a SASL login's answer is 903/904 then, and the welcome waits for
/// `CAP END`). Events IRC has no use for render nothing.
pub fn render(event: &Event<'_>, me: &str, negotiating: bool, cfg: &IrcConfig, out: &mut Vec<u8>) {
    let server = cfg.server.as_str();
    let num = |out: &mut Vec<u8>, code: &str, params: &[&str]| {
        numeric(out, server, code, me, params);
    };
    let prefix = |nick: &str, user: &str| format!("{nick}!{user}@{server}");
    match *event {
        Event::NickInvalid(e) => num(out, "432", &["*", &format!("Erroneous nickname: {e}")]),
        Event::NameInUse { nick, holder } => {
            let why = match holder {
                NameHolder::Nickname => "Nickname is already in use",
                NameHolder::Session => "Account is already logged in",
            };
            num(out, "433", &[nick, why]);
        }
        // ERR_UNAVAILRESOURCE: what IRC servers answer for a nickname
        // they cannot give out for now.
        Event::NamesUnavailable { nick } => num(
            out,
            "437",
            &[
                nick,
                "Nick is temporarily unavailable (the other servers are unreachable)",
            ],
        ),
        Event::NickCollision { old, new } => notice(
            out,
            server,
            me,
            &format!(
                "Nick collision: {old} was also taken on another server while the servers were out of touch; you are now {new}"
            ),
        ),
        Event::PasswordAsked { .. } | Event::StillChecking => {}
        Event::AccountRegistered { name } => {
            notice(out, server, me, &format!("Account {name} registered."));
        }
        Event::WrongPassword { .. } if negotiating => {
            num(out, "904", &["SASL authentication failed"]);
        }
        Event::WrongPassword { .. } => num(out, "464", &["Password incorrect"]),
        Event::PasswordTooShort { min, .. } => num(
            out,
            "464",
            &[&format!(
                "Password too short: a new account needs at least {min} characters"
            )],
        ),
        Event::SaveFailed { name } => num(
            out,
            "464",
            &[&format!("Could not register {name}: try again later")],
        ),
        Event::NoNewAccounts(spent) => num(
            out,
            "464",
            &[&format!(
                "Too many new accounts now (at most {}); try an existing account",
                spent.rate
            )],
        ),
        Event::LoginLost { name } => num(out, "433", &[name, "Account is already logged in"]),
        Event::Registered { nick, .. } if negotiating => {
            let mask = format!("{nick}!{nick}@{server}");
            let text = format!("You are now logged in as {nick}");
            numeric(out, server, "900", nick, &[&mask, nick, &text]);
            numeric(
                out,
                server,
                "903",
                nick,
                &["SASL authentication successful"],
            );
        }
        Event::Registered { nick, users, rooms } => {
            welcome(out, cfg, nick, users, rooms);
        }
        // Line users only.
        Event::Welcome { .. } | Event::Moved { .. } | Event::Users { .. } => {}
        Event::RoomList { .. } | Event::AlreadyInRoom { .. } | Event::Alone => {}
        Event::Joined {
            nick,
            user,
            room,
            names,
            topic,
        } => {
            line(out, &prefix(nick, user), "JOIN", &[room], false);
            if let Some((text, by)) = topic {
                num(out, "332", &[room, text]);
                num(out, "333", &[room, by, "0"]);
            }
            names_reply(out, server, me, room, names);
        }
        // A quiet one too: the client's member list must match the
        // PARTs and QUITs it will get.
        Event::Entered {
            nick, user, room, ..
        } => {
            line(out, &prefix(nick, user), "JOIN", &[room], false);
        }
        Event::Left {
            nick,
            user,
            room,
            reason,
            ..
        } => {
            let why = match reason {
                LeaveReason::Part(None) => None,
                LeaveReason::Part(Some(r)) => Some(r.clone()),
                other => Some(other.to_string()),
            };
            match why {
                Some(why) => line(out, &prefix(nick, user), "PART", &[room, &why], true),
                None => line(out, &prefix(nick, user), "PART", &[room], false),
            }
        }
        Event::Quit {
            nick, user, reason, ..
        } => {
            let why = match reason {
                LeaveReason::Quit(None) => "Quit".to_string(),
                LeaveReason::Quit(Some(r)) => format!("Quit: {r}"),
                other => other.to_string(),
            };
            line(out, &prefix(nick, user), "QUIT", &[&why], true);
        }
        Event::Said {
            from,
            user,
            room,
            text,
            kind,
        } => text_lines(out, &prefix(from, user), room, text, kind),
        Event::PrivateFrom {
            from,
            user,
            text,
            kind,
        } => text_lines(out, &prefix(from, user), me, text, kind),
        // IRC does not echo a user's own messages.
        Event::PrivateTo { .. } => {}
        Event::RoomInvalid { name } => num(out, "403", &[name, "No such channel"]),
        Event::TooManyRooms { room } => {
            num(out, "405", &[room, "You have joined too many channels"]);
        }
        Event::NotInRoom { room } => num(out, "442", &[room, "You're not on that channel"]),
        Event::Topic { room, topic: None } => num(out, "331", &[room, "No topic is set"]),
        Event::Topic {
            room,
            topic: Some((text, by)),
        } => {
            num(out, "332", &[room, text]);
            num(out, "333", &[room, by, "0"]);
        }
        Event::TopicChanged {
            by,
            user,
            room,
            text,
        } => line(out, &prefix(by, user), "TOPIC", &[room, text], true),
        Event::Renamed { old, user, new } => line(out, &prefix(old, user), "NICK", &[new], true),
        Event::NickUnchanged { .. } => {}
        Event::NickLocked => num(
            out,
            "447",
            &["With accounts, your nickname is your account name"],
        ),
        Event::NoSuchUser { nick } => num(out, "401", &[nick, "No such nick/channel"]),
        // Private conversations are a line-dialect feature: an IRC user is
        // never invited (the inviter is told to use /msg) and never invites.
        Event::InviteSelf
        | Event::AlreadyInPrivate { .. }
        | Event::InviteeBusy { .. }
        | Event::InviteeCannot { .. }
        | Event::AlreadyInvited { .. }
        | Event::Invited { .. }
        | Event::InviteSent { .. }
        | Event::NoInvitation { .. }
        | Event::Declined { .. }
        | Event::YouDeclined { .. }
        | Event::CannotAccept { .. }
        | Event::Accepted { .. }
        | Event::PrivateStarted { .. }
        | Event::NotInPrivate
        | Event::PrivateEnded { .. }
        | Event::PrivateEndedBy { .. }
        | Event::PartnerLeft { .. }
        | Event::InviteExpiredTo { .. }
        | Event::InviteExpiredFrom { .. } => {}
        Event::Goodbye => error(out, "Closing link: quit"),
        Event::ShuttingDown => error(out, "Server is shutting down"),
        Event::Ping { .. } => line(out, server, "PING", &[server], true),
        Event::SlowDown { rate, burst } => notice(
            out,
            server,
            me,
            &format!(
                "Slow down: at most {rate} lines per second (bursts of {burst}). Your lines are delayed, not lost."
            ),
        ),
        Event::Refused(refusal) => error(out, &refusal_text(refusal)),
    }
}

/// The welcome burst: 001-005, LUSERS, MOTD.
fn welcome(out: &mut Vec<u8>, cfg: &IrcConfig, nick: &str, users: usize, rooms: usize) {
    let server = cfg.server.as_str();
    let num = |out: &mut Vec<u8>, code: &str, params: &[&str]| {
        numeric(out, server, code, nick, params);
    };
    let text = format!(
        "Welcome to the {} IRC Network, {nick}!{nick}@{server}",
        cfg.network
    );
    num(out, "001", &[&text]);
    let text = format!("Your host is {server}, running version {VERSION}");
    num(out, "002", &[&text]);
    let text = format!("This server was created {}", cfg.created);
    num(out, "003", &[&text]);
    num(out, "004", &[server, VERSION, "i", "nt"]);
    let tokens = [
        "CASEMAPPING=ascii".to_string(),
        "CHANTYPES=#".to_string(),
        "CHANMODES=,,,nt".to_string(),
        "PREFIX=(o)@".to_string(),
        format!("NICKLEN={}", crate::protocol::MAX_NICK_LEN),
        format!("CHANNELLEN={}", crate::chat::MAX_ROOM_LEN),
        format!("TOPICLEN={}", super::message::MAX_LINE - 100),
        format!("NETWORK={}", cfg.network),
        format!("CHANLIMIT=#:{}", crate::config::MAX_ROOMS_PER_USER),
        "MODES=1".to_string(),
        "TARGMAX=JOIN:,PART:,PRIVMSG:4,NOTICE:4".to_string(),
    ];
    let mut params: Vec<&str> = tokens.iter().map(String::as_str).collect();
    params.push("are supported by this server");
    num(out, "005", &params);
    lusers_reply(out, server, nick, users, rooms);
    motd_reply(out, cfg, nick);
}

/// PRIVMSG (or NOTICE, or a CTCP ACTION) lines from `source` to `target`,
/// as many as the text needs to stay within 512 bytes.
fn text_lines(out: &mut Vec<u8>, source: &str, target: &str, text: &str, kind: TextKind) {
    let command = if kind == TextKind::Notice {
        "NOTICE"
    } else {
        "PRIVMSG"
    };
    // The CTCP wrapping takes 9 bytes of every piece's room.
    let wrap = if kind == TextKind::Action { 9 } else { 0 };
    let room = text_room(source, command, target).saturating_sub(wrap);
    for piece in split_utf8(text, room) {
        if kind == TextKind::Action {
            let action = format!("\u{1}ACTION {piece}\u{1}");
            line(out, source, command, &[target, &action], true);
        } else {
            line(out, source, command, &[target, piece], true);
        }
    }
}

/// `:source COMMAND params\r\n`.
fn line(out: &mut Vec<u8>, source: &str, command: &str, params: &[&str], colon_last: bool) {
    message::write_line(out, Some(source), command, params, colon_last);
}

fn notice(out: &mut Vec<u8>, server: &str, me: &str, text: &str) {
    line(out, server, "NOTICE", &[me, text], true);
}

/// `ERROR :text`: the last line before the server closes.
fn error(out: &mut Vec<u8>, text: &str) {
    message::write_line(out, None, "ERROR", &[text], true);
}

/// Why a connection is being closed, for `ERROR`.
fn refusal_text(refusal: Refusal) -> String {
    match refusal {
        Refusal::Full { max } => format!("Server is full ({max} clients max)"),
        Refusal::TooManyFromAddress { max } => {
            format!("Too many connections from your address (max {max})")
        }
        Refusal::NoDescriptors => "Server is out of file descriptors".into(),
        Refusal::RegisterTimeout { secs } => {
            format!("Registration timeout: not registered within {secs} s")
        }
        Refusal::SendQueueExceeded => "SendQ exceeded".into(),
        Refusal::IdleTimeout { secs } => format!("Ping timeout: {secs} seconds"),
    }
}

/// The closing line for `refusal`, for a connection known to speak IRC.
pub fn refusal_line(refusal: Refusal) -> Vec<u8> {
    let mut out = Vec::new();
    error(&mut out, &refusal_text(refusal));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(event: &Event<'_>, negotiating: bool) -> Vec<String> {
        let mut out = Vec::new();
        render(event, "me", negotiating, &IrcConfig::default(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with("\r\n"));
        text.split_terminator("\r\n").map(str::to_string).collect()
    }

    #[test]
    fn events_as_irc_lines() {
        let said = Event::Said {
            from: "ann",
            user: "a",
            room: "#lobby",
            text: "hi",
            kind: TextKind::Action,
        };
        assert_eq!(
            lines(&said, false),
            [":ann!a@loopchat PRIVMSG #lobby :\u{1}ACTION hi\u{1}"]
        );
        let joined = Event::Joined {
            nick: "me",
            user: "m",
            room: "#a",
            names: &["ann", "me"],
            topic: Some(("tea", "ann")),
        };
        assert_eq!(
            lines(&joined, false),
            [
                ":me!m@loopchat JOIN #a",
                ":loopchat 332 me #a :tea",
                ":loopchat 333 me #a ann :0",
                ":loopchat 353 me = #a :ann me",
                ":loopchat 366 me #a :End of /NAMES list",
            ]
        );
        let reason = LeaveReason::Quit(Some("bye".into()));
        // IRC shows the quiet forms (`--quiet-joins-above`) like the
        // others: its member lists must stay right.
        for quiet in [false, true] {
            let quit = Event::Quit {
                nick: "ann",
                user: "a",
                reason: &reason,
                quiet,
            };
            assert_eq!(lines(&quit, false), [":ann!a@loopchat QUIT :Quit: bye"]);
            let moved = LeaveReason::Moved("#b".into());
            let left = Event::Left {
                nick: "ann",
                user: "a",
                room: "#a",
                reason: &moved,
                quiet,
            };
            assert_eq!(
                lines(&left, false),
                [":ann!a@loopchat PART #a :moved to #b"]
            );
            let entered = Event::Entered {
                nick: "ann",
                user: "a",
                room: "#a",
                quiet,
            };
            assert_eq!(lines(&entered, false), [":ann!a@loopchat JOIN #a"]);
        }
        // Line-dialect matters render nothing.
        assert!(lines(&Event::Alone, false).is_empty());
        assert!(
            lines(
                &Event::PrivateTo {
                    to: "x",
                    text: "y",
                    kind: TextKind::Plain
                },
                false
            )
            .is_empty()
        );
    }

    #[test]
    fn registration_inside_cap_negotiation_is_the_sasl_answer() {
        let reg = Event::Registered {
            nick: "sam",
            users: 1,
            rooms: 1,
        };
        let sasl = lines(&reg, true);
        assert_eq!(sasl.len(), 2);
        assert!(sasl[0].starts_with(":loopchat 900 sam sam!sam@loopchat sam :"));
        assert!(sasl[1].starts_with(":loopchat 903 sam "));
        let burst = lines(&reg, false);
        assert!(burst[0].starts_with(":loopchat 001 sam "));
        assert_eq!(
            burst.last().unwrap(),
            ":loopchat 422 sam :MOTD File is missing"
        );
        let wrong = Event::WrongPassword {
            name: "sam",
            left: 0,
        };
        assert_eq!(
            lines(&wrong, true),
            [":loopchat 904 me :SASL authentication failed"]
        );
        assert_eq!(
            lines(&wrong, false),
            [":loopchat 464 me :Password incorrect"]
        );
    }

    #[test]
    fn long_text_becomes_several_lines_within_512_bytes() {
        let text = "ö".repeat(400);
        let said = Event::Said {
            from: "ann",
            user: "a",
            room: "#lobby",
            text: &text,
            kind: TextKind::Plain,
        };
        let got = lines(&said, false);
        assert_eq!(got.len(), 2);
        let joined: String = got
            .iter()
            .map(|l| l.strip_prefix(":ann!a@loopchat PRIVMSG #lobby :").unwrap())
            .collect();
        assert_eq!(joined, text);
        assert!(got.iter().all(|l| l.len() + 2 <= 512));
    }
}
