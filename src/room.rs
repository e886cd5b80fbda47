//! The chat itself: who is here, what each line means, who receives what.
//!
//! This module knows nothing about sockets, polls or time. The event loop
//! feeds it three kinds of input ("connection K connected", "K sent this
//! frame", "K went away") and it answers through an [`Outbox`]: "queue these
//! bytes for K", "close K once its output is written". That split keeps the
//! protocol testable without a network, and keeps the loop about bytes only.
//!
//! Broadcast is where a chat server spends its time, so a message for N
//! recipients is formatted **once** into a scratch string and the same bytes
//! are handed to the outbox N times (the loop appends them to N send queues;
//! it does not write them yet).
//!
//! The line grammar is documented in docs/protocol.md; the markers are in
//! [`crate::protocol`].

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use crate::framing::Frame;
use crate::protocol::{self, NickError};

/// A connection's id: the event loop's slab key.
pub type ConnId = usize;

/// Where the room's answers go. The event loop implements this over its
/// connections' send queues; tests implement it with a `Vec`.
pub trait Outbox {
    /// Queue `line` (which ends in `\n`) for connection `to`.
    fn send(&mut self, to: ConnId, line: &[u8]);
    /// Close `conn` once everything queued for it has been written. The room
    /// has already forgotten `conn` when it calls this.
    fn close(&mut self, conn: ConnId);
}

/// Why a user left; shown to the others as `* NICK has left the room (REASON)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveReason {
    Quit(Option<String>),
    Closed,
    Reset,
    WriteError,
    SendQueueExceeded,
    IdleTimeout,
    RegisterTimeout,
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaveReason::Quit(None) => f.write_str("quit"),
            LeaveReason::Quit(Some(why)) => write!(f, "quit: {why}"),
            LeaveReason::Closed => f.write_str("connection closed"),
            LeaveReason::Reset => f.write_str("connection reset"),
            LeaveReason::WriteError => f.write_str("write error"),
            LeaveReason::SendQueueExceeded => f.write_str("send queue exceeded"),
            LeaveReason::IdleTimeout => f.write_str("idle timeout"),
            LeaveReason::RegisterTimeout => f.write_str("registration timeout"),
        }
    }
}

/// The one-line errors sent just before the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-clients` connections are open.
    Full { max: usize },
    /// `--max-per-ip` connections from this address are open.
    TooManyFromAddress { max: usize },
    /// The process is out of file descriptors.
    NoDescriptors,
    /// No nickname within `--register-timeout`.
    RegisterTimeout { secs: u64 },
    /// Output passed `--max-sendq`.
    SendQueueExceeded,
    /// Nothing received after the idle ping.
    IdleTimeout { secs: u64 },
}

