//! What the client knows about its place in the room: whether it has joined,
//! under which nickname, in which room (and its topic, when told), and who
//! else is in that room.
//!
//! Pure state fed with server lines, shared by the plain tool and the
//! full-screen interface, so the joining rules (the nickname is sent, a `! `
//! line before `* The room contains:` is a refusal, with `--accounts` a
//! password is asked after the name) live in one place and are tested
//! without sockets.
//!
//! The password the server accepted is kept here, in memory only, so that a
//! reconnection can answer the prompt by itself; it is never written
//! anywhere and its `Debug` output is redacted.

use crate::chat::validate_room;
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
    /// The server asks for the password of this name (after its prompt, or
    /// after a password error that asks again). The next line the user
    /// enters is the password.
    NeedPassword(String),
    /// A password for this name was sent; waiting for the server's answer.
    PasswordSent(String),
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
    /// The user list, own nickname, room or topic changed.
    Changed,
    /// The welcome named the room we start in (the server's default).
    InRoom(String),
    /// `* You are now in #ROOM.`: the user moved to this room (`/join`).
    /// The user list is already the new room's (from the
    /// `* The room contains:` line just before).
    Moved(String),
    /// `* PING ...`: the server wants a sign of life (answer `/pong`).
    Ping,
    /// The server asks for the password of this name and none is known:
    /// the user must enter one (phase [`Phase::NeedPassword`]).
    PasswordWanted(String),
    /// The server asks for the password and the session answers by itself
    /// with the one it remembers (from `--password-file`, or the one the
    /// server accepted before a reconnection). The caller sends it; the
    /// phase is already [`Phase::PasswordSent`].
    SendPassword(Secret),
    /// The server refused the password: its reason; `again` when it waits
    /// for another (phase [`Phase::NeedPassword`]), false when it closes the
    /// connection. `automatic` when the refused password was the remembered
    /// one, which is then forgotten (so it is never tried twice).
    PasswordRefused {
        reason: String,
        again: bool,
        automatic: bool,
    },
}

/// A password. Its `Debug` output is redacted so that logging a session or
/// an event never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The start of the server's password prompt, `* Password for NAME? (...)`
/// (without the notice marker).
const PASSWORD_PROMPT: &str = "Password for ";
/// The starts of the errors after which the server closes the connection
/// instead of asking for another password (without the error marker).
const PASSWORD_GOODBYES: [&str; 2] = ["Wrong password. Too many failures", "Registration timeout"];

/// Errors after which the server asks for a name again, not for another
/// password (the text without the error marker): the budget of new
/// accounts is spent, or another connection logged in to the name first.
fn back_to_name(reason: &str) -> bool {
    reason.starts_with("Too many new accounts")
        || reason.contains(" has just logged in on another connection.")
}

/// The name in a password prompt (the notice text without its marker).
fn password_prompt_name(text: &str) -> Option<&str> {
    let (name, _) = text.strip_prefix(PASSWORD_PROMPT)?.split_once('?')?;
    validate_nick(name).is_ok().then_some(name)
}

