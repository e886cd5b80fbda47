//! The line dialect: loopchat's own grammar, Budget Chat plus commands
//! (docs/protocol.md). `nc`, telnet and the `loopchat` client speak it.
//!
//! Two pure functions: [`decode`] turns one framed line into a
//! [`Request`] for the core (or answers it right here: a usage error, the
//! help text, a line that is not UTF-8), and [`render`] turns one
//! [`Event`] into the bytes a line user sees. The markers that start each
//! kind of line (`* `, `! `, `[`, `(`, `~ `) are in [`crate::protocol`].

use std::io::Write as _;
use std::time::Duration;

use crate::accounts::Scope;

use crate::chat::{Event, NameHolder, Refusal, Request, Stage, TextKind};
use crate::framing::Frame;
use crate::protocol;

/// The first thing a line user sees.
pub const GREETING: &str = "* Welcome to loopchat! What shall I call you?\n";

const HELP: &str = "\
* Commands:
*   TEXT              say TEXT to everyone (//TEXT sends a literal /TEXT)
*   /who              list the users in your room
*   /join #ROOM       move to another room (created if new)
*   /rooms            list the rooms
*   /topic [TEXT]     show or set your room's topic
*   /nick NEW         change your nickname
*   /msg NICK TEXT    send TEXT to NICK only
*   /me TEXT          an action: '~ YOU TEXT'
*   /pm NICK          invite NICK to a private conversation
*   /accept NICK      accept NICK's invitation (/decline NICK refuses it)
*   /endpm            end your private conversation, back to the room
*   /quit [REASON]    leave (also /exit, /logout)
*   /pong             nothing; any line answers a PING
*   /help             this list
";

/// Reads one frame from a connection at `stage`. Returns the request for
/// the core, or `None` with the dialect's own answer (if any) appended to
/// `reply`. `max_line` is only quoted in the "too long" error.
pub fn decode<'a>(
    frame: Frame<'a>,
    stage: Stage,
    max_line: usize,
    reply: &mut Vec<u8>,
) -> Option<Request<'a>> {
    let line = match frame {
        Frame::TooLong => {
            let _ = writeln!(reply, "! Line too long (max {max_line} bytes); discarded.");
            return None;
        }
        Frame::Line(bytes) => match std::str::from_utf8(bytes) {
            Ok(line) => line,
            Err(_) => {
                reply.extend_from_slice(b"! Line is not valid UTF-8; discarded.\n");
                return None;
            }
        },
    };
    if line.trim_matches([' ', '\t']).is_empty() {
        return None; // empty lines are ignored
    }
    // ESC and friends would let one user drive everyone's terminal.
    if line.chars().any(|c| c.is_control() && c != '\t') {
        reply.extend_from_slice(b"! Control characters are not allowed; line discarded.\n");
        return None;
    }
    match stage {
        Stage::Naming => naming_line(line, reply),
        Stage::Password => Some(password_line(line)),
        Stage::Joined => joined_line(line, reply),
        // The loop stops reading while a name is claimed; other callers
        // get nothing for a line sent then.
        Stage::Claiming | Stage::Gone => None,
    }
}

/// A line from a connection that has no nickname yet: the name, or one of
/// the few commands that make sense before it.
fn naming_line<'a>(line: &'a str, reply: &mut Vec<u8>) -> Option<Request<'a>> {
    let Some(command) = line.strip_prefix('/') else {
        return Some(Request::Register { nick: line.trim() });
    };
    let (word, arg) = split_word(command);
    match word.to_ascii_lowercase().as_str() {
        "nick" => Some(Request::Register { nick: arg.trim() }),
        "quit" | "exit" | "logout" => Some(Request::Quit { reason: None }),
        "help" => {
            reply.extend_from_slice(HELP.as_bytes());
            None
        }
        "pong" => None,
        _ => {
            reply.extend_from_slice(b"! Choose a nickname first.\n");
            None
        }
    }
}

/// A line while the password is asked: the password itself, except the
/// whole lines `/quit`, `/exit`, `/logout`.
fn password_line(line: &str) -> Request<'_> {
    if ["/quit", "/exit", "/logout"]
        .iter()
        .any(|q| line.eq_ignore_ascii_case(q))
    {
        return Request::Quit { reason: None };
    }
    Request::Password { password: line }
}