impl Refusal {
    /// The error line, with its newline.
    pub fn line(&self) -> String {
        match self {
            Refusal::Full { max } => {
                format!("! Server is full ({max} clients max). Try again later.\n")
            }
            Refusal::TooManyFromAddress { max } => {
                format!("! Too many connections from your address (max {max}).\n")
            }
            Refusal::NoDescriptors => {
                "! Server is out of file descriptors. Try again later.\n".into()
            }
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
}

const GREETING: &str = "* Welcome to loopchat! What shall I call you?\n";
const HELP: &str = "\
* Commands:
*   TEXT              say TEXT to everyone (//TEXT sends a literal /TEXT)
*   /who              list the users online
*   /nick NEW         change your nickname
*   /msg NICK TEXT    send TEXT to NICK only
*   /me TEXT          an action: '~ YOU TEXT'
*   /quit [REASON]    leave (also /exit)
*   /pong             nothing; any line answers a PING
*   /help             this list
";

/// One connection as the room sees it.
#[derive(Debug)]
struct Member {
    /// `None` until a nickname has been accepted.
    nick: Option<String>,
}

/// The chat room: every connection the loop has told us about.
#[derive(Debug, Default)]
pub struct Room {
    members: HashMap<ConnId, Member>,
    /// Joined connections in join order: the broadcast list.
    joined: Vec<ConnId>,
    /// Lowercased nickname -> connection, for uniqueness and `/msg`.
    by_nick: HashMap<String, ConnId>,
    /// Reused for formatting, so a broadcast allocates nothing.
    scratch: String,
    /// `Some("HH:MM:SS")` when `--timestamps` is on; set by the loop.
    clock: Option<String>,
    max_line: usize,
}

impl Room {
    /// An empty room. `max_line` is only quoted in the "too long" error.
    pub fn new(max_line: usize) -> Room {
        Room {
            max_line,
            ..Room::default()
        }
    }

    /// Turns the `HH:MM:SS ` prefix of chat lines on, with the time to show.
    /// The loop calls this once per turn; `None` turns stamps off.
    pub fn set_clock(&mut self, hhmmss: Option<&str>) {
        match (hhmmss, &mut self.clock) {
            (Some(now), Some(clock)) => {
                clock.clear();
                clock.push_str(now);
            }
            (Some(now), None) => self.clock = Some(now.to_string()),
            (None, _) => self.clock = None,
        }
    }

    /// Number of users who have chosen a nickname.
    pub fn joined_count(&self) -> usize {
        self.joined.len()
    }

    /// Whether `conn` has chosen a nickname.
    pub fn is_joined(&self, conn: ConnId) -> bool {
        self.nick(conn).is_some()
    }

    /// `conn`'s nickname, once it has one.
    pub fn nick(&self, conn: ConnId) -> Option<&str> {
        self.members.get(&conn)?.nick.as_deref()
    }

    /// The joined connections in join order, with their nicknames.
    pub fn users(&self) -> impl Iterator<Item = (ConnId, &str)> {
        self.joined
            .iter()
            .filter_map(|&c| self.nick(c).map(|n| (c, n)))
    }

    /// A new connection: greet it and ask for a nickname.
    pub fn connected(&mut self, conn: ConnId, out: &mut impl Outbox) {
        self.members.insert(conn, Member { nick: None });
        out.send(conn, GREETING.as_bytes());
    }

    /// One frame from `conn`'s framer.
    pub fn handle_frame(&mut self, conn: ConnId, frame: Frame<'_>, out: &mut impl Outbox) {
        if !self.members.contains_key(&conn) {
            return; // already left (e.g. quit earlier in the same read)
        }
        let line = match frame {
            Frame::TooLong => {
                let msg = format!(
                    "! Line too long (max {} bytes); discarded.\n",
                    self.max_line
                );
                return out.send(conn, msg.as_bytes());
            }
            Frame::Line(bytes) => match std::str::from_utf8(bytes) {
                Ok(line) => line,
                Err(_) => return out.send(conn, b"! Line is not valid UTF-8; discarded.\n"),
            },
        };
        if line.trim_matches([' ', '\t']).is_empty() {
            return; // empty lines are ignored
        }
        // ESC and friends would let one user drive everyone's terminal.
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return out.send(
                conn,
                b"! Control characters are not allowed; line discarded.\n",
            );
        }
        if self.is_joined(conn) {
            self.joined_line(conn, line, out);
        } else {
            self.naming_line(conn, line, out);
        }
    }

    /// `conn` is gone (EOF, reset, write error, or the loop kicked it).
    /// Everyone else is told, with the reason. Safe to call twice.
    pub fn disconnected(&mut self, conn: ConnId, reason: &LeaveReason, out: &mut impl Outbox) {
        let Some(member) = self.members.remove(&conn) else {
            return;
        };
        let Some(nick) = member.nick else {
            return; // never joined: nobody knew it was here
        };
        log::info!("{nick} (#{conn}) left: {reason}");
        self.by_nick.remove(&nick.to_ascii_lowercase());
        self.joined.retain(|&c| c != conn);
        self.scratch.clear();
        let _ = writeln!(self.scratch, "* {nick} has left the room ({reason})");
        self.broadcast(None, out);
    }

    /// The server is stopping: tell everyone and close every connection.
    pub fn shutdown(&mut self, out: &mut impl Outbox) {
        for (&conn, _) in self.members.iter() {
            out.send(conn, b"* Server is shutting down.\n");
            out.close(conn);
        }
        self.members.clear();
        self.joined.clear();
        self.by_nick.clear();
    }

    /// The idle-timeout ping for `conn` (see docs/protocol.md, Liveness).
    pub fn ping(&mut self, conn: ConnId, grace_secs: u64, out: &mut impl Outbox) {
        if self.members.contains_key(&conn) {
            let line = format!(
                "{} - send any line within {grace_secs} s to stay connected\n",
                protocol::PING
            );
            out.send(conn, line.as_bytes());
        }
    }

    /// A line from a connection that has no nickname yet.
    fn naming_line(&mut self, conn: ConnId, line: &str, out: &mut impl Outbox) {
        let Some(command) = line.strip_prefix('/') else {
            return self.try_join(conn, line.trim(), out);
        };
        let (word, arg) = split_word(command);
        match word.to_ascii_lowercase().as_str() {
            "nick" => self.try_join(conn, arg.trim(), out),
            "quit" | "exit" | "logout" => self.quit(conn, None, out),
            "help" => out.send(conn, HELP.as_bytes()),
            "pong" => {}
            _ => out.send(conn, b"! Choose a nickname first.\n"),
        }
    }

    fn try_join(&mut self, conn: ConnId, nick: &str, out: &mut impl Outbox) {
        if let Err(e) = self.check_nick(conn, nick) {
            return out.send(conn, e.as_bytes());
        }
        self.by_nick.insert(nick.to_ascii_lowercase(), conn);
        if let Some(member) = self.members.get_mut(&conn) {
            member.nick = Some(nick.to_string());
        }
        log::info!("#{conn} joined as {nick}");

        // To the newcomer: who is here (Budget Chat's line), then a welcome.
        let mut reply = String::from(protocol::ROOM_CONTAINS);
        for (i, (_, other)) in self.users().enumerate() {
            if i > 0 {
                reply.push_str(", ");
            }
            reply.push_str(other);
        }
        let online = self.joined.len() + 1;
        let plural = if online == 1 { "user" } else { "users" };
        let _ = write!(
            reply,
            "\n* Welcome, {nick}! {online} {plural} online. Type /help for commands.\n"
        );
        if self.joined.is_empty() {
            reply.push_str("* You are alone in the room.\n");
        }
        out.send(conn, reply.as_bytes());

        self.scratch.clear();
        let _ = writeln!(self.scratch, "* {nick} has entered the room");
        self.broadcast(Some(conn), out);
        self.joined.push(conn);
    }

    /// Checks a wanted nickname; the error line if it cannot be had.
    fn check_nick(&self, conn: ConnId, nick: &str) -> Result<(), String> {
        if let Err(e) = protocol::validate_nick(nick) {
            let why = match e {
                NickError::Empty => "a nickname cannot be empty".to_string(),
                other => other.to_string(),
            };
            return Err(format!("! Invalid nickname: {why}. Choose another.\n"));
        }
        match self.by_nick.get(&nick.to_ascii_lowercase()) {
            Some(&owner) if owner != conn => {
                Err(format!("! Nickname {nick} is taken. Choose another.\n"))
            }
            _ => Ok(()),
        }
    }

    /// A line from a joined user: chat or a command.
    fn joined_line(&mut self, conn: ConnId, line: &str, out: &mut impl Outbox) {
        match line.strip_prefix('/') {
            Some(rest) if rest.starts_with('/') => self.chat(conn, rest, out),
            Some(command) => self.command(conn, command, out),
            None => self.chat(conn, line, out),
        }
    }

    fn command(&mut self, conn: ConnId, command: &str, out: &mut impl Outbox) {
        let (word, arg) = split_word(command);
        match word.to_ascii_lowercase().as_str() {
            "help" => out.send(conn, HELP.as_bytes()),
            "who" => {
                let mut reply = format!("* {} users online: ", self.joined.len());
                for (i, (_, nick)) in self.users().enumerate() {
                    if i > 0 {
                        reply.push_str(", ");
                    }
                    reply.push_str(nick);
                }
                reply.push('\n');
                out.send(conn, reply.as_bytes());
            }
            "nick" => self.rename(conn, arg.trim(), out),
            "msg" => self.private(conn, arg, out),
            "me" => {
                let text = arg.trim();
                if text.is_empty() {
                    return out.send(conn, b"! Usage: /me TEXT\n");
                }
                let nick = self.nick(conn).unwrap_or_default().to_string();
                self.scratch.clear();
                self.push_stamp();
                let _ = writeln!(self.scratch, "~ {nick} {text}");
                self.broadcast(Some(conn), out);
            }
            "quit" | "exit" | "logout" => {
                let reason = arg.trim();
                let reason = (!reason.is_empty()).then(|| reason.to_string());
                self.quit(conn, reason, out);
            }
            "pong" => {}
            _ => {
                let msg = format!("! Unknown command /{word}. Type /help for the list.\n");
                out.send(conn, msg.as_bytes());
            }
        }
    }

    /// A chat line: formatted once, queued for every other joined user.
    fn chat(&mut self, conn: ConnId, text: &str, out: &mut impl Outbox) {
        if self.joined.len() <= 1 {
            return out.send(
                conn,
                b"* You are alone in the room; nobody received that.\n",
            );
        }
        let Some(member) = self.members.get(&conn) else {
            return;
        };
        let nick = member.nick.as_deref().unwrap_or_default();
        self.scratch.clear();
        if let Some(clock) = &self.clock {
            self.scratch.push_str(clock);
            self.scratch.push(' ');
        }
        let _ = writeln!(self.scratch, "[{nick}] {text}");
        log::debug!("{}", self.scratch.trim_end());
        for &to in &self.joined {
            if to != conn {
                out.send(to, self.scratch.as_bytes());
            }
        }
    }

    fn private(&mut self, conn: ConnId, arg: &str, out: &mut impl Outbox) {
        let (target, text) = split_word(arg.trim_start());
        let text = text.trim();
        if target.is_empty() || text.is_empty() {
            return out.send(conn, b"! Usage: /msg NICK TEXT\n");
        }
        let Some(&to) = self.by_nick.get(&target.to_ascii_lowercase()) else {
            let msg = format!("! No such user: {target}.\n");
            return out.send(conn, msg.as_bytes());
        };
        let from = self.nick(conn).unwrap_or_default().to_string();
        let to_nick = self.nick(to).unwrap_or(target).to_string();
        self.scratch.clear();
        self.push_stamp();
        let _ = writeln!(self.scratch, "({from}) {text}");
        out.send(to, self.scratch.as_bytes());
        self.scratch.clear();
        self.push_stamp();
        let _ = writeln!(self.scratch, "(-> {to_nick}) {text}");
        out.send(conn, self.scratch.as_bytes());
    }

    fn rename(&mut self, conn: ConnId, new: &str, out: &mut impl Outbox) {
        if let Err(e) = self.check_nick(conn, new) {
            return out.send(conn, e.as_bytes());
        }
        let Some(member) = self.members.get_mut(&conn) else {
            return;
        };
        let old = member.nick.replace(new.to_string()).unwrap_or_default();
        self.by_nick.remove(&old.to_ascii_lowercase());
        self.by_nick.insert(new.to_ascii_lowercase(), conn);
        log::info!("{old} (#{conn}) is now known as {new}");
        self.scratch.clear();
        let _ = writeln!(self.scratch, "* {old} is now known as {new}");
        self.broadcast(None, out);
    }

    fn quit(&mut self, conn: ConnId, reason: Option<String>, out: &mut impl Outbox) {
        out.send(conn, b"* Goodbye.\n");
        self.disconnected(conn, &LeaveReason::Quit(reason), out);
        self.members.remove(&conn);
        out.close(conn);
    }

    /// Sends `self.scratch` to every joined user except `skip`.
    fn broadcast(&self, skip: Option<ConnId>, out: &mut impl Outbox) {
        for &to in &self.joined {
            if Some(to) != skip {
                out.send(to, self.scratch.as_bytes());
            }
        }
    }

    fn push_stamp(&mut self) {
        if let Some(clock) = &self.clock {
            self.scratch.push_str(clock);
            self.scratch.push(' ');
        }
    }
}

/// `"msg bob hi there"` -> `("msg", "bob hi there")`.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((word, rest)) => (word, rest),
        None => (s, ""),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Records everything the room asks for.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub sent: Vec<(ConnId, String)>,
        pub closed: Vec<ConnId>,
    }

