//! The chat itself: who is here, what each request means, who hears what.
//!
//! The core knows nothing about sockets or polls, and no grammar: requests
//! come in already decoded by the connection's dialect, and what happened
//! goes out as [`Event`]s addressed to an [`Audience`] through a [`Sink`].
//! It reads no clock while the loop gives it the time (`set_now`, for
//! invitation expiry), and never hashes a password: it asks the loop to,
//! through [`Sink::authenticate`], and hears back in [`Core::auth_done`].
//!
//! Users are in rooms (`#lobby`, `#rust`, ...). A room is created by its
//! first member and vanishes with its last, except the default room, which
//! always exists. A line user is in exactly one room at a time: choosing a
//! name puts it in the default room, and `/join` moves it.
//!
//! The loop (through the hub) calls it for: a connection arriving
//! ([`Core::connected`]), a request ([`Core::handle`]), a connection gone
//! ([`Core::disconnected`]), a password checked ([`Core::auth_done`]), an
//! invitation timer ([`Core::expire_invites`]), and shutdown. With
//! bridging on (`--redis`) also for what other processes say
//! ([`Core::remote`]) and a nickname claimed in Redis ([`Core::claim_done`]):
//! a name is then taken in two steps, checked here, claimed there.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{
    Audience, ClaimAnswer, ConnId, Event, LeaveReason, NameHolder, Relay, Request, RoomId, Sink,
    Stage, TextKind, Watch,
};
use super::{ConnTable, RoomError, validate_room};
use crate::accounts::{AuthJob, AuthOutcome};
use crate::config;
use crate::protocol;

/// One connection as the core sees it.
#[derive(Debug)]
struct Member {
    /// `None` until a nickname has been accepted.
    nick: Option<String>,
    /// With accounts: the name chosen, while the password is asked.
    login: Option<Login>,
    /// The partner of a private conversation: plain lines go to them only.
    pm_with: Option<ConnId>,
    /// The rooms it is in (lowercased names, shared with the room table),
    /// in the order joined.
    rooms: RoomList,
    /// In any number of rooms, joined one by one (IRC); otherwise in
    /// exactly one, the default room from the start (line users).
    many: bool,
    /// The user name shown in `nick!user@host` prefixes: IRC's `USER`;
    /// `None` (a line user): its nickname.
    user: Option<Box<str>>,
    /// Bridging: the nickname being claimed in Redis for it (to register,
    /// or to be renamed to), until [`Core::claim_done`].
    claiming: Option<Box<str>>,
}

/// The rooms a member is in. Most members (every line user) are in one:
/// that case holds the shared name inline, with no allocation of its own.
#[derive(Debug, Clone, Default)]
enum RoomList {
    #[default]
    None,
    One(Rc<str>),
    Many(Vec<Rc<str>>),
}

