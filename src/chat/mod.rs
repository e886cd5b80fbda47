//! The chat core's vocabulary: what users ask for ([`Request`]), what
//! happened ([`Event`]), and who must hear of it ([`Audience`]).
//!
//! None of these types holds a byte of any grammar. A dialect
//! ([`crate::dialect`]) turns a connection's lines into [`Request`]s and
//! renders [`Event`]s into that connection's bytes; the [`Core`] in between
//! knows who is here and what each request means. The same event, "alice
//! said hi", becomes `[alice] hi` for a line user and
//! `:alice!alice@loopchat PRIVMSG #lobby :hi` for an IRC user.

mod core;
mod table;

pub use self::core::{Core, RoomView};
pub use self::table::ConnTable;

use std::fmt;
use std::time::Instant;

use crate::accounts::{AuthJob, Spent};
use crate::protocol::NickError;

/// A connection's id: the event loop's slab key.
pub type ConnId = usize;

/// Longest room name, `#` included.
pub const MAX_ROOM_LEN: usize = 33;

/// A room name breaks the rules (see [`validate_room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomError;

/// Checks a room name: `#` then 1 to 32 ASCII letters, digits, `_` or `-`.
/// The same names in every dialect; compared ignoring ASCII case.
pub fn validate_room(name: &str) -> Result<(), RoomError> {
    let Some(rest) = name.strip_prefix('#') else {
        return Err(RoomError);
    };
    let ok = (1..MAX_ROOM_LEN).contains(&rest.len())
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(RoomError) }
}

/// What kind of text a user sends: a plain line, an action (`/me`, IRC's
/// CTCP ACTION), or a notice (IRC `NOTICE`: never answered with an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Plain,
    Action,
    Notice,
}

/// What a user asked for, with the grammar already taken off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Choose a nickname (with accounts: the account to log in as).
    Register { nick: &'a str },
    /// The password for the account named in `Register`.
    Password { password: &'a str },
    /// Say `text` to a room (`None`: the one room a single-room user is
    /// in, or, for a plain line in a private conversation, the partner).
    Say {
        room: Option<&'a str>,
        text: &'a str,
        kind: TextKind,
    },
    /// A private line to one user.
    Msg {
        to: &'a str,
        text: &'a str,
        kind: TextKind,
    },
    /// Change nickname.
    Nick { new: &'a str },
    /// Who is in the room (a single-room user's room).
    Who,
    /// Join a room (a single-room user moves there).
    Join { room: &'a str },
    /// Leave a room (many-room users only).
    Part {
        room: &'a str,
        reason: Option<&'a str>,
    },
    /// The list of rooms.
    Rooms,
    /// Show a room's topic (`text: None`), or set it (`Some("")` clears
    /// it). `room: None`: the single-room user's room.
    Topic {
        room: Option<&'a str>,
        text: Option<&'a str>,
    },
    /// Invite `nick` to a private conversation.
    Invite { nick: &'a str },
    /// Accept (or decline) `nick`'s invitation.
    Answer { nick: &'a str, accept: bool },
    /// End the private conversation.
    EndPrivate,
    /// Leave.
    Quit { reason: Option<&'a str> },
}

/// Where a connection is in its life, as far as the core is concerned; a
/// dialect reads its lines differently in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connected, no nickname yet.
    Naming,
    /// Accounts: the name is chosen and its password is asked.
    Password,
    /// Bridging: the name is being claimed in Redis (see [`Sink::claim`]);
    /// the loop reads nothing more from it until the answer.
    Claiming,
    /// In the room.
    Joined,
    /// Unknown to the core (left already).
    Gone,
}

/// Why a user left; dialects show it to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveReason {
    Quit(Option<String>),
    /// Left one room for another (a single-room user's `/join`).
    Moved(String),
    /// Left one room (IRC `PART`).
    Part(Option<String>),
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
            LeaveReason::Moved(to) => write!(f, "moved to {to}"),
            LeaveReason::Part(None) => f.write_str("left"),
            LeaveReason::Part(Some(why)) => write!(f, "left: {why}"),
            LeaveReason::Closed => f.write_str("connection closed"),
            LeaveReason::Reset => f.write_str("connection reset"),
            LeaveReason::WriteError => f.write_str("write error"),
            LeaveReason::SendQueueExceeded => f.write_str("send queue exceeded"),
            LeaveReason::IdleTimeout => f.write_str("idle timeout"),
            LeaveReason::RegisterTimeout => f.write_str("registration timeout"),
        }
    }
}

/// Why the server closes a connection it will not keep; a dialect renders
/// it as that connection's last line.
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

/// Who receives an event.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// One connection.
    One(ConnId),
    /// Every connection in `members` except `except`: a broadcast, which
    /// the renderer turns into bytes once per dialect present.
    Members {
        members: &'a [ConnId],
        except: Option<ConnId>,
        /// The room it happens in, when there is one: the output path
        /// stores a room's broadcasts side by side, so a member's queue
        /// holds one span for many of them (see [`crate::output`]).
        room: Option<RoomId>,
    },
}

/// A room's identity, never reused while the server runs (a name can be,
/// once the room has emptied and gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoomId(pub u64);

/// Whose account or session holds a name (see [`Event::NameInUse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameHolder {
    /// Another user has this nickname.
    Nickname,
    /// The account is logged in (one session per account).
    Session,
}