    impl Outbox for Recorder {
        fn send(&mut self, to: ConnId, line: &[u8]) {
            // A send may carry several lines; record them one by one.
            for l in String::from_utf8_lossy(line).lines() {
                self.sent.push((to, l.to_string()));
            }
        }
        fn close(&mut self, conn: ConnId) {
            self.closed.push(conn);
        }
    }

    impl Recorder {
        /// Lines sent to `to` since the last call, oldest first.
        fn take(&mut self, to: ConnId) -> Vec<String> {
            let (mine, rest) = std::mem::take(&mut self.sent)
                .into_iter()
                .partition(|(c, _)| *c == to);
            self.sent = rest;
            mine.into_iter().map(|(_, l)| l).collect()
        }
    }

    fn say(room: &mut Room, conn: ConnId, line: &str, out: &mut Recorder) {
        room.handle_frame(conn, Frame::Line(line.as_bytes()), out);
    }

    fn joined_room(nicks: &[&str]) -> (Room, Recorder) {
        let mut room = Room::new(4096);
        let mut out = Recorder::default();
        for (i, nick) in nicks.iter().enumerate() {
            room.connected(i, &mut out);
            say(&mut room, i, nick, &mut out);
        }
        out.sent.clear();
        (room, out)
    }

    #[test]
    fn join_sequence_matches_budget_chat() {
        let mut room = Room::new(4096);
        let mut out = Recorder::default();
        room.connected(1, &mut out);
        assert_eq!(
            out.take(1),
            ["* Welcome to loopchat! What shall I call you?"]
        );
        say(&mut room, 1, "alice", &mut out);
        assert_eq!(
            out.take(1),
            [
                "* The room contains: ",
                "* Welcome, alice! 1 user online. Type /help for commands.",
                "* You are alone in the room.",
            ]
        );
        room.connected(2, &mut out);
        say(&mut room, 2, "/nick bob", &mut out);
        assert_eq!(out.take(1), ["* bob has entered the room"]);
        assert_eq!(
            out.take(2)[1..],
            [
                "* The room contains: alice",
                "* Welcome, bob! 2 users online. Type /help for commands."
            ]
        );
    }

