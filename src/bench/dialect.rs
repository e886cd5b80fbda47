//! The protocol as the bench sees it: the only module that knows the line
//! grammar, so another chat dialect can be added here later.
//!
//! The bench needs very little: when a client has joined, when it was
//! refused, and the text of a chat line. Everything else a server sends
//! (welcome lines, entered/left notices, pings) is ignored. The grammar is
//! Budget Chat's (Protohackers problem 3), which loopchat extends, so the
//! bench also measures other Budget Chat servers.
//!
//! Chat lines are by far the most frequent, so they are recognised on the raw
//! bytes without UTF-8 validation or allocation; the rare other lines go
//! through [`crate::protocol::ServerLine::parse`].

use crate::protocol::ServerLine;

/// A line from the server, as far as the bench cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `* The room contains: ...`: the nickname was accepted.
    Joined,
    /// `! ...`: an error (nickname refused, server full, ...).
    Refused(&'a [u8]),
    /// `[from] text`: the text of a room chat line.
    Chat(&'a [u8]),
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
}
