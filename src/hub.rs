//! Where connections meet the chat core: each connection's dialect decodes
//! its lines into [`Request`]s for the [`Core`], and the core's [`Event`]s
//! are rendered into bytes for the connections that must receive them.
//!
//! This module knows nothing about sockets either. The event loop feeds it
//! what happened to a connection ("K connected", "K sent this frame", "K
//! went away", "K's password was checked", "K's greeting is due", a timer)
//! and it answers through an
//! [`Outbox`]: "queue these bytes for K", "close K once its output is
//! written". That split keeps the chat testable without a network, and
//! keeps the loop about bytes only.
//!
//! Broadcast is where a chat server spends its time, so an event for N
//! recipients is rendered **once per dialect** into a scratch buffer and the
//! same bytes are handed to the outbox N times (the loop appends them to N
//! send queues; it does not write them yet): a message to a room where line
//! users and IRC users sit together is rendered twice, never once per
//! recipient.
//!
//! Which dialect a connection speaks is decided here too: on the main port
//! its first line tells ([`crate::dialect::sniff`]); until then it is
//! *pending*, and the line greeting waits (see [`Hub::greet`]).

use std::time::{Duration, Instant};

use crate::accounts::{AuthJob, AuthOutcome};
use crate::chat::{
    Audience, ClaimAnswer, ConnId, ConnTable, Core, Event, LeaveReason, Refusal, Relay, Request,
    Sink, Stage, TextKind, Watch,
};
use crate::dialect::irc::{self, IrcConfig, IrcConn};
use crate::dialect::{Dialect, line, sniff};
use crate::framing::Frame;
use crate::output::Stream;

/// Where the hub's bytes go. The event loop implements this over its
/// connections' send queues; tests implement it with a `Vec`.
pub trait Outbox {
    /// Queue `bytes` (whole lines) for connection `to`.
    fn send(&mut self, to: ConnId, bytes: &[u8]);
    /// Queue the same `bytes` (one broadcast in one dialect's rendering)
    /// for every connection in `to`, in order. `stream` says which room
    /// and rendering they belong to, so the loop can store them once and
    /// keep a room's lines side by side (see [`crate::output`]); this
    /// default queues a copy for each.
    fn send_many(&mut self, stream: Stream, bytes: &[u8], to: impl Iterator<Item = ConnId>) {
        let _ = stream;
        for conn in to {
            self.send(conn, bytes);
        }
    }
    /// Close `conn` once everything queued for it has been written. The
    /// chat has already forgotten `conn` when it calls this.
    fn close(&mut self, conn: ConnId);
    /// Check a password (slow: argon2), later, and answer with
    /// [`Hub::auth_done`]. Only used with accounts on; the default drops
    /// the job, for outboxes of hubs without accounts.
    fn authenticate(&mut self, conn: ConnId, job: AuthJob) {
        let _ = (conn, job);
    }
    /// Call [`Hub::expire_invites`] at `at` (an invitation's deadline).
    /// The loop puts this in its timer heap; the default ignores it, and
    /// expiry is then noticed lazily, on the next `/accept`.
    fn wake_at(&mut self, at: Instant) {
        let _ = at;
    }
    /// A password is being asked of `conn` (`on`), or no longer is: the
    /// loop tells a telnet client to stop, then resume, echoing what its
    /// user types (`IAC WILL ECHO` / `IAC WONT ECHO`). Called before the
    /// prompt, and before the welcome. The default does nothing: other
    /// clients echo nothing, or mask passwords themselves.
    fn password_prompt(&mut self, conn: ConnId, on: bool) {
        let _ = (conn, on);
    }
    /// Bridging: other processes must hear `relay` (see [`Sink::relay`]).
    fn relay(&mut self, conn: ConnId, relay: &Relay<'_>) {
        let _ = (conn, relay);
    }
    /// Bridging: listen (`on`) or stop listening to `what`.
    fn watch(&mut self, what: Watch<'_>, on: bool) {
        let _ = (what, on);
    }
    /// Bridging: claim `nick` for `conn` in Redis and answer with
    /// [`Hub::claim_done`] (see [`Sink::claim`]); `false`: cannot ask now.
    fn claim(&mut self, conn: ConnId, nick: &str) -> bool {
        let _ = (conn, nick);
        false
    }
}

/// A connection's grammar, as far as the hub knows it.
#[derive(Debug)]
enum Speaks {
    /// Main port, no line yet: the greeting waits.
    Pending,
    Line,
    Irc(Box<IrcConn>),
}

impl Speaks {
    fn dialect(&self) -> Dialect {
        match self {
            Speaks::Irc(_) => Dialect::Irc,
            Speaks::Pending | Speaks::Line => Dialect::Line,
        }
    }
}

/// The chat core and the dialects of its connections.
#[derive(Debug)]
pub struct Hub {
    core: Core,
    /// Every connection the loop told us about, and what it speaks.
    speaks: ConnTable<Speaks>,
    irc: IrcConfig,
    /// `Some("HH:MM:SS")` when `--timestamps` is on; set by the loop.
    clock: Option<String>,
    max_line: usize,
    /// A dialect's direct answer to a line (usage errors, help).
    reply: Vec<u8>,
    /// Reused for rendering, one per dialect, so a broadcast allocates
    /// nothing.
    scratch: [Vec<u8>; 2],
    /// Events sent to many since [`Hub::take_broadcasts`] (for the loop's
    /// `--trace-turns`).
    broadcasts: u64,
}

impl Hub {
    /// An empty chat. `max_line` is only quoted in the "too long" error.
    pub fn new(max_line: usize) -> Hub {
        Hub {
            core: Core::new(),
            speaks: ConnTable::default(),
            irc: IrcConfig::default(),
            clock: None,
            max_line,
            reply: Vec::new(),
            scratch: [Vec::new(), Vec::new()],
            broadcasts: 0,
        }
    }

    /// Events sent to many (broadcasts) since the last call.
    pub fn take_broadcasts(&mut self) -> u64 {
        std::mem::take(&mut self.broadcasts)
    }

    /// The chat state, for queries.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The server's IRC identity (`--server-name`, `--network`, `--motd`).
    pub fn set_irc_config(&mut self, cfg: IrcConfig) {
        let sasl = self.irc.sasl;
        self.irc = cfg;
        self.irc.sasl = sasl;
    }

    /// Turns accounts on: after the nickname, a password is asked (IRC
    /// clients give it with SASL PLAIN or PASS).
    pub fn set_accounts(&mut self, on: bool) {
        self.core.set_accounts(on);
        self.irc.sasl = on;
    }