    #[test]
    fn chat_goes_to_the_others_only() {
        let (mut room, mut out) = joined_room(&["a", "b", "c"]);
        room.connected(3, &mut out); // not joined: must not receive chat
        out.sent.clear();
        say(&mut room, 0, "hello", &mut out);
        say(&mut room, 0, "//slash", &mut out);
        assert_eq!(out.take(1), ["[a] hello", "[a] /slash"]);
        assert_eq!(out.take(2), ["[a] hello", "[a] /slash"]);
        assert!(
            out.sent.is_empty(),
            "no echo, nothing for unjoined: {:?}",
            out.sent
        );
    }

    #[test]
    fn nickname_errors_ask_again() {
        let (mut room, mut out) = joined_room(&["Bob"]);
        room.connected(1, &mut out);
        out.sent.clear();
        say(&mut room, 1, "bob", &mut out);
        assert_eq!(out.take(1), ["! Nickname bob is taken. Choose another."]);
        say(&mut room, 1, "bob smith", &mut out);
        let err = out.take(1);
        assert!(
            err[0].starts_with("! Invalid nickname: ' ' is not allowed"),
            "{err:?}"
        );
        say(&mut room, 1, &"x".repeat(33), &mut out);
        assert!(out.take(1)[0].contains("at most 32"));
        say(&mut room, 1, "/who", &mut out);
        assert_eq!(out.take(1), ["! Choose a nickname first."]);
        say(&mut room, 1, "robert", &mut out);
        assert_eq!(out.take(1)[0], "* The room contains: Bob");
    }

