//! What an IRC client sends, one command table.
//!
//! Like ngIRCd's `parse.c`, one table says for each command whether it
//! needs registration and how many parameters it needs, so "not registered"
//! (451), "not enough parameters" (461) and "unknown command" (421) are
//! answered in one place and no handler repeats those checks. A handler
//! either answers at once (queries about who is where, read from the core)
//! or turns the command into [`Request`]s for the core, whose events come
//! back through [`super::render`].

use std::fmt::Write as _;

use super::message::{self, Message};
use super::{IrcConfig, IrcConn, VERSION};
use crate::chat::{ConnId, Core, Request, TextKind, validate_room};
use crate::protocol;

/// What the hub must do after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// Hand this request to the core.
    Request(Request<'a>),
    /// NICK, USER and CAP END are all in: register `IrcConn::nick`.
    Register,
    /// `JOIN 0`: leave every room.
    PartAll,
    /// SASL PLAIN credentials: log in as `name` now (the answer, 903 or
    /// 904, comes before `CAP END`).
    Sasl { name: String, password: String },
    /// `CAP END` after a SASL login: send the welcome burst now.
    Welcome,
}

/// Who may send a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Before and after registration.
    Anytime,
    /// After registration only (451 before).
    Registered,
}

type Handler = for<'a, 'b> fn(&mut Ctx<'a, 'b>, &Message<'a>);

/// One row of the command table: name, who, minimum parameters, handler.
struct Command {
    name: &'static str,
    needs: Needs,
    min_params: usize,
    handler: Handler,
}

const COMMANDS: &[Command] = &[
    cmd("CAP", Needs::Anytime, 1, cap),
    cmd("NICK", Needs::Anytime, 0, nick),
    cmd("USER", Needs::Anytime, 4, user),
    cmd("PASS", Needs::Anytime, 1, pass),
    cmd("AUTHENTICATE", Needs::Anytime, 1, authenticate),
    cmd("PING", Needs::Anytime, 0, ping),
    cmd("PONG", Needs::Anytime, 0, |_, _| {}),
    cmd("QUIT", Needs::Anytime, 0, quit),
    cmd("JOIN", Needs::Registered, 1, join),
    cmd("PART", Needs::Registered, 1, part),
    cmd("PRIVMSG", Needs::Registered, 0, privmsg),
    cmd("NOTICE", Needs::Registered, 0, notice),
    cmd("TOPIC", Needs::Registered, 1, topic),
    cmd("NAMES", Needs::Registered, 0, names),
    cmd("LIST", Needs::Registered, 0, list),
    cmd("WHO", Needs::Registered, 0, who),
    cmd("WHOIS", Needs::Registered, 1, whois),
    cmd("MODE", Needs::Registered, 1, mode),
    cmd("USERHOST", Needs::Registered, 1, userhost),
    cmd("ISON", Needs::Registered, 1, ison),
    cmd("AWAY", Needs::Registered, 0, away),
    cmd("LUSERS", Needs::Registered, 0, lusers),
    cmd("MOTD", Needs::Registered, 0, motd_command),
    cmd("VERSION", Needs::Registered, 0, version),
    cmd("TIME", Needs::Registered, 0, time),
];

const fn cmd(name: &'static str, needs: Needs, min_params: usize, handler: Handler) -> Command {
    Command {
        name,
        needs,
        min_params,
        handler,
    }
}

/// Everything a handler reads and writes.
struct Ctx<'a, 'b> {
    st: &'b mut IrcConn,
    conn: ConnId,
    core: &'b Core,
    cfg: &'b IrcConfig,
    reply: &'b mut Vec<u8>,
    actions: &'b mut Vec<Action<'a>>,
}

impl<'a> Ctx<'a, '_> {
    /// `:server NUMERIC target PARAMS...` (the last parameter is text).
    fn numeric(&mut self, code: &str, params: &[&str]) {
        let target = self.st.target().to_string();
        numeric(self.reply, &self.cfg.server, code, &target, params);
    }

    fn request(&mut self, request: Request<'a>) {
        self.actions.push(Action::Request(request));
    }

    /// Whether this connection is in `room` (by any case).
    fn inside(&self, room: &str) -> bool {
        self.core
            .rooms_of(self.conn)
            .any(|r| r.eq_ignore_ascii_case(room))
    }
}

