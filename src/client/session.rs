//! What the client knows about its place in the room: whether it has joined,
//! under which nickname, and who else is online.
//!
//! Pure state fed with server lines, shared by the plain tool and the
//! full-screen interface, so the joining rules (the nickname is sent, a `! `
//! line before `* The room contains:` is a refusal) live in one place and are
//! tested without sockets.

use crate::protocol::{NOTICE, PING, ServerLine, validate_nick};

/// Where the client is in joining the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// No connection (not yet, or lost).
    Offline,
    /// Connected; no nickname attempt outstanding, one must be chosen.
    NeedNick,
    /// This nickname was sent; waiting for the server's answer.
    NickSent(String),
    /// In the room.
    Joined,
}

/// What a server line meant for the session, beyond being shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The nickname was accepted.
    Joined,
    /// The nickname was refused; the server's reason.
    Refused(String),
    /// The user list or own nickname changed.
    Changed,
    /// `* PING ...`: the server wants a sign of life (answer `/pong`).
    Ping,
}

/// Most names the user list keeps: a server's notices cannot make it grow
/// without limit.
pub const MAX_USERS: usize = 100_000;

/// The users online, in the order the server reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserList {
    names: Vec<String>,
}

impl UserList {
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn position(&self, nick: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(nick))
    }

    pub fn contains(&self, nick: &str) -> bool {
        self.position(nick).is_some()
    }

    pub fn add(&mut self, nick: &str) {
        if self.names.len() < MAX_USERS && !self.contains(nick) {
            self.names.push(nick.to_string());
        }
    }

    pub fn remove(&mut self, nick: &str) {
        if let Some(i) = self.position(nick) {
            self.names.remove(i);
        }
    }

    pub fn rename(&mut self, old: &str, new: &str) {
        match self.position(old) {
            Some(i) => self.names[i] = new.to_string(),
            None => self.add(new),
        }
    }

    pub fn set<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.names.clear();
        for n in names {
            self.add(n);
        }
    }

    pub fn clear(&mut self) {
        self.names.clear();
    }
}