    #[test]
    fn commands() {
        let (mut room, mut out) = joined_room(&["a", "b", "c"]);
        say(&mut room, 0, "/WHO", &mut out);
        assert_eq!(out.take(0), ["* 3 users online: a, b, c"]);
        say(&mut room, 0, "/msg B psst", &mut out);
        assert_eq!(out.take(1), ["(a) psst"]);
        assert_eq!(out.take(0), ["(-> b) psst"]);
        assert!(out.take(2).is_empty());
        say(&mut room, 0, "/msg zed hi", &mut out);
        assert_eq!(out.take(0), ["! No such user: zed."]);
        say(&mut room, 0, "/me waves", &mut out);
        assert_eq!(out.take(1), ["~ a waves"]);
        assert_eq!(out.take(2), ["~ a waves"]);
        say(&mut room, 0, "/nick A2", &mut out);
        assert_eq!(out.take(0), ["* a is now known as A2"]);
        assert_eq!(out.take(2), ["* a is now known as A2"]);
        assert_eq!(out.take(1), ["* a is now known as A2"]);
        say(&mut room, 1, "/nick a2", &mut out);
        assert_eq!(out.take(1), ["! Nickname a2 is taken. Choose another."]);
        say(&mut room, 0, "/frob", &mut out);
        assert_eq!(
            out.take(0),
            ["! Unknown command /frob. Type /help for the list."]
        );
        say(&mut room, 0, "/quit bye all", &mut out);
        assert_eq!(out.take(0), ["* Goodbye."]);
        assert_eq!(out.closed, [0]);
        assert_eq!(out.take(1), ["* A2 has left the room (quit: bye all)"]);
        assert_eq!(out.take(2), ["* A2 has left the room (quit: bye all)"]);
        assert_eq!(room.joined_count(), 2);
        say(&mut room, 1, "/nick a2", &mut out);
        assert_eq!(out.take(2), ["* b is now known as a2"], "old nick freed");
    }

