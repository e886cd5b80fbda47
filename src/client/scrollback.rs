//! The full-screen interface's history of lines, already classified and
//! made safe to show, bounded to [`MAX_LINES`].

use std::collections::VecDeque;

use super::text::display_str;
use crate::protocol::ServerLine;

/// Lines kept in the scrollback (the oldest go first).
pub const MAX_LINES: usize = 10_000;
/// Longest text kept per line, in bytes, so that a full scrollback stays in
/// the tens of megabytes whatever the server sends. (A chat line is at most
/// 4 KiB; only a huge `/who` answer is cut, and the user list still gets it
/// whole.)
pub const MAX_ENTRY_BYTES: usize = 8 * 1024;

/// `text` made safe to show, and cut to [`MAX_ENTRY_BYTES`].
fn shown(text: &str) -> String {
    let mut t = display_str(text);
    if t.len() > MAX_ENTRY_BYTES {
        let mut end = MAX_ENTRY_BYTES;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
        t.push_str(" [cut]");
    }
    t
}

/// How a line is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `[nick] text` from someone else.
    Chat,
    /// Own chat line, shown locally (the server does not echo it).
    Own,
    /// `(nick) text`: private, to us.
    Private,
    /// `(-> nick) text`: our private line, confirmed.
    PrivateSent,
    /// `~ nick text`
    Action,
    /// `* text` from the server.
    Notice,
    /// `! text` from the server.
    Error,
    /// The client's own remarks (connection state, help).
    Client,
    /// A room change: drawn as a rule across the pane, the text being the
    /// room entered.
    Room,
    /// A line of no known kind.
    Other,
}

/// One scrollback line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `HH:MM`, local time of arrival.
    pub time: String,
    pub kind: Kind,
    /// The sender (or, for [`Kind::PrivateSent`], the recipient).
    pub nick: Option<String>,
    pub text: String,
}

impl Entry {
    /// Classifies a server line. `line` may hold anything; what is kept is
    /// safe to draw.
    pub fn from_server(time: &str, line: &str) -> Entry {
        let (kind, nick, text) = match ServerLine::parse(line) {
            ServerLine::Notice(t) => (Kind::Notice, None, t),
            ServerLine::Error(t) => (Kind::Error, None, t),
            ServerLine::Chat { from, text } => (Kind::Chat, Some(from), text),
            ServerLine::Private { from, text } => (Kind::Private, Some(from), text),
            ServerLine::PrivateSent { to, text } => (Kind::PrivateSent, Some(to), text),
            ServerLine::Action { from, text } => (Kind::Action, Some(from), text),
            ServerLine::Other(t) => (Kind::Other, None, t),
        };
        Entry {
            time: time.to_string(),
            kind,
            nick: nick.map(shown),
            text: shown(text),
        }
    }

    pub fn new(time: &str, kind: Kind, nick: Option<&str>, text: &str) -> Entry {
        Entry {
            time: time.to_string(),
            kind,
            nick: nick.map(shown),
            text: shown(text),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Scrollback {
    lines: VecDeque<Entry>,
}

impl Scrollback {
    pub fn push(&mut self, e: Entry) {
        if self.lines.len() >= MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(e);
    }

    /// Inserts `e` before the newest `back` lines (at the end if there
    /// are fewer).
    pub fn insert_before_newest(&mut self, back: usize, e: Entry) {
        if self.lines.len() >= MAX_LINES {
            self.lines.pop_front();
        }
        let at = self.lines.len().saturating_sub(back);
        self.lines.insert(at, e);
    }

    /// The line `back` places before the newest (0: the newest).
    pub fn from_newest(&self, back: usize) -> Option<&Entry> {
        self.lines.iter().rev().nth(back)
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn clear(&mut self) {
        self.lines.clear();
    }

    /// Newest first.
    pub fn iter_rev(&self) -> impl Iterator<Item = &Entry> {
        self.lines.iter().rev()
    }

    pub fn last(&self) -> Option<&Entry> {
        self.lines.back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_sanitizes() {
        let e = Entry::from_server("12:00", "[bo\u{1b}b] hi\u{7}");
        assert_eq!(
            (e.kind, e.nick.as_deref(), e.text.as_str()),
            (Kind::Chat, Some("bo^[b"), "hi^G")
        );
        assert_eq!(
            Entry::from_server("t", "(-> ann) x").kind,
            Kind::PrivateSent
        );
        assert_eq!(Entry::from_server("t", "(ann) x").kind, Kind::Private);
        assert_eq!(Entry::from_server("t", "~ ann waves").text, "waves");
        assert_eq!(Entry::from_server("t", "! no").kind, Kind::Error);
        assert_eq!(Entry::from_server("t", "* yes").kind, Kind::Notice);
        assert_eq!(Entry::from_server("t", "what").kind, Kind::Other);
    }

    #[test]
    fn cuts_huge_lines() {
        let e = Entry::from_server("t", &format!("* {}", "é".repeat(10_000)));
        assert!(e.text.len() <= MAX_ENTRY_BYTES + 8 && e.text.ends_with(" [cut]"));
    }

    #[test]
    fn keeps_the_newest_ten_thousand() {
        let mut s = Scrollback::default();
        for i in 0..MAX_LINES + 5 {
            s.push(Entry::new("t", Kind::Chat, Some("a"), &i.to_string()));
        }
        assert_eq!(s.len(), MAX_LINES);
        assert_eq!(s.last().unwrap().text, (MAX_LINES + 4).to_string());
        assert_eq!(s.iter_rev().last().unwrap().text, "5");
        s.insert_before_newest(2, Entry::new("t", Kind::Room, None, "#r"));
        assert_eq!(s.len(), MAX_LINES);
        assert_eq!(s.from_newest(2).unwrap().text, "#r");
        assert_eq!(s.from_newest(1).unwrap().text, (MAX_LINES + 3).to_string());
        assert_eq!(s.iter_rev().last().unwrap().text, "6");
    }
}