    /// Names the room line users start in (`--default-room`).
    pub fn set_default_room(&mut self, name: &str) {
        self.core.set_default_room(name);
    }

    /// Sets how long a `/pm` invitation stays valid.
    pub fn set_invite_timeout(&mut self, timeout: Duration) {
        self.core.set_invite_timeout(timeout);
    }

    /// `--quiet-joins-above N` (`None`: off); see
    /// [`Core::set_quiet_joins_above`].
    pub fn set_quiet_joins_above(&mut self, n: Option<usize>) {
        self.core.set_quiet_joins_above(n);
    }

    /// Turns bridging on (see [`Core::set_bridged`]).
    pub fn set_bridged(&mut self, on: bool) {
        self.core.set_bridged(on);
    }

    /// What process `node` told the bridge (see [`Core::remote`]): told to
    /// the local members concerned, rendered once per dialect.
    pub fn remote(&mut self, node: &str, relay: &Relay<'_>, out: &mut impl Outbox) {
        let (core, mut sink) = self.split(out);
        core.remote(node, relay, &mut sink);
    }

    /// The bridge's answer for a private line `conn` sent to a nickname
    /// not here (see [`Core::private_outcome`]).
    pub fn private_outcome(
        &mut self,
        conn: ConnId,
        to: &str,
        text: &str,
        kind: TextKind,
        delivered: bool,
        out: &mut impl Outbox,
    ) {
        let (core, mut sink) = self.split(out);
        core.private_outcome(conn, to, text, kind, delivered, &mut sink);
    }

    /// The bridge lost Redis: members of other processes are forgotten
    /// (see [`Core::forget_remote`]).
    pub fn forget_remote(&mut self, out: &mut impl Outbox) {
        let reason = LeaveReason::Quit(Some("lost the link to the other servers".into()));
        let (core, mut sink) = self.split(out);
        core.forget_remote(None, &reason, &mut sink);
    }

    /// A reaper found process `node`'s lease expired: its members are
    /// forgotten, and local users see them quit.
    pub fn node_down(&mut self, node: &str, out: &mut impl Outbox) {
        let reason = LeaveReason::Quit(Some(format!("server {node} is gone")));
        let (core, mut sink) = self.split(out);
        core.forget_remote(Some(node), &reason, &mut sink);
    }

    /// The bridge's answer to the claim of a nickname for `conn` (see
    /// [`Core::claim_done`]).
    pub fn claim_done(&mut self, conn: ConnId, answer: ClaimAnswer, out: &mut impl Outbox) {
        let (core, mut sink) = self.split(out);
        core.claim_done(conn, answer, &mut sink);
        self.sync_irc(conn);
    }

    /// A nickname collision after Redis came back (see
    /// [`Core::collision`]).
    pub fn collision(&mut self, old: &str, new: &str, out: &mut impl Outbox) {
        let conn = self.core.find(old);
        let (core, mut sink) = self.split(out);
        core.collision(old, new, &mut sink);
        if let Some(conn) = conn {
            self.sync_irc(conn);
        }
    }

    /// Our names were claimed again in Redis (our lease lapsed, or the
    /// command link is new): tell the other processes who is here again
    /// (see [`Core::announce_all`]).
    pub fn announce_all(&mut self, out: &mut impl Outbox) {
        let (core, mut sink) = self.split(out);
        core.announce_all(&mut sink);
    }

    /// The loop's time for this turn.
    pub fn set_now(&mut self, now: Instant) {
        self.core.set_now(now);
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

    /// `conn`'s private-conversation partner, if it is in one.
    pub fn pm_partner(&self, conn: ConnId) -> Option<ConnId> {
        self.core.pm_partner(conn)
    }

    /// Number of users who have chosen a nickname.
    pub fn joined_count(&self) -> usize {
        self.core.joined_count()
    }

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        self.core.room_count()
    }

    /// Whether `conn` has chosen a nickname.
    pub fn is_joined(&self, conn: ConnId) -> bool {
        self.core.is_joined(conn)
    }

    /// `conn`'s nickname, once it has one.
    pub fn nick(&self, conn: ConnId) -> Option<&str> {
        self.core.nick(conn)
    }

    /// The joined connections in join order, with their nicknames.
    pub fn users(&self) -> impl Iterator<Item = (ConnId, &str)> {
        self.core.users()
    }

    /// The dialect `conn` speaks (the line dialect while undecided).
    pub fn dialect(&self, conn: ConnId) -> Dialect {
        self.speaks.get(conn).map_or(Dialect::Line, Speaks::dialect)
    }

    /// See [`Core::check_consistency`]. For tests.
    pub fn check_consistency(&self) -> Result<(), String> {
        self.core.check_consistency()
    }

    /// A new line-dialect connection, greeted at once (tests, and anything
    /// that knows its clients speak lines).
    pub fn connected(&mut self, conn: ConnId, out: &mut impl Outbox) {
        self.core.connected(conn);
        self.speaks.insert(conn, Speaks::Line);
        out.send(conn, line::GREETING.as_bytes());
    }

    /// A new connection on the main port: its first line will say which
    /// dialect it speaks. The loop calls [`Hub::greet`] after
    /// [`crate::config::GREETING_HOLD`] if no line came.
    pub fn connected_pending(&mut self, conn: ConnId) {
        self.core.connected(conn);
        self.speaks.insert(conn, Speaks::Pending);
    }

    /// A new connection on an IRC-only port (`--irc-listen`).
    pub fn connected_irc(&mut self, conn: ConnId) {
        self.core.connected(conn);
        self.speaks.insert(conn, Speaks::Irc(Box::default()));
    }

    /// The greeting hold is over and `conn` has said nothing: it is a line
    /// user waiting to be greeted (Budget Chat clients wait).
    pub fn greet(&mut self, conn: ConnId, out: &mut impl Outbox) {
        if let Some(speaks @ Speaks::Pending) = self.speaks.get_mut(conn) {
            *speaks = Speaks::Line;
            out.send(conn, line::GREETING.as_bytes());
        }
    }

    /// One frame from `conn`'s framer: decoded by its dialect, then handed
    /// to the core.
    pub fn handle_frame(&mut self, conn: ConnId, frame: Frame<'_>, out: &mut impl Outbox) {
        let Some(speaks) = self.speaks.get_mut(conn) else {
            return; // gone already
        };
        if let Speaks::Pending = speaks {
            let irc = matches!(frame, Frame::Line(first) if sniff(first) == Dialect::Irc);
            if irc {
                *speaks = Speaks::Irc(Box::default());
            } else {
                // A line user who did not wait for the greeting: greet it
                // now, and take the line as its answer.
                *speaks = Speaks::Line;
                out.send(conn, line::GREETING.as_bytes());
            }
        }
        match self.dialect(conn) {
            Dialect::Line => self.line_frame(conn, frame, out),
            Dialect::Irc => self.irc_frame(conn, frame, out),
        }
    }