/// Appends `:server CODE target PARAMS...\r\n`, the last parameter with a
/// colon.
pub fn numeric(out: &mut Vec<u8>, server: &str, code: &str, target: &str, params: &[&str]) {
    let mut all: Vec<&str> = Vec::with_capacity(params.len() + 1);
    all.push(target);
    all.extend_from_slice(params);
    message::write_line(out, Some(server), code, &all, true);
}

/// Reads one line from an IRC connection: answers what the dialect answers
/// itself into `reply`, and pushes what the core must do into `actions`.
pub fn handle<'a>(
    st: &mut IrcConn,
    line: &'a str,
    conn: ConnId,
    core: &Core,
    cfg: &IrcConfig,
    reply: &mut Vec<u8>,
    actions: &mut Vec<Action<'a>>,
) {
    let Ok(msg) = Message::parse(line) else {
        return; // an empty line: ignored, as servers do
    };
    let mut ctx = Ctx {
        st,
        conn,
        core,
        cfg,
        reply,
        actions,
    };
    let Some(command) = COMMANDS.iter().find(|c| msg.is(c.name)) else {
        let name = msg.command.to_ascii_uppercase();
        if ctx.st.registered {
            ctx.numeric("421", &[&name, "Unknown command"]);
        } else {
            ctx.numeric("451", &["You have not registered"]);
        }
        return;
    };
    if command.needs == Needs::Registered && !ctx.st.registered {
        return ctx.numeric("451", &["You have not registered"]);
    }
    if msg.params().len() < command.min_params {
        return ctx.numeric("461", &[command.name, "Not enough parameters"]);
    }
    (command.handler)(&mut ctx, &msg);
}

/// Registration completes once NICK and USER are in and CAP, if it was
/// used, has ended.
fn maybe_register(ctx: &mut Ctx<'_, '_>) {
    let st = &ctx.st;
    if st.cap_open {
        return;
    }
    if st.registered && !st.welcomed {
        ctx.actions.push(Action::Welcome);
    } else if !st.registered && !st.sasl_sent && st.nick.is_some() && st.user.is_some() {
        ctx.actions.push(Action::Register);
    }
}

fn cap(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    let sub = msg.param(0).unwrap_or_default().to_ascii_uppercase();

    // `sasl` (PLAIN) is the one capability, with accounts on.
    let offered = if ctx.cfg.sasl { "sasl" } else { "" };
    match sub.as_str() {
        "LS" => ctx.numeric("CAP", &["LS", offered]),
        "LIST" => ctx.numeric("CAP", &["LIST", offered]),
        "REQ" => {
            let wanted = msg.param(1).unwrap_or_default();
            let all_known = wanted
                .split(' ')
                .filter(|c| !c.is_empty())
                .all(|c| !offered.is_empty() && c.eq_ignore_ascii_case(offered));
            let answer = if all_known && !wanted.trim().is_empty() {
                "ACK"
            } else {
                "NAK"
            };
            ctx.numeric("CAP", &[answer, wanted]);
        }
        "END" => {}
        _ => return ctx.numeric("410", &[&sub, "Invalid CAP command"]),
    }
    // CAP after the welcome changes nothing; before it, registration
    // waits for END (a SASL login may have registered the user already).
    if ctx.st.welcomed {
        return;
    }
    if sub == "END" {
        ctx.st.cap_open = false;
        maybe_register(ctx);
    } else {
        ctx.st.cap_open = true;
    }
}

fn nick<'a>(ctx: &mut Ctx<'a, '_>, msg: &Message<'a>) {
    let Some(wanted) = msg.param(0).filter(|n| !n.is_empty()) else {
        return ctx.numeric("431", &["No nickname given"]);
    };
    if let Err(e) = protocol::validate_nick(wanted) {
        let why = format!("Erroneous nickname: {e}");
        return ctx.numeric("432", &[wanted, &why]);
    }
    if !ctx.core.nick_free_for(ctx.conn, wanted) {
        return ctx.numeric("433", &[wanted, "Nickname is already in use"]);
    }
    if ctx.st.registered {
        ctx.request(Request::Nick { new: wanted });
    } else {
        ctx.st.nick = Some(wanted.to_string());
        maybe_register(ctx);
    }
}

