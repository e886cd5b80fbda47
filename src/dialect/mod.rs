//! Dialects: how a connection's lines become chat requests and chat events
//! become its bytes.
//!
//! - [`line`]: loopchat's own grammar (Budget Chat plus commands).
//! - [`irc`]: IRC, for irssi, weechat, hexchat and the like.
//!
//! Both dialects share one port, so the first line a connection sends
//! decides which one it speaks ([`sniff`]).

pub mod irc;
pub mod line;

/// The grammar a connection speaks (the discriminant indexes per-dialect
/// buffers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// loopchat's line grammar (Budget Chat plus commands).
    Line = 0,
    /// IRC.
    Irc = 1,
}

/// The words an IRC client's registration starts with.
const IRC_OPENERS: [&str; 5] = ["CAP", "NICK", "USER", "PASS", "QUIT"];

/// Decides a connection's dialect from the first line it sent (without its
/// line ending). IRC clients open with `CAP`, `NICK`, `USER`, `PASS` or
/// `QUIT` followed by a space (or `CAP` alone); a line user's first line is
/// a nickname, and nicknames have no spaces, so the two never meet. The
/// words are matched in upper case only, as every IRC client sends them:
/// a line user who types `Nick me` gets a nickname error, not IRC.
pub fn sniff(first_line: &[u8]) -> Dialect {
    let word_end = first_line
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(first_line.len());
    let (word, rest) = first_line.split_at(word_end);
    let opener = IRC_OPENERS.iter().any(|w| w.as_bytes() == word);
    if opener && (!rest.is_empty() || word == b"CAP") {
        Dialect::Irc
    } else {
        Dialect::Line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irc_openers_and_line_nicknames() {
        for irc in [
            &b"CAP LS 302"[..],
            b"CAP",
            b"NICK alice",
            b"USER a 0 * :A",
            b"PASS secret",
            b"QUIT :bye",
        ] {
            assert_eq!(
                sniff(irc),
                Dialect::Irc,
                "{:?}",
                String::from_utf8_lossy(irc)
            );
        }
        for line in [
            &b"alice"[..],
            b"NICK",
            b"USER",
            b"nick alice",
            b"CAPTAIN",
            b"",
            b"hello there",
        ] {
            assert_eq!(
                sniff(line),
                Dialect::Line,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
