//! The line grammar, shared by the server, the terminal client and the bench.
//!
//! Every line the server sends belongs to one kind, and the kind is told by
//! its first character, so a bot never has to guess (docs/protocol.md has the
//! full grammar with examples):
//!
//! | first bytes | kind | example |
//! |---|---|---|
//! | `* ` | notice from the server | `* carol has entered the room` |
//! | `! ` | error, in reply to what you sent | `! Unknown command /foo. Type /help for the list.` |
//! | `[` | room chat line | `[carol] hello` |
//! | `(` | private line | `(carol) psst` / `(-> carol) psst` (your own, confirmed) |
//! | `~ ` | action (`/me`) | `~ carol waves` |
//!
//! With `--timestamps` the chat, private and action lines are prefixed by
//! `HH:MM:SS ` (server time); [`ServerLine::parse`] strips it.
//!
//! The base is the "Budget Chat" grammar (Protohackers problem 3): `* ` notices,
//! `* The room contains: a, b` on joining, `[nick] text` chat lines. Clients
//! written for it work unchanged.

/// Prefix of a server notice.
pub const NOTICE: &str = "* ";
/// Prefix of an error line.
pub const ERROR: &str = "! ";
/// The notice the server sends to a user who has just joined, followed by
/// the comma-separated names of the others (possibly none).
pub const ROOM_CONTAINS: &str = "* The room contains: ";
/// The notice that asks an idle connection to show it is alive.
pub const PING: &str = "* PING";

/// Longest nickname, in characters (all ASCII).
pub const MAX_NICK_LEN: usize = 32;
/// The punctuation a nickname may contain besides ASCII letters and digits.
pub const NICK_PUNCTUATION: &str = "_-[]{}|^";

/// Why a nickname was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NickError {
    Empty,
    TooLong,
    BadCharacter(char),
}

impl std::fmt::Display for NickError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NickError::Empty => write!(f, "a nickname cannot be empty"),
            NickError::TooLong => write!(f, "a nickname has at most {MAX_NICK_LEN} characters"),
            NickError::BadCharacter(c) => write!(
                f,
                "{:?} is not allowed in a nickname (use letters, digits and {NICK_PUNCTUATION})",
                c
            ),
        }
    }
}

/// Checks a nickname against the rules: 1 to 32 characters, ASCII letters,
/// digits and `_-[]{}|^`.
pub fn validate_nick(nick: &str) -> Result<(), NickError> {
    if nick.is_empty() {
        return Err(NickError::Empty);
    }
    if let Some(c) = nick
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || NICK_PUNCTUATION.contains(c)))
    {
        return Err(NickError::BadCharacter(c));
    }
    if nick.len() > MAX_NICK_LEN {
        return Err(NickError::TooLong);
    }
    Ok(())
}

/// One line from the server, classified by its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine<'a> {
    /// `* text`
    Notice(&'a str),
    /// `! text`
    Error(&'a str),
    /// `[from] text`
    Chat { from: &'a str, text: &'a str },
    /// `(from) text`: a private line to you.
    Private { from: &'a str, text: &'a str },
    /// `(-> to) text`: the server's confirmation of your private line.
    PrivateSent { to: &'a str, text: &'a str },
    /// `~ from text`
    Action { from: &'a str, text: &'a str },
    /// Anything else (a server that is not loopchat, or a future kind).
    Other(&'a str),
}

impl<'a> ServerLine<'a> {
    /// Classifies one line (without its newline). Never fails: unknown
    /// shapes come back as [`ServerLine::Other`].
    pub fn parse(line: &'a str) -> ServerLine<'a> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let body = strip_timestamp(line);
        if let Some(rest) = line.strip_prefix(NOTICE) {
            return ServerLine::Notice(rest);
        }
        if let Some(rest) = line.strip_prefix(ERROR) {
            return ServerLine::Error(rest);
        }
        if let Some(rest) = body.strip_prefix('[') {
            if let Some((from, text)) = rest.split_once("] ") {
                return ServerLine::Chat { from, text };
            }
        }
        if let Some(rest) = body.strip_prefix("(-> ") {
            if let Some((to, text)) = rest.split_once(") ") {
                return ServerLine::PrivateSent { to, text };
            }
        }
        if let Some(rest) = body.strip_prefix('(') {
            if let Some((from, text)) = rest.split_once(") ") {
                return ServerLine::Private { from, text };
            }
        }
        if let Some(rest) = body.strip_prefix("~ ") {
            let (from, text) = rest.split_once(' ').unwrap_or((rest, ""));
            return ServerLine::Action { from, text };
        }
        ServerLine::Other(line)
    }

    /// The names listed in a `* The room contains: ...` notice, if this is one.
    pub fn room_members(&self) -> Option<impl Iterator<Item = &'a str>> {
        match self {
            ServerLine::Notice(text) => text
                .strip_prefix(&ROOM_CONTAINS[NOTICE.len()..])
                .map(|names| names.split(", ").filter(|n| !n.is_empty())),
            _ => None,
        }
    }
}

/// Removes a leading `HH:MM:SS ` if there is one.
pub fn strip_timestamp(line: &str) -> &str {
    let b = line.as_bytes();
    let is_stamp = b.len() >= 9
        && b[2] == b':'
        && b[5] == b':'
        && b[8] == b' '
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit());
    if is_stamp { &line[9..] } else { line }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_rules() {
        assert!(validate_nick("alice").is_ok());
        assert!(validate_nick("[a]_{b}|c^-9").is_ok());
        assert!(validate_nick(&"a".repeat(32)).is_ok());
        assert_eq!(validate_nick(&"a".repeat(33)), Err(NickError::TooLong));
        assert_eq!(validate_nick(""), Err(NickError::Empty));
        assert_eq!(validate_nick("a b"), Err(NickError::BadCharacter(' ')));
        assert_eq!(validate_nick("é"), Err(NickError::BadCharacter('é')));
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!(ServerLine::parse("* hi"), ServerLine::Notice("hi"));
        assert_eq!(ServerLine::parse("! bad"), ServerLine::Error("bad"));
        assert_eq!(
            ServerLine::parse("[bob] hello] there"),
            ServerLine::Chat {
                from: "bob",
                text: "hello] there"
            }
        );
        assert_eq!(
            ServerLine::parse("12:00:59 [bob] hi"),
            ServerLine::Chat {
                from: "bob",
                text: "hi"
            }
        );
        assert_eq!(
            ServerLine::parse("(bob) psst"),
            ServerLine::Private {
                from: "bob",
                text: "psst"
            }
        );
        assert_eq!(
            ServerLine::parse("(-> bob) psst"),
            ServerLine::PrivateSent {
                to: "bob",
                text: "psst"
            }
        );
        assert_eq!(
            ServerLine::parse("~ bob waves"),
            ServerLine::Action {
                from: "bob",
                text: "waves"
            }
        );
        assert_eq!(ServerLine::parse("hello"), ServerLine::Other("hello"));
    }

    #[test]
    fn room_members() {
        let line = ServerLine::parse("* The room contains: a, b");
        assert_eq!(line.room_members().unwrap().collect::<Vec<_>>(), ["a", "b"]);
        let empty = ServerLine::parse("* The room contains: ");
        assert_eq!(empty.room_members().unwrap().count(), 0);
        assert!(ServerLine::parse("* other").room_members().is_none());
    }
}