impl RoomList {
    fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&Rc<str>>, &[Rc<str>]) = match self {
            RoomList::None => (None, &[]),
            RoomList::One(r) => (Some(r), &[]),
            RoomList::Many(v) => (None, v),
        };
        one.into_iter().chain(many).map(|r| &**r)
    }

    fn first(&self) -> Option<&str> {
        self.iter().next()
    }

    fn len(&self) -> usize {
        match self {
            RoomList::None => 0,
            RoomList::One(_) => 1,
            RoomList::Many(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn contains(&self, key: &str) -> bool {
        self.iter().any(|r| r == key)
    }

    fn push(&mut self, key: Rc<str>) {
        *self = match std::mem::take(self) {
            RoomList::None => RoomList::One(key),
            RoomList::One(first) => RoomList::Many(vec![first, key]),
            RoomList::Many(mut v) => {
                v.push(key);
                RoomList::Many(v)
            }
        };
    }

    fn remove(&mut self, key: &str) {
        *self = match std::mem::take(self) {
            RoomList::One(r) if &*r == key => RoomList::None,
            RoomList::Many(mut v) => {
                v.retain(|r| &**r != key);
                match v.len() {
                    0 => RoomList::None,
                    1 => RoomList::One(v.remove(0)),
                    _ => RoomList::Many(v),
                }
            }
            other => other,
        };
    }
}

/// A room.
#[derive(Debug)]
struct Channel {
    id: RoomId,
    /// As first written (`#Rust`); looked up lowercased.
    name: String,
    /// In join order: the broadcast list.
    members: Vec<ConnId>,
    /// The topic and who set it.
    topic: Option<(String, String)>,
    /// Members who joined quietly (`--quiet-joins-above`) and have not
    /// spoken here since, sorted. Empty, and so without an allocation,
    /// unless the room has been above the threshold.
    hidden: Vec<ConnId>,
    /// With bridging on: the members on other processes that we know of,
    /// in the order we heard of them. Empty (no allocation) otherwise.
    remote: Vec<RemoteMember>,
    /// The local members were told its remote members quit when the link
    /// to the others went down: the answers to the resync (`here`) are
    /// news to them, shown as entries. Until the last local member leaves.
    told_gone: bool,
}

/// A member of a room on another process (see [`Core::remote`]).
#[derive(Debug, Clone)]
struct RemoteMember {
    node: Box<str>,
    nick: Box<str>,
    user: Box<str>,
}

impl Channel {
    /// Where (`node`, `nick`) is in the remote list.
    fn remote_at(&self, node: &str, nick: &str) -> Option<usize> {
        self.remote
            .iter()
            .position(|r| &*r.node == node && r.nick.eq_ignore_ascii_case(nick))
    }
}

impl Channel {
    fn new(name: &str, id: RoomId) -> Channel {
        Channel {
            id,
            name: name.to_string(),
            members: Vec::new(),
            topic: None,
            hidden: Vec::new(),
            remote: Vec::new(),
            told_gone: false,
        }
    }

    fn is_hidden(&self, conn: ConnId) -> bool {
        self.hidden.binary_search(&conn).is_ok()
    }

    fn hide(&mut self, conn: ConnId) {
        if let Err(at) = self.hidden.binary_search(&conn) {
            self.hidden.insert(at, conn);
        }
    }

    /// Whether `conn` was hidden.
    fn unhide(&mut self, conn: ConnId) -> bool {
        match self.hidden.binary_search(&conn) {
            Ok(at) => {
                self.hidden.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// The members who know `conn` is here: all of them, unless it joined
    /// quietly and has not spoken since; then those who joined after it,
    /// whose list of names showed it.
    fn knowers(&self, conn: ConnId) -> &[ConnId] {
        if !self.is_hidden(conn) {
            return &self.members;
        }
        match self.members.iter().position(|&c| c == conn) {
            Some(at) => &self.members[at + 1..],
            None => &[],
        }
    }
}

/// A login in progress: name chosen, password asked (or being checked).
#[derive(Debug)]
struct Login {
    name: String,
    /// A job is with the loop; its answer comes through `auth_done`.
    checking: bool,
    failures: u32,
}

/// A pending `/pm` invitation.
#[derive(Debug, Clone, Copy)]
struct Invite {
    from: ConnId,
    to: ConnId,
    expires: Instant,
}

/// A read-only look at a room, for dialects that answer queries (IRC's
/// NAMES, WHO, LIST).
#[derive(Debug, Clone)]
pub struct RoomView<'a> {
    pub name: &'a str,
    /// `(connection, nick, user)` in join order.
    pub members: Vec<(ConnId, &'a str, &'a str)>,
    /// `(nick, user)` of members on other processes (bridging only), in
    /// the order we heard of them.
    pub remote: Vec<(&'a str, &'a str)>,
    /// The topic and who set it.
    pub topic: Option<(&'a str, &'a str)>,
}

/// The chat state: every connection the loop has told us about.
#[derive(Debug, Default)]
pub struct Core {
    members: ConnTable<Member>,
    /// Connections with a nickname, in the order they chose it.
    registered: Vec<ConnId>,
    /// Lowercased room name -> room.
    rooms: HashMap<Rc<str>, Channel>,
    /// Lowercased name of the room a new line user starts in.
    default_room: String,
    /// Lowercased nickname -> connection, for uniqueness and `/msg`.
    by_nick: HashMap<String, ConnId>,
    /// Pending private-conversation invitations (few: a linear scan is fine).
    invites: Vec<Invite>,
    /// How long an invitation stays valid.
    invite_timeout: Duration,
    /// The loop's time for this turn (`set_now`); `None`: read the clock.
    now: Option<Instant>,
    /// Names need a password (`--accounts`). Several connections may be
    /// logging in to one name at once (the first right password wins), so
    /// that typing a name without its password cannot lock its owner out.
    accounts: bool,
    /// The last [`RoomId`] handed out.
    last_room_id: u64,
    /// `--quiet-joins-above N`: joins to a room that then has more than N
    /// members are not announced, and leaves from one are not told to line
    /// users. `None`: off.
    quiet_above: Option<usize>,
    /// Bridging (`--redis`) is on: rooms and nicknames are watched, and
    /// what other processes must hear goes to [`Sink::relay`].
    bridged: bool,
    /// Bridging: lowercased nicknames being claimed -> who for, so that
    /// two local users cannot claim one name at once.
    claims: HashMap<String, ConnId>,
}

impl Core {
    /// A core whose default room is [`config::DEFAULT_ROOM`].
    pub fn new() -> Core {
        let mut core = Core {
            invite_timeout: config::DEFAULT_INVITE_TIMEOUT,
            ..Core::default()
        };
        core.set_default_room(config::DEFAULT_ROOM);
        core
    }

    /// Names the room new line users start in (`--default-room`); it
    /// exists even when empty. Call before anyone joins.
    pub fn set_default_room(&mut self, name: &str) {
        let key = name.to_ascii_lowercase();
        self.rooms.remove(&*self.default_room);
        let id = self.new_room_id();
        self.rooms
            .insert(key.as_str().into(), Channel::new(name, id));
        self.default_room = key;
    }

    /// A fresh room id (one may be wasted when the room exists already).
    fn new_room_id(&mut self) -> RoomId {
        self.last_room_id += 1;
        RoomId(self.last_room_id)
    }

    /// Turns accounts on: after the nickname, a password is asked and
    /// checked through [`Sink::authenticate`].
    pub fn set_accounts(&mut self, on: bool) {
        self.accounts = on;
    }

    /// Sets how long a `/pm` invitation stays valid.
    pub fn set_invite_timeout(&mut self, timeout: Duration) {
        self.invite_timeout = timeout;
    }

    /// `--quiet-joins-above N` (`None`: off). A join is quiet when the room,
    /// the joiner counted, then has more than N members: nobody is told,
    /// and the joiner stays hidden in that room until it speaks there,
    /// when the members who joined before it are told it entered (IRC
    /// shows that JOIN, line users see nothing). A hidden member's leave
    /// (part, move, quit) reaches only those who joined after it (their
    /// list of names showed it), and its renames too. A leave from a room
    /// of more than N members (the leaver counted) is quiet for line
    /// users. Lists of names show everyone.
    pub fn set_quiet_joins_above(&mut self, n: Option<usize>) {
        self.quiet_above = n;
    }

    /// Whether a room of `len` members is above `--quiet-joins-above`.
    fn is_big(&self, len: usize) -> bool {
        self.quiet_above.is_some_and(|n| len > n)
    }

    /// Turns bridging on (`--redis`): from now on the core tells its sink
    /// which rooms and nicknames to watch and what to relay, and a private
    /// line to a nickname it does not know is relayed instead of refused.
    /// Call before anyone joins.
    pub fn set_bridged(&mut self, on: bool) {
        self.bridged = on;
    }

    /// Gives the core the loop's current time (once per turn), so that
    /// invitations expire without the core reading the clock itself.
    pub fn set_now(&mut self, now: Instant) {
        self.now = Some(now);
    }

    /// The loop's time, or the clock for callers that never set it.
    fn now(&self) -> Instant {
        self.now.unwrap_or_else(Instant::now)
    }

    /// Where `conn` is in its life (a dialect reads lines by it).
    pub fn stage(&self, conn: ConnId) -> Stage {
        match self.members.get(conn) {
            None => Stage::Gone,
            Some(m) if m.nick.is_some() => Stage::Joined,
            Some(m) if m.claiming.is_some() => Stage::Claiming,
            Some(m) if m.login.is_some() => Stage::Password,
            Some(_) => Stage::Naming,
        }
    }

    /// `conn`'s private-conversation partner, if it is in one.
    pub fn pm_partner(&self, conn: ConnId) -> Option<ConnId> {
        self.members.get(conn)?.pm_with
    }

    /// Number of rooms (the default room always exists).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Number of users who have chosen a nickname.
    pub fn joined_count(&self) -> usize {
        self.registered.len()
    }

    /// Whether `conn` has chosen a nickname.
    pub fn is_joined(&self, conn: ConnId) -> bool {
        self.nick(conn).is_some()
    }

    /// `conn`'s nickname, once it has one.
    pub fn nick(&self, conn: ConnId) -> Option<&str> {
        self.members.get(conn)?.nick.as_deref()
    }

    /// `conn`'s user name (for `nick!user@host`), once it has a nickname.
    pub fn user(&self, conn: ConnId) -> Option<&str> {
        let m = self.members.get(conn)?;
        let nick = m.nick.as_deref()?;
        Some(m.user.as_deref().unwrap_or(nick))
    }

    /// The connection with nickname `nick` (any case).
    pub fn find(&self, nick: &str) -> Option<ConnId> {
        self.by_nick.get(&nick.to_ascii_lowercase()).copied()
    }

    /// Bridging: a user of another process that we know of (it shares a
    /// room with a local user): its nickname as written, its user name,
    /// its node, and the rooms we know it in. Answers WHOIS and friends
    /// without a round trip to Redis.
    pub fn remote_user(&self, nick: &str) -> Option<(&str, &str, &str, Vec<&str>)> {
        let mut found: Option<(&str, &str, &str, Vec<&str>)> = None;
        let mut rooms: Vec<&Channel> = self.rooms.values().collect();
        rooms.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for channel in rooms {
            let Some(r) = channel
                .remote
                .iter()
                .find(|r| r.nick.eq_ignore_ascii_case(nick))
            else {
                continue;
            };
            found
                .get_or_insert_with(|| (&*r.nick, &*r.user, &*r.node, Vec::new()))
                .3
                .push(&channel.name);
        }
        found
    }

    /// Whether `conn` may have `nick`: no one else has it.
    pub fn nick_free_for(&self, conn: ConnId, nick: &str) -> bool {
        self.find(nick).is_none_or(|owner| owner == conn)
    }

    /// A room by name (any case): its name as written, its members' nicks
    /// in join order, its topic and who set it.
    pub fn room(&self, name: &str) -> Option<RoomView<'_>> {
        let room = self.rooms.get(&*name.to_ascii_lowercase())?;
        Some(self.view(room))
    }

    /// Every room, by name.
    pub fn all_rooms(&self) -> Vec<RoomView<'_>> {
        let mut rooms: Vec<RoomView<'_>> = self.rooms.values().map(|r| self.view(r)).collect();
        rooms.sort_unstable_by_key(|r| r.name.to_ascii_lowercase());
        rooms
    }

    fn view<'a>(&'a self, room: &'a Channel) -> RoomView<'a> {
        RoomView {
            name: &room.name,
            members: room
                .members
                .iter()
                .filter_map(|&c| Some((c, self.nick(c)?, self.user(c)?)))
                .collect(),
            topic: room.topic.as_ref().map(|(t, by)| (t.as_str(), by.as_str())),
            remote: room.remote.iter().map(|r| (&*r.nick, &*r.user)).collect(),
        }
    }

    /// The joined connections in join order, with their nicknames.
    pub fn users(&self) -> impl Iterator<Item = (ConnId, &str)> {
        self.registered
            .iter()
            .filter_map(|&c| self.nick(c).map(|n| (c, n)))
    }

    /// The rooms `conn` is in, by display name, in the order joined.
    pub fn rooms_of(&self, conn: ConnId) -> impl Iterator<Item = &str> {
        self.members
            .get(conn)
            .into_iter()
            .flat_map(|m| m.rooms.iter())
            .filter_map(|key| self.rooms.get(key).map(|r| r.name.as_str()))
    }

    /// The nicknames of a room's members in join order, for lists.
    fn names<'a>(&'a self, channel: &'a Channel) -> Vec<&'a str> {
        channel
            .members
            .iter()
            .filter_map(|&c| self.nick(c))
            .chain(channel.remote.iter().map(|r| &*r.nick))
            .collect()
    }

    /// The room a single-room user is in (its first room).
    fn home(&self, conn: ConnId) -> Option<&Channel> {
        let key = self.members.get(conn)?.rooms.first()?;
        self.rooms.get(key)
    }

    /// Checks the core's indexes against each other: every joined user is
    /// in the nickname index exactly once and vice versa. For tests.
    pub fn check_consistency(&self) -> Result<(), String> {
        if self.registered.len() != self.by_nick.len() {
            return Err(format!(
                "{} joined but {} nicknames indexed",
                self.registered.len(),
                self.by_nick.len()
            ));
        }
        for (key, room) in &self.rooms {
            if room.members.is_empty() && **key != *self.default_room {
                return Err(format!("{} is empty but still exists", room.name));
            }
            for c in &room.members {
                let listed = self.members.get(*c).is_some_and(|m| m.rooms.contains(key));
                if !listed || self.nick(*c).is_none() {
                    return Err(format!("#{c} is in {} but does not know it", room.name));
                }
            }
            if !room.hidden.windows(2).all(|w| w[0] < w[1]) {
                return Err(format!("{}: hidden list not sorted", room.name));
            }
            if let Some(c) = room.hidden.iter().find(|c| !room.members.contains(c)) {
                return Err(format!("#{c} is hidden in {} but not in it", room.name));
            }
        }
        for (c, m) in self.members.iter() {
            for key in m.rooms.iter() {
                if !self.rooms.get(key).is_some_and(|r| r.members.contains(&c)) {
                    return Err(format!("#{c} thinks it is in {key}"));
                }
            }
        }
        for &conn in &self.registered {
            let nick = self
                .nick(conn)
                .ok_or(format!("#{conn} joined without a nick"))?;
            if self.by_nick.get(&nick.to_ascii_lowercase()) != Some(&conn) {
                return Err(format!("{nick} (#{conn}) is not indexed"));
            }
            if self.registered.iter().filter(|&&c| c == conn).count() != 1 {
                return Err(format!("#{conn} joined twice"));
            }
        }
        Ok(())
    }

    /// A new connection, not yet named. Says nothing: greeting is the
    /// dialect's business.
    pub fn connected(&mut self, conn: ConnId) {
        self.members.insert(
            conn,
            Member {
                nick: None,
                login: None,
                pm_with: None,
                rooms: RoomList::default(),
                many: false,
                user: None,
                claiming: None,
            },
        );
    }

    /// Makes `conn` a many-room user (an IRC client) whose prefixes show
    /// `user`: registering will not put it in a room; it joins rooms
    /// itself.
    pub fn set_many_rooms(&mut self, conn: ConnId, user: &str) {
        if let Some(m) = self.members.get_mut(conn) {
            m.many = true;
            m.user = Some(user.into());
        }
    }

    /// One request from `conn`.
    pub fn handle(&mut self, conn: ConnId, request: Request<'_>, out: &mut impl Sink) {
        match (self.stage(conn), request) {
            (Stage::Gone, _) => {} // left already (e.g. quit earlier in the same read)
            (_, Request::Quit { reason }) => self.quit(conn, reason.map(str::to_string), out),
            (Stage::Naming, Request::Register { nick }) => self.choose_name(conn, nick, out),
            (Stage::Password, Request::Password { password }) => self.password(conn, password, out),
            (Stage::Joined, request) => self.joined_request(conn, request, out),
            // A dialect sends only what fits the stage; anything else is
            // dropped rather than guessed at.
            _ => {}
        }
    }

    /// A joined user's request.
    fn joined_request(&mut self, conn: ConnId, request: Request<'_>, out: &mut impl Sink) {
        match request {
            Request::Say { room, text, kind } => self.say(conn, room, text, kind, out),
            Request::Msg { to, text, kind } => self.private(conn, to, text, kind, out),
            Request::Who => {
                if let Some(room) = self.home(conn) {
                    let names = self.names(room);
                    let event = Event::Users {
                        room: &room.name,
                        names: &names,
                    };
                    out.emit(Audience::One(conn), &event);
                }
            }
            Request::Join { room } => self.join(conn, room, out),
            Request::Part { room, reason } => self.part(conn, room, reason, out),
            Request::Rooms => {
                let mut rooms: Vec<(&str, usize)> = self
                    .rooms
                    .values()
                    .map(|r| (r.name.as_str(), r.members.len()))
                    .collect();
                rooms.sort_unstable_by_key(|(name, _)| name.to_ascii_lowercase());
                out.emit(Audience::One(conn), &Event::RoomList { rooms: &rooms });
            }
            Request::Topic { room, text } => self.topic(conn, room, text, out),
            Request::Nick { .. } if self.accounts => {
                out.emit(Audience::One(conn), &Event::NickLocked)
            }
            Request::Nick { new } => self.rename(conn, new, out),
            Request::Invite { nick } => self.invite(conn, nick, out),
            Request::Answer { nick, accept } => self.answer(conn, nick, accept, out),
            Request::EndPrivate => self.end_pm(conn, out),
            Request::Register { .. } | Request::Password { .. } | Request::Quit { .. } => {}
        }
    }

    /// `conn` is gone (EOF, reset, write error, or the loop kicked it).
    /// Everyone else is told, with the reason. Safe to call twice.
    pub fn disconnected(&mut self, conn: ConnId, reason: &LeaveReason, out: &mut impl Sink) {
        let Some(member) = self.members.remove(conn) else {
            return;
        };
        if let Some(claimed) = &member.claiming {
            // Whatever Redis answers, the name is not kept for nobody.
            self.claims.remove(&claimed.to_ascii_lowercase());
            out.watch(Watch::Nick(claimed), false);
        }
        let Some(nick) = member.nick else {
            return; // never joined: nobody knew it was here
        };
        log::info!("{nick} (#{conn}) left: {reason}");
        self.invites.retain(|i| i.from != conn && i.to != conn);
        if let Some(partner) = member.pm_with {
            self.end_pm_of(partner);
            out.emit(Audience::One(partner), &Event::PartnerLeft { nick: &nick });
            log::info!("private conversation ended: {nick} left");
        }
        self.by_nick.remove(&nick.to_ascii_lowercase());
        self.registered.retain(|&c| c != conn);
        // Told while still in the rooms: who knows of it depends on where
        // it sits in each room's list.
        let event = |quiet| Event::Quit {
            nick: &nick,
            user: member.user.as_deref().unwrap_or(&nick),
            reason,
            quiet,
        };
        self.to_knowers(conn, &member.rooms, false, &event(false), &event(true), out);
        if self.bridged {
            out.watch(Watch::Nick(&nick), false);
            let user = member.user.as_deref().unwrap_or(&nick);
            for key in member.rooms.iter() {
                if let Some(room) = self.rooms.get(key) {
                    let relay = Relay::Quit {
                        room: &room.name,
                        nick: &nick,
                        user,
                        reason: reason.clone(),
                    };
                    out.relay(conn, &relay);
                }
            }
        }
        for key in member.rooms.iter() {
            self.leave_room(conn, key, out);
        }
    }

    /// The server is stopping: tell everyone and close every connection.
    pub fn shutdown(&mut self, out: &mut impl Sink) {
        for (conn, m) in self.members.iter() {
            out.emit(Audience::One(conn), &Event::ShuttingDown);
            out.close(conn);
            if let (true, Some(nick)) = (self.bridged, m.nick.as_deref()) {
                // Other processes see our users leave (the loop still
                // writes to Redis while it drains).
                let reason = LeaveReason::Quit(Some("server shutting down".into()));
                for room in m.rooms.iter().filter_map(|key| self.rooms.get(key)) {
                    let relay = Relay::Quit {
                        room: &room.name,
                        nick,
                        user: m.user.as_deref().unwrap_or(nick),
                        reason: reason.clone(),
                    };
                    out.relay(conn, &relay);
                }
            }
        }
        self.members.clear();
        self.registered.clear();
        self.rooms.retain(|key, _| **key == *self.default_room);
        for room in self.rooms.values_mut() {
            room.members.clear();
            room.hidden.clear();
        }
        self.by_nick.clear();
        self.invites.clear();
    }

    /// A wanted nickname: joins at once, or with accounts asks for the
    /// password first.
    fn choose_name(&mut self, conn: ConnId, name: &str, out: &mut impl Sink) {
        if !self.accounts {
            return self.try_join(conn, name, out);
        }
        if let Err(e) = self.check_nick(conn, name) {
            return out.emit(Audience::One(conn), &e);
        }
        if let Some(m) = self.members.get_mut(conn) {
            m.login = Some(Login {
                name: name.to_string(),
                checking: false,
                failures: 0,
            });
        }
        out.password_prompt(conn, true);
        let event = Event::PasswordAsked {
            name,
            min: config::MIN_PASSWORD_LEN,
        };
        out.emit(Audience::One(conn), &event);
    }

    /// The password for the name chosen. Never logged or echoed.
    fn password(&mut self, conn: ConnId, password: &str, out: &mut impl Sink) {
        let Some(login) = self.members.get_mut(conn).and_then(|m| m.login.as_mut()) else {
            return;
        };
        if login.checking {
            // The loop stops reading a connection while its job runs, so
            // this only happens with other sinks.
            return out.emit(Audience::One(conn), &Event::StillChecking);
        }
        login.checking = true;
        let job = AuthJob {
            name: login.name.clone(),
            password: password.to_string(),
        };
        out.authenticate(conn, job);
    }

    /// The loop's answer to a [`Sink::authenticate`] job for `conn`.
    pub fn auth_done(&mut self, conn: ConnId, outcome: AuthOutcome, out: &mut impl Sink) {
        let Some(member) = self.members.get_mut(conn) else {
            return; // left while its job was queued
        };
        let Some(login) = member.login.as_mut() else {
            return;
        };
        login.checking = false;
        let name = login.name.clone();
        if self.by_nick.contains_key(&name.to_ascii_lowercase()) {
            // Another connection logged in to this name while the check
            // ran: whatever the answer, this login is over.
            return self.lost_login(conn, &name, out);
        }
        let to = Audience::One(conn);
        match outcome {
            AuthOutcome::LoggedIn { name: stored } => {
                self.finish_login(conn, &name, &stored, out);
            }
            AuthOutcome::Registered { name: stored } => {
                out.emit(to, &Event::AccountRegistered { name: &stored });
                self.finish_login(conn, &name, &stored, out);
            }
            AuthOutcome::WrongPassword => {
                login.failures += 1;
                let left = config::MAX_LOGIN_FAILURES.saturating_sub(login.failures);
                out.emit(to, &Event::WrongPassword { name: &name, left });
                if left == 0 {
                    self.disconnected(conn, &LeaveReason::Closed, out);
                    out.close(conn);
                }
            }
            AuthOutcome::TooShort { min } => {
                out.emit(to, &Event::PasswordTooShort { name: &name, min });
            }
            AuthOutcome::SaveFailed => out.emit(to, &Event::SaveFailed { name: &name }),
            AuthOutcome::NoNewAccounts(spent) => {
                if let Some(m) = self.members.get_mut(conn) {
                    m.login = None;
                }
                out.password_prompt(conn, false);
                out.emit(to, &Event::NoNewAccounts(spent));
            }
        }
    }

    /// Password accepted: the login becomes the nickname, and every other
    /// connection waiting for a password for that name is told and asked
    /// for another name (one whose check is running hears it with its
    /// answer, in `auth_done`).
    fn finish_login(&mut self, conn: ConnId, typed: &str, stored: &str, out: &mut impl Sink) {
        if let Some(m) = self.members.get_mut(conn) {
            m.login = None;
        }
        out.password_prompt(conn, false);
        self.try_join(conn, stored, out);
        if !self.is_joined(conn) {
            return;
        }
        // A scan of every member, but only on a successful login, which
        // has just cost a hash of milliseconds anyway.
        let losers: Vec<(ConnId, String)> = self
            .members
            .iter()
            .filter_map(|(c, m)| {
                let l = m.login.as_ref()?;
                (!l.checking && l.name.eq_ignore_ascii_case(typed)).then(|| (c, l.name.clone()))
            })
            .collect();
        for (other, name) in losers {
            self.lost_login(other, &name, out);
        }
    }

    /// `conn` was entering the password for `name` when another connection
    /// logged in to it: back to the name prompt.
    fn lost_login(&mut self, conn: ConnId, name: &str, out: &mut impl Sink) {
        if let Some(m) = self.members.get_mut(conn) {
            m.login = None;
        }
        out.password_prompt(conn, false);
        let nick = self
            .by_nick
            .get(&name.to_ascii_lowercase())
            .and_then(|&c| self.nick(c))
            .unwrap_or(name);
        out.emit(Audience::One(conn), &Event::LoginLost { name: nick });
    }

    fn try_join(&mut self, conn: ConnId, nick: &str, out: &mut impl Sink) {
        if let Err(e) = self.check_nick(conn, nick) {
            return out.emit(Audience::One(conn), &e);
        }
        if self.bridged {
            return self.claim(conn, nick, out);
        }
        self.admit(conn, nick, out);
    }

    /// Bridging: asks the sink to claim `nick` for `conn` in Redis; the
    /// answer comes to [`Core::claim_done`]. Refused at once if Redis
    /// cannot be asked: a name that might be someone else's elsewhere is
    /// never given out unchecked.
    fn claim(&mut self, conn: ConnId, nick: &str, out: &mut impl Sink) {
        if !out.claim(conn, nick) {
            log::info!("#{conn}: {nick} refused: names cannot be checked now");
            return out.emit(Audience::One(conn), &Event::NamesUnavailable { nick });
        }
        if let Some(m) = self.members.get_mut(conn) {
            m.claiming = Some(nick.into());
        }
        self.claims.insert(nick.to_ascii_lowercase(), conn);
    }

    /// The bridge's answer to the claim for `conn` (see [`Sink::claim`]):
    /// the registration or rename goes through, or is refused.
    pub fn claim_done(&mut self, conn: ConnId, answer: ClaimAnswer, out: &mut impl Sink) {
        let Some(m) = self.members.get_mut(conn) else {
            return;
        };
        let Some(nick) = m.claiming.take() else {
            return;
        };
        let renaming = m.nick.is_some();
        self.claims.remove(&nick.to_ascii_lowercase());
        let to = Audience::One(conn);
        match answer {
            ClaimAnswer::Granted if renaming => self.apply_rename(conn, &nick, out),
            ClaimAnswer::Granted => self.admit(conn, &nick, out),
            ClaimAnswer::Taken => {
                log::info!("#{conn}: {nick} is taken on another process");
                let holder = NameHolder::Nickname;
                out.emit(
                    to,
                    &Event::NameInUse {
                        nick: &nick,
                        holder,
                    },
                );
            }
            ClaimAnswer::Unavailable => {
                out.emit(to, &Event::NamesUnavailable { nick: &nick });
            }
        }
    }

    /// Bridging: the user called `old` here was found, on re-claiming its
    /// name after Redis came back, to share it with a user of another
    /// process who took it while Redis was away; the bridge claimed `new`
    /// for it instead. Like IRC's nick collisions, the later claim yields.
    pub fn collision(&mut self, old: &str, new: &str, out: &mut impl Sink) {
        let Some(conn) = self.find(old) else {
            return;
        };
        let old = self.nick(conn).unwrap_or(old).to_string();
        log::warn!("#{conn}: {old} was taken on another process meanwhile; renamed to {new}");
        out.emit(
            Audience::One(conn),
            &Event::NickCollision { old: &old, new },
        );
        self.apply_rename(conn, new, out);
    }

    /// Bridging: tells the other processes again who is in each room here,
    /// after they may have forgotten us (a reaper may have said we were
    /// gone: our lease lapsed, or our command link was down). One
    /// [`Relay::Entered`] per local member:
    /// where its quit was shown, its return is shown too; where it was not
    /// forgotten (Redis only restarted), an entry of someone present is
    /// nothing.
    pub fn announce_all(&self, out: &mut impl Sink) {
        for channel in self.rooms.values() {
            self.announce(channel, true, out);
        }
    }

    /// One relay per local member of `channel`: [`Relay::Entered`] if it
    /// comes `back`, else [`Relay::Here`] (the answer to a
    /// [`Relay::Sync`]: members who were there all along, shown only where
    /// there is a member list).
    fn announce(&self, channel: &Channel, back: bool, out: &mut impl Sink) {
        for &conn in &channel.members {
            if let (Some(nick), Some(user)) = (self.nick(conn), self.user(conn)) {
                let room = &channel.name;
                let relay = if back {
                    Relay::Entered { room, nick, user }
                } else {
                    Relay::Here { room, nick, user }
                };
                out.relay(conn, &relay);
            }
        }
    }

    /// Gives `conn` the nickname `nick` (checked, and claimed when
    /// bridging): a line user enters the default room; an IRC user is
    /// registered and joins rooms itself.
    fn admit(&mut self, conn: ConnId, nick: &str, out: &mut impl Sink) {
        self.by_nick.insert(nick.to_ascii_lowercase(), conn);
        if let Some(member) = self.members.get_mut(conn) {
            member.nick = Some(nick.to_string());
        }
        log::info!("#{conn} joined as {nick}");
        self.registered.push(conn);
        if self.bridged {
            out.watch(Watch::Nick(nick), true);
        }
        let Some(many) = self.members.get(conn).map(|m| m.many) else {
            return;
        };
        if many {
            let event = Event::Registered {
                nick,
                users: self.registered.len(),
                rooms: self.rooms.len(),
            };
            return out.emit(Audience::One(conn), &event);
        }
        let key = self.default_room.clone();
        if let Some(room) = self.rooms.get(&*key) {
            let others = self.names(room);
            let room = &room.name;
            out.emit(
                Audience::One(conn),
                &Event::Welcome {
                    nick,
                    room,
                    others: &others,
                },
            );
        }
        self.enter_room(conn, &key, out);
    }

    /// Puts `conn` (named) into room `key`, creating it, and tells the
    /// members already there, unless the join is quiet (then it is hidden
    /// there until it speaks).
    fn enter_room(&mut self, conn: ConnId, key: &str, out: &mut impl Sink) {
        let (Some(nick), Some(user)) = (self.nick(conn), self.user(conn)) else {
            return;
        };
        let mut quiet = false;
        if let Some(room) = self.rooms.get(key) {
            // The joiner counts: the room it is in now is the one compared.
            quiet = self.is_big(room.members.len() + 1);
            if !quiet {
                let event = Event::Entered {
                    nick,
                    user,
                    room: &room.name,
                    quiet: false,
                };
                Self::tell(room, &event, out);
            }
        }
        if let Some(room) = self.rooms.get_mut(key) {
            room.members.push(conn);
            if quiet {
                room.hide(conn);
            }
        }
        if let Some(m) = self.members.get_mut(conn) {
            if let Some((shared, _)) = self.rooms.get_key_value(key) {
                m.rooms.push(Rc::clone(shared));
            }
        }
        if self.bridged {
            let (Some(room), Some(nick), Some(user)) =
                (self.rooms.get(key), self.nick(conn), self.user(conn))
            else {
                return;
            };
            if room.members.len() == 1 {
                out.watch(Watch::Room(key), true);
            }
            let relay = Relay::Entered {
                room: &room.name,
                nick,
                user,
            };
            out.relay(conn, &relay);
        }
    }

    /// Takes `conn` out of room `key` (deleting the room if that empties
    /// it and it is not the default). Tells nobody; with bridging, stops
    /// watching the room once no local member is left (and forgets its
    /// remote members: we no longer hear of them).
    fn leave_room(&mut self, conn: ConnId, key: &str, out: &mut impl Sink) {
        if let Some(room) = self.rooms.get_mut(key) {
            room.members.retain(|&c| c != conn);
            room.unhide(conn);
            if room.members.is_empty() && self.bridged {
                out.watch(Watch::Room(key), false);
                room.remote = Vec::new();
                room.told_gone = false;
            }
            if room.members.is_empty() && key != self.default_room {
                self.rooms.remove(key);
            }
        }
        if let Some(m) = self.members.get_mut(conn) {
            m.rooms.remove(key);
        }
    }

    /// `/join ROOM`: a single-room user moves there. The old room hears it
    /// left and where to; the new one hears it entered.
    fn join(&mut self, conn: ConnId, name: &str, out: &mut impl Sink) {
        let me = Audience::One(conn);
        if let Err(RoomError) = validate_room(name) {
            return out.emit(me, &Event::RoomInvalid { name });
        }
        let key = name.to_ascii_lowercase();
        if self.members.get(conn).is_some_and(|m| m.many) {
            return self.join_another(conn, name, &key, out);
        }
        let Some(old) = self
            .members
            .get(conn)
            .and_then(|m| m.rooms.first())
            .map(str::to_string)
        else {
            return;
        };
        if old == key {
            let room = self.rooms.get(&*key).map_or(name, |r| r.name.as_str());
            return out.emit(me, &Event::AlreadyInRoom { room });
        }
        let Some(nick) = self.nick(conn).map(str::to_string) else {
            return;
        };
        let id = self.new_room_id();
        let target = self
            .rooms
            .entry(key.as_str().into())
            .or_insert_with(|| Channel::new(name, id))
            .name
            .clone();
        let reason = LeaveReason::Moved(target.clone());
        self.announce_leave(conn, &old, &reason, false, out);
        self.leave_room(conn, &old, out);
        log::info!("{nick} (#{conn}) moved to {target}");
        if let Some(room) = self.rooms.get(&*key) {
            let others = self.names(room);
            let topic = room.topic.as_ref().map(|(text, _)| text.as_str());
            let event = Event::Moved {
                room: &room.name,
                others: &others,
                topic,
            };
            out.emit(me, &event);
        }
        self.enter_room(conn, &key, out);
    }

    /// A many-room user joins one more room (nothing happens if it is in
    /// it already): the members hear it entered, and it gets the list of
    /// names and the topic.
    fn join_another(&mut self, conn: ConnId, name: &str, key: &str, out: &mut impl Sink) {
        let Some(m) = self.members.get(conn) else {
            return;
        };
        if m.rooms.iter().any(|r| r == key) {
            return;
        }
        if m.rooms.len() >= config::MAX_ROOMS_PER_USER {
            return out.emit(Audience::One(conn), &Event::TooManyRooms { room: name });
        }
        let id = self.new_room_id();
        self.rooms
            .entry(key.into())
            .or_insert_with(|| Channel::new(name, id));
        self.enter_room(conn, key, out);
        let (Some(room), Some(nick), Some(user)) =
            (self.rooms.get(key), self.nick(conn), self.user(conn))
        else {
            return;
        };
        log::info!("{nick} (#{conn}) joined {}", room.name);
        let names = self.names(room);
        let topic = room.topic.as_ref().map(|(t, by)| (t.as_str(), by.as_str()));
        let event = Event::Joined {
            nick,
            user,
            room: &room.name,
            names: &names,
            topic,
        };
        out.emit(Audience::One(conn), &event);
    }

    /// Leaves one room. Single-room users cannot (they would be nowhere);
    /// the line dialect never asks.
    fn part(&mut self, conn: ConnId, name: &str, reason: Option<&str>, out: &mut impl Sink) {
        let key = name.to_ascii_lowercase();
        let inside = self
            .members
            .get(conn)
            .is_some_and(|m| m.rooms.contains(&key) && (m.many || m.rooms.len() > 1));
        if !inside || !self.is_joined(conn) {
            return out.emit(Audience::One(conn), &Event::NotInRoom { room: name });
        }
        let reason = LeaveReason::Part(reason.map(str::to_string));
        self.announce_leave(conn, &key, &reason, true, out);
        self.leave_room(conn, &key, out);
    }

    /// Tells room `key` that `conn`, still in it, is leaving it: everyone
    /// who knows it is there ([`Channel::knowers`]), and `conn` itself if
    /// `me` (IRC echoes a PART). Quiet in a room above the threshold.
    fn announce_leave(
        &self,
        conn: ConnId,
        key: &str,
        reason: &LeaveReason,
        me: bool,
        out: &mut impl Sink,
    ) {
        let (Some(room), Some(nick), Some(user)) =
            (self.rooms.get(key), self.nick(conn), self.user(conn))
        else {
            return;
        };
        let event = |quiet| Event::Left {
            nick,
            user,
            room: &room.name,
            reason,
            quiet,
        };
        let quiet = self.is_big(room.members.len());
        if self.bridged {
            let relay = Relay::Left {
                room: &room.name,
                nick,
                user,
                reason: reason.clone(),
            };
            out.relay(conn, &relay);
        }
        if !room.is_hidden(conn) {
            let to = Audience::Members {
                members: &room.members,
                except: (!me).then_some(conn),
                room: Some(room.id),
            };
            return out.emit(to, &event(quiet));
        }
        if me {
            out.emit(Audience::One(conn), &event(false));
        }
        Self::tell_some(room.knowers(conn), &event(quiet), out);
    }

    /// `conn`, hidden in room `key` since its quiet join, speaks there (or
    /// sets the topic): the members who joined before it never saw it
    /// enter, so they see it now, before its words. Nothing if it is not
    /// hidden.
    fn reveal(&mut self, conn: ConnId, key: &str, out: &mut impl Sink) {
        if !self.rooms.get_mut(key).is_some_and(|r| r.unhide(conn)) {
            return;
        }
        let (Some(room), Some(nick), Some(user)) =
            (self.rooms.get(key), self.nick(conn), self.user(conn))
        else {
            return;
        };
        let Some(at) = room.members.iter().position(|&c| c == conn) else {
            return;
        };
        let event = Event::Entered {
            nick,
            user,
            room: &room.name,
            quiet: true,
        };
        Self::tell_some(&room.members[..at], &event, out);
    }

    /// `/topic [TEXT]`: shows or sets the topic of a room `conn` is in.
    fn topic(&mut self, conn: ConnId, name: Option<&str>, text: Option<&str>, out: &mut impl Sink) {
        let key = match name {
            Some(name) => name.to_ascii_lowercase(),
            None => match self.members.get(conn).and_then(|m| m.rooms.first()) {
                Some(key) => key.to_string(),
                None => return,
            },
        };
        let inside = self
            .members
            .get(conn)
            .is_some_and(|m| m.rooms.contains(&key));
        let (Some(room), true) = (self.rooms.get(&*key), inside) else {
            let room = name.unwrap_or_default();
            return out.emit(Audience::One(conn), &Event::NotInRoom { room });
        };
        let Some(text) = text else {
            let topic = room.topic.as_ref().map(|(t, by)| (t.as_str(), by.as_str()));
            let event = Event::Topic {
                room: &room.name,
                topic,
            };
            return out.emit(Audience::One(conn), &event);
        };
        let by = self.nick(conn).unwrap_or_default().to_string();
        log::info!("{by} (#{conn}) set the topic of {}", room.name);
        if let Some(room) = self.rooms.get_mut(&*key) {
            room.topic = (!text.is_empty()).then(|| (text.to_string(), by.clone()));
        }
        self.reveal(conn, &key, out);
        if let Some(room) = self.rooms.get(&*key) {
            let event = Event::TopicChanged {
                by: &by,
                user: self.user(conn).unwrap_or_default(),
                room: &room.name,
                text,
            };
            Self::tell(room, &event, out);
        }
    }

    /// `event` to every member of `room`.
    fn tell(room: &Channel, event: &Event<'_>, out: &mut impl Sink) {
        let to = Audience::Members {
            members: &room.members,
            except: None,
            room: Some(room.id),
        };
        out.emit(to, event);
    }

    /// `event` to some of a room's members (`members`, a part of its
    /// list), when there are any. Not marked as the room's: the rest of
    /// the room does not get it.
    fn tell_some(members: &[ConnId], event: &Event<'_>, out: &mut impl Sink) {
        if !members.is_empty() {
            let to = Audience::Members {
                members,
                except: None,
                room: None,
            };
            out.emit(to, event);
        }
    }

    /// `event` about `conn` to everyone who knows it is in one of `rooms`
    /// (lowercased names; see [`Channel::knowers`]), once each, and to
    /// `conn` itself if `me`. Those who hear it only through rooms above
    /// `--quiet-joins-above` get `big` instead (the quiet form of a leave).
    fn to_knowers(
        &self,
        conn: ConnId,
        rooms: &RoomList,
        me: bool,
        event: &Event<'_>,
        big: &Event<'_>,
        out: &mut impl Sink,
    ) {
        let except = (!me).then_some(conn);
        if let RoomList::One(only) = rooms {
            // The common case, and every line user: no copy of the list.
            let Some(room) = self.rooms.get(&**only) else {
                return;
            };
            let event = if self.is_big(room.members.len()) {
                big
            } else {
                event
            };
            if !room.is_hidden(conn) {
                let to = Audience::Members {
                    members: &room.members,
                    except,
                    room: Some(room.id),
                };
                return out.emit(to, event);
            }
            if me {
                out.emit(Audience::One(conn), event);
            }
            return Self::tell_some(room.knowers(conn), event, out);
        }
        let (mut loud, mut quiet) = (Vec::new(), Vec::new());
        for room in rooms.iter().filter_map(|key| self.rooms.get(key)) {
            let to = if self.is_big(room.members.len()) {
                &mut quiet
            } else {
                &mut loud
            };
            to.extend_from_slice(room.knowers(conn));
        }
        if me {
            loud.push(conn);
        }
        loud.sort_unstable();
        loud.dedup();
        // Someone sharing a small room and a big one hears the loud form,
        // once.
        quiet.retain(|c| loud.binary_search(c).is_err());
        quiet.sort_unstable();
        quiet.dedup();
        let to = Audience::Members {
            members: &loud,
            except,
            room: None,
        };
        out.emit(to, event);
        if !quiet.is_empty() {
            let to = Audience::Members {
                members: &quiet,
                except,
                room: None,
            };
            out.emit(to, big);
        }
    }

    /// Checks a wanted nickname; the event explaining why it cannot be had.
    fn check_nick<'a>(&self, conn: ConnId, nick: &'a str) -> Result<(), Event<'a>> {
        protocol::validate_nick(nick).map_err(Event::NickInvalid)?;
        let key = nick.to_ascii_lowercase();
        let claimed = self.claims.get(&key).filter(|&&c| c != conn);
        match self.by_nick.get(&key).or(claimed) {
            Some(&owner) if owner != conn => Err(Event::NameInUse {
                nick,
                holder: if self.accounts {
                    NameHolder::Session
                } else {
                    NameHolder::Nickname
                },
            }),
            _ => Ok(()),
        }
    }

    /// A line to a room: to its other members, or, for a plain line of a
    /// single-room user in a private conversation, to the partner only
    /// (actions always go to the room).
    fn say(
        &mut self,
        conn: ConnId,
        room: Option<&str>,
        text: &str,
        kind: TextKind,
        out: &mut impl Sink,
    ) {
        if room.is_none() && kind == TextKind::Plain {
            if let Some(partner) = self.pm_partner(conn) {
                return self.send_private(conn, partner, text, kind, out);
            }
        }
        // A notice never gets an error back (IRC's rule, against loops
        // between bots).
        let quiet = kind == TextKind::Notice;
        let channel = match room {
            None => self.home(conn),
            Some(name) => {
                let key = name.to_ascii_lowercase();
                let inside = self
                    .members
                    .get(conn)
                    .is_some_and(|m| m.rooms.contains(&key));
                match self.rooms.get(&*key) {
                    Some(channel) if inside => Some(channel),
                    _ if quiet => return,
                    _ => return out.emit(Audience::One(conn), &Event::NotInRoom { room: name }),
                }
            }
        };
        let (Some(channel), Some(from), Some(user)) = (channel, self.nick(conn), self.user(conn))
        else {
            return;
        };
        let relay = Relay::Said {
            room: &channel.name,
            nick: from,
            user,
            text,
            kind,
        };
        if channel.members.len() <= 1 {
            if self.bridged {
                // Other processes may have members here: no "alone"
                // notice, we cannot know that nobody is there.
                out.relay(conn, &relay);
            } else if !quiet {
                out.emit(Audience::One(conn), &Event::Alone);
            }
            return;
        }
        if channel.is_hidden(conn) {
            // A quiet joiner's first words (rare): reveal it, then say them
            // as anyone would (the check keeps this to one round).
            let key = channel.name.to_ascii_lowercase();
            self.reveal(conn, &key, out);
            if self.rooms.get(&*key).is_some_and(|r| !r.is_hidden(conn)) {
                self.say(conn, room, text, kind, out);
            }
            return;
        }
        if kind == TextKind::Plain {
            log::debug!("[{from}] {text}");
        }
        if self.bridged {
            // Once, after a quiet joiner's reveal above.
            out.relay(conn, &relay);
        }
        let event = Event::Said {
            from,
            user,
            room: &channel.name,
            text,
            kind,
        };
        let to = Audience::Members {
            members: &channel.members,
            except: Some(conn),
            room: Some(channel.id),
        };
        out.emit(to, &event);
    }

    fn private(
        &mut self,
        conn: ConnId,
        target: &str,
        text: &str,
        kind: TextKind,
        out: &mut impl Sink,
    ) {
        let Some(&to) = self.by_nick.get(&target.to_ascii_lowercase()) else {
            if self.bridged && protocol::validate_nick(target).is_ok() {
                // Maybe on another process: the bridge answers through
                // `private_outcome` once it knows.
                let relay = Relay::Private {
                    to: target,
                    from: self.nick(conn).unwrap_or_default(),
                    user: self.user(conn).unwrap_or_default(),
                    text,
                    kind,
                };
                return out.relay(conn, &relay);
            }
            if kind != TextKind::Notice {
                out.emit(Audience::One(conn), &Event::NoSuchUser { nick: target });
            }
            return;
        };
        self.send_private(conn, to, text, kind, out);
    }

    /// The bridge's answer to a [`Relay::Private`] from `conn`: another
    /// process had a listener for `to` (`delivered`: the sender sees its
    /// line as sent), or none did ("no such user"). Nothing if `conn` has
    /// left meanwhile.
    pub fn private_outcome(
        &mut self,
        conn: ConnId,
        to: &str,
        text: &str,
        kind: TextKind,
        delivered: bool,
        out: &mut impl Sink,
    ) {
        if !self.is_joined(conn) {
            return;
        }
        let event = if delivered {
            Event::PrivateTo { to, text, kind }
        } else if kind == TextKind::Notice {
            return;
        } else {
            Event::NoSuchUser { nick: to }
        };
        out.emit(Audience::One(conn), &event);
    }

    /// The line to `to`, and its confirmation back to `conn` (a dialect
    /// that does not echo renders nothing for it). The content is never
    /// logged.
    fn send_private(
        &mut self,
        conn: ConnId,
        to: ConnId,
        text: &str,
        kind: TextKind,
        out: &mut impl Sink,
    ) {
        let from = self.nick(conn).unwrap_or_default();
        let user = self.user(conn).unwrap_or_default();
        let to_nick = self.nick(to).unwrap_or_default();
        let event = Event::PrivateFrom {
            from,
            user,
            text,
            kind,
        };
        out.emit(Audience::One(to), &event);
        let event = Event::PrivateTo {
            to: to_nick,
            text,
            kind,
        };
        out.emit(Audience::One(conn), &event);
    }

    /// `/pm NICK`: invites NICK to a private conversation.
    fn invite(&mut self, conn: ConnId, target: &str, out: &mut impl Sink) {
        let me = Audience::One(conn);
        let Some(&to) = self.by_nick.get(&target.to_ascii_lowercase()) else {
            return out.emit(me, &Event::NoSuchUser { nick: target });
        };
        if to == conn {
            return out.emit(me, &Event::InviteSelf);
        }
        if self.members.get(to).is_some_and(|m| m.many) {
            let nick = self.nick(to).unwrap_or(target);
            return out.emit(me, &Event::InviteeCannot { nick });
        }
        if let Some(partner) = self.pm_partner(conn) {
            let partner = self.nick(partner).unwrap_or_default();
            return out.emit(me, &Event::AlreadyInPrivate { partner });
        }
        let to_nick = self.nick(to).unwrap_or(target);
        if self.pm_partner(to).is_some() {
            return out.emit(me, &Event::InviteeBusy { nick: to_nick });
        }
        self.expire_invites(out);
        let to_nick = self.nick(to).unwrap_or(target);
        if self.invites.iter().any(|i| i.from == conn && i.to == to) {
            return out.emit(me, &Event::AlreadyInvited { nick: to_nick });
        }
        let secs = self.invite_timeout.as_secs_f64().ceil() as u64;
        let expires = self.now() + self.invite_timeout;
        self.invites.push(Invite {
            from: conn,
            to,
            expires,
        });
        out.wake_at(expires);
        let from = self.nick(conn).unwrap_or_default();
        let to_nick = self.nick(to).unwrap_or(target);
        out.emit(Audience::One(to), &Event::Invited { from, secs });
        out.emit(me, &Event::InviteSent { to: to_nick, secs });
    }

    /// `/accept NICK` (`yes`) or `/decline NICK`.
    fn answer(&mut self, conn: ConnId, target: &str, yes: bool, out: &mut impl Sink) {
        self.expire_invites(out);
        let me = Audience::One(conn);
        let from = self.by_nick.get(&target.to_ascii_lowercase()).copied();
        let found = from.and_then(|from| {
            self.invites
                .iter()
                .position(|i| i.from == from && i.to == conn)
        });
        let (Some(from), Some(index)) = (from, found) else {
            return out.emit(me, &Event::NoInvitation { nick: target });
        };
        if !yes {
            self.invites.remove(index);
            let my_nick = self.nick(conn).unwrap_or_default();
            let them = self.nick(from).unwrap_or_default();
            out.emit(Audience::One(from), &Event::Declined { by: my_nick });
            return out.emit(me, &Event::YouDeclined { from: them });
        }
        for who in [conn, from] {
            if let Some(partner) = self.pm_partner(who) {
                // Possible: the invitation was sent before this started.
                let busy = (who != conn).then(|| self.nick(from).unwrap_or_default());
                let partner = self.nick(partner).unwrap_or_default();
                return out.emit(me, &Event::CannotAccept { busy, partner });
            }
        }
        self.invites.remove(index);
        // Other pending invitations to or from either of them are moot now.
        self.invites
            .retain(|i| ![i.from, i.to].iter().any(|c| *c == conn || *c == from));
        for (who, other) in [(conn, from), (from, conn)] {
            if let Some(m) = self.members.get_mut(who) {
                m.pm_with = Some(other);
            }
        }
        let my_nick = self.nick(conn).unwrap_or_default();
        let them = self.nick(from).unwrap_or_default();
        log::info!("private conversation started: {them} and {my_nick}");
        out.emit(Audience::One(from), &Event::Accepted { by: my_nick });
        out.emit(me, &Event::PrivateStarted { with: them });
    }

    /// `/endpm`: both partners go back to the room.
    fn end_pm(&mut self, conn: ConnId, out: &mut impl Sink) {
        let Some(partner) = self.pm_partner(conn) else {
            return out.emit(Audience::One(conn), &Event::NotInPrivate);
        };
        self.end_pm_of(conn);
        self.end_pm_of(partner);
        let me = self.nick(conn).unwrap_or_default();
        let them = self.nick(partner).unwrap_or_default();
        log::info!("private conversation ended: {me} and {them}");
        out.emit(Audience::One(conn), &Event::PrivateEnded { with: them });
        out.emit(Audience::One(partner), &Event::PrivateEndedBy { by: me });
    }

    fn end_pm_of(&mut self, conn: ConnId) {
        if let Some(m) = self.members.get_mut(conn) {
            m.pm_with = None;
        }
    }

    /// Removes the invitations past their deadline and tells both sides.
    /// The loop calls it when the timer asked for with [`Sink::wake_at`]
    /// fires; `/pm` and `/accept` call it too, so an expired invitation is
    /// absent even if the loop has not got round to it.
    pub fn expire_invites(&mut self, out: &mut impl Sink) {
        let now = self.now();
        if self.invites.iter().all(|i| i.expires > now) {
            return;
        }
        let (expired, live): (Vec<Invite>, Vec<Invite>) =
            self.invites.iter().partition(|i| i.expires <= now);
        self.invites = live;
        for i in expired {
            let from = self.nick(i.from).unwrap_or_default();
            let to = self.nick(i.to).unwrap_or_default();
            out.emit(Audience::One(i.from), &Event::InviteExpiredTo { to });
            out.emit(Audience::One(i.to), &Event::InviteExpiredFrom { from });
        }
    }

    fn rename(&mut self, conn: ConnId, new: &str, out: &mut impl Sink) {
        if let Err(e) = self.check_nick(conn, new) {
            return out.emit(Audience::One(conn), &e);
        }
        let Some(member) = self.members.get(conn) else {
            return;
        };
        if member.nick.as_deref() == Some(new) {
            // Nothing changes, so nobody else needs to hear of it.
            return out.emit(Audience::One(conn), &Event::NickUnchanged { nick: new });
        }
        let case_only = member
            .nick
            .as_deref()
            .is_some_and(|old| old.eq_ignore_ascii_case(new));
        if self.bridged && !case_only {
            return self.claim(conn, new, out);
        }
        self.apply_rename(conn, new, out);
    }

    /// Renames `conn` to `new` (checked, and claimed when bridging): the
    /// indexes, the bridge's watches, and everyone who knows it.
    fn apply_rename(&mut self, conn: ConnId, new: &str, out: &mut impl Sink) {
        // The prefix the others know it by is the one before the change.
        let user = self.user(conn).unwrap_or_default().to_string();
        let Some(member) = self.members.get_mut(conn) else {
            return;
        };
        let old = member.nick.replace(new.to_string()).unwrap_or_default();
        self.by_nick.remove(&old.to_ascii_lowercase());
        self.by_nick.insert(new.to_ascii_lowercase(), conn);
        if self.bridged {
            if !old.eq_ignore_ascii_case(new) {
                out.watch(Watch::Nick(&old), false);
            }
            // A change of case too: the bridge keeps the name as written.
            out.watch(Watch::Nick(new), true);
            let rooms: Vec<&str> = self.rooms_of(conn).collect();
            for room in rooms {
                let relay = Relay::Renamed {
                    room,
                    old: &old,
                    user: &user,
                    new,
                };
                out.relay(conn, &relay);
            }
        }
        log::info!("{old} (#{conn}) is now known as {new}");
        let event = Event::Renamed {
            old: &old,
            user: &user,
            new,
        };
        let rooms = self
            .members
            .get(conn)
            .map(|m| m.rooms.clone())
            .unwrap_or_default();
        if rooms.is_empty() {
            out.emit(Audience::One(conn), &event);
        } else {
            self.to_knowers(conn, &rooms, true, &event, &event, out);
        }
    }

    /// Something that happened on process `node`, heard through the bridge
    /// (see [`Relay`]): told to the local members of the room it concerns,
    /// in their own dialects, like a local event. The core keeps a list of
    /// each room's remote members from these (a simple presence: what we
    /// heard since we started listening to the room, and the answers to
    /// our [`Relay::Sync`]). Anything about a room without local members
    /// (a message that crossed our unsubscribe) is dropped.
    pub fn remote(&mut self, node: &str, relay: &Relay<'_>, out: &mut impl Sink) {
        match relay {
            Relay::Said {
                room,
                nick,
                user,
                text,
                kind,
            } => {
                let key = room.to_ascii_lowercase();
                // Someone we had not heard of (joined before we listened):
                // known from now on; IRC clients see its JOIN first.
                self.remote_enter(node, &key, nick, user, true, out);
                let Some(channel) = self.local_room(&key) else {
                    return;
                };
                let event = Event::Said {
                    from: nick,
                    user,
                    room: &channel.name,
                    text,
                    kind: *kind,
                };
                Self::tell(channel, &event, out);
            }
            Relay::Entered { room, nick, user } => {
                let key = room.to_ascii_lowercase();
                self.remote_enter(node, &key, nick, user, false, out);
            }
            Relay::Here { room, nick, user } => {
                let key = room.to_ascii_lowercase();
                let news = self.rooms.get(&*key).is_some_and(|r| r.told_gone);
                self.remote_enter(node, &key, nick, user, !news, out);
            }
            Relay::Left {
                room,
                nick,
                user,
                reason,
            } => {
                let key = room.to_ascii_lowercase();
                let Some(channel) = self.rooms.get_mut(&*key) else {
                    return;
                };
                let Some(at) = channel.remote_at(node, nick) else {
                    return;
                };
                channel.remote.remove(at);
                let Some(channel) = self.local_room(&key) else {
                    return;
                };
                let event = Event::Left {
                    nick,
                    user,
                    room: &channel.name,
                    reason,
                    quiet: self.is_big(channel.members.len() + channel.remote.len() + 1),
                };
                Self::tell(channel, &event, out);
            }
            Relay::Quit {
                nick, user, reason, ..
            } => {
                // One message per room it was in; the first removes it from
                // every room here and tells everyone once.
                let to = self.remote_drop(node, nick, None);
                let event = Event::Quit {
                    nick,
                    user,
                    reason,
                    quiet: false,
                };
                Self::tell_some(&to, &event, out);
            }
            Relay::Renamed { old, user, new, .. } => {
                let to = self.remote_drop(node, old, Some(new));
                let event = Event::Renamed { old, user, new };
                Self::tell_some(&to, &event, out);
            }
            Relay::Private {
                to,
                from,
                user,
                text,
                kind,
            } => {
                let Some(conn) = self.find(to) else {
                    return;
                };
                let event = Event::PrivateFrom {
                    from,
                    user,
                    text,
                    kind: *kind,
                };
                out.emit(Audience::One(conn), &event);
            }
            Relay::Sync { room } => {
                let key = room.to_ascii_lowercase();
                if let Some(channel) = self.local_room(&key) {
                    self.announce(channel, false, out);
                }
            }
        }
    }

    /// Room `key`, if it has local members (the only rooms we listen to).
    fn local_room(&self, key: &str) -> Option<&Channel> {
        self.rooms.get(key).filter(|r| !r.members.is_empty())
    }

    /// Adds (`node`, `nick`) to room `key`'s remote members unless it is
    /// there; the local members are told it entered (`quiet`: only a
    /// dialect with a member list shows it, as for a quiet local join).
    fn remote_enter(
        &mut self,
        node: &str,
        key: &str,
        nick: &str,
        user: &str,
        quiet: bool,
        out: &mut impl Sink,
    ) {
        let Some(channel) = self.rooms.get_mut(key).filter(|r| !r.members.is_empty()) else {
            return;
        };
        if channel.remote_at(node, nick).is_some() {
            return;
        }
        channel.remote.push(RemoteMember {
            node: node.into(),
            nick: nick.into(),
            user: user.into(),
        });
        let big = self.quiet_above.is_some_and(|n| {
            let Some(channel) = self.rooms.get(key) else {
                return false;
            };
            channel.members.len() + channel.remote.len() > n
        });
        if big && !quiet {
            return;
        }
        let Some(channel) = self.rooms.get(key) else {
            return;
        };
        let event = Event::Entered {
            nick,
            user,
            room: &channel.name,
            quiet,
        };
        Self::tell(channel, &event, out);
    }

    /// Removes (`node`, `nick`) from every room's remote members, or with
    /// `rename` renames it there. Returns the local members of those rooms
    /// (sorted, once each): who must hear of it.
    fn remote_drop(&mut self, node: &str, nick: &str, rename: Option<&str>) -> Vec<ConnId> {
        let mut to = Vec::new();
        for channel in self.rooms.values_mut() {
            let Some(at) = channel.remote_at(node, nick) else {
                continue;
            };
            match rename {
                Some(new) => channel.remote[at].nick = new.into(),
                None => {
                    channel.remote.remove(at);
                }
            }
            to.extend_from_slice(&channel.members);
        }
        to.sort_unstable();
        to.dedup();
        to
    }

    /// The bridge lost its link (Redis down): we hear nothing from the
    /// other processes until it is back, so their members are forgotten,
    /// and local users see them leave (IRC's netsplit). Resubscribing asks
    /// each room again ([`Relay::Sync`]).
    /// With `node`, only that process's members are forgotten: a reaper
    /// found its lease expired in Redis (killed, stopped, cut off).
    pub fn forget_remote(&mut self, node: Option<&str>, reason: &LeaveReason, out: &mut impl Sink) {
        let mut gone: Vec<(RemoteMember, Vec<ConnId>)> = Vec::new();
        for channel in self.rooms.values_mut() {
            if node.is_none() && !channel.members.is_empty() {
                channel.told_gone = true;
            }
            let all = std::mem::take(&mut channel.remote);
            let (leaving, staying): (Vec<_>, Vec<_>) = all
                .into_iter()
                .partition(|r| node.is_none_or(|n| *r.node == *n));
            channel.remote = staying;
            for r in leaving {
                let known = gone
                    .iter_mut()
                    .find(|(g, _)| g.node == r.node && g.nick == r.nick);
                match known {
                    Some((_, to)) => to.extend_from_slice(&channel.members),
                    None => gone.push((r, channel.members.clone())),
                }
            }
        }
        for (r, mut to) in gone {
            to.sort_unstable();
            to.dedup();
            let event = Event::Quit {
                nick: &r.nick,
                user: &r.user,
                reason,
                quiet: false,
            };
            Self::tell_some(&to, &event, out);
        }
    }

    fn quit(&mut self, conn: ConnId, reason: Option<String>, out: &mut impl Sink) {
        out.emit(Audience::One(conn), &Event::Goodbye);
        self.disconnected(conn, &LeaveReason::Quit(reason), out);
        self.members.remove(conn);
        out.close(conn);
    }
}