/// A line from a joined user: chat, or a command.
fn joined_line<'a>(line: &'a str, reply: &mut Vec<u8>) -> Option<Request<'a>> {
    match line.strip_prefix('/') {
        Some(rest) if rest.starts_with('/') => Some(Request::Say {
            room: None,
            text: rest,
            kind: TextKind::Plain,
        }),
        Some(command) => command_line(command, reply),
        None => Some(Request::Say {
            room: None,
            text: line,
            kind: TextKind::Plain,
        }),
    }
}

fn command_line<'a>(command: &'a str, reply: &mut Vec<u8>) -> Option<Request<'a>> {
    let (word, arg) = split_word(command);
    let mut usage = |text: &str| {
        reply.extend_from_slice(text.as_bytes());
        None
    };
    match word.to_ascii_lowercase().as_str() {
        "help" => usage(HELP),
        "who" => Some(Request::Who),
        "join" => match one_word(arg) {
            Some(room) => Some(Request::Join { room }),
            None => usage("! Usage: /join #ROOM\n"),
        },
        "rooms" => Some(Request::Rooms),
        "topic" => {
            let text = arg.trim();
            let text = (!text.is_empty()).then_some(text);
            Some(Request::Topic { room: None, text })
        }
        "nick" => Some(Request::Nick { new: arg.trim() }),
        "msg" => {
            let (to, text) = split_word(arg.trim_start());
            let text = text.trim();
            if to.is_empty() || text.is_empty() {
                return usage("! Usage: /msg NICK TEXT\n");
            }
            Some(Request::Msg {
                to,
                text,
                kind: TextKind::Plain,
            })
        }
        "pm" => match one_word(arg) {
            Some(nick) => Some(Request::Invite { nick }),
            None => usage("! Usage: /pm NICK\n"),
        },
        "accept" => match one_word(arg) {
            Some(nick) => Some(Request::Answer { nick, accept: true }),
            None => usage("! Usage: /accept NICK\n"),
        },
        "decline" => match one_word(arg) {
            Some(nick) => Some(Request::Answer {
                nick,
                accept: false,
            }),
            None => usage("! Usage: /decline NICK\n"),
        },
        "endpm" => Some(Request::EndPrivate),
        "me" => match arg.trim() {
            "" => usage("! Usage: /me TEXT\n"),
            text => Some(Request::Say {
                room: None,
                text,
                kind: TextKind::Action,
            }),
        },
        "quit" | "exit" | "logout" => {
            let reason = arg.trim();
            let reason = (!reason.is_empty()).then_some(reason);
            Some(Request::Quit { reason })
        }
        "pong" => None,
        _ => {
            let _ = writeln!(reply, "! Unknown command /{word}. Type /help for the list.");
            None
        }
    }
}

/// The one word a command takes, or `None` if there is none or more.
fn one_word(arg: &str) -> Option<&str> {
    let word = arg.trim();
    (!word.is_empty() && !word.contains(' ')).then_some(word)
}

/// `"msg bob hi there"` -> `("msg", "bob hi there")`.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((word, rest)) => (word, rest),
        None => (s, ""),
    }
}