/// Something that happened, for one connection or many. Every field is
/// what a renderer needs; none of it is grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    // Choosing a name and logging in.
    /// The wanted nickname breaks the rules.
    NickInvalid(NickError),
    /// The wanted name is held by someone else.
    NameInUse { nick: &'a str, holder: NameHolder },
    /// Bridging: names cannot be checked against the other processes now
    /// (Redis is unreachable); try again later.
    NamesUnavailable { nick: &'a str },
    /// Bridging: `old` was also taken on another process while Redis was
    /// unreachable, and kept there; this user is renamed to `new`. The
    /// rename itself follows as [`Event::Renamed`].
    NickCollision { old: &'a str, new: &'a str },
    /// Accounts: the name is chosen; its password is asked.
    PasswordAsked { name: &'a str, min: usize },
    /// A password line arrived while the previous one is being checked.
    StillChecking,
    /// A new account was saved.
    AccountRegistered { name: &'a str },
    /// Wrong password; `left` tries remain (0: the connection is closed).
    WrongPassword { name: &'a str, left: u32 },
    /// A new account's password is too short.
    PasswordTooShort { name: &'a str, min: usize },
    /// A new account could not be saved.
    SaveFailed { name: &'a str },
    /// To a many-room user who just chose a name: it is registered (and
    /// in no room yet). The counts are for the welcome burst.
    Registered {
        nick: &'a str,
        users: usize,
        rooms: usize,
    },
    /// No new account now: the budget is spent; back to the name prompt.
    NoNewAccounts(Spent),
    /// Another connection logged in to `name` first; back to the name
    /// prompt.
    LoginLost { name: &'a str },

    // The room.
    /// To a single-room user who just chose a name and is now in `room`:
    /// who else is there (in join order).
    Welcome {
        nick: &'a str,
        room: &'a str,
        others: &'a [&'a str],
    },
    /// To a single-room user who moved to `room`: who is there, its topic.
    Moved {
        room: &'a str,
        others: &'a [&'a str],
        topic: Option<&'a str>,
    },
    /// To a many-room user who joined `room`: who is there (itself last),
    /// and the topic with who set it.
    Joined {
        nick: &'a str,
        user: &'a str,
        room: &'a str,
        names: &'a [&'a str],
        topic: Option<(&'a str, &'a str)>,
    },
    /// To a room's other members: `nick` joined it. `quiet`: it joined
    /// quietly earlier (`--quiet-joins-above`) and has just spoken, so the
    /// members who never saw it join see it now, before its words. Only a
    /// dialect that keeps a member list (IRC) shows a quiet one.
    Entered {
        nick: &'a str,
        user: &'a str,
        room: &'a str,
        quiet: bool,
    },
    /// To a room's members: `nick` left it (moved, parted). A single-room
    /// user who moved does not get its own; a many-room user who parted
    /// does. `quiet`: the room is above `--quiet-joins-above`, where only
    /// a dialect that keeps a member list (IRC) shows it.
    Left {
        nick: &'a str,
        user: &'a str,
        room: &'a str,
        reason: &'a LeaveReason,
        quiet: bool,
    },
    /// To everyone who shared a room with `nick`: it left the server.
    /// `quiet` as for [`Event::Left`] (the recipients' rooms are all above
    /// the threshold).
    Quit {
        nick: &'a str,
        user: &'a str,
        reason: &'a LeaveReason,
        quiet: bool,
    },
    /// `from` said `text` in `room`.
    Said {
        from: &'a str,
        user: &'a str,
        room: &'a str,
        text: &'a str,
        kind: TextKind,
    },
    /// The speaker is alone: nobody received the line.
    Alone,
    /// The users in `room`, in join order.
    Users { room: &'a str, names: &'a [&'a str] },
    /// A room name that breaks the rules.
    RoomInvalid { name: &'a str },
    /// `/join` of the room one is in.
    AlreadyInRoom { room: &'a str },
    /// A many-room user is in [`crate::config::MAX_ROOMS_PER_USER`] rooms.
    TooManyRooms { room: &'a str },
    /// A room one is not in (for part or topic), or that does not exist.
    NotInRoom { room: &'a str },
    /// Every room with its number of members, by name.
    RoomList { rooms: &'a [(&'a str, usize)] },
    /// `room`'s topic (`None`: it has none), and who set it.
    Topic {
        room: &'a str,
        topic: Option<(&'a str, &'a str)>,
    },
    /// To a room's members, the setter included: `by` set the topic.
    TopicChanged {
        by: &'a str,
        user: &'a str,
        room: &'a str,
        text: &'a str,
    },
    /// `old` is now `new` (to itself and everyone sharing a room).
    Renamed {
        old: &'a str,
        user: &'a str,
        new: &'a str,
    },
    /// The nickname asked for is the one the user has already.
    NickUnchanged { nick: &'a str },
    /// With accounts, the nickname is the account name.
    NickLocked,

    // Private lines and conversations.
    /// To the recipient: a private line from `from`.
    PrivateFrom {
        from: &'a str,
        user: &'a str,
        text: &'a str,
        kind: TextKind,
    },
    /// To the sender: the private line to `to` was delivered.
    PrivateTo {
        to: &'a str,
        text: &'a str,
        kind: TextKind,
    },
    /// No user by that name.
    NoSuchUser { nick: &'a str },
    /// `/pm` oneself.
    InviteSelf,
    /// The inviter is in a conversation with `partner` already.
    AlreadyInPrivate { partner: &'a str },
    /// The invitee is in a conversation already.
    InviteeBusy { nick: &'a str },
    /// The invitee speaks a dialect without private conversations (IRC).
    InviteeCannot { nick: &'a str },
    /// The same invitation is pending.
    AlreadyInvited { nick: &'a str },
    /// To the invitee.
    Invited { from: &'a str, secs: u64 },
    /// To the inviter.
    InviteSent { to: &'a str, secs: u64 },
    /// `/accept` or `/decline` without a pending invitation from `nick`.
    NoInvitation { nick: &'a str },
    /// To the inviter: `by` declined.
    Declined { by: &'a str },
    /// To the one who declined.
    YouDeclined { from: &'a str },
    /// `/accept` while one side is in another conversation; `busy` is
    /// `None` for the accepting user, else the inviter's nickname.
    CannotAccept {
        busy: Option<&'a str>,
        partner: &'a str,
    },
    /// To the inviter: `by` accepted; the conversation started.
    Accepted { by: &'a str },
    /// To the accepting user: the conversation with `with` started.
    PrivateStarted { with: &'a str },
    /// `/endpm` outside a conversation.
    NotInPrivate,
    /// To the user who ended it.
    PrivateEnded { with: &'a str },
    /// To the partner of the one who ended it.
    PrivateEndedBy { by: &'a str },
    /// To the partner of one who left the server.
    PartnerLeft { nick: &'a str },
    /// To the inviter: the invitation to `to` expired.
    InviteExpiredTo { to: &'a str },
    /// To the invitee: `from`'s invitation expired.
    InviteExpiredFrom { from: &'a str },

    // The connection.
    /// The user quit; the connection closes after this.
    Goodbye,
    /// The server is stopping.
    ShuttingDown,
    /// The idle check: answer within `grace_secs`.
    Ping { grace_secs: u64 },
    /// Flood control slowed this connection down.
    SlowDown { rate: u32, burst: u32 },
    /// The connection is being closed for this reason.
    Refused(Refusal),
}

/// A fact that other processes must hear, or one they told us: what the
/// scale-out bridge (`--redis`, [`crate::bridge`]) carries between
/// processes. Names and text only: no [`ConnId`] means anything in another
/// process. The core hands these to [`Sink::relay`] as they happen, and
/// takes those of other processes in [`Core::remote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay<'a> {
    /// `nick` said `text` in `room`.
    Said {
        room: &'a str,
        nick: &'a str,
        user: &'a str,
        text: &'a str,
        kind: TextKind,
    },
    /// `nick` entered `room`.
    Entered {
        room: &'a str,
        nick: &'a str,
        user: &'a str,
    },
    /// `nick` left `room` (moved, parted).
    Left {
        room: &'a str,
        nick: &'a str,
        user: &'a str,
        reason: LeaveReason,
    },
    /// `nick`, who was in `room`, left the server (one per room it was in).
    Quit {
        room: &'a str,
        nick: &'a str,
        user: &'a str,
        reason: LeaveReason,
    },
    /// `old`, in `room`, is now `new` (one per room it is in).
    Renamed {
        room: &'a str,
        old: &'a str,
        user: &'a str,
        new: &'a str,
    },
    /// A private line to `to`, a nickname not on the sending process.
    Private {
        to: &'a str,
        from: &'a str,
        user: &'a str,
        text: &'a str,
        kind: TextKind,
    },
    /// A process has just started listening to `room`: who is there?
    Sync { room: &'a str },
    /// The answer to `Sync`: `nick` is in `room` (on the sender).
    Here {
        room: &'a str,
        nick: &'a str,
        user: &'a str,
    },
}

/// The bridge's answer to a [`Sink::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAnswer {
    /// The nickname is ours on every process.
    Granted,
    /// A user on another live process has it.
    Taken,
    /// Redis could not be asked (the link went down meanwhile).
    Unavailable,
}

/// What this process must listen to on the bridge: a room while it has
/// local members, a nickname while a local user has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch<'a> {
    /// A room, by its lowercased key.
    Room(&'a str),
    /// A nickname as written: the bridge folds it, and keeps the spelling
    /// to build a fallback after a collision (`Bob` -> `Bob1`).
    Nick(&'a str),
}

/// Where the core's events go. The hub implements it by rendering each
/// event in the recipient's dialect; tests implement it with a `Vec`.
pub trait Sink {
    /// `event` happened, for `to`.
    fn emit(&mut self, to: Audience<'_>, event: &Event<'_>);
    /// Close `conn` once everything queued for it has been written. The
    /// core has already forgotten `conn` when it calls this.
    fn close(&mut self, conn: ConnId);
    /// Check a password (slow: argon2), later, and answer with
    /// [`Core::auth_done`]. The default drops the job, for sinks of cores
    /// without accounts.
    fn authenticate(&mut self, conn: ConnId, job: AuthJob) {
        let _ = (conn, job);
    }
    /// Call [`Core::expire_invites`] at `at` (an invitation's deadline).
    /// The default ignores it; expiry is then noticed lazily, on the next
    /// `/pm` or `/accept`.
    fn wake_at(&mut self, at: Instant) {
        let _ = at;
    }
    /// A password is being asked of `conn` (`on`), or no longer is: a
    /// transport that echoes for its client (telnet) stops, then resumes.
    /// Called before the prompt, and before the welcome. The default does
    /// nothing.
    fn password_prompt(&mut self, conn: ConnId, on: bool) {
        let _ = (conn, on);
    }
    /// Bridging is on ([`Core::set_bridged`]): other processes must hear
    /// `relay`, caused by `conn` (its outcome, for a private line, comes
    /// back through [`Core::private_outcome`]). The default drops it.
    fn relay(&mut self, conn: ConnId, relay: &Relay<'_>) {
        let _ = (conn, relay);
    }
    /// Bridging is on: start (`on`) or stop listening to `what`. The
    /// default ignores it. Stopping to watch a nickname also gives up its
    /// claim.
    fn watch(&mut self, what: Watch<'_>, on: bool) {
        let _ = (what, on);
    }
    /// Bridging is on: claim `nick` for `conn` on every process, and answer
    /// later with [`Core::claim_done`]. `false`: it cannot be asked now
    /// (Redis is unreachable), and the core refuses the name at once. The
    /// default cannot ask.
    fn claim(&mut self, conn: ConnId, nick: &str) -> bool {
        let _ = (conn, nick);
        false
    }
}