/// The name in `Welcome, NAME! ...` (the notice text without its marker),
/// and the room if the line names one (`... 2 users online in #lobby.`;
/// servers before rooms did not).
fn welcome(text: &str) -> Option<(&str, Option<&str>)> {
    let (name, rest) = text.strip_prefix("Welcome, ")?.split_once("! ")?;
    validate_nick(name).ok()?;
    // A room name holds no `.`, so the first one ends it.
    let room = rest
        .split_once(" online in ")
        .and_then(|(_, r)| r.split_once('.'))
        .map(|(room, _)| room)
        .filter(|room| validate_room(room).is_ok());
    Some((name, room))
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
    /// `* N users online: a, b` (the answer to `/who`: the users of
    /// your room).
    Who(Vec<&'a str>),
    /// `* You are now in #rust.`: you moved (after `/join`).
    NowIn(&'a str),
    /// `* Topic: TEXT`, right after a move: the topic of the room you
    /// entered.
    Topic(&'a str),
    /// What is known of a named room's topic: `* Topic of #rust (set by
    /// alice): TEXT` and `* alice set the topic of #rust: TEXT` (`Some`),
    /// `* #rust has no topic.` and `* alice cleared the topic of #rust.`
    /// (`None`).
    TopicOf {
        room: &'a str,
        topic: Option<&'a str>,
    },
}

impl<'a> RoomNotice<'a> {
    /// Recognises the text of a `* ` notice (without the marker).
    pub fn parse(text: &'a str) -> Option<RoomNotice<'a>> {
        let room = |r: &'a str| validate_room(r).is_ok().then_some(r);
        if let Some(rest) = text.strip_prefix("You are now in ") {
            return rest.strip_suffix('.').and_then(room).map(RoomNotice::NowIn);
        }
        if let Some(topic) = text.strip_prefix("Topic: ") {
            return Some(RoomNotice::Topic(topic));
        }
        if let Some(rest) = text.strip_prefix("Topic of ") {
            let (name, rest) = rest.split_once(" (set by ")?;
            let (by, topic) = rest.split_once("): ")?;
            validate_nick(by).ok()?;
            return Some(RoomNotice::TopicOf {
                room: room(name)?,
                topic: Some(topic),
            });
        }
        let (first, rest) = text.split_once(' ')?;
        if rest == "has no topic." {
            return Some(RoomNotice::TopicOf {
                room: room(first)?,
                topic: None,
            });
        }
        if validate_nick(first).is_ok() {
            if let Some(rest) = rest.strip_prefix("set the topic of ") {
                // A room name holds no `:`, so the first `: ` ends it.
                let (name, topic) = rest.split_once(": ")?;
                return Some(RoomNotice::TopicOf {
                    room: room(name)?,
                    topic: Some(topic),
                });
            }
            if let Some(rest) = rest.strip_prefix("cleared the topic of ") {
                return Some(RoomNotice::TopicOf {
                    room: room(rest.strip_suffix('.')?)?,
                    topic: None,
                });
            }
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
    /// The room we are in, once the server has named it (in its welcome,
    /// then in `* You are now in #ROOM.` after each move).
    room: Option<String>,
    /// The room we were in when the connection was lost, until the next
    /// welcome: the full-screen interface moves back to it.
    lost_room: Option<String>,
    /// The current room's topic, when the server has told it (after a
    /// move, on `/topic`, or when someone sets it); `None` when unknown or
    /// there is none.
    topic: Option<String>,
    /// The password to answer the prompt with by itself: from
    /// `--password-file`, then the one the server accepted. Forgotten when
    /// the server refuses it.
    password: Option<Secret>,
    /// The password sent and not yet answered, and whether it was the
    /// remembered one.
    pending: Option<(Secret, bool)>,
}

impl Session {
    pub fn new(wanted: Option<String>) -> Session {
        Session {
            phase: Phase::Offline,
            wanted,
            nick: None,
            users: UserList::default(),
            room: None,
            lost_room: None,
            topic: None,
            password: None,
            pending: None,
        }
    }

    /// Sets the password to answer the server's prompt with (from
    /// `--password-file`).
    pub fn set_password(&mut self, password: Option<Secret>) {
        self.password = password;
    }

    /// Whether a password is remembered for answering the prompt.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The user entered the password asked for (to be sent by the caller).
    /// Ignored unless one is wanted.
    pub fn password_sent(&mut self, password: &str) {
        if let Phase::NeedPassword(name) = &self.phase {
            self.phase = Phase::PasswordSent(name.clone());
            self.pending = Some((Secret::new(password), false));
        }
    }

    /// Whether the next line the user enters is a password.
    pub fn wants_password(&self) -> bool {
        matches!(self.phase, Phase::NeedPassword(_))
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
            (None, Phase::NickSent(n) | Phase::NeedPassword(n) | Phase::PasswordSent(n)) => Some(n),
            _ => self.wanted.as_deref(),
        }
    }

    /// The users of our room.
    pub fn users(&self) -> &UserList {
        &self.users
    }

    /// The room we are in, once the server has named it.
    pub fn room(&self) -> Option<&str> {
        self.room.as_deref()
    }

    /// The current room's topic, when known.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// After a reconnection's welcome ([`SessionEvent::InRoom`]): the room
    /// we were in when the connection was lost, if it is not the one the
    /// server put us in, so that the caller can send `/join` for it. Asked
    /// once: the room is forgotten by the call.
    pub fn take_room_to_rejoin(&mut self) -> Option<String> {
        let here = self.room.as_deref()?;
        let lost = self.lost_room.take()?;
        (!lost.eq_ignore_ascii_case(here)).then_some(lost)
    }

    /// A connection was established. Returns the nickname to send at once,
    /// if one is known; otherwise the phase is [`Phase::NeedNick`].
    pub fn on_connected(&mut self) -> Option<String> {
        self.nick = None;
        self.pending = None;
        self.users.clear();
        self.room = None;
        self.topic = None;
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
        self.pending = None;
        self.users.clear();
        if let Some(room) = self.room.take() {
            self.lost_room = Some(room);
        }
        self.topic = None;
    }

    /// The server's password prompt for `name`: answered with the
    /// remembered password if there is one, else the user is asked.
    fn password_prompt(&mut self, name: &str) -> SessionEvent {
        match self.password.clone() {
            Some(pw) => {
                self.phase = Phase::PasswordSent(name.to_string());
                self.pending = Some((pw.clone(), true));
                SessionEvent::SendPassword(pw)
            }
            None => {
                self.phase = Phase::NeedPassword(name.to_string());
                SessionEvent::PasswordWanted(name.to_string())
            }
        }
    }

    /// In the room under `nick` (the server's `* The room contains:`).
    fn joined_as(&mut self, nick: String, members: impl Iterator<Item = impl AsRef<str>>) {
        self.users.clear();
        for m in members {
            self.users.add(m.as_ref());
        }
        self.users.add(&nick);
        self.wanted = Some(nick.clone());
        self.nick = Some(nick);
        self.phase = Phase::Joined;
    }

    /// Takes one server line into account.
    pub fn on_line(&mut self, line: &ServerLine<'_>) -> Option<SessionEvent> {
        match &self.phase {
            Phase::NickSent(tried) => {
                if let Some(members) = line.room_members() {
                    self.joined_as(tried.clone(), members);
                    return Some(SessionEvent::Joined);
                }
                match line {
                    // `already logged in` is a refusal of the name too.
                    ServerLine::Error(reason) => {
                        self.phase = Phase::NeedNick;
                        Some(SessionEvent::Refused(reason.to_string()))
                    }
                    ServerLine::Notice(text) => {
                        let name = password_prompt_name(text)?.to_string();
                        Some(self.password_prompt(&name))
                    }
                    _ => None,
                }
            }
            Phase::PasswordSent(name) => {
                if let Some(members) = line.room_members() {
                    // The accepted password is kept for reconnections.
                    if let Some((pw, _)) = self.pending.take() {
                        self.password = Some(pw);
                    }
                    self.joined_as(name.clone(), members);
                    return Some(SessionEvent::Joined);
                }
                let ServerLine::Error(reason) = line else {
                    // `* Account NAME registered.` and other notices: the
                    // answer is still to come.
                    return None;
                };
                if back_to_name(reason) {
                    self.pending = None;
                    self.phase = Phase::NeedNick;
                    return Some(SessionEvent::Refused(reason.to_string()));
                }
                let automatic = match self.pending.take() {
                    Some((_, true)) => {
                        self.password = None;
                        true
                    }
                    _ => false,
                };
                // Every other error (too short, wrong, could not save,
                // control characters) leaves the server waiting for
                // another password.
                let again = !PASSWORD_GOODBYES.iter().any(|g| reason.starts_with(g));
                if again {
                    self.phase = Phase::NeedPassword(name.clone());
                }
                Some(SessionEvent::PasswordRefused {
                    reason: reason.to_string(),
                    again,
                    automatic,
                })
            }
            Phase::Joined => {
                let ServerLine::Notice(text) = line else {
                    return None;
                };
                if text.starts_with(&PING[NOTICE.len()..]) {
                    return Some(SessionEvent::Ping);
                }
                if let Some(members) = line.room_members() {
                    // Already in a room: this starts a move (`/join`). The
                    // list is the new room's; its name and topic follow.
                    let me = self.nick.clone()?;
                    self.users.set(members);
                    self.users.add(&me);
                    self.topic = None;
                    return Some(SessionEvent::Changed);
                }
                if let Some((name, room)) = welcome(text) {
                    let mut event = None;
                    // With accounts the name is spelled as registered
                    // (`ALICE` logs in as `alice`): take the server's.
                    let me = self.nick.clone()?;
                    if name != me && name.eq_ignore_ascii_case(&me) {
                        self.users.rename(&me, name);
                        self.nick = Some(name.to_string());
                        self.wanted = Some(name.to_string());
                        event = Some(SessionEvent::Changed);
                    }
                    if let Some(room) = room {
                        if self.room.as_deref() != Some(room) {
                            self.room = Some(room.to_string());
                            event = Some(SessionEvent::InRoom(room.to_string()));
                        }
                    }
                    return event;
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
                    RoomNotice::NowIn(room) => {
                        self.room = Some(room.to_string());
                        return Some(SessionEvent::Moved(room.to_string()));
                    }
                    RoomNotice::Topic(topic) => self.topic = Some(topic.to_string()),
                    RoomNotice::TopicOf { room, topic } => {
                        // Only our room's topic is kept.
                        if !self
                            .room
                            .as_deref()
                            .is_some_and(|r| r.eq_ignore_ascii_case(room))
                        {
                            return None;
                        }
                        self.topic = topic.map(str::to_string);
                    }
                }
                Some(SessionEvent::Changed)
            }
            Phase::NeedPassword(_) => match line {
                ServerLine::Error(reason) if back_to_name(reason) => {
                    self.phase = Phase::NeedNick;
                    Some(SessionEvent::Refused(reason.to_string()))
                }
                _ => None,
            },
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
        // The welcome names the room (once: the same line again changes
        // nothing).
        let welcome = "* Welcome, mee! 3 users online in #lobby. Type /help";
        assert_eq!(
            feed(&mut s, welcome),
            Some(SessionEvent::InRoom("#lobby".into()))
        );
        assert_eq!(s.room(), Some("#lobby"));
        assert_eq!(feed(&mut s, welcome), None);
    }

    /// The welcome names the room, whatever the server's default; a
    /// welcome without one (a server before rooms) leaves it unknown.
    #[test]
    fn the_welcome_names_the_room() {
        for (line, room) in [
            (
                "* Welcome, me! 1 user online in #main. Type /help for commands.",
                Some("#main"),
            ),
            (
                "* Welcome, me! 2 users online in #Big_room-2. Type /help for commands.",
                Some("#Big_room-2"),
            ),
            ("* Welcome, me! 2 users online. Type /help.", None),
            ("* Welcome, me! 2 users online in lobby. Type /help.", None),
            ("* Welcome, me! 2 users online in #a b. Type /help.", None),
        ] {
            let mut s = Session::new(Some("me".into()));
            s.on_connected();
            feed(&mut s, "* The room contains: ann");
            feed(&mut s, line);
            assert_eq!(s.room(), room, "{line}");
            assert_eq!(s.users().names(), ["ann", "me"], "{line}");
        }
    }

    fn in_lobby() -> Session {
        let mut s = Session::new(Some("me".into()));
        s.on_connected();
        feed(&mut s, "* The room contains: ann, bo");
        feed(
            &mut s,
            "* Welcome, me! 3 users online in #lobby. Type /help for commands.",
        );
        s
    }

    /// `/join #rust`: the room-contains line replaces the user list, the
    /// next names the room, the topic follows when there is one; entered
    /// and left lines then apply to the new room's list.
    #[test]
    fn a_move_replaces_the_room_and_its_users() {
        let mut s = in_lobby();
        assert_eq!(s.room(), Some("#lobby"));
        assert_eq!(s.topic(), None);
        assert_eq!(
            feed(&mut s, "* The room contains: carol"),
            Some(SessionEvent::Changed)
        );
        assert_eq!(s.users().names(), ["carol", "me"]);
        assert_eq!(
            feed(&mut s, "* You are now in #Rust."),
            Some(SessionEvent::Moved("#Rust".into()))
        );
        assert_eq!(s.room(), Some("#Rust"));
        assert_eq!(
            feed(&mut s, "* Topic: ownership: and borrowing"),
            Some(SessionEvent::Changed)
        );
        assert_eq!(s.topic(), Some("ownership: and borrowing"));
        assert!(s.joined());
        feed(&mut s, "* dan has entered the room");
        feed(&mut s, "* carol has left the room (moved to #lobby)");
        assert_eq!(s.users().names(), ["me", "dan"]);
        // Back to a room without a topic, and alone there: the topic goes.
        feed(&mut s, "* The room contains: ");
        assert_eq!(s.users().names(), ["me"]);
        assert_eq!(s.topic(), None);
        feed(&mut s, "* You are now in #lobby.");
        assert_eq!(s.room(), Some("#lobby"));
        // A reconnection forgets the room until the server names it.
        s.on_disconnected();
        assert_eq!((s.room(), s.topic()), (None, None));
    }

    /// After a reconnection the room we were in is offered for a `/join`,
    /// once, and only when the server put us elsewhere.
    #[test]
    fn the_lost_room_is_offered_after_the_welcome() {
        let welcome = "* Welcome, me! 1 user online in #lobby. Type /help for commands.";
        let mut s = in_lobby();
        feed(&mut s, "* The room contains: ");
        feed(&mut s, "* You are now in #rust.");
        s.on_disconnected();
        // Lost again before the welcome: still remembered.
        s.on_connected();
        s.on_disconnected();
        s.on_connected();
        feed(&mut s, "* The room contains: ");
        assert_eq!(s.take_room_to_rejoin(), None, "not before the welcome");
        assert_eq!(
            feed(&mut s, welcome),
            Some(SessionEvent::InRoom("#lobby".into()))
        );
        assert_eq!(s.take_room_to_rejoin(), Some("#rust".into()));
        assert_eq!(s.take_room_to_rejoin(), None);
        // Lost while in the default room: nothing to do.
        s.on_disconnected();
        s.on_connected();
        feed(&mut s, "* The room contains: ");
        feed(&mut s, welcome);
        assert_eq!(s.take_room_to_rejoin(), None);
    }

    #[test]
    fn the_topic_of_our_room_is_followed() {
        let mut s = in_lobby();
        let changed = Some(SessionEvent::Changed);
        assert_eq!(
            feed(&mut s, "* Topic of #Lobby (set by ann): hello: all"),
            changed
        );
        assert_eq!(s.topic(), Some("hello: all"));
        assert_eq!(feed(&mut s, "* #lobby has no topic."), changed);
        assert_eq!(s.topic(), None);
        assert_eq!(
            feed(&mut s, "* ann set the topic of #lobby: be kind"),
            changed
        );
        assert_eq!(s.topic(), Some("be kind"));
        // Another room's topic (a server that answers `/topic #other`) is
        // not ours.
        assert_eq!(feed(&mut s, "* ann set the topic of #other: no"), None);
        assert_eq!(feed(&mut s, "* #other has no topic."), None);
        assert_eq!(s.topic(), Some("be kind"));
        assert_eq!(feed(&mut s, "* ann cleared the topic of #lobby."), changed);
        assert_eq!(s.topic(), None);
        // Look-alikes change nothing: a chat line, a bad room name.
        feed(&mut s, "[ann] * ann set the topic of #lobby: fake");
        feed(&mut s, "* ann set the topic of lobby: fake");
        feed(&mut s, "* You are now in rust.");
        assert_eq!((s.room(), s.topic()), (Some("#lobby"), None));
        // `/rooms` changes nothing either.
        assert_eq!(feed(&mut s, "* Rooms: #lobby (3), #rust (1)"), None);
    }

    const PROMPT: &str = "* Password for alice? (A new name is registered with the password you send now: at least 8 characters.)";

    #[test]
    fn password_is_asked_then_remembered_for_reconnects() {
        let mut s = Session::new(Some("alice".into()));
        assert_eq!(s.on_connected(), Some("alice".into()));
        assert_eq!(
            feed(&mut s, PROMPT),
            Some(SessionEvent::PasswordWanted("alice".into()))
        );
        assert_eq!(s.phase(), &Phase::NeedPassword("alice".into()));
        assert!(s.wants_password());
        assert_eq!(s.nick(), Some("alice"));
        s.password_sent("hunter2");
        assert_eq!(s.phase(), &Phase::PasswordSent("alice".into()));
        assert_eq!(
            feed(
                &mut s,
                "! Password too short: a new account needs at least 8 characters. Send another password for alice."
            ),
            Some(SessionEvent::PasswordRefused {
                reason: "Password too short: a new account needs at least 8 characters. Send another password for alice.".into(),
                again: true,
                automatic: false,
            })
        );
        assert_eq!(s.phase(), &Phase::NeedPassword("alice".into()));
        // A refused password is not remembered.
        assert!(!s.has_password());
        s.password_sent("correct horse");
        assert_eq!(feed(&mut s, "* Account alice registered."), None);
        assert_eq!(
            feed(&mut s, "* The room contains: bob"),
            Some(SessionEvent::Joined)
        );
        assert!(s.joined());
        assert_eq!(s.users().names(), ["bob", "alice"]);
        assert!(s.has_password());
        // A reconnection answers the prompt by itself.
        s.on_disconnected();
        assert_eq!(s.on_connected(), Some("alice".into()));
        assert_eq!(
            feed(&mut s, PROMPT),
            Some(SessionEvent::SendPassword(Secret::new("correct horse")))
        );
        assert_eq!(s.phase(), &Phase::PasswordSent("alice".into()));
        assert_eq!(
            feed(&mut s, "* The room contains: "),
            Some(SessionEvent::Joined)
        );
        // The password never shows in debug output.
        assert!(!format!("{s:?}").contains("correct horse"));
    }

    #[test]
    fn a_refused_automatic_password_is_forgotten() {
        let mut s = Session::new(Some("alice".into()));
        s.set_password(Some(Secret::new("from a file")));
        s.on_connected();
        assert_eq!(
            feed(&mut s, PROMPT),
            Some(SessionEvent::SendPassword(Secret::new("from a file")))
        );
        let wrong = "! Wrong password for alice. Try again (2 attempts left).";
        assert_eq!(
            feed(&mut s, wrong),
            Some(SessionEvent::PasswordRefused {
                reason: wrong[2..].into(),
                again: true,
                automatic: true,
            })
        );
        assert!(!s.has_password());
        assert_eq!(s.phase(), &Phase::NeedPassword("alice".into()));
        // The user's own attempt is not automatic; the last failure closes.
        s.password_sent("typed");
        let bye = "! Wrong password. Too many failures; goodbye.";
        assert_eq!(
            feed(&mut s, bye),
            Some(SessionEvent::PasswordRefused {
                reason: bye[2..].into(),
                again: false,
                automatic: false,
            })
        );
        assert!(!s.wants_password());
        // The next connection asks the user again.
        s.on_disconnected();
        s.on_connected();
        assert_eq!(
            feed(&mut s, PROMPT),
            Some(SessionEvent::PasswordWanted("alice".into()))
        );
    }

    #[test]
    fn name_refusals_with_accounts_stay_refusals() {
        let mut s = Session::new(None);
        s.on_connected();
        s.nick_chosen("alice");
        let taken = "! alice is already logged in (one session per account). Choose another name.";
        assert_eq!(
            feed(&mut s, taken),
            Some(SessionEvent::Refused(taken[2..].into()))
        );
        assert_eq!(s.phase(), &Phase::NeedNick);
        // Lines while a password is wanted change nothing; a password is
        // only taken when one is wanted.
        s.password_sent("ignored");
        assert_eq!(s.phase(), &Phase::NeedNick);
        s.nick_chosen("ALICE");
        feed(&mut s, &PROMPT.replace("alice", "ALICE"));
        assert_eq!(s.phase(), &Phase::NeedPassword("ALICE".into()));
        assert_eq!(feed(&mut s, "* The room contains: bob"), None);
        s.password_sent("right one");
        feed(&mut s, "* The room contains: bob");
        // The server spells the name as registered.
        assert_eq!(
            feed(
                &mut s,
                "* Welcome, alice! 2 users online in #lobby. Type /help for commands."
            ),
            Some(SessionEvent::InRoom("#lobby".into()))
        );
        assert_eq!(s.nick(), Some("alice"));
        assert_eq!(s.users().names(), ["bob", "alice"]);
    }

    /// Two errors send the server back to the name prompt, not to another
    /// password: the next line must not be taken (and masked) as one.
    #[test]
    fn back_to_the_name_after_a_password() {
        let lost = "! alice has just logged in on another connection. Choose another name.";
        let spent = "! Too many new accounts from your address (at most 5 per hour). Try again in 12 min, or choose an existing account's name.";
        for (line, sent) in [(lost, false), (lost, true), (spent, true)] {
            let mut s = Session::new(None);
            s.on_connected();
            s.nick_chosen("alice");
            feed(&mut s, PROMPT);
            if sent {
                s.password_sent("alice-password");
            }
            assert_eq!(
                feed(&mut s, line),
                Some(SessionEvent::Refused(line[2..].into()))
            );
            assert_eq!(s.phase(), &Phase::NeedNick, "{line}");
            assert!(!s.wants_password());
        }
    }
}
