//! The protocols as the bench sees them: the only module that knows a
//! grammar. Two so far: loopchat's line grammar (`--dialect line`, the
//! default), and IRC (`--dialect irc`), so the bench measures loopchat's IRC
//! dialect and other IRC servers (ngIRCd, InspIRCd) with the same loss and
//! latency accounting.
//!
//! The bench needs very little: when a client has joined, when it was
//! refused, the text of a chat line, and (IRC) a PING to answer. Everything
//! else a server sends (welcome lines, notices, numerics) is ignored. The
//! line grammar is Budget Chat's (Protohackers problem 3), which loopchat
//! extends, so the bench also measures other Budget Chat servers.
//!
//! Chat lines are by far the most frequent, so they are recognised on the raw
//! bytes without UTF-8 validation or allocation; the rare other lines go
//! through [`crate::protocol::ServerLine::parse`].

use std::io::Write as _;

use crate::protocol::ServerLine;

/// The grammar the bench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// loopchat's line grammar (Budget Chat).
    Line,
    /// IRC: NICK/USER, JOIN the room, `PRIVMSG #room :payload`.
    Irc,
}

impl Dialect {
    /// `line` or `irc`, as `--dialect` spells it.
    pub fn parse(name: &str) -> Option<Dialect> {
        match name {
            "line" => Some(Dialect::Line),
            "irc" => Some(Dialect::Irc),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Line => "line",
            Dialect::Irc => "irc",
        }
    }

    /// What a client sends to join: its nickname (line), or registration
    /// and a JOIN of `room` in one go (IRC; the server handles them in
    /// order).
    pub fn join_lines(self, nick: &str, room: &str, out: &mut Vec<u8>) {
        match self {
            Dialect::Line => nick_line(nick, out),
            Dialect::Irc => {
                let _ = write!(
                    out,
                    "NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {room}\r\n"
                );
            }
        }
    }

    /// What goes before a payload (which ends in `\n`) to say it in `room`.
    pub fn message_prefix(self, room: &str, out: &mut Vec<u8>) {
        if self == Dialect::Irc {
            let _ = write!(out, "PRIVMSG {room} :");
        }
    }

    /// Classifies one line (without its `\n`).
    pub fn classify(self, line: &[u8]) -> Line<'_> {
        match self {
            Dialect::Line => classify(line),
            Dialect::Irc => classify_irc(line),
        }
    }
}

/// A line from the server, as far as the bench cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `* The room contains: ...`: the nickname was accepted.
    Joined,
    /// `! ...`: an error (nickname refused, server full, ...).
    Refused(&'a [u8]),
    /// `[from] text`: the text of a room chat line.
    Chat(&'a [u8]),
    /// IRC `PING :token`: answer `PONG :token` or be disconnected.
    Ping(&'a [u8]),
    /// Anything else.
    Other,
}

/// The nickname line a client sends to join.
pub fn nick_line(nick: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(nick.as_bytes());
    out.push(b'\n');
}

/// Classifies one line (without its `\n`).
pub fn classify(line: &[u8]) -> Line<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rest) = line.strip_prefix(b"[") {
        if let Some(end) = rest.windows(2).position(|w| w == b"] ") {
            return Line::Chat(&rest[end + 2..]);
        }
        return Line::Other;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Line::Other;
    };
    let parsed = ServerLine::parse(text);
    if parsed.room_members().is_some() {
        return Line::Joined;
    }
    match parsed {
        ServerLine::Error(_) => Line::Refused(line),
        // With server-side timestamps the chat line starts with the time.
        ServerLine::Chat { text: t, .. } => {
            let off = t.as_ptr() as usize - line.as_ptr() as usize;
            Line::Chat(&line[off..])
        }
        _ => Line::Other,
    }
}