    #[test]
    fn bad_lines_get_errors_and_are_not_relayed() {
        let (mut room, mut out) = joined_room(&["a", "b"]);
        say(&mut room, 0, "\x1b[2Jboom", &mut out);
        room.handle_frame(0, Frame::Line(b"\xff\xfe"), &mut out);
        room.handle_frame(0, Frame::TooLong, &mut out);
        say(&mut room, 0, "   ", &mut out);
        say(&mut room, 0, "tab\tok", &mut out);
        assert_eq!(
            out.take(0),
            [
                "! Control characters are not allowed; line discarded.",
                "! Line is not valid UTF-8; discarded.",
                "! Line too long (max 4096 bytes); discarded.",
            ]
        );
        assert_eq!(out.take(1), ["[a] tab\tok"]);
    }

    #[test]
    fn alone_and_leaving() {
        let (mut room, mut out) = joined_room(&["a", "b"]);
        room.disconnected(1, &LeaveReason::Closed, &mut out);
        room.disconnected(1, &LeaveReason::Closed, &mut out); // idempotent
        assert_eq!(out.take(0), ["* b has left the room (connection closed)"]);
        say(&mut room, 0, "anyone?", &mut out);
        assert_eq!(
            out.take(0),
            ["* You are alone in the room; nobody received that."]
        );
    }

    #[test]
    fn timestamps_prefix_chat_lines_only() {
        let (mut room, mut out) = joined_room(&["a", "b"]);
        room.set_clock(Some("12:34:56"));
        say(&mut room, 0, "hi", &mut out);
        say(&mut room, 0, "/me nods", &mut out);
        assert_eq!(out.take(1), ["12:34:56 [a] hi", "12:34:56 ~ a nods"]);
    }
}