#[cfg(test)]
mod tests {
    //! The core without any grammar: requests in, events (as `Debug` text)
    //! and their audiences out.
    use super::*;

    /// Records each event with who receives it.
    #[derive(Default)]
    struct Log(Vec<(Vec<ConnId>, String)>);

    impl Sink for Log {
        fn emit(&mut self, to: Audience<'_>, event: &Event<'_>) {
            let who = match to {
                Audience::One(c) => vec![c],
                Audience::Members {
                    members, except, ..
                } => members
                    .iter()
                    .copied()
                    .filter(|&c| Some(c) != except)
                    .collect(),
            };
            self.0.push((who, format!("{event:?}")));
        }
        fn close(&mut self, conn: ConnId) {
            self.0.push((vec![conn], "close".into()));
        }
    }

    impl Log {
        fn take(&mut self) -> Vec<(Vec<ConnId>, String)> {
            std::mem::take(&mut self.0)
        }
    }

    fn user(core: &mut Core, conn: ConnId, nick: &str, many: bool, log: &mut Log) {
        core.connected(conn);
        if many {
            core.set_many_rooms(conn, "u");
        }
        core.handle(conn, Request::Register { nick }, log);
    }

    #[test]
    fn events_for_each_request() {
        let mut core = Core::new();
        let mut log = Log::default();
        user(&mut core, 1, "ann", false, &mut log);
        let got = log.take();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0]
                .1
                .starts_with("Welcome { nick: \"ann\", room: \"#lobby\", others: []")
        );
        assert_eq!(
            got[1].0,
            Vec::<ConnId>::new(),
            "nobody else hears ann enter"
        );

        // A many-room user registers without a room, joins one.
        user(&mut core, 2, "irc", true, &mut log);
        assert_eq!(
            log.take(),
            [(
                vec![2],
                "Registered { nick: \"irc\", users: 2, rooms: 1 }".to_string()
            )]
        );
        core.handle(2, Request::Join { room: "#Lobby" }, &mut log);
        let got = log.take();
        assert_eq!(got[0].0, vec![1]);
        assert!(
            got[0]
                .1
                .starts_with("Entered { nick: \"irc\", user: \"u\", room: \"#lobby\"")
        );
        assert_eq!(got[1].0, vec![2]);
        assert!(got[1].1.contains("names: [\"ann\", \"irc\"]"), "{got:?}");

        // Say: to the others in the room; a notice never errs.
        let say = |room, text, kind| Request::Say { room, text, kind };
        core.handle(1, say(None, "hi", TextKind::Plain), &mut log);
        let got = log.take();
        assert_eq!(got[0].0, vec![2]);
        assert!(got[0].1.contains("text: \"hi\", kind: Plain"));
        core.handle(2, say(Some("#nowhere"), "x", TextKind::Notice), &mut log);
        assert!(log.take().is_empty(), "a notice to nowhere is silent");
        core.handle(2, say(Some("#nowhere"), "x", TextKind::Plain), &mut log);
        assert_eq!(
            log.take(),
            [(vec![2], "NotInRoom { room: \"#nowhere\" }".into())]
        );

        // Part: to everyone in the room, the parter included; single-room
        // users cannot part.
        core.handle(
            1,
            Request::Part {
                room: "#lobby",
                reason: None,
            },
            &mut log,
        );
        assert_eq!(
            log.take(),
            [(vec![1], "NotInRoom { room: \"#lobby\" }".into())]
        );
        core.handle(
            2,
            Request::Part {
                room: "#lobby",
                reason: Some("bye"),
            },
            &mut log,
        );
        let got = log.take();
        assert_eq!(got[0].0, vec![1, 2]);
        assert!(got[0].1.starts_with("Left { nick: \"irc\""));

        // Quit: to those sharing a room (nobody, now), then close.
        core.handle(2, Request::Quit { reason: None }, &mut log);
        let got = log.take();
        assert_eq!(got[0], (vec![2], "Goodbye".into()));
        assert_eq!(got.last().map(|g| g.1.as_str()), Some("close"));
        assert!(got.iter().all(|(who, _)| !who.contains(&1)), "{got:?}");
        core.check_consistency().unwrap();
    }

    /// A core with `--quiet-joins-above 2`: line users `a` (1) and `b` (2)
    /// in `#lobby`, then IRC users `c` (3), `d` (4), `e` (5) joining it.
    fn big_lobby(log: &mut Log) -> Core {
        let mut core = Core::new();
        core.set_quiet_joins_above(Some(2));
        user(&mut core, 1, "a", false, log);
        user(&mut core, 2, "b", false, log);
        for (conn, nick) in [(3, "c"), (4, "d"), (5, "e")] {
            user(&mut core, conn, nick, true, log);
            core.handle(conn, Request::Join { room: "#lobby" }, log);
        }
        core.check_consistency().unwrap();
        core
    }

    fn say(text: &str) -> Request<'_> {
        Request::Say {
            room: Some("#lobby"),
            text,
            kind: TextKind::Plain,
        }
    }

    /// Up to N members (the joiner counted) a join is announced; above,
    /// nobody hears it: the joiner alone gets its confirmation.
    #[test]
    fn joins_above_the_threshold_are_announced_to_nobody() {
        let mut log = Log::default();
        let _core = big_lobby(&mut log);
        let got = log.take();
        let entered: Vec<&(Vec<ConnId>, String)> = got
            .iter()
            .filter(|(_, e)| e.starts_with("Entered"))
            .collect();
        // a's entry has no audience, b's reaches a; c, d, e are quiet.
        assert_eq!(entered.len(), 2, "{got:?}");
        assert_eq!(entered[0].0, Vec::<ConnId>::new());
        assert_eq!(entered[1].0, vec![1]);
        assert!(entered[1].1.contains("nick: \"b\""), "{entered:?}");
        assert!(entered[1].1.ends_with("quiet: false }"), "{entered:?}");
        // Each IRC joiner still got its own JOIN and names (everyone).
        let joined: Vec<&(Vec<ConnId>, String)> = got
            .iter()
            .filter(|(_, e)| e.starts_with("Joined"))
            .collect();
        assert_eq!(joined.len(), 3);
        assert_eq!(joined[2].0, vec![5]);
        assert!(
            joined[2]
                .1
                .contains("names: [\"a\", \"b\", \"c\", \"d\", \"e\"]")
        );
    }

    /// A hidden member's first words are preceded by a quiet `Entered` to
    /// those who joined before it (not to those after: their names list
    /// showed it); its later words come alone. Setting the topic reveals
    /// too.
    #[test]
    fn first_words_reveal_a_hidden_member_to_those_before_it() {
        let mut log = Log::default();
        let mut core = big_lobby(&mut log);
        log.take();
        core.handle(4, say("hi"), &mut log);
        let got = log.take();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, vec![1, 2, 3]);
        assert_eq!(
            got[0].1,
            "Entered { nick: \"d\", user: \"u\", room: \"#lobby\", quiet: true }"
        );
        assert_eq!(got[1].0, vec![1, 2, 3, 5]);
        assert!(got[1].1.starts_with("Said { from: \"d\""), "{got:?}");
        core.handle(4, say("again"), &mut log);
        let got = log.take();
        assert_eq!(got.len(), 1, "revealed once: {got:?}");
        core.check_consistency().unwrap();

        let topic = Request::Topic {
            room: Some("#lobby"),
            text: Some("tea"),
        };
        core.handle(5, topic, &mut log);
        let got = log.take();
        assert_eq!(got[0].0, vec![1, 2, 3, 4]);
        assert!(got[0].1.starts_with("Entered { nick: \"e\""), "{got:?}");
        assert!(got[1].1.starts_with("TopicChanged"), "{got:?}");
    }

    /// A hidden member's part reaches itself (IRC's PART echo) and those
    /// who joined after it, quietly (the room is big); its rename reaches
    /// itself and them too. A revealed member's quit reaches everyone,
    /// quiet while the room is above N and loud once it is not.
    #[test]
    fn leaves_and_renames_reach_those_who_know() {
        let mut log = Log::default();
        let mut core = big_lobby(&mut log);
        log.take();
        core.handle(4, Request::Nick { new: "dd" }, &mut log);
        let got = log.take();
        let to: Vec<ConnId> = got.iter().flat_map(|(who, _)| who.clone()).collect();
        assert_eq!(to, [4, 5], "{got:?}");
        let part = Request::Part {
            room: "#lobby",
            reason: None,
        };
        core.handle(4, part, &mut log);
        let got = log.take();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, vec![4]);
        assert!(got[0].1.ends_with("quiet: false }"), "{got:?}");
        assert_eq!(got[1].0, vec![5]);
        assert!(got[1].1.ends_with("quiet: true }"), "{got:?}");
        core.check_consistency().unwrap();

        // A hidden member with nobody after it leaves unheard.
        core.handle(5, Request::Quit { reason: None }, &mut log);
        let got = log.take();
        let heard: Vec<&(Vec<ConnId>, String)> = got
            .iter()
            .filter(|(who, e)| e.starts_with("Quit") && !who.is_empty())
            .collect();
        assert!(heard.is_empty(), "{got:?}");

        // c speaks (revealed), then quits from a room of 3 > 2: quiet.
        core.handle(3, say("bye"), &mut log);
        log.take();
        user(&mut core, 6, "f", true, &mut log);
        core.handle(6, Request::Join { room: "#lobby" }, &mut log);
        core.handle(6, say("hello"), &mut log);
        log.take();
        core.handle(3, Request::Quit { reason: None }, &mut log);
        let got = log.take();
        let quit = got.iter().find(|(_, e)| e.starts_with("Quit")).unwrap();
        assert_eq!(quit.0, vec![1, 2, 6]);
        assert!(quit.1.ends_with("quiet: true }"), "{quit:?}");
        // Now a, b, f: 3 > 2 still; f's quit leaves 2 behind, from a room
        // of 3: quiet. Then b's from a room of 2: loud.
        core.handle(6, Request::Quit { reason: None }, &mut log);
        let got = log.take();
        let quit = got.iter().find(|(_, e)| e.starts_with("Quit")).unwrap();
        assert!(quit.1.ends_with("quiet: true }"), "{quit:?}");
        core.handle(2, Request::Quit { reason: None }, &mut log);
        let got = log.take();
        let quit = got.iter().find(|(_, e)| e.starts_with("Quit")).unwrap();
        assert_eq!(quit.0, vec![1]);
        assert!(quit.1.ends_with("quiet: false }"), "{quit:?}");
        core.check_consistency().unwrap();
    }

    /// An IRC user in several rooms quits: rooms where it is hidden add
    /// only those who joined after it; someone sharing a small room and a
    /// big one hears the loud form, once.
    #[test]
    fn a_quit_across_rooms_skips_where_it_is_hidden() {
        let mut log = Log::default();
        let mut core = big_lobby(&mut log);
        // c (3) and d (4) also share #small, where d's join was announced.
        core.handle(3, Request::Join { room: "#small" }, &mut log);
        core.handle(4, Request::Join { room: "#small" }, &mut log);
        log.take();
        core.handle(4, Request::Quit { reason: None }, &mut log);
        let got = log.take();
        let quits: Vec<&(Vec<ConnId>, String)> =
            got.iter().filter(|(_, e)| e.starts_with("Quit")).collect();
        assert_eq!(quits.len(), 2, "{got:?}");
        // c through #small (loud), though d is hidden from c in #lobby.
        assert_eq!(quits[0].0, vec![3]);
        assert!(quits[0].1.ends_with("quiet: false }"));
        // e joined #lobby after d: told, quietly. a and b: not at all.
        assert_eq!(quits[1].0, vec![5]);
        assert!(quits[1].1.ends_with("quiet: true }"));
        core.check_consistency().unwrap();
    }

    /// A line user moving out of a big room where it is hidden: only the
    /// later joiners hear it, quietly; moving into a big room is quiet.
    /// `/who` lists hidden members.
    #[test]
    fn moves_follow_the_same_rules() {
        let mut log = Log::default();
        let mut core = Core::new();
        core.set_quiet_joins_above(Some(1));
        for (conn, nick) in [(1, "a"), (2, "b"), (3, "c")] {
            user(&mut core, conn, nick, false, &mut log);
        }
        log.take();
        core.handle(2, Request::Who, &mut log);
        let got = log.take();
        assert!(got[0].1.contains("names: [\"a\", \"b\", \"c\"]"), "{got:?}");
        core.handle(2, Request::Join { room: "#x" }, &mut log);
        let got = log.take();
        let left = got.iter().find(|(_, e)| e.starts_with("Left")).unwrap();
        assert_eq!(left.0, vec![3]);
        assert!(left.1.ends_with("quiet: true }"), "{left:?}");
        // Into #x, empty: a room of 1 is not above 1: b is not hidden.
        assert!(!core.rooms.get("#x").unwrap().is_hidden(2));
        core.handle(3, Request::Join { room: "#x" }, &mut log);
        let got = log.take();
        assert!(
            got.iter().all(|(_, e)| !e.starts_with("Entered")),
            "{got:?}"
        );
        assert!(core.rooms.get("#x").unwrap().is_hidden(3));
        core.check_consistency().unwrap();
    }

    /// Off (the default), every join is announced and nobody is hidden,
    /// however big the room.
    #[test]
    fn off_by_default() {
        let mut log = Log::default();
        let mut core = Core::new();
        for conn in 1..=20 {
            user(&mut core, conn, &format!("u{conn}"), false, &mut log);
        }
        let got = log.take();
        let entered = got.iter().filter(|(_, e)| e.starts_with("Entered")).count();
        assert_eq!(entered, 20);
        assert!(got.iter().all(|(_, e)| !e.contains("quiet: true")));
        assert!(core.rooms.values().all(|r| r.hidden.is_empty()));
    }
}