fn user(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    if ctx.st.registered {
        return ctx.numeric("462", &["You may not reregister"]);
    }
    let name: String = msg
        .param(0)
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(crate::config::MAX_IRC_USER_LEN)
        .collect();
    ctx.st.user = Some(if name.is_empty() { "user".into() } else { name });
    ctx.st.realname = msg.param(3).unwrap_or_default().chars().take(64).collect();
    maybe_register(ctx);
}

fn pass(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    if ctx.st.registered {
        return ctx.numeric("462", &["You may not reregister"]);
    }
    ctx.st.password = msg.param(0).map(str::to_string);
}

/// SASL PLAIN (IRCv3 `sasl` 3.1): `AUTHENTICATE PLAIN`, `AUTHENTICATE +`,
/// then the base64 of `authzid NUL authcid NUL password` in one message
/// (400 bytes at most, which PLAIN never needs more than).
fn authenticate(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    let arg = msg.param(0).unwrap_or_default();
    if !ctx.cfg.sasl || ctx.st.registered || ctx.st.sasl_sent {
        return ctx.numeric("904", &["SASL authentication failed"]);
    }
    if arg == "*" {
        ctx.st.sasl_started = false;
        return ctx.numeric("906", &["SASL authentication aborted"]);
    }
    if !ctx.st.sasl_started {
        if arg.eq_ignore_ascii_case("PLAIN") {
            ctx.st.sasl_started = true;
            ctx.reply.extend_from_slice(b"AUTHENTICATE +\r\n");
        } else {
            ctx.numeric("908", &["PLAIN", "are available SASL mechanisms"]);
            ctx.numeric("904", &["SASL authentication failed"]);
        }
        return;
    }
    ctx.st.sasl_started = false;
    let creds = base64_decode(arg).and_then(|bytes| String::from_utf8(bytes).ok());
    let Some(creds) = creds else {
        return ctx.numeric("904", &["SASL authentication failed"]);
    };
    let mut parts = creds.split('\0');
    let (_authzid, Some(name), Some(password)) = (parts.next(), parts.next(), parts.next()) else {
        return ctx.numeric("904", &["SASL authentication failed"]);
    };
    if protocol::validate_nick(name).is_err() || password.is_empty() {
        return ctx.numeric("904", &["SASL authentication failed"]);
    }
    ctx.st.sasl_sent = true;
    ctx.actions.push(Action::Sasl {
        name: name.to_string(),
        password: password.to_string(),
    });
}

/// Standard base64 with padding, as SASL sends it; `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const MAX: usize = 400;
    if text.len() > MAX || text.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let bytes = text.as_bytes();
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&got[..3 - pad]);
    }
    Some(out)
}

fn ping(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    let Some(token) = msg.param(0) else {
        return ctx.numeric("409", &["No origin specified"]);
    };
    let server = ctx.cfg.server.clone();
    numeric(ctx.reply, &server, "PONG", &server, &[token]);
}

fn quit<'a>(ctx: &mut Ctx<'a, '_>, msg: &Message<'a>) {
    let reason = msg.param(0).filter(|r| !r.is_empty());
    ctx.request(Request::Quit { reason });
}

fn join<'a>(ctx: &mut Ctx<'a, '_>, msg: &Message<'a>) {
    let rooms = msg.param(0).unwrap_or_default();
    if rooms == "0" {
        ctx.actions.push(Action::PartAll);
        return;
    }
    for room in rooms.split(',').filter(|r| !r.is_empty()) {
        if validate_room(room).is_err() {
            ctx.numeric("403", &[room, "No such channel"]);
            continue;
        }
        ctx.request(Request::Join { room });
    }
}

fn part<'a>(ctx: &mut Ctx<'a, '_>, msg: &Message<'a>) {
    let reason = msg.param(1).filter(|r| !r.is_empty());
    for room in msg.param(0).unwrap_or_default().split(',') {
        if ctx.core.room(room).is_none() {
            ctx.numeric("403", &[room, "No such channel"]);
        } else if !ctx.inside(room) {
            ctx.numeric("442", &[room, "You're not on that channel"]);
        } else {
            ctx.request(Request::Part { room, reason });
        }
    }
}