/// Appends `event` as a line user sees it. `clock` (`HH:MM:SS`, with
/// `--timestamps`) prefixes chat, action and private lines.
pub fn render(event: &Event<'_>, clock: Option<&str>, out: &mut Vec<u8>) {
    let stamp = |out: &mut Vec<u8>| {
        if let Some(clock) = clock {
            out.extend_from_slice(clock.as_bytes());
            out.push(b' ');
        }
    };
    // Writing into a Vec cannot fail.
    let _ = match *event {
        Event::NickInvalid(why) => writeln!(out, "! Invalid nickname: {why}. Choose another."),
        Event::NameInUse { nick, holder } => match holder {
            NameHolder::Nickname => writeln!(out, "! Nickname {nick} is taken. Choose another."),
            NameHolder::Session => writeln!(
                out,
                "! {nick} is already logged in (one session per account). Choose another name."
            ),
        },
        Event::NamesUnavailable { nick } => writeln!(
            out,
            "! {nick} cannot be checked against the other servers now (they are unreachable). Try again in a moment."
        ),
        Event::NickCollision { old, new } => writeln!(
            out,
            "* {old} was also taken on another server while the servers were out of touch; you are now {new}."
        ),
        Event::PasswordAsked { name, min } => writeln!(
            out,
            "* Password for {name}? (A new name is registered with the password you send now: at least {min} characters.)"
        ),
        Event::StillChecking => {
            writeln!(out, "! Still checking your password; wait for the answer.")
        }
        Event::AccountRegistered { name } => writeln!(out, "* Account {name} registered."),
        Event::WrongPassword { left: 0, .. } => {
            writeln!(out, "! Wrong password. Too many failures; goodbye.")
        }
        Event::WrongPassword { name, left } => {
            let plural = if left == 1 { "attempt" } else { "attempts" };
            writeln!(
                out,
                "! Wrong password for {name}. Try again ({left} {plural} left)."
            )
        }
        Event::PasswordTooShort { name, min } => writeln!(
            out,
            "! Password too short: a new account needs at least {min} characters. Send another password for {name}."
        ),
        Event::SaveFailed { name } => writeln!(
            out,
            "! Could not register {name}: the server could not save the account. Try again later."
        ),
        Event::NoNewAccounts(spent) => {
            let who = match spent.scope {
                Scope::Address => "from your address",
                Scope::Server => "on this server right now",
            };
            writeln!(
                out,
                "! Too many new accounts {who} (at most {}). Try again in {}, or choose an existing account's name.",
                spent.rate,
                wait_text(spent.retry_after)
            )
        }
        Event::LoginLost { name } => writeln!(
            out,
            "! {name} has just logged in on another connection. Choose another name."
        ),
        Event::Welcome { nick, room, others } => {
            // Budget Chat's line first, then ours.
            out.extend_from_slice(protocol::ROOM_CONTAINS.as_bytes());
            push_list(out, others);
            let online = others.len() + 1;
            let plural = if online == 1 { "user" } else { "users" };
            let _ = writeln!(
                out,
                "\n* Welcome, {nick}! {online} {plural} online in {room}. Type /help for commands."
            );
            if others.is_empty() {
                out.extend_from_slice(b"* You are alone in the room.\n");
            }
            Ok(())
        }
        Event::Moved {
            room,
            others,
            topic,
        } => {
            out.extend_from_slice(protocol::ROOM_CONTAINS.as_bytes());
            push_list(out, others);
            let _ = writeln!(out, "\n* You are now in {room}.");
            if let Some(topic) = topic {
                let _ = writeln!(out, "* Topic: {topic}");
            }
            Ok(())
        }
        // `--quiet-joins-above`: a big room's comings and goings are not
        // told to line users, who keep no member list to update.
        Event::Entered { quiet: true, .. }
        | Event::Left { quiet: true, .. }
        | Event::Quit { quiet: true, .. } => Ok(()),
        // The room is implied: a line user hears of its own room only.
        Event::Entered { nick, .. } => writeln!(out, "* {nick} has entered the room"),
        Event::Left { nick, reason, .. } | Event::Quit { nick, reason, .. } => {
            writeln!(out, "* {nick} has left the room ({reason})")
        }
        Event::Said {
            from,
            text,
            kind: TextKind::Action,
            ..
        } => {
            stamp(out);
            writeln!(out, "~ {from} {text}")
        }
        // A notice from IRC reads like any other line here.
        Event::Said { from, text, .. } => {
            stamp(out);
            writeln!(out, "[{from}] {text}")
        }
        Event::Alone => writeln!(out, "* You are alone in the room; nobody received that."),
        Event::Users { names, .. } => {
            let online = names.len();
            let plural = if online == 1 { "user" } else { "users" };
            let _ = write!(out, "* {online} {plural} online: ");
            push_list(out, names);
            out.push(b'\n');
            Ok(())
        }
        Event::RoomInvalid { name } => writeln!(
            out,
            "! Invalid room name {name}: use # and 1 to 32 letters, digits, _ or -."
        ),
        Event::AlreadyInRoom { room } => writeln!(out, "! You are already in {room}."),
        Event::NotInRoom { room } => writeln!(out, "! You are not in {room}."),
        Event::RoomList { rooms } => {
            out.extend_from_slice(b"* Rooms: ");
            for (i, (name, count)) in rooms.iter().enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                let _ = write!(out, "{sep}{name} ({count})");
            }
            out.push(b'\n');
            Ok(())
        }
        Event::Topic { room, topic: None } => writeln!(out, "* {room} has no topic."),
        Event::Topic {
            room,
            topic: Some((text, by)),
        } => writeln!(out, "* Topic of {room} (set by {by}): {text}"),
        Event::TopicChanged {
            by, room, text: "", ..
        } => {
            writeln!(out, "* {by} cleared the topic of {room}.")
        }
        Event::TopicChanged { by, room, text, .. } => {
            writeln!(out, "* {by} set the topic of {room}: {text}")
        }
        Event::Renamed { old, new, .. } => writeln!(out, "* {old} is now known as {new}"),
        Event::NickUnchanged { nick } => writeln!(out, "* Your nickname is already {nick}."),
        Event::NickLocked => writeln!(
            out,
            "! With accounts, your nickname is your account name; /nick is off."
        ),
        Event::PrivateFrom {
            from,
            text,
            kind: TextKind::Action,
            ..
        } => {
            stamp(out);
            writeln!(out, "({from}) * {from} {text}")
        }
        Event::PrivateFrom { from, text, .. } => {
            stamp(out);
            writeln!(out, "({from}) {text}")
        }
        Event::PrivateTo { to, text, .. } => {
            stamp(out);
            writeln!(out, "(-> {to}) {text}")
        }
        Event::NoSuchUser { nick } => writeln!(out, "! No such user: {nick}."),
        Event::InviteSelf => writeln!(out, "! You cannot invite yourself."),
        Event::AlreadyInPrivate { partner } => writeln!(
            out,
            "! You are already in a private conversation with {partner}; /endpm first."
        ),
        Event::InviteeCannot { nick } => writeln!(
            out,
            "! {nick} is on IRC, where private conversations do not exist; use /msg {nick} TEXT."
        ),
        Event::InviteeBusy { nick } => {
            writeln!(out, "! {nick} is already in a private conversation.")
        }
        Event::AlreadyInvited { nick } => {
            writeln!(out, "! You already invited {nick}; waiting for an answer.")
        }
        Event::Invited { from, secs } => writeln!(
            out,
            "* {from} invites you to a private conversation. Answer /accept {from} or /decline {from} (within {secs} s)."
        ),
        Event::InviteSent { to, secs } => {
            writeln!(out, "* Invitation sent to {to}; it expires in {secs} s.")
        }
        Event::NoInvitation { nick } => {
            writeln!(out, "! No invitation from {nick} (it may have expired).")
        }
        Event::Declined { by } => writeln!(out, "* {by} declined your invitation."),
        Event::YouDeclined { from } => writeln!(out, "* You declined {from}'s invitation."),
        Event::CannotAccept { busy, partner } => {
            let _ = match busy {
                None => write!(out, "! You are"),
                Some(them) => write!(out, "! {them} is"),
            };
            writeln!(
                out,
                " already in a private conversation (with {partner}); the invitation stays open."
            )
        }
        Event::Accepted { by } => writeln!(
            out,
            "* {by} accepted. You are in a private conversation with {by}: your lines go to {by} only; /endpm to return to the room."
        ),
        Event::PrivateStarted { with } => writeln!(
            out,
            "* You are in a private conversation with {with}: your lines go to {with} only; /endpm to return to the room."
        ),
        Event::NotInPrivate => writeln!(out, "! You are not in a private conversation."),
        Event::PrivateEnded { with } => writeln!(
            out,
            "* Private conversation with {with} ended. You are back in the room."
        ),
        Event::PrivateEndedBy { by } => writeln!(
            out,
            "* {by} ended the private conversation. You are back in the room."
        ),
        Event::PartnerLeft { nick } => writeln!(
            out,
            "* {nick} left; your private conversation ended. You are back in the room."
        ),
        Event::InviteExpiredTo { to } => writeln!(out, "* Your invitation to {to} expired."),
        Event::InviteExpiredFrom { from } => writeln!(out, "* {from}'s invitation expired."),
        // Only many-room (IRC) users get these; a line user never does.
        Event::Registered { .. } | Event::Joined { .. } | Event::TooManyRooms { .. } => Ok(()),
        Event::Goodbye => writeln!(out, "* Goodbye."),
        Event::ShuttingDown => writeln!(out, "* Server is shutting down."),
        Event::Ping { grace_secs } => writeln!(
            out,
            "{} - send any line within {grace_secs} s to stay connected",
            protocol::PING
        ),
        Event::SlowDown { rate, burst } => writeln!(
            out,
            "* Slow down: at most {rate} lines per second (bursts of {burst}). Your lines are delayed, not lost."
        ),
        Event::Refused(refusal) => {
            out.extend_from_slice(refusal_line(refusal).as_bytes());
            Ok(())
        }
    };
}