    fn line_frame(&mut self, conn: ConnId, frame: Frame<'_>, out: &mut impl Outbox) {
        let stage = self.core.stage(conn);
        self.reply.clear();
        let request = line::decode(frame, stage, self.max_line, &mut self.reply);
        if !self.reply.is_empty() {
            out.send(conn, &self.reply);
        }
        if let Some(request) = request {
            let (core, mut sink) = self.split(out);
            core.handle(conn, request, &mut sink);
        }
    }

    fn irc_frame(&mut self, conn: ConnId, frame: Frame<'_>, out: &mut impl Outbox) {
        self.reply.clear();
        let text = match frame {
            Frame::Line(bytes) => std::str::from_utf8(bytes).ok(),
            Frame::TooLong => None,
        };
        let Some(Speaks::Irc(st)) = self.speaks.get_mut(conn) else {
            return;
        };
        // 512 bytes with CRLF, not counting tags.
        let too_long = match text {
            Some(text) => {
                let untagged = match text.strip_prefix('@') {
                    Some(rest) => rest.split_once(' ').map_or("", |(_, r)| r),
                    None => text,
                };
                untagged.len() > crate::config::IRC_MAX_LINE
            }
            None => matches!(frame, Frame::TooLong),
        };
        let (Some(text), false) = (text, too_long) else {
            let (code, why) = if too_long {
                ("417", "Input line was too long")
            } else {
                ("NOTICE", "Line is not valid UTF-8; discarded")
            };
            irc::commands::numeric(&mut self.reply, &self.irc.server, code, st.target(), &[why]);
            return out.send(conn, &self.reply);
        };
        let mut actions = Vec::new();
        irc::handle(
            st,
            text,
            conn,
            &self.core,
            &self.irc,
            &mut self.reply,
            &mut actions,
        );
        if !self.reply.is_empty() {
            out.send(conn, &self.reply);
        }
        for action in actions {
            match action {
                irc::Action::Request(request) => {
                    let (core, mut sink) = self.split(out);
                    core.handle(conn, request, &mut sink);
                }
                irc::Action::Register => self.irc_register(conn, out),
                irc::Action::Sasl { name, password } => self.irc_sasl(conn, &name, &password, out),
                irc::Action::Welcome => self.irc_welcome(conn, out),
                irc::Action::PartAll => {
                    let rooms: Vec<String> = self.core.rooms_of(conn).map(str::to_string).collect();
                    for room in &rooms {
                        let (core, mut sink) = self.split(out);
                        core.handle(conn, Request::Part { room, reason: None }, &mut sink);
                    }
                }
            }
        }
        // The nick the core holds is the one numerics must name.
        if let (Some(Speaks::Irc(st)), Some(nick)) =
            (self.speaks.get_mut(conn), self.core.nick(conn))
        {
            if st.nick.as_deref() != Some(nick) {
                st.nick = Some(nick.to_string());
            }
        }
    }

    /// NICK, USER (and CAP END) are in: the core registers the nick; with
    /// accounts, `PASS` is the password.
    fn irc_register(&mut self, conn: ConnId, out: &mut impl Outbox) {
        let Some(Speaks::Irc(st)) = self.speaks.get(conn) else {
            return;
        };
        let (Some(nick), Some(user)) = (st.nick.clone(), st.user.clone()) else {
            return;
        };
        let password = st.password.clone();
        self.core.set_many_rooms(conn, &user);
        let (core, mut sink) = self.split(out);
        core.handle(conn, Request::Register { nick: &nick }, &mut sink);
        if core.stage(conn) == Stage::Password {
            match password {
                Some(password) => core.handle(
                    conn,
                    Request::Password {
                        password: &password,
                    },
                    &mut sink,
                ),
                None => {
                    // An IRC client cannot be asked: no PASS, no login.
                    sink.emit(
                        Audience::One(conn),
                        &Event::WrongPassword {
                            name: &nick,
                            left: 0,
                        },
                    );
                    core.handle(conn, Request::Quit { reason: None }, &mut sink);
                }
            }
        }
        self.sync_irc(conn);
    }

    /// SASL PLAIN: log in as `name` now, inside CAP negotiation. The core
    /// registers `name` (the account name is the nickname); the answer,
    /// 903 or 904, is rendered when the password check is done.
    fn irc_sasl(&mut self, conn: ConnId, name: &str, password: &str, out: &mut impl Outbox) {
        let user = match self.speaks.get(conn) {
            Some(Speaks::Irc(st)) => st.user.clone().unwrap_or_else(|| name.to_string()),
            _ => return,
        };
        self.core.set_many_rooms(conn, &user);
        let (core, mut sink) = self.split(out);
        core.handle(conn, Request::Register { nick: name }, &mut sink);
        if core.stage(conn) == Stage::Password {
            core.handle(conn, Request::Password { password }, &mut sink);
        } else {
            let event = Event::WrongPassword { name, left: 0 };
            sink.emit(Audience::One(conn), &event);
            core.handle(conn, Request::Quit { reason: None }, &mut sink);
        }
        self.sync_irc(conn);
    }

    /// `CAP END` after a SASL login: the welcome burst, now.
    fn irc_welcome(&mut self, conn: ConnId, out: &mut impl Outbox) {
        let Some(nick) = self.core.nick(conn).map(str::to_string) else {
            return;
        };
        let event = Event::Registered {
            nick: &nick,
            users: self.core.joined_count(),
            rooms: self.core.all_rooms().len(),
        };
        self.notify(conn, &event, out);
        if let Some(Speaks::Irc(st)) = self.speaks.get_mut(conn) {
            st.welcomed = true;
        }
    }

    /// Records whether `conn`'s IRC registration went through.
    fn sync_irc(&mut self, conn: ConnId) {
        let joined = self.core.is_joined(conn);
        let nick = self.core.nick(conn).map(str::to_string);
        if let Some(Speaks::Irc(st)) = self.speaks.get_mut(conn) {
            st.registered = joined;
            // Outside CAP negotiation the registration event was the
            // welcome burst itself.
            st.welcomed = joined && !st.cap_open;
            if let Some(nick) = nick {
                st.nick = Some(nick);
            } else if !joined {
                // Refused (taken meanwhile): the client must send NICK again.
                st.nick = None;
            }
        }
    }