fn privmsg<'a>(ctx: &mut Ctx<'a, '_>, msg: &Message<'a>) {
    send_text(ctx, msg, false);
}

fn notice<'a>(ctx: &mut Ctx<'a, '_>, msg: &Message<'a>) {
    send_text(ctx, msg, true);
}

/// PRIVMSG and NOTICE: to rooms or users, `\x01ACTION ...\x01` as an
/// action. A NOTICE never gets an error back.
fn send_text<'a>(ctx: &mut Ctx<'a, '_>, msg: &Message<'a>, is_notice: bool) {
    let Some(targets) = msg.param(0).filter(|t| !t.is_empty()) else {
        if !is_notice {
            ctx.numeric("411", &["No recipient given (PRIVMSG)"]);
        }
        return;
    };
    let Some(text) = msg.param(1).filter(|t| !t.is_empty()) else {
        if !is_notice {
            ctx.numeric("412", &["No text to send"]);
        }
        return;
    };
    let (text, kind) = match text
        .strip_prefix("\u{1}ACTION ")
        .map(|t| t.strip_suffix('\u{1}').unwrap_or(t))
    {
        Some(action) => (action, TextKind::Action),
        None if is_notice => (text, TextKind::Notice),
        None => (text, TextKind::Plain),
    };
    // One rule for every dialect: control characters (terminal escapes,
    // CTCP other than ACTION, colour codes) are not relayed.
    if text.chars().any(|c| c.is_control() && c != '\t') {
        if !is_notice {
            ctx.numeric(
                "NOTICE",
                &["Control characters are not allowed; message discarded"],
            );
        }
        return;
    }
    for target in targets.split(',').filter(|t| !t.is_empty()) {
        if target.starts_with('#') {
            if ctx.core.room(target).is_none() {
                if !is_notice {
                    ctx.numeric("403", &[target, "No such channel"]);
                }
                continue;
            }
            if !ctx.inside(target) {
                if !is_notice {
                    ctx.numeric("404", &[target, "Cannot send to channel"]);
                }
                continue;
            }
            let room = Some(target);
            ctx.request(Request::Say { room, text, kind });
        } else {
            ctx.request(Request::Msg {
                to: target,
                text,
                kind,
            });
        }
    }
}

fn topic<'a>(ctx: &mut Ctx<'a, '_>, msg: &Message<'a>) {
    let room = msg.param(0).unwrap_or_default();
    if ctx.core.room(room).is_none() {
        return ctx.numeric("403", &[room, "No such channel"]);
    }
    if !ctx.inside(room) {
        return ctx.numeric("442", &[room, "You're not on that channel"]);
    }
    let text = msg.param(1);
    ctx.request(Request::Topic {
        room: Some(room),
        text,
    });
}

fn names(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    let Some(rooms) = msg.param(0) else {
        return ctx.numeric("366", &["*", "End of /NAMES list"]);
    };
    for name in rooms.split(',') {
        if let Some(room) = ctx.core.room(name) {
            let local = room.members.iter().map(|(_, n, _)| *n);
            let nicks: Vec<&str> = local.chain(room.remote.iter().map(|(n, _)| *n)).collect();
            let target = ctx.st.target().to_string();
            names_reply(ctx.reply, &ctx.cfg.server, &target, room.name, &nicks);
        } else {
            ctx.numeric("366", &[name, "End of /NAMES list"]);
        }
    }
}

/// 353 lines (as many as 512 bytes need) and 366 for `room`.
pub fn names_reply(out: &mut Vec<u8>, server: &str, target: &str, room: &str, nicks: &[&str]) {
    list_numeric(out, server, "353", target, &["=", room], nicks);
    numeric(out, server, "366", target, &[room, "End of /NAMES list"]);
}