/// An IRC line: `366` (end of NAMES) means joined; errors of registration
/// or joining (`ERROR`, 433 and friends) are refusals; `PRIVMSG`/`NOTICE` text is
/// chat, found on the raw bytes (every delivery comes this way).
fn classify_irc(line: &[u8]) -> Line<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(rest) = line.strip_prefix(b":") else {
        if let Some(token) = line.strip_prefix(b"PING ") {
            return Line::Ping(token.strip_prefix(b":").unwrap_or(token));
        }
        if line.starts_with(b"ERROR ") {
            return Line::Refused(line);
        }
        return Line::Other;
    };
    // After the source: the command, then its parameters.
    let Some(space) = rest.iter().position(|&b| b == b' ') else {
        return Line::Other;
    };
    let after = &rest[space + 1..];
    let (command, params) = match after.iter().position(|&b| b == b' ') {
        Some(i) => (&after[..i], &after[i + 1..]),
        None => (after, &b""[..]),
    };
    match command {
        b"PRIVMSG" | b"NOTICE" => match params.windows(2).position(|w| w == b" :") {
            Some(i) => Line::Chat(&params[i + 2..]),
            None => Line::Other,
        },
        b"366" => Line::Joined,
        b"PING" => Line::Ping(params.strip_prefix(b":").unwrap_or(params)),
        // Registration and JOIN errors; other numerics (422: no MOTD) are
        // information.
        b"403" | b"405" | b"431" | b"432" | b"433" | b"436" | b"437" | b"451" | b"461" | b"462"
        | b"464" | b"465" | b"471" | b"473" | b"474" | b"475" | b"477" | b"904" => {
            Line::Refused(line)
        }
        _ => Line::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"* The room contains: a, b"), Line::Joined);
        assert_eq!(classify(b"* The room contains: \r"), Line::Joined);
        assert_eq!(classify(b"[bob] b1:2:3:xx"), Line::Chat(b"b1:2:3:xx"));
        assert_eq!(classify(b"[bob] hi\r"), Line::Chat(b"hi"));
        assert_eq!(classify(b"12:00:00 [bob] hi"), Line::Chat(b"hi"));
        assert_eq!(
            classify(b"! Nickname x is taken."),
            Line::Refused(b"! Nickname x is taken.")
        );
        assert_eq!(classify(b"* bob has entered the room"), Line::Other);
        assert_eq!(
            classify(b"Welcome to budgetchat! What shall I call you?"),
            Line::Other
        );
        assert_eq!(classify(b"[broken"), Line::Other);
        assert_eq!(classify(b"\xff\xfe"), Line::Other);
    }

    #[test]
    fn classifies_irc() {
        let irc = Dialect::Irc;
        assert_eq!(
            irc.classify(b":s 366 me #lobby :End of /NAMES list\r"),
            Line::Joined
        );
        assert_eq!(
            irc.classify(b":a!a@h PRIVMSG #lobby :b1:2:3:xx\r"),
            Line::Chat(b"b1:2:3:xx")
        );
        assert_eq!(irc.classify(b"PING :tok"), Line::Ping(b"tok"));
        assert_eq!(irc.classify(b":s PING :tok"), Line::Ping(b"tok"));
        assert_eq!(
            irc.classify(b":s 433 * me :Nickname is already in use"),
            Line::Refused(b":s 433 * me :Nickname is already in use")
        );
        assert_eq!(irc.classify(b":s 001 me :Welcome"), Line::Other);
        assert_eq!(
            irc.classify(b":s 422 me :MOTD File is missing"),
            Line::Other
        );
        assert_eq!(irc.classify(b":a!a@h JOIN #lobby"), Line::Other);
        let mut out = Vec::new();
        irc.join_lines("n1", "#lobby", &mut out);
        assert_eq!(out, b"NICK n1\r\nUSER n1 0 * :n1\r\nJOIN #lobby\r\n");
        assert_eq!(Dialect::parse("irc"), Some(Dialect::Irc));
        assert_eq!(Dialect::parse("IRC"), None);
    }
}