    /// `conn` is gone (EOF, reset, write error, or the loop kicked it).
    /// Safe to call twice.
    pub fn disconnected(&mut self, conn: ConnId, reason: &LeaveReason, out: &mut impl Outbox) {
        let (core, mut sink) = self.split(out);
        core.disconnected(conn, reason, &mut sink);
        self.speaks.remove(conn);
    }

    /// The server is stopping: tell everyone and close every connection.
    pub fn shutdown(&mut self, out: &mut impl Outbox) {
        let (core, mut sink) = self.split(out);
        core.shutdown(&mut sink);
        self.speaks.clear();
    }

    /// The loop's answer to an [`Outbox::authenticate`] job for `conn`. An
    /// IRC client cannot be asked again, so a login that did not succeed
    /// ends its connection.
    pub fn auth_done(&mut self, conn: ConnId, outcome: AuthOutcome, out: &mut impl Outbox) {
        let (core, mut sink) = self.split(out);
        core.auth_done(conn, outcome, &mut sink);
        if self.dialect(conn) == Dialect::Irc {
            // (A name being claimed in Redis is not a failed login.)
            let stage = self.core.stage(conn);
            if !self.core.is_joined(conn) && !matches!(stage, Stage::Gone | Stage::Claiming) {
                let (core, mut sink) = self.split(out);
                core.handle(conn, Request::Quit { reason: None }, &mut sink);
            }
            self.sync_irc(conn);
        }
    }

    /// Expires due invitations (the timer asked for with
    /// [`Outbox::wake_at`] fired).
    pub fn expire_invites(&mut self, out: &mut impl Outbox) {
        let (core, mut sink) = self.split(out);
        core.expire_invites(&mut sink);
    }

    /// Tells `conn` something about its connection that is not chat (the
    /// idle ping, a flood notice), if it is still known.
    pub fn notify(&mut self, conn: ConnId, event: &Event<'_>, out: &mut impl Outbox) {
        if self.core.stage(conn) != Stage::Gone {
            let (_, mut sink) = self.split(out);
            sink.emit(Audience::One(conn), event);
        }
    }

    /// The last line for a connection being closed because of `refusal`,
    /// in its dialect.
    pub fn refusal(&self, conn: ConnId, refusal: Refusal) -> Vec<u8> {
        match self.dialect(conn) {
            Dialect::Line => line::refusal_line(refusal).into_bytes(),
            Dialect::Irc => irc::render::refusal_line(refusal),
        }
    }

    /// The core, and a sink that renders its events into `out`.
    fn split<'a, O: Outbox>(&'a mut self, out: &'a mut O) -> (&'a mut Core, Renderer<'a, O>) {
        (
            &mut self.core,
            Renderer {
                out,
                speaks: &self.speaks,
                irc: &self.irc,
                clock: self.clock.as_deref(),
                scratch: &mut self.scratch,
                broadcasts: &mut self.broadcasts,
            },
        )
    }
}

/// The core's [`Sink`] over an [`Outbox`]: renders each event in the
/// recipient's dialect, once per dialect for a broadcast, and queues the
/// bytes for every recipient.
struct Renderer<'a, O: Outbox> {
    out: &'a mut O,
    speaks: &'a ConnTable<Speaks>,
    irc: &'a IrcConfig,
    clock: Option<&'a str>,
    scratch: &'a mut [Vec<u8>; 2],
    broadcasts: &'a mut u64,
}

impl<O: Outbox> Renderer<'_, O> {
    /// Renders `event` into `dialect`'s scratch buffer, for `conn` (its nick
    /// is the target of IRC numerics) or, with `None`, for many.
    fn render(&mut self, conn: Option<ConnId>, dialect: Dialect, event: &Event<'_>) {
        match dialect {
            Dialect::Line => {
                let buf = &mut self.scratch[0];
                buf.clear();
                line::render(event, self.clock, buf);
            }
            Dialect::Irc => {
                let (me, negotiating) = match conn.and_then(|c| self.speaks.get(c)) {
                    Some(Speaks::Irc(st)) => (st.target(), st.cap_open),
                    _ => ("*", false),
                };
                let buf = &mut self.scratch[1];
                buf.clear();
                irc::render(event, me, negotiating, self.irc, buf);
            }
        }
    }
}