/// `:server CODE target FIXED... :item item ...`, as many lines as 512
/// bytes need (none for no items).
pub fn list_numeric(
    out: &mut Vec<u8>,
    server: &str,
    code: &str,
    target: &str,
    fixed: &[&str],
    items: &[&str],
) {
    let fixed_len: usize = fixed.iter().map(|f| f.len() + 1).sum();
    // ':' server ' ' code ' ' target ' ' fixed... ':' ... CRLF
    let budget = message::MAX_LINE - (server.len() + code.len() + target.len() + fixed_len + 8);
    let emit = |out: &mut Vec<u8>, line: &str| {
        let mut params: Vec<&str> = fixed.to_vec();
        params.push(line);
        numeric(out, server, code, target, &params);
    };
    let mut line = String::new();
    for item in items {
        if !line.is_empty() && line.len() + 1 + item.len() > budget {
            emit(out, &line);
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(item);
    }
    if !line.is_empty() {
        emit(out, &line);
    }
}

fn list(ctx: &mut Ctx<'_, '_>, _msg: &Message<'_>) {
    ctx.numeric("321", &["Channel", "Users  Name"]);
    for room in ctx.core.all_rooms() {
        let count = (room.members.len() + room.remote.len()).to_string();
        let topic = room.topic.map_or("", |(t, _)| t);
        ctx.numeric("322", &[room.name, &count, topic]);
    }
    ctx.numeric("323", &["End of /LIST"]);
}

fn who(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    let mask = msg.param(0).unwrap_or("*");
    let server = ctx.cfg.server.clone();
    if let Some(room) = ctx.core.room(mask) {
        let remote = room.remote.iter().copied();
        for (nick, user) in room.members.iter().map(|(_, n, u)| (*n, *u)).chain(remote) {
            let line = [
                room.name,
                user,
                &server,
                &server,
                nick,
                "H",
                &format!("0 {nick}"),
            ];
            ctx.numeric("352", &line);
        }
    } else if let Some(conn) = ctx.core.find(mask) {
        if let (Some(nick), Some(user)) = (ctx.core.nick(conn), ctx.core.user(conn)) {
            let line = ["*", user, &server, &server, nick, "H", &format!("0 {nick}")];
            ctx.numeric("352", &line);
        }
    }
    ctx.numeric("315", &[mask, "End of /WHO list"]);
}

fn whois(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    // `WHOIS server nick` is also allowed: the nick is the last parameter.
    let wanted = msg.params().last().copied().unwrap_or_default();
    let server = ctx.cfg.server.clone();
    match ctx.core.find(wanted) {
        Some(conn) => {
            let nick = ctx.core.nick(conn).unwrap_or(wanted);
            let user = ctx.core.user(conn).unwrap_or_default();
            ctx.numeric("311", &[nick, user, &server, "*", nick]);
            ctx.numeric("312", &[nick, &server, "loopchat"]);
            let rooms: Vec<&str> = ctx.core.rooms_of(conn).collect();
            let target = ctx.st.target().to_string();
            list_numeric(ctx.reply, &server, "319", &target, &[nick], &rooms);
            ctx.numeric("318", &[nick, "End of /WHOIS list"]);
        }
        None => match ctx.core.remote_user(wanted) {
            // A user of another process (bridging): what our copy knows.
            Some((nick, user, node, rooms)) => {
                ctx.numeric("311", &[nick, user, &server, "*", nick]);
                ctx.numeric("312", &[nick, node, "loopchat (another process)"]);
                let target = ctx.st.target().to_string();
                list_numeric(ctx.reply, &server, "319", &target, &[nick], &rooms);
                ctx.numeric("318", &[nick, "End of /WHOIS list"]);
            }
            None => {
                ctx.numeric("401", &[wanted, "No such nick/channel"]);
                ctx.numeric("318", &[wanted, "End of /WHOIS list"]);
            }
        },
    }
}

fn mode(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    let target = msg.param(0).unwrap_or_default();
    let change = msg.param(1);
    if target.starts_with('#') {
        let Some(room) = ctx.core.room(target).map(|r| r.name.to_string()) else {
            return ctx.numeric("403", &[target, "No such channel"]);
        };
        match change {
            None => ctx.numeric("324", &[&room, "+nt"]),
            Some("b" | "+b") => ctx.numeric("368", &[&room, "End of channel ban list"]),
            Some(_) => ctx.numeric("482", &[&room, "You're not channel operator"]),
        }
        return;
    }
    if !ctx.st.target().eq_ignore_ascii_case(target) {
        return ctx.numeric("502", &["Can't change mode for other users"]);
    }
    // Changes of one's own modes are accepted and ignored: there are none.
    if change.is_none() {
        ctx.numeric("221", &["+"]);
    }
}

fn userhost(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    let mut answer = String::new();
    for wanted in msg.params().iter().take(5) {
        let found = match ctx.core.find(wanted) {
            Some(conn) => ctx.core.nick(conn).zip(ctx.core.user(conn)),
            None => ctx.core.remote_user(wanted).map(|(n, u, ..)| (n, u)),
        };
        if let Some((nick, user)) = found {
            if !answer.is_empty() {
                answer.push(' ');
            }
            let _ = write!(answer, "{nick}=+{user}@{}", ctx.cfg.server);
        }
    }
    ctx.numeric("302", &[&answer]);
}

fn ison(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    let here: Vec<&str> = msg
        .params()
        .iter()
        .flat_map(|p| p.split(' '))
        .filter_map(|n| match ctx.core.find(n) {
            Some(c) => ctx.core.nick(c),
            None => ctx.core.remote_user(n).map(|(nick, ..)| nick),
        })
        .collect();
    let here = here.join(" ");
    ctx.numeric("303", &[&here]);
}

fn away(ctx: &mut Ctx<'_, '_>, msg: &Message<'_>) {
    match msg.param(0).filter(|m| !m.is_empty()) {
        Some(text) => {
            ctx.st.away = Some(text.to_string());
            ctx.numeric("306", &["You have been marked as being away"]);
        }
        None => {
            ctx.st.away = None;
            ctx.numeric("305", &["You are no longer marked as being away"]);
        }
    }
}

fn lusers(ctx: &mut Ctx<'_, '_>, _msg: &Message<'_>) {
    let users = ctx.core.joined_count();
    let rooms = ctx.core.all_rooms().len();
    let target = ctx.st.target().to_string();
    lusers_reply(ctx.reply, &ctx.cfg.server, &target, users, rooms);
}

/// 251 to 255: users, operators, unknown connections, rooms, this server.
pub fn lusers_reply(out: &mut Vec<u8>, server: &str, target: &str, users: usize, rooms: usize) {
    let text = format!("There are {users} users and 0 invisible on 1 servers");
    numeric(out, server, "251", target, &[&text]);
    numeric(out, server, "252", target, &["0", "operator(s) online"]);
    numeric(out, server, "253", target, &["0", "unknown connection(s)"]);
    numeric(
        out,
        server,
        "254",
        target,
        &[&rooms.to_string(), "channels formed"],
    );
    let text = format!("I have {users} clients and 0 servers");
    numeric(out, server, "255", target, &[&text]);
}

fn motd_command(ctx: &mut Ctx<'_, '_>, _msg: &Message<'_>) {
    let target = ctx.st.target().to_string();
    motd_reply(ctx.reply, ctx.cfg, &target);
}

/// 375, 372 per line, 376; or 422 without a MOTD.
pub fn motd_reply(out: &mut Vec<u8>, cfg: &IrcConfig, target: &str) {
    let server = &cfg.server;
    let Some(lines) = &cfg.motd else {
        return numeric(out, server, "422", target, &["MOTD File is missing"]);
    };
    let head = format!("- {server} Message of the day - ");
    numeric(out, server, "375", target, &[&head]);
    for line in lines {
        numeric(out, server, "372", target, &[&format!("- {line}")]);
    }
    numeric(out, server, "376", target, &["End of /MOTD command."]);
}

fn version(ctx: &mut Ctx<'_, '_>, _msg: &Message<'_>) {
    let server = ctx.cfg.server.clone();
    ctx.numeric("351", &[VERSION, &server, "one thread, one poll"]);
}

fn time(ctx: &mut Ctx<'_, '_>, _msg: &Message<'_>) {
    let server = ctx.cfg.server.clone();
    // The one clock reading in this module: a query about the time.
    let now = crate::logging::timestamp();
    ctx.numeric("391", &[&server, &now]);
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64() {
        assert_eq!(
            base64_decode("AGFsaWNlAHNlY3JldDEyMw==").unwrap(),
            b"\0alice\0secret123"
        );
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode(""), Some(Vec::new()));
        assert_eq!(base64_decode("YW=j"), None);
        assert_eq!(base64_decode("Y*Jj"), None);
        assert_eq!(base64_decode("YWJ"), None);
    }
}