/// The last line sent to a connection the server closes, with its newline.
/// Also used before a connection has a dialect (a refused accept).
pub fn refusal_line(refusal: Refusal) -> String {
    match refusal {
        Refusal::Full { max } => {
            format!("! Server is full ({max} clients max). Try again later.\n")
        }
        Refusal::TooManyFromAddress { max } => {
            format!("! Too many connections from your address (max {max}).\n")
        }
        Refusal::NoDescriptors => "! Server is out of file descriptors. Try again later.\n".into(),
        Refusal::RegisterTimeout { secs } => {
            format!("! Registration timeout: no nickname chosen within {secs} s.\n")
        }
        Refusal::SendQueueExceeded => {
            "! Send queue exceeded; you were not reading fast enough.\n".into()
        }
        Refusal::IdleTimeout { secs } => {
            format!("! Idle timeout: nothing received for {secs} s.\n")
        }
    }
}

/// A wait for people: whole seconds up to two minutes, then minutes,
/// rounded up (a user told "in 0 s" would retry too early).
pub fn wait_text(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs < 120 {
        format!("{} s", secs.max(1))
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

/// `a, b, c`
fn push_list(out: &mut Vec<u8>, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::LeaveReason;

    fn decoded(line: &str, stage: Stage) -> (Option<Request<'_>>, String) {
        let mut reply = Vec::new();
        let request = decode(Frame::Line(line.as_bytes()), stage, 100, &mut reply);
        (request, String::from_utf8(reply).unwrap())
    }

    #[test]
    fn the_stage_decides_what_a_line_means() {
        assert_eq!(
            decoded(" alice ", Stage::Naming).0,
            Some(Request::Register { nick: "alice" })
        );
        assert_eq!(
            decoded("alice", Stage::Password).0,
            Some(Request::Password { password: "alice" })
        );
        assert_eq!(
            decoded("alice", Stage::Joined).0,
            Some(Request::Say {
                room: None,
                text: "alice",
                kind: TextKind::Plain,
            })
        );
        assert_eq!(
            decoded("//x", Stage::Joined).0,
            Some(Request::Say {
                room: None,
                text: "/x",
                kind: TextKind::Plain,
            })
        );
        assert_eq!(
            decoded("/QUIT bye now", Stage::Joined).0,
            Some(Request::Quit {
                reason: Some("bye now")
            })
        );
        let (request, reply) = decoded("/who", Stage::Naming);
        assert_eq!(
            (request, reply.as_str()),
            (None, "! Choose a nickname first.\n")
        );
        let (request, reply) = decoded("/pm a b", Stage::Joined);
        assert_eq!((request, reply.as_str()), (None, "! Usage: /pm NICK\n"));
    }

    #[test]
    fn render_stamps_only_chat_lines() {
        let mut out = Vec::new();
        let room = "#lobby";
        let said = Event::Said {
            from: "a",
            user: "a",
            room,
            text: "hi",
            kind: TextKind::Plain,
        };
        render(&said, Some("12:00:00"), &mut out);
        render(
            &Event::Entered {
                nick: "b",
                user: "b",
                room,
                quiet: false,
            },
            Some("12:00:00"),
            &mut out,
        );
        assert_eq!(out, b"12:00:00 [a] hi\n* b has entered the room\n");
        out.clear();
        let reason = LeaveReason::Quit(Some("bye".into()));
        let quit = Event::Quit {
            nick: "a",
            user: "a",
            reason: &reason,
            quiet: false,
        };
        render(&quit, None, &mut out);
        assert_eq!(out, b"* a has left the room (quit: bye)\n");
    }

    /// `--quiet-joins-above`: the quiet forms of entering and leaving
    /// render nothing for a line user (so nothing is sent).
    #[test]
    fn quiet_comings_and_goings_render_nothing() {
        let mut out = Vec::new();
        let reason = LeaveReason::Part(None);
        let (nick, user, room) = ("a", "a", "#big");
        for event in [
            Event::Entered {
                nick,
                user,
                room,
                quiet: true,
            },
            Event::Left {
                nick,
                user,
                room,
                reason: &reason,
                quiet: true,
            },
            Event::Quit {
                nick,
                user,
                reason: &reason,
                quiet: true,
            },
        ] {
            render(&event, None, &mut out);
            assert!(out.is_empty(), "{event:?}: {out:?}");
        }
    }
}