/// A notice that changes who is online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomNotice<'a> {
    Entered(&'a str),
    Left(&'a str),
    Renamed {
        old: &'a str,
        new: &'a str,
    },
    /// `* N users online: a, b` (the answer to `/who`).
    Who(Vec<&'a str>),
}

impl<'a> RoomNotice<'a> {
    /// Recognises the text of a `* ` notice (without the marker).
    pub fn parse(text: &'a str) -> Option<RoomNotice<'a>> {
        let (first, rest) = text.split_once(' ')?;
        if validate_nick(first).is_ok() {
            if rest == "has entered the room" {
                return Some(RoomNotice::Entered(first));
            }
            if rest.starts_with("has left the room") {
                return Some(RoomNotice::Left(first));
            }
            if let Some(new) = rest.strip_prefix("is now known as ") {
                if validate_nick(new).is_ok() {
                    return Some(RoomNotice::Renamed { old: first, new });
                }
            }
        }
        if first.bytes().all(|b| b.is_ascii_digit()) {
            let names = rest
                .strip_prefix("users online: ")
                .or_else(|| rest.strip_prefix("user online: "))?;
            return Some(RoomNotice::Who(
                names.split(", ").filter(|n| !n.is_empty()).collect(),
            ));
        }
        None
    }
}

/// The client's session state.
#[derive(Debug, Clone)]
pub struct Session {
    phase: Phase,
    /// The nickname to use on the next (re)connection: the one asked for on
    /// the command line, then the one the server last accepted.
    wanted: Option<String>,
    /// Own nickname while joined.
    nick: Option<String>,
    users: UserList,
}

impl Session {
    pub fn new(wanted: Option<String>) -> Session {
        Session {
            phase: Phase::Offline,
            wanted,
            nick: None,
            users: UserList::default(),
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn joined(&self) -> bool {
        self.phase == Phase::Joined
    }

    /// Own nickname: the accepted one, or else the one being tried/wanted.
    pub fn nick(&self) -> Option<&str> {
        match (&self.nick, &self.phase) {
            (Some(n), _) => Some(n),
            (None, Phase::NickSent(n)) => Some(n),
            _ => self.wanted.as_deref(),
        }
    }

    pub fn users(&self) -> &UserList {
        &self.users
    }

    /// A connection was established. Returns the nickname to send at once,
    /// if one is known; otherwise the phase is [`Phase::NeedNick`].
    pub fn on_connected(&mut self) -> Option<String> {
        self.nick = None;
        self.users.clear();
        match self.wanted.clone() {
            Some(n) => {
                self.phase = Phase::NickSent(n.clone());
                Some(n)
            }
            None => {
                self.phase = Phase::NeedNick;
                None
            }
        }
    }

    /// The user chose a nickname (to be sent by the caller).
    pub fn nick_chosen(&mut self, nick: &str) {
        self.phase = Phase::NickSent(nick.to_string());
    }

    /// The connection is gone.
    pub fn on_disconnected(&mut self) {
        self.phase = Phase::Offline;
        self.users.clear();
    }

    /// Takes one server line into account.
    pub fn on_line(&mut self, line: &ServerLine<'_>) -> Option<SessionEvent> {
        match &self.phase {
            Phase::NickSent(tried) => {
                if let Some(members) = line.room_members() {
                    let tried = tried.clone();
                    self.users.set(members);
                    self.users.add(&tried);
                    self.wanted = Some(tried.clone());
                    self.nick = Some(tried);
                    self.phase = Phase::Joined;
                    return Some(SessionEvent::Joined);
                }
                if let ServerLine::Error(reason) = line {
                    self.phase = Phase::NeedNick;
                    return Some(SessionEvent::Refused(reason.to_string()));
                }
                None
            }
            Phase::Joined => {
                let ServerLine::Notice(text) = line else {
                    return None;
                };
                if text.starts_with(&PING[NOTICE.len()..]) {
                    return Some(SessionEvent::Ping);
                }
                match RoomNotice::parse(text)? {
                    RoomNotice::Entered(n) => self.users.add(n),
                    RoomNotice::Left(n) => self.users.remove(n),
                    RoomNotice::Renamed { old, new } => {
                        self.users.rename(old, new);
                        if self
                            .nick
                            .as_deref()
                            .is_some_and(|me| me.eq_ignore_ascii_case(old))
                        {
                            self.nick = Some(new.to_string());
                            self.wanted = Some(new.to_string());
                        }
                    }
                    RoomNotice::Who(names) => self.users.set(names),
                }
                Some(SessionEvent::Changed)
            }
            Phase::Offline | Phase::NeedNick => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut Session, line: &str) -> Option<SessionEvent> {
        s.on_line(&ServerLine::parse(line))
    }

    #[test]
    fn refused_then_accepted() {
        let mut s = Session::new(Some("bob".into()));
        assert_eq!(s.on_connected(), Some("bob".into()));
        assert_eq!(
            feed(&mut s, "* Welcome to loopchat! What shall I call you?"),
            None
        );
        assert_eq!(
            feed(&mut s, "! Nickname bob is taken. Choose another."),
            Some(SessionEvent::Refused(
                "Nickname bob is taken. Choose another.".into()
            ))
        );
        assert_eq!(s.phase(), &Phase::NeedNick);
        s.nick_chosen("bobby");
        assert_eq!(
            feed(&mut s, "* The room contains: alice, carol"),
            Some(SessionEvent::Joined)
        );
        assert_eq!(s.nick(), Some("bobby"));
        assert_eq!(s.users().names(), ["alice", "carol", "bobby"]);
        // A reconnection rejoins under the accepted name.
        s.on_disconnected();
        assert!(s.users().is_empty());
        assert_eq!(s.on_connected(), Some("bobby".into()));
    }

    #[test]
    fn user_list_follows_notices() {
        let mut s = Session::new(None);
        assert_eq!(s.on_connected(), None);
        assert_eq!(s.phase(), &Phase::NeedNick);
        s.nick_chosen("me");
        feed(&mut s, "* The room contains: ");
        assert_eq!(s.users().names(), ["me"]);
        feed(&mut s, "* ann has entered the room");
        feed(&mut s, "* bo has entered the room");
        feed(&mut s, "* ann has left the room (quit: bye)");
        assert_eq!(s.users().names(), ["me", "bo"]);
        feed(&mut s, "* bo is now known as Bob");
        feed(&mut s, "* me is now known as mee");
        assert_eq!(s.users().names(), ["mee", "Bob"]);
        assert_eq!(s.nick(), Some("mee"));
        assert_eq!(
            feed(&mut s, "* PING - send any line within 5 s"),
            Some(SessionEvent::Ping)
        );
        feed(&mut s, "* 3 users online: x, mee, y");
        assert_eq!(s.users().names(), ["x", "mee", "y"]);
        // Chat lines that look like notices change nothing.
        feed(&mut s, "[x] z has entered the room");
        assert_eq!(s.users().len(), 3);
        assert_eq!(
            s.on_line(&ServerLine::parse(
                "* Welcome, mee! 3 users online. Type /help"
            )),
            None
        );
    }
}