impl<O: Outbox> Sink for Renderer<'_, O> {
    fn emit(&mut self, to: Audience<'_>, event: &Event<'_>) {
        match to {
            Audience::One(conn) => {
                let dialect = self.speaks.get(conn).map_or(Dialect::Line, Speaks::dialect);
                self.render(Some(conn), dialect, event);
                let buf = &self.scratch[dialect as usize];
                if !buf.is_empty() {
                    self.out.send(conn, buf);
                }
            }
            Audience::Members {
                members,
                except,
                room,
            } => {
                *self.broadcasts += 1;
                let speaks = self.speaks;
                let dialect_of = |c: ConnId| speaks.get(c).map_or(Dialect::Line, Speaks::dialect);
                let mut present = [false; 2];
                for &conn in members {
                    if Some(conn) != except {
                        present[dialect_of(conn) as usize] = true;
                    }
                }
                // Rendered once per dialect present, handed over once: the
                // loop stores the bytes once for all its recipients.
                for dialect in [Dialect::Line, Dialect::Irc] {
                    if !present[dialect as usize] {
                        continue;
                    }
                    self.render(None, dialect, event);
                    let bytes = &self.scratch[dialect as usize];
                    if bytes.is_empty() {
                        continue;
                    }
                    let stream = Stream {
                        room: room.map_or(0, |r| r.0),
                        dialect: dialect as u8,
                    };
                    let to = members
                        .iter()
                        .copied()
                        .filter(|&c| Some(c) != except && dialect_of(c) == dialect);
                    self.out.send_many(stream, bytes, to);
                }
            }
        }
    }

    fn close(&mut self, conn: ConnId) {
        self.out.close(conn);
    }

    fn authenticate(&mut self, conn: ConnId, job: AuthJob) {
        self.out.authenticate(conn, job);
    }

    fn wake_at(&mut self, at: Instant) {
        self.out.wake_at(at);
    }

    fn password_prompt(&mut self, conn: ConnId, on: bool) {
        // Telnet echo is a line-dialect matter.
        if self.speaks.get(conn).map_or(Dialect::Line, Speaks::dialect) == Dialect::Line {
            self.out.password_prompt(conn, on);
        }
    }

    fn relay(&mut self, conn: ConnId, relay: &Relay<'_>) {
        self.out.relay(conn, relay);
    }

    fn watch(&mut self, what: Watch<'_>, on: bool) {
        self.out.watch(what, on);
    }

    fn claim(&mut self, conn: ConnId, nick: &str) -> bool {
        self.out.claim(conn, nick)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::accounts::{Scope, Spent};
    use crate::chat::LeaveReason;

    /// Records everything the hub asks for.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub sent: Vec<(ConnId, String)>,
        pub closed: Vec<ConnId>,
        pub jobs: Vec<(ConnId, AuthJob)>,
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
        fn authenticate(&mut self, conn: ConnId, job: AuthJob) {
            self.jobs.push((conn, job));
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

    fn say(room: &mut Hub, conn: ConnId, line: &str, out: &mut Recorder) {
        room.handle_frame(conn, Frame::Line(line.as_bytes()), out);
    }

    fn joined_room(nicks: &[&str]) -> (Hub, Recorder) {
        let mut room = Hub::new(4096);
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
        let mut room = Hub::new(4096);
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
                "* Welcome, alice! 1 user online in #lobby. Type /help for commands.",
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
                "* Welcome, bob! 2 users online in #lobby. Type /help for commands."
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

    /// `/who` counts in the singular for one, and `/nick` to the name one
    /// already has renames nobody: only its sender hears about it. A
    /// change of case is a real rename.
    #[test]
    fn who_alone_and_nick_to_the_same_name() {
        let (mut room, mut out) = joined_room(&["bob"]);
        say(&mut room, 0, "/who", &mut out);
        assert_eq!(out.take(0), ["* 1 user online: bob"]);
        room.connected(1, &mut out);
        say(&mut room, 1, "carol", &mut out);
        out.sent.clear();
        say(&mut room, 0, "/nick bob", &mut out);
        assert_eq!(out.take(0), ["* Your nickname is already bob."]);
        assert!(out.sent.is_empty(), "{:?}", out.sent);
        say(&mut room, 0, "/nick Bob", &mut out);
        assert_eq!(out.take(0), ["* bob is now known as Bob"]);
        assert_eq!(out.take(1), ["* bob is now known as Bob"]);
        say(&mut room, 1, "/who", &mut out);
        assert_eq!(out.take(1), ["* 2 users online: Bob, carol"]);
    }

    /// `/join` moves a line user: the old room hears where it went, the new
    /// room hears it enter, the mover gets the new room's list; chat, `/who`,
    /// renames and quits stay within the rooms concerned; empty rooms vanish
    /// except the default one.
    #[test]
    fn rooms_join_who_topic_and_leaving() {
        let (mut room, mut out) = joined_room(&["a", "b", "c"]);
        say(&mut room, 0, "/join #Rust", &mut out);
        assert_eq!(
            out.take(0),
            ["* The room contains: ", "* You are now in #Rust."]
        );
        assert_eq!(out.take(1), ["* a has left the room (moved to #Rust)"]);
        assert_eq!(out.take(2), ["* a has left the room (moved to #Rust)"]);
        say(&mut room, 1, "/join #rust", &mut out);
        assert_eq!(out.take(0), ["* b has entered the room"]);
        assert_eq!(
            out.take(1),
            ["* The room contains: a", "* You are now in #Rust."]
        );
        assert_eq!(out.take(2), ["* b has left the room (moved to #Rust)"]);
        say(&mut room, 0, "hi rust", &mut out);
        assert_eq!(out.take(1), ["[a] hi rust"]);
        assert!(out.take(2).is_empty(), "c is in #lobby");
        say(&mut room, 2, "anyone?", &mut out);
        assert_eq!(
            out.take(2),
            ["* You are alone in the room; nobody received that."]
        );
        say(&mut room, 0, "/who", &mut out);
        assert_eq!(out.take(0), ["* 2 users online: a, b"]);
        say(&mut room, 2, "/rooms", &mut out);
        assert_eq!(out.take(2), ["* Rooms: #lobby (1), #Rust (2)"]);
        say(&mut room, 0, "/topic", &mut out);
        assert_eq!(out.take(0), ["* #Rust has no topic."]);
        say(&mut room, 0, "/topic borrow checking", &mut out);
        let set = "* a set the topic of #Rust: borrow checking";
        assert_eq!(out.take(0), [set]);
        assert_eq!(out.take(1), [set]);
        say(&mut room, 1, "/topic", &mut out);
        assert_eq!(
            out.take(1),
            ["* Topic of #Rust (set by a): borrow checking"]
        );
        room.connected(3, &mut out);
        say(&mut room, 3, "d", &mut out);
        out.sent.clear();
        say(&mut room, 3, "/join #rust", &mut out);
        assert_eq!(
            out.take(3),
            [
                "* The room contains: a, b",
                "* You are now in #Rust.",
                "* Topic: borrow checking"
            ]
        );
        say(&mut room, 3, "/join #rust", &mut out);
        assert_eq!(out.take(3), ["! You are already in #Rust."]);
        for bad in ["/join rust", "/join #", "/join #a.b", "/join #a b"] {
            say(&mut room, 3, bad, &mut out);
        }
        assert_eq!(
            out.take(3),
            [
                "! Invalid room name rust: use # and 1 to 32 letters, digits, _ or -.",
                "! Invalid room name #: use # and 1 to 32 letters, digits, _ or -.",
                "! Invalid room name #a.b: use # and 1 to 32 letters, digits, _ or -.",
                "! Usage: /join #ROOM",
            ]
        );
        out.sent.clear();
        // A rename and a quit reach the room-mates only.
        say(&mut room, 0, "/nick A", &mut out);
        assert_eq!(out.take(0), ["* a is now known as A"]);
        assert_eq!(out.take(1), ["* a is now known as A"]);
        assert!(out.take(2).is_empty());
        room.disconnected(1, &LeaveReason::Closed, &mut out);
        assert_eq!(out.take(0), ["* b has left the room (connection closed)"]);
        assert!(out.take(2).is_empty());
        // The last ones out of #Rust: it vanishes; #lobby never does.
        say(&mut room, 0, "/join #lobby", &mut out);
        say(&mut room, 3, "/join #lobby", &mut out);
        say(&mut room, 2, "/join #elsewhere", &mut out);
        out.sent.clear();
        say(&mut room, 0, "/rooms", &mut out);
        assert_eq!(out.take(0), ["* Rooms: #elsewhere (1), #lobby (2)"]);
        room.check_consistency().unwrap();
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

    /// An outbox that also records what the bridge would carry.
    #[derive(Default)]
    struct Bridged {
        out: Recorder,
        relays: Vec<String>,
        watches: Vec<String>,
        claims: Vec<String>,
        /// Redis cannot be asked: claims are refused at once.
        down: bool,
    }

    impl Outbox for Bridged {
        fn send(&mut self, to: ConnId, line: &[u8]) {
            self.out.send(to, line);
        }
        fn close(&mut self, conn: ConnId) {
            self.out.close(conn);
        }
        fn relay(&mut self, conn: ConnId, relay: &Relay<'_>) {
            self.relays.push(format!("{conn} {relay:?}"));
        }
        fn watch(&mut self, what: Watch<'_>, on: bool) {
            self.watches.push(format!("{what:?} {on}"));
        }
        fn claim(&mut self, conn: ConnId, nick: &str) -> bool {
            self.claims.push(format!("{conn} {nick}"));
            !self.down
        }
    }

    /// With bridging on, the core relays what others must hear and
    /// watches its rooms and nicks; what other processes say reaches
    /// local members in their grammar, and `/who` lists remote members.
    #[test]
    fn bridged_core_relays_and_hears_remote_members() {
        let mut room = Hub::new(4096);
        room.set_bridged(true);
        let mut out = Bridged::default();
        room.connected(0, &mut out);
        out.out.sent.clear();
        room.handle_frame(0, Frame::Line(b"alice"), &mut out);
        assert_eq!(out.claims, ["0 alice"]);
        assert!(
            out.watches.is_empty() && out.out.sent.is_empty(),
            "claimed first"
        );
        room.claim_done(0, ClaimAnswer::Granted, &mut out);
        assert_eq!(
            out.watches,
            ["Nick(\"alice\") true", "Room(\"#lobby\") true"]
        );
        assert_eq!(
            out.relays,
            [r##"0 Entered { room: "#lobby", nick: "alice", user: "alice" }"##]
        );
        out.relays.clear();
        out.out.sent.clear();
        let said = |text| Relay::Said {
            room: "#Lobby",
            nick: "bob",
            user: "bob",
            text,
            kind: TextKind::Plain,
        };
        room.remote("B", &said("hi"), &mut out);
        assert_eq!(
            out.out.take(0),
            ["[bob] hi"],
            "a quiet JOIN is not shown to line users"
        );
        room.remote(
            "B",
            &Relay::Entered {
                room: "#lobby",
                nick: "bob",
                user: "bob",
            },
            &mut out,
        );
        assert!(out.out.take(0).is_empty(), "bob is known already");
        room.handle_frame(0, Frame::Line(b"/who"), &mut out);
        assert_eq!(out.out.take(0), ["* 2 users online: alice, bob"]);
        room.handle_frame(0, Frame::Line(b"yo"), &mut out);
        assert_eq!(
            out.relays,
            [
                r##"0 Said { room: "#lobby", nick: "alice", user: "alice", text: "yo", kind: Plain }"##
            ]
        );
        out.relays.clear();
        room.handle_frame(0, Frame::Line(b"/msg carol psst"), &mut out);
        assert!(
            out.out.take(0).is_empty(),
            "the answer waits for the bridge"
        );
        assert_eq!(out.relays.len(), 1);
        room.private_outcome(0, "carol", "psst", TextKind::Plain, false, &mut out);
        assert_eq!(out.out.take(0), ["! No such user: carol."]);
        let renamed = Relay::Renamed {
            room: "#lobby",
            old: "bob",
            user: "bob",
            new: "rob",
        };
        room.remote("B", &renamed, &mut out);
        room.remote("B", &renamed, &mut out);
        assert_eq!(out.out.take(0), ["* bob is now known as rob"], "once");
        let quit = Relay::Quit {
            room: "#lobby",
            nick: "rob",
            user: "bob",
            reason: LeaveReason::Closed,
        };
        room.remote("B", &quit, &mut out);
        assert_eq!(
            out.out.take(0),
            ["* rob has left the room (connection closed)"]
        );
        room.remote("B", &Relay::Sync { room: "#lobby" }, &mut out);
        assert_eq!(
            out.relays.last().map(String::as_str),
            Some(r##"0 Here { room: "#lobby", nick: "alice", user: "alice" }"##)
        );
        out.watches.clear();
        room.disconnected(0, &LeaveReason::Closed, &mut out);
        assert_eq!(
            out.watches,
            ["Nick(\"alice\") false", "Room(\"#lobby\") false"]
        );
        room.check_consistency().unwrap();
    }

    /// Names are claimed across processes: taken elsewhere, unavailable
    /// while Redis is away, reserved locally while a claim is out, lost
    /// in a collision; a reaped process's members quit.
    #[test]
    fn bridged_names_are_claimed_and_settled() {
        let mut room = Hub::new(4096);
        room.set_bridged(true);
        let mut out = Bridged::default();
        for c in 0..3 {
            room.connected(c, &mut out);
        }
        out.out.sent.clear();
        room.handle_frame(0, Frame::Line(b"alice"), &mut out);
        room.handle_frame(1, Frame::Line(b"ALICE"), &mut out);
        assert_eq!(
            out.out.take(1),
            ["! Nickname ALICE is taken. Choose another."],
            "a claim in flight holds the name here"
        );
        room.claim_done(0, ClaimAnswer::Taken, &mut out);
        assert_eq!(
            out.out.take(0),
            ["! Nickname alice is taken. Choose another."]
        );
        out.down = true;
        room.handle_frame(0, Frame::Line(b"al"), &mut out);
        assert_eq!(
            out.out.take(0),
            [
                "! al cannot be checked against the other servers now (they are unreachable). Try again in a moment."
            ]
        );
        out.down = false;
        room.handle_frame(0, Frame::Line(b"al"), &mut out);
        room.claim_done(0, ClaimAnswer::Granted, &mut out);
        room.handle_frame(1, Frame::Line(b"bo"), &mut out);
        room.claim_done(1, ClaimAnswer::Granted, &mut out);
        out.out.sent.clear();
        // A rename is claimed too; a case change is not.
        out.claims.clear();
        room.handle_frame(1, Frame::Line(b"/nick BO"), &mut out);
        assert!(out.claims.is_empty());
        assert_eq!(out.out.take(0), ["* bo is now known as BO"]);
        room.handle_frame(1, Frame::Line(b"/nick bob"), &mut out);
        assert_eq!(out.claims, ["1 bob"]);
        room.claim_done(1, ClaimAnswer::Unavailable, &mut out);
        assert_eq!(
            out.out.take(1),
            [
                "* bo is now known as BO",
                "! bob cannot be checked against the other servers now (they are unreachable). Try again in a moment."
            ]
        );
        assert_eq!(room.core.nick(1), Some("BO"));
        // The one who left while claiming gives the name back.
        room.handle_frame(2, Frame::Line(b"cy"), &mut out);
        out.watches.clear();
        room.disconnected(2, &LeaveReason::Closed, &mut out);
        assert_eq!(out.watches, ["Nick(\"cy\") false"]);
        room.claim_done(2, ClaimAnswer::Granted, &mut out);
        // A collision after Redis came back: renamed, told, and seen.
        out.out.sent.clear();
        room.collision("al", "al1", &mut out);
        assert_eq!(
            out.out.take(0),
            [
                "* al was also taken on another server while the servers were out of touch; you are now al1.",
                "* al is now known as al1"
            ]
        );
        assert_eq!(out.out.take(1), ["* al is now known as al1"]);
        // A reaped process: its members quit here; others stay.
        for (node, nick) in [("B", "zed"), ("C", "yan")] {
            let here = Relay::Here {
                room: "#lobby",
                nick,
                user: nick,
            };
            room.remote(node, &here, &mut out);
        }
        room.node_down("B", &mut out);
        assert_eq!(
            out.out.take(0),
            ["* zed has left the room (quit: server B is gone)"]
        );
        room.handle_frame(0, Frame::Line(b"/who"), &mut out);
        assert_eq!(out.out.take(0), ["* 3 users online: al1, BO, yan"]);
        room.check_consistency().unwrap();
    }

    #[test]
    fn timestamps_prefix_chat_lines_only() {
        let (mut room, mut out) = joined_room(&["a", "b"]);
        room.set_clock(Some("12:34:56"));
        say(&mut room, 0, "hi", &mut out);
        say(&mut room, 0, "/me nods", &mut out);
        assert_eq!(out.take(1), ["12:34:56 [a] hi", "12:34:56 ~ a nods"]);
    }

    #[test]
    fn private_conversation_flow() {
        let (mut room, mut out) = joined_room(&["a", "b", "c"]);
        let t0 = Instant::now();
        room.set_now(t0);
        say(&mut room, 0, "/pm a", &mut out);
        assert_eq!(out.take(0), ["! You cannot invite yourself."]);
        say(&mut room, 0, "/pm zed", &mut out);
        assert_eq!(out.take(0), ["! No such user: zed."]);
        say(&mut room, 0, "/pm B", &mut out);
        assert_eq!(out.take(0), ["* Invitation sent to b; it expires in 60 s."]);
        assert_eq!(
            out.take(1),
            [
                "* a invites you to a private conversation. Answer /accept a or /decline a (within 60 s)."
            ]
        );
        say(&mut room, 1, "/accept c", &mut out);
        assert_eq!(
            out.take(1),
            ["! No invitation from c (it may have expired)."]
        );
        say(&mut room, 1, "/accept a", &mut out);
        assert_eq!(room.pm_partner(0), Some(1));
        assert_eq!(room.pm_partner(1), Some(0));
        assert!(out.take(0)[0].starts_with("* b accepted."));
        assert!(out.take(1)[0].starts_with("* You are in a private conversation with a"));
        say(&mut room, 0, "secret", &mut out);
        assert_eq!(out.take(1), ["(a) secret"]);
        assert_eq!(out.take(0), ["(-> b) secret"]);
        say(&mut room, 2, "public", &mut out);
        assert_eq!(out.take(0), ["[c] public"]);
        assert_eq!(out.take(1), ["[c] public"]);
        say(&mut room, 2, "/pm a", &mut out);
        assert_eq!(out.take(2), ["! a is already in a private conversation."]);
        say(&mut room, 0, "/pm c", &mut out);
        assert!(out.take(0)[0].starts_with("! You are already in a private conversation with b"));
        assert!(out.sent.is_empty(), "{:?}", out.sent);
        say(&mut room, 1, "/endpm", &mut out);
        assert_eq!(
            out.take(1),
            ["* Private conversation with a ended. You are back in the room."]
        );
        assert_eq!(
            out.take(0),
            ["* b ended the private conversation. You are back in the room."]
        );
        say(&mut room, 1, "/endpm", &mut out);
        assert_eq!(out.take(1), ["! You are not in a private conversation."]);
        say(&mut room, 0, "back", &mut out);
        assert_eq!(out.take(1), ["[a] back"]);
        assert_eq!(out.take(2), ["[a] back"]);
    }

    #[test]
    fn invitations_decline_expire_and_partner_leaving() {
        let (mut room, mut out) = joined_room(&["a", "b", "c"]);
        let t0 = Instant::now();
        room.set_now(t0);
        room.set_invite_timeout(Duration::from_secs(1));
        say(&mut room, 0, "/pm b", &mut out);
        say(&mut room, 1, "/decline a", &mut out);
        assert_eq!(out.take(0)[1], "* b declined your invitation.");
        assert_eq!(out.take(1)[1], "* You declined a's invitation.");
        say(&mut room, 0, "/pm b", &mut out);
        room.set_now(t0 + Duration::from_secs(2));
        say(&mut room, 1, "/accept a", &mut out);
        assert_eq!(
            out.take(1)[1..],
            [
                "* a's invitation expired.",
                "! No invitation from a (it may have expired)."
            ]
        );
        assert_eq!(out.take(0)[1], "* Your invitation to b expired.");
        assert_eq!(room.pm_partner(1), None);
        say(&mut room, 2, "/pm b", &mut out);
        say(&mut room, 1, "/accept c", &mut out);
        out.sent.clear();
        room.disconnected(2, &LeaveReason::Closed, &mut out);
        assert_eq!(
            out.take(1),
            [
                "* c left; your private conversation ended. You are back in the room.",
                "* c has left the room (connection closed)"
            ]
        );
        assert_eq!(room.pm_partner(1), None);
    }

    /// Sends `password` as `conn` and returns the job the hub queued.
    fn password(room: &mut Hub, conn: ConnId, pw: &str, out: &mut Recorder) -> AuthJob {
        say(room, conn, pw, out);
        let (c, job) = out.jobs.pop().expect("a job was queued");
        assert_eq!(c, conn);
        assert_eq!(job.password, pw);
        job
    }

    #[test]
    fn login_state_machine() {
        let mut room = Hub::new(4096);
        room.set_accounts(true);
        let mut out = Recorder::default();
        room.connected(1, &mut out);
        out.sent.clear();
        say(&mut room, 1, "alice", &mut out);
        assert_eq!(
            out.take(1),
            [
                "* Password for alice? (A new name is registered with the password you send now: at least 8 characters.)"
            ]
        );
        assert!(!room.is_joined(1));
        // A second connection may try alice meanwhile: the name is not
        // reserved (the first right password wins, see below).
        room.connected(2, &mut out);
        out.sent.clear();
        say(&mut room, 2, "ALICE", &mut out);
        assert!(out.take(2)[0].starts_with("* Password for ALICE?"));

        let job = password(&mut room, 1, "/nick is a password", &mut out);
        assert_eq!(job.name, "alice");
        say(&mut room, 1, "more", &mut out);
        assert_eq!(
            out.take(1),
            ["! Still checking your password; wait for the answer."]
        );
        room.auth_done(1, AuthOutcome::TooShort { min: 8 }, &mut out);
        assert_eq!(
            out.take(1),
            [
                "! Password too short: a new account needs at least 8 characters. Send another password for alice."
            ]
        );
        password(&mut room, 1, "long enough", &mut out);
        room.auth_done(1, AuthOutcome::SaveFailed, &mut out);
        assert!(out.take(1)[0].starts_with("! Could not register alice"));
        password(&mut room, 1, "long enough", &mut out);
        room.auth_done(
            1,
            AuthOutcome::Registered {
                name: "alice".into(),
            },
            &mut out,
        );
        assert_eq!(
            out.take(1)[..2],
            ["* Account alice registered.", "* The room contains: "]
        );
        assert!(room.is_joined(1));
        room.check_consistency().unwrap();
        // The other login for the name is over, and told so.
        assert_eq!(
            out.take(2),
            ["! alice has just logged in on another connection. Choose another name."]
        );

        // Now logged in: a second login gets a clear error at the name.
        say(&mut room, 2, "alice", &mut out);
        assert_eq!(
            out.take(2),
            ["! alice is already logged in (one session per account). Choose another name."]
        );
        say(&mut room, 1, "/nick other", &mut out);
        assert_eq!(
            out.take(1),
            ["! With accounts, your nickname is your account name; /nick is off."]
        );
        // Nothing anyone sent as a password was relayed to anyone.
        assert!(out.sent.iter().all(|(_, l)| !l.contains("long enough")));
    }

    #[test]
    fn three_wrong_passwords_close_and_quit_frees_the_name() {
        let mut room = Hub::new(4096);
        room.set_accounts(true);
        let mut out = Recorder::default();
        room.connected(1, &mut out);
        say(&mut room, 1, "bob", &mut out);
        out.sent.clear();
        for left in [2, 1] {
            password(&mut room, 1, "wrong", &mut out);
            room.auth_done(1, AuthOutcome::WrongPassword, &mut out);
            let plural = if left == 1 { "attempt" } else { "attempts" };
            assert_eq!(
                out.take(1),
                [format!(
                    "! Wrong password for bob. Try again ({left} {plural} left)."
                )]
            );
        }
        password(&mut room, 1, "wrong", &mut out);
        room.auth_done(1, AuthOutcome::WrongPassword, &mut out);
        assert_eq!(
            out.take(1),
            ["! Wrong password. Too many failures; goodbye."]
        );
        assert_eq!(out.closed, [1]);
        // A late answer for a connection that left is ignored.
        room.auth_done(1, AuthOutcome::WrongPassword, &mut out);
        assert!(out.sent.is_empty());

        // The name is free again; /quit while the password is asked works.
        room.connected(2, &mut out);
        say(&mut room, 2, "bob", &mut out);
        say(&mut room, 2, "/QUIT", &mut out);
        assert!(out.jobs.is_empty());
        assert_eq!(out.closed, [1, 2]);
        room.connected(3, &mut out);
        out.sent.clear();
        say(&mut room, 3, "bob", &mut out);
        assert!(out.take(3)[0].starts_with("* Password for bob?"));
        password(&mut room, 3, "right one", &mut out);
        room.auth_done(3, AuthOutcome::LoggedIn { name: "Bob".into() }, &mut out);
        assert_eq!(room.nick(3), Some("Bob"));
    }

    /// Three connections try one name; one's check is running when another
    /// wins. The idle one is told at once, the checking one with its
    /// answer (whatever it is); both are back at the name prompt.
    #[test]
    fn first_right_password_wins() {
        let mut room = Hub::new(4096);
        room.set_accounts(true);
        let mut out = Recorder::default();
        for conn in 1..=3 {
            room.connected(conn, &mut out);
            say(&mut room, conn, "carol", &mut out);
        }
        out.sent.clear();
        password(&mut room, 2, "a guess", &mut out);
        password(&mut room, 3, "carol-password", &mut out);
        room.auth_done(
            3,
            AuthOutcome::LoggedIn {
                name: "Carol".into(),
            },
            &mut out,
        );
        assert!(room.is_joined(3));
        let lost = "! Carol has just logged in on another connection. Choose another name.";
        assert_eq!(out.take(1), [lost]);
        assert!(out.take(2).is_empty(), "told with its answer");
        room.auth_done(2, AuthOutcome::WrongPassword, &mut out);
        assert_eq!(out.take(2), [lost]);
        for conn in [1, 2] {
            say(&mut room, conn, "dan", &mut out);
            assert!(out.take(conn)[0].starts_with("* Password for dan?"));
        }
        room.check_consistency().unwrap();
    }

    /// A spent budget of new accounts: the line says whose and when, and
    /// the user is back at the name prompt.
    #[test]
    fn no_new_accounts_back_to_the_name() {
        let mut room = Hub::new(4096);
        room.set_accounts(true);
        let mut out = Recorder::default();
        room.connected(1, &mut out);
        say(&mut room, 1, "eve", &mut out);
        password(&mut room, 1, "eve-password", &mut out);
        out.sent.clear();
        let spent = |scope, count, period, wait| {
            AuthOutcome::NoNewAccounts(Spent {
                scope,
                rate: crate::accounts::Rate {
                    count,
                    period: Duration::from_secs(period),
                },
                retry_after: Duration::from_millis(wait),
            })
        };
        room.auth_done(1, spent(Scope::Address, 5, 3600, 719_001), &mut out);
        assert_eq!(
            out.take(1),
            [
                "! Too many new accounts from your address (at most 5 per hour). Try again in 12 min, or choose an existing account's name."
            ]
        );
        say(&mut room, 1, "eve", &mut out);
        password(&mut room, 1, "eve-password", &mut out);
        out.sent.clear();
        room.auth_done(1, spent(Scope::Server, 60, 60, 200), &mut out);
        assert_eq!(
            out.take(1),
            [
                "! Too many new accounts on this server right now (at most 60 per minute). Try again in 1 s, or choose an existing account's name."
            ]
        );
        assert_eq!(
            crate::dialect::line::wait_text(Duration::from_secs(119)),
            "119 s"
        );
        assert_eq!(
            crate::dialect::line::wait_text(Duration::from_secs(120)),
            "2 min"
        );
        assert_eq!(
            crate::dialect::line::wait_text(Duration::from_millis(120_001)),
            "3 min"
        );
    }
}
