//! The chat itself: who is here, what each line means, who receives what.
//!
//! This module knows nothing about sockets or polls, and reads no clock
//! while the loop gives it the time (`set_now`, for invitation expiry). It
//! never hashes a password either: it asks the loop to, through
//! [`Outbox::authenticate`], and hears back in [`Room::auth_done`].
//! The event loop feeds it three kinds of input ("connection K connected", "K sent this
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
use std::time::{Duration, Instant};

use crate::accounts::{AuthJob, AuthOutcome, Scope, Spent};
use crate::config;
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
    /// Check a password (slow: argon2), later, and answer with
    /// [`Room::auth_done`]. Only used with accounts on; the default drops
    /// the job, for outboxes of rooms without accounts.
    fn authenticate(&mut self, conn: ConnId, job: AuthJob) {
        let _ = (conn, job);
    }
    /// Call [`Room::expire_invites`] at `at` (an invitation's deadline).
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

/// The notice a flooder gets when the server starts reading it more slowly.
pub fn flood_notice(rate: u32, burst: u32) -> String {
    format!(
        "* Slow down: at most {rate} lines per second (bursts of {burst}). \
         Your lines are delayed, not lost.\n"
    )
}

const GREETING: &str = "* Welcome to loopchat! What shall I call you?\n";
const HELP: &str = "\
* Commands:
*   TEXT              say TEXT to everyone (//TEXT sends a literal /TEXT)
*   /who              list the users online
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

/// One connection as the room sees it.
#[derive(Debug)]
struct Member {
    /// `None` until a nickname has been accepted.
    nick: Option<String>,
    /// With accounts: the name chosen, while the password is asked.
    login: Option<Login>,
    /// The partner of a private conversation: plain lines go to them only.
    pm_with: Option<ConnId>,
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
}

impl Room {
    /// An empty room. `max_line` is only quoted in the "too long" error.
    pub fn new(max_line: usize) -> Room {
        Room {
            max_line,
            invite_timeout: config::DEFAULT_INVITE_TIMEOUT,
            ..Room::default()
        }
    }

    /// Turns accounts on: after the nickname, a password is asked and
    /// checked through [`Outbox::authenticate`].
    pub fn set_accounts(&mut self, on: bool) {
        self.accounts = on;
    }

    /// Sets how long a `/pm` invitation stays valid.
    pub fn set_invite_timeout(&mut self, timeout: Duration) {
        self.invite_timeout = timeout;
    }

    /// Gives the room the loop's current time (once per turn), so that
    /// invitations expire without the room reading the clock itself.
    pub fn set_now(&mut self, now: Instant) {
        self.now = Some(now);
    }

    /// The loop's time, or the clock for callers that never set it.
    fn now(&self) -> Instant {
        self.now.unwrap_or_else(Instant::now)
    }

    /// `conn`'s private-conversation partner, if it is in one.
    pub fn pm_partner(&self, conn: ConnId) -> Option<ConnId> {
        self.members.get(&conn)?.pm_with
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

    /// Checks the room's indexes against each other: every joined user is
    /// in the nickname index exactly once and vice versa. For tests.
    pub fn check_consistency(&self) -> Result<(), String> {
        if self.joined.len() != self.by_nick.len() {
            return Err(format!(
                "{} joined but {} nicknames indexed",
                self.joined.len(),
                self.by_nick.len()
            ));
        }
        for &conn in &self.joined {
            let nick = self
                .nick(conn)
                .ok_or(format!("#{conn} joined without a nick"))?;
            if self.by_nick.get(&nick.to_ascii_lowercase()) != Some(&conn) {
                return Err(format!("{nick} (#{conn}) is not indexed"));
            }
            if self.joined.iter().filter(|&&c| c == conn).count() != 1 {
                return Err(format!("#{conn} joined twice"));
            }
        }
        Ok(())
    }

    /// A new connection: greet it and ask for a nickname.
    pub fn connected(&mut self, conn: ConnId, out: &mut impl Outbox) {
        self.members.insert(
            conn,
            Member {
                nick: None,
                login: None,
                pm_with: None,
            },
        );
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
        self.invites.retain(|i| i.from != conn && i.to != conn);
        if let Some(partner) = member.pm_with {
            self.end_pm_of(partner);
            let line = format!(
                "* {nick} left; your private conversation ended. You are back in the room.\n"
            );
            out.send(partner, line.as_bytes());
            log::info!("private conversation ended: {nick} left");
        }
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
        self.invites.clear();
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
        if self.members.get(&conn).is_some_and(|m| m.login.is_some()) {
            return self.password_line(conn, line, out);
        }
        let Some(command) = line.strip_prefix('/') else {
            return self.choose_name(conn, line.trim(), out);
        };
        let (word, arg) = split_word(command);
        match word.to_ascii_lowercase().as_str() {
            "nick" => self.choose_name(conn, arg.trim(), out),
            "quit" | "exit" | "logout" => self.quit(conn, None, out),
            "help" => out.send(conn, HELP.as_bytes()),
            "pong" => {}
            _ => out.send(conn, b"! Choose a nickname first.\n"),
        }
    }

    /// A wanted nickname: joins at once, or with accounts asks for the
    /// password first.
    fn choose_name(&mut self, conn: ConnId, name: &str, out: &mut impl Outbox) {
        if !self.accounts {
            return self.try_join(conn, name, out);
        }
        if let Err(e) = self.check_nick(conn, name) {
            return out.send(conn, e.as_bytes());
        }
        if let Some(m) = self.members.get_mut(&conn) {
            m.login = Some(Login {
                name: name.to_string(),
                checking: false,
                failures: 0,
            });
        }
        out.password_prompt(conn, true);
        let min = config::MIN_PASSWORD_LEN;
        let msg = format!(
            "* Password for {name}? (A new name is registered with the password you send now: at least {min} characters.)\n"
        );
        out.send(conn, msg.as_bytes());
    }

    /// A line while the password is asked: the password itself, except the
    /// whole lines `/quit`, `/exit`, `/logout`. Never logged or echoed.
    fn password_line(&mut self, conn: ConnId, line: &str, out: &mut impl Outbox) {
        if ["/quit", "/exit", "/logout"]
            .iter()
            .any(|q| line.eq_ignore_ascii_case(q))
        {
            return self.quit(conn, None, out);
        }
        let Some(login) = self.members.get_mut(&conn).and_then(|m| m.login.as_mut()) else {
            return;
        };
        if login.checking {
            // The loop stops reading a connection while its job runs, so
            // this only happens with other outboxes.
            return out.send(
                conn,
                b"! Still checking your password; wait for the answer.\n",
            );
        }
        login.checking = true;
        let job = AuthJob {
            name: login.name.clone(),
            password: line.to_string(),
        };
        out.authenticate(conn, job);
    }

    /// The loop's answer to an [`Outbox::authenticate`] job for `conn`.
    pub fn auth_done(&mut self, conn: ConnId, outcome: AuthOutcome, out: &mut impl Outbox) {
        let Some(member) = self.members.get_mut(&conn) else {
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
        match outcome {
            AuthOutcome::LoggedIn { name: stored } => {
                self.finish_login(conn, &name, &stored, out);
            }
            AuthOutcome::Registered { name: stored } => {
                let msg = format!("* Account {stored} registered.\n");
                out.send(conn, msg.as_bytes());
                self.finish_login(conn, &name, &stored, out);
            }
            AuthOutcome::WrongPassword => {
                login.failures += 1;
                let left = config::MAX_LOGIN_FAILURES.saturating_sub(login.failures);
                if left == 0 {
                    out.send(conn, b"! Wrong password. Too many failures; goodbye.\n");
                    self.disconnected(conn, &LeaveReason::Closed, out);
                    return out.close(conn);
                }
                let plural = if left == 1 { "attempt" } else { "attempts" };
                let msg =
                    format!("! Wrong password for {name}. Try again ({left} {plural} left).\n");
                out.send(conn, msg.as_bytes());
            }
            AuthOutcome::TooShort { min } => {
                let msg = format!(
                    "! Password too short: a new account needs at least {min} characters. Send another password for {name}.\n"
                );
                out.send(conn, msg.as_bytes());
            }
            AuthOutcome::SaveFailed => {
                let msg = format!(
                    "! Could not register {name}: the server could not save the account. Try again later.\n"
                );
                out.send(conn, msg.as_bytes());
            }
            AuthOutcome::NoNewAccounts(spent) => {
                if let Some(m) = self.members.get_mut(&conn) {
                    m.login = None;
                }
                out.send(conn, no_new_accounts_line(&spent).as_bytes());
            }
        }
    }

    /// Password accepted: the login becomes the nickname, and every other
    /// connection waiting for a password for that name is told and asked
    /// for another name (one whose check is running hears it with its
    /// answer, in `auth_done`).
    fn finish_login(&mut self, conn: ConnId, typed: &str, stored: &str, out: &mut impl Outbox) {
        if let Some(m) = self.members.get_mut(&conn) {
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
            .filter_map(|(&c, m)| {
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
    fn lost_login(&mut self, conn: ConnId, name: &str, out: &mut impl Outbox) {
        if let Some(m) = self.members.get_mut(&conn) {
            m.login = None;
        }
        let stored = self
            .by_nick
            .get(&name.to_ascii_lowercase())
            .and_then(|&c| self.nick(c))
            .unwrap_or(name);
        let msg =
            format!("! {stored} has just logged in on another connection. Choose another name.\n");
        out.send(conn, msg.as_bytes());
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
            Some(&owner) if owner != conn && self.accounts => Err(format!(
                "! {nick} is already logged in (one session per account). Choose another name.\n"
            )),
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
                let online = self.joined.len();
                let plural = if online == 1 { "user" } else { "users" };
                let mut reply = format!("* {online} {plural} online: ");
                for (i, (_, nick)) in self.users().enumerate() {
                    if i > 0 {
                        reply.push_str(", ");
                    }
                    reply.push_str(nick);
                }
                reply.push('\n');
                out.send(conn, reply.as_bytes());
            }
            "nick" if self.accounts => out.send(
                conn,
                b"! With accounts, your nickname is your account name; /nick is off.\n",
            ),
            "nick" => self.rename(conn, arg.trim(), out),
            "msg" => self.private(conn, arg, out),
            "pm" => self.invite(conn, arg.trim(), out),
            "accept" => self.answer(conn, arg.trim(), true, out),
            "decline" => self.answer(conn, arg.trim(), false, out),
            "endpm" => self.end_pm(conn, out),
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

    /// A chat line: formatted once, queued for every other joined user,
    /// or, in a private conversation, for the partner only.
    fn chat(&mut self, conn: ConnId, text: &str, out: &mut impl Outbox) {
        if let Some(partner) = self.pm_partner(conn) {
            return self.send_private(conn, partner, text, out);
        }
        if self.joined.len() <= 1 {
            return out.send(
                conn,
                b"* You are alone in the room; nobody received that.\n",
            );
        }
        self.scratch.clear();
        self.push_stamp();
        let Some(nick) = self.members.get(&conn).and_then(|m| m.nick.as_deref()) else {
            return;
        };
        let _ = writeln!(self.scratch, "[{nick}] {text}");
        log::debug!("{}", self.scratch.trim_end());
        self.broadcast(Some(conn), out);
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
        self.send_private(conn, to, text, out);
    }

    /// `(FROM) text` to `to`, `(-> TO) text` back to `conn`. The content is
    /// never logged.
    fn send_private(&mut self, conn: ConnId, to: ConnId, text: &str, out: &mut impl Outbox) {
        let from = self.nick(conn).unwrap_or_default().to_string();
        let to_nick = self.nick(to).unwrap_or_default().to_string();
        self.scratch.clear();
        self.push_stamp();
        let _ = writeln!(self.scratch, "({from}) {text}");
        out.send(to, self.scratch.as_bytes());
        self.scratch.clear();
        self.push_stamp();
        let _ = writeln!(self.scratch, "(-> {to_nick}) {text}");
        out.send(conn, self.scratch.as_bytes());
    }

    /// `/pm NICK`: invites NICK to a private conversation.
    fn invite(&mut self, conn: ConnId, target: &str, out: &mut impl Outbox) {
        if target.is_empty() || target.contains(' ') {
            return out.send(conn, b"! Usage: /pm NICK\n");
        }
        let Some(&to) = self.by_nick.get(&target.to_ascii_lowercase()) else {
            let msg = format!("! No such user: {target}.\n");
            return out.send(conn, msg.as_bytes());
        };
        if to == conn {
            return out.send(conn, b"! You cannot invite yourself.\n");
        }
        let to_nick = self.nick(to).unwrap_or(target).to_string();
        if let Some(partner) = self.pm_partner(conn) {
            let msg = format!(
                "! You are already in a private conversation with {}; /endpm first.\n",
                self.nick(partner).unwrap_or_default()
            );
            return out.send(conn, msg.as_bytes());
        }
        if self.pm_partner(to).is_some() {
            let msg = format!("! {to_nick} is already in a private conversation.\n");
            return out.send(conn, msg.as_bytes());
        }
        self.expire_invites(out);
        if self.invites.iter().any(|i| i.from == conn && i.to == to) {
            let msg = format!("! You already invited {to_nick}; waiting for an answer.\n");
            return out.send(conn, msg.as_bytes());
        }
        let from = self.nick(conn).unwrap_or_default().to_string();
        let secs = self.invite_timeout.as_secs_f64().ceil() as u64;
        let expires = self.now() + self.invite_timeout;
        self.invites.push(Invite {
            from: conn,
            to,
            expires,
        });
        out.wake_at(expires);
        let msg = format!(
            "* {from} invites you to a private conversation. Answer /accept {from} or /decline {from} (within {secs} s).\n"
        );
        out.send(to, msg.as_bytes());
        let msg = format!("* Invitation sent to {to_nick}; it expires in {secs} s.\n");
        out.send(conn, msg.as_bytes());
    }

    /// `/accept NICK` (`yes`) or `/decline NICK`.
    fn answer(&mut self, conn: ConnId, target: &str, yes: bool, out: &mut impl Outbox) {
        if target.is_empty() || target.contains(' ') {
            let usage: &[u8] = if yes {
                b"! Usage: /accept NICK\n"
            } else {
                b"! Usage: /decline NICK\n"
            };
            return out.send(conn, usage);
        }
        self.expire_invites(out);
        let from = self.by_nick.get(&target.to_ascii_lowercase()).copied();
        let found = from.and_then(|from| {
            self.invites
                .iter()
                .position(|i| i.from == from && i.to == conn)
        });
        let (Some(from), Some(index)) = (from, found) else {
            let msg = format!("! No invitation from {target} (it may have expired).\n");
            return out.send(conn, msg.as_bytes());
        };
        let me = self.nick(conn).unwrap_or_default().to_string();
        let them = self.nick(from).unwrap_or_default().to_string();
        if !yes {
            self.invites.remove(index);
            out.send(
                from,
                format!("* {me} declined your invitation.\n").as_bytes(),
            );
            return out.send(
                conn,
                format!("* You declined {them}'s invitation.\n").as_bytes(),
            );
        }
        for who in [conn, from] {
            if let Some(partner) = self.pm_partner(who) {
                // Possible: the invitation was sent before this started.
                let busy = if who == conn {
                    "You are".to_string()
                } else {
                    format!("{them} is")
                };
                let msg = format!(
                    "! {busy} already in a private conversation (with {}); the invitation stays open.\n",
                    self.nick(partner).unwrap_or_default()
                );
                return out.send(conn, msg.as_bytes());
            }
        }
        self.invites.remove(index);
        // Other pending invitations to or from either of them are moot now.
        self.invites
            .retain(|i| ![i.from, i.to].iter().any(|c| *c == conn || *c == from));
        for (who, other) in [(conn, from), (from, conn)] {
            if let Some(m) = self.members.get_mut(&who) {
                m.pm_with = Some(other);
            }
        }
        log::info!("private conversation started: {them} and {me}");
        let msg = format!(
            "* {me} accepted. You are in a private conversation with {me}: your lines go to {me} only; /endpm to return to the room.\n"
        );
        out.send(from, msg.as_bytes());
        let msg = format!(
            "* You are in a private conversation with {them}: your lines go to {them} only; /endpm to return to the room.\n"
        );
        out.send(conn, msg.as_bytes());
    }

    /// `/endpm`: both partners go back to the room.
    fn end_pm(&mut self, conn: ConnId, out: &mut impl Outbox) {
        let Some(partner) = self.pm_partner(conn) else {
            return out.send(conn, b"! You are not in a private conversation.\n");
        };
        self.end_pm_of(conn);
        self.end_pm_of(partner);
        let me = self.nick(conn).unwrap_or_default().to_string();
        let them = self.nick(partner).unwrap_or_default().to_string();
        log::info!("private conversation ended: {me} and {them}");
        let msg = format!("* Private conversation with {them} ended. You are back in the room.\n");
        out.send(conn, msg.as_bytes());
        let msg = format!("* {me} ended the private conversation. You are back in the room.\n");
        out.send(partner, msg.as_bytes());
    }

    fn end_pm_of(&mut self, conn: ConnId) {
        if let Some(m) = self.members.get_mut(&conn) {
            m.pm_with = None;
        }
    }

    /// Removes the invitations past their deadline and tells both sides.
    /// The loop calls it when the timer asked for with [`Outbox::wake_at`]
    /// fires; `/pm` and `/accept` call it too, so an expired invitation is
    /// absent even if the loop has not got round to it.
    pub fn expire_invites(&mut self, out: &mut impl Outbox) {
        let now = self.now();
        if self.invites.iter().all(|i| i.expires > now) {
            return;
        }
        let (expired, live): (Vec<Invite>, Vec<Invite>) =
            self.invites.iter().partition(|i| i.expires <= now);
        self.invites = live;
        for i in expired {
            let from = self.nick(i.from).unwrap_or_default().to_string();
            let to = self.nick(i.to).unwrap_or_default().to_string();
            out.send(
                i.from,
                format!("* Your invitation to {to} expired.\n").as_bytes(),
            );
            out.send(i.to, format!("* {from}'s invitation expired.\n").as_bytes());
        }
    }

    /// When the next invitation expires, for the loop's poll timeout.
    pub fn next_invite_expiry(&self) -> Option<Instant> {
        self.invites.iter().map(|i| i.expires).min()
    }

    fn rename(&mut self, conn: ConnId, new: &str, out: &mut impl Outbox) {
        if let Err(e) = self.check_nick(conn, new) {
            return out.send(conn, e.as_bytes());
        }
        let Some(member) = self.members.get_mut(&conn) else {
            return;
        };
        if member.nick.as_deref() == Some(new) {
            // Nothing changes, so nobody else needs to hear of it.
            let msg = format!("* Your nickname is already {new}.\n");
            return out.send(conn, msg.as_bytes());
        }
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

/// The refusal of a new account whose budget is spent; the user is back
/// at the name prompt.
fn no_new_accounts_line(spent: &Spent) -> String {
    let who = match spent.scope {
        Scope::Address => "from your address",
        Scope::Server => "on this server right now",
    };
    format!(
        "! Too many new accounts {who} (at most {}). Try again in {}, or choose an existing account's name.\n",
        spent.rate,
        wait_text(spent.retry_after)
    )
}

/// A wait for people: whole seconds up to two minutes, then minutes,
/// rounded up (a user told "in 0 s" would retry too early).
fn wait_text(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs < 120 {
        format!("{} s", secs.max(1))
    } else {
        format!("{} min", secs.div_ceil(60))
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
        assert_eq!(room.next_invite_expiry(), Some(t0 + Duration::from_secs(1)));
        say(&mut room, 1, "/accept a", &mut out);
        assert_eq!(
            out.take(1)[1..],
            [
                "* a's invitation expired.",
                "! No invitation from a (it may have expired)."
            ]
        );
        assert_eq!(out.take(0)[1], "* Your invitation to b expired.");
        assert_eq!(room.next_invite_expiry(), None);
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

    /// Sends `password` as `conn` and returns the job the room queued.
    fn password(room: &mut Room, conn: ConnId, pw: &str, out: &mut Recorder) -> AuthJob {
        say(room, conn, pw, out);
        let (c, job) = out.jobs.pop().expect("a job was queued");
        assert_eq!(c, conn);
        assert_eq!(job.password, pw);
        job
    }

    #[test]
    fn login_state_machine() {
        let mut room = Room::new(4096);
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
        let mut room = Room::new(4096);
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
        let mut room = Room::new(4096);
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
        let mut room = Room::new(4096);
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
        assert_eq!(wait_text(Duration::from_secs(119)), "119 s");
        assert_eq!(wait_text(Duration::from_secs(120)), "2 min");
        assert_eq!(wait_text(Duration::from_millis(120_001)), "3 min");
    }
}
