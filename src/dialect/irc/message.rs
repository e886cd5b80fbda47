//! One IRC message: parse a line into tags, source, command and parameters,
//! and write one back.
//!
//! The grammar (RFC 1459 §2.3.1, with IRCv3 message tags):
//!
//! ```text
//! message  = ["@" tags SPACE] [":" source SPACE] command *(SPACE param) [SPACE ":" trailing]
//! ```
//!
//! Atoms are separated by one *or more* spaces, as the ircdocs parser test
//! vectors (PyPI `irc-parser-tests`, run by `tests/irc_parser_vectors.rs`)
//! expect and as real clients send. At most [`MAX_PARAMS`] parameters: like
//! RFC 2812, whatever follows the 14th middle parameter is the 15th, colon
//! or not. The line arrives without its `\r\n` (the framer strips it).
//!
//! Parsing borrows from the line and allocates nothing, since every line an
//! IRC user sends passes through here. Tags are kept raw and unescaped only
//! when asked for: the server parses them and, for now, ignores them.

use std::borrow::Cow;

/// Parameters one message may carry (RFC 2812 §2.3).
pub const MAX_PARAMS: usize = 15;
/// The longest line the server sends, `\r\n` included (RFC 1459 §2.3).
pub const MAX_LINE: usize = 512;

/// Why a line is not a message. The dialect answers neither: an empty line
/// is ignored, as IRC servers do, and a line with tags or a source but no
/// command is junk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but spaces.
    Empty,
    /// Tags or a source, then nothing.
    NoCommand,
}

/// A parsed message, borrowing the line it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The tags as sent, without the `@` (see [`Message::tags`]).
    raw_tags: Option<&'a str>,
    /// The source (`nick!user@host` or a server name), without the `:`.
    pub source: Option<&'a str>,
    /// The command as sent: a word or a three-digit numeric. Compare it
    /// ASCII-case-insensitively, as servers do.
    pub command: &'a str,
    params: [&'a str; MAX_PARAMS],
    count: usize,
}

impl<'a> Message<'a> {
    /// Splits `line` (without its line ending) into its atoms.
    pub fn parse(line: &'a str) -> Result<Message<'a>, ParseError> {
        let mut rest = line.trim_start_matches(' ');
        if rest.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut raw_tags = None;
        if let Some(after) = rest.strip_prefix('@') {
            let (tags, tail) = split_atom(after);
            raw_tags = Some(tags);
            rest = tail;
        }
        let mut source = None;
        if let Some(after) = rest.strip_prefix(':') {
            let (src, tail) = split_atom(after);
            source = Some(src);
            rest = tail;
        }
        let (command, mut rest) = split_atom(rest);
        if command.is_empty() {
            return Err(ParseError::NoCommand);
        }
        let mut msg = Message {
            raw_tags,
            source,
            command,
            params: [""; MAX_PARAMS],
            count: 0,
        };
        while !rest.is_empty() {
            if let Some(trailing) = rest.strip_prefix(':') {
                msg.push(trailing);
                break;
            }
            if msg.count == MAX_PARAMS - 1 {
                // The 15th parameter is the rest of the line, spaces and all.
                msg.push(rest);
                break;
            }
            let (param, tail) = split_atom(rest);
            msg.push(param);
            rest = tail;
        }
        Ok(msg)
    }

    fn push(&mut self, param: &'a str) {
        self.params[self.count] = param;
        self.count += 1;
    }

    /// The parameters, the trailing one (if any) last, its colon removed.
    pub fn params(&self) -> &[&'a str] {
        &self.params[..self.count]
    }

    /// Parameter `i`, if the message has that many.
    pub fn param(&self, i: usize) -> Option<&'a str> {
        self.params().get(i).copied()
    }

    /// Whether `command` is `name`, ignoring ASCII case (`privmsg` is `PRIVMSG`).
    pub fn is(&self, name: &str) -> bool {
        self.command.eq_ignore_ascii_case(name)
    }

    /// The tags in the order sent, values unescaped (a tag without `=` has
    /// the empty value). Duplicates are all yielded; see [`Message::tag`].
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + 'a {
        self.raw_tags
            .unwrap_or("")
            .split(';')
            // A tag needs a key (IRCv3): `@;` and `@=x` carry no tag, and
            // writing one with an empty key back would lose it (found by
            // fuzz/irc_message).
            .filter(|t| !t.is_empty() && !t.starts_with('='))
            .map(|t| match t.split_once('=') {
                Some((key, value)) => (key, unescape_tag_value(value)),
                None => (t, Cow::Borrowed("")),
            })
    }

    /// The value of tag `key`; the last one wins if it was sent twice
    /// (IRCv3: "disregard all but the final occurrence").
    pub fn tag(&self, key: &str) -> Option<Cow<'a, str>> {
        self.tags()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }
}

/// Splits off one atom at the first space, and skips the spaces after it.
fn split_atom(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((atom, rest)) => (atom, rest.trim_start_matches(' ')),
        None => (s, ""),
    }
}

/// Undoes IRCv3 tag-value escaping: `\:` `;`, `\s` space, `\\` `\`, `\r`,
/// `\n`; a backslash before any other character is dropped, and so is a
/// lone backslash at the end.
pub fn unescape_tag_value(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// Appends `value` with IRCv3 tag-value escaping (the inverse of
/// [`unescape_tag_value`]).
pub fn escape_tag_value(value: &str, out: &mut Vec<u8>) {
    for b in value.bytes() {
        match b {
            b';' => out.extend_from_slice(b"\\:"),
            b' ' => out.extend_from_slice(b"\\s"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Appends one message, without its line ending. A parameter but the last
/// that is not a valid middle parameter (empty, with a space, or starting
/// with `:`) is written as `*`; the last gets a colon when it needs one, or
/// always with `colon_last` (for text, which some simple clients look for
/// after " :"). The caller keeps CR, LF and NUL out (the dialect refuses
/// them in what clients send).
/// Tags with an empty value are written bare (`@key`).
pub fn write(
    out: &mut Vec<u8>,
    tags: &[(&str, &str)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
    colon_last: bool,
) {
    for (i, (key, value)) in tags.iter().enumerate() {
        out.push(if i == 0 { b'@' } else { b';' });
        out.extend_from_slice(key.as_bytes());
        if !value.is_empty() {
            out.push(b'=');
            escape_tag_value(value, out);
        }
        if i + 1 == tags.len() {
            out.push(b' ');
        }
    }
    if let Some(source) = source {
        out.push(b':');
        out.extend_from_slice(source.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(command.as_bytes());
    let Some((last, middle)) = params.split_last() else {
        return;
    };
    for param in middle {
        out.push(b' ');
        // A middle parameter cannot be empty, hold a space or start with
        // ':'. Those echoed from a client (a bad channel name in a 403) may
        // be anything: they are written as `*` rather than break the line.
        let param = if is_middle(param) { param } else { "*" };
        out.extend_from_slice(param.as_bytes());
    }
    out.push(b' ');
    if colon_last || !is_middle(last) {
        out.push(b':');
    }
    out.extend_from_slice(last.as_bytes());
}

/// [`write`] without tags, then `\r\n`: one whole line as the server
/// sends it. Every line of the IRC dialect's output is written by this.
pub fn write_line(
    out: &mut Vec<u8>,
    source: Option<&str>,
    command: &str,
    params: &[&str],
    colon_last: bool,
) {
    write(out, &[], source, command, params, colon_last);
    out.extend_from_slice(b"\r\n");
}

/// Whether `param` can be sent without a leading colon.
fn is_middle(param: &str) -> bool {
    !param.is_empty() && !param.starts_with(':') && !param.contains(' ')
}

/// Splits `text` into pieces of at most `max` bytes, each ending on a
/// UTF-8 character boundary, so a long line becomes several messages that
/// each fit into [`MAX_LINE`] and none cuts a character in half. `max` is
/// what one message leaves for the text (see [`text_room`]); at least 4, so
/// every character fits.
pub fn split_utf8(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let max = max.max(4);
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Bytes left for the text in `:SOURCE COMMAND TARGET :TEXT\r\n` within
/// [`MAX_LINE`].
pub fn text_room(source: &str, command: &str, target: &str) -> usize {
    // ':' source ' ' command ' ' target ' :' ... '\r\n'
    let overhead = 1 + source.len() + 1 + command.len() + 1 + target.len() + 2 + 2;
    MAX_LINE.saturating_sub(overhead)
}

/// A source split into `nick!user@host`; a missing part is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserHost<'a> {
    pub nick: &'a str,
    pub user: &'a str,
    pub host: &'a str,
}

/// Splits `nick!user@host` (the host after the first `@` following the
/// nick, the user between `!` and that `@`).
pub fn split_userhost(source: &str) -> UserHost<'_> {
    let (before_host, host) = source.split_once('@').unwrap_or((source, ""));
    let (nick, user) = before_host.split_once('!').unwrap_or((before_host, ""));
    UserHost { nick, user, host }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atoms(line: &str) -> (Option<&str>, &str, Vec<&str>) {
        let m = Message::parse(line).unwrap();
        (m.source, m.command, m.params().to_vec())
    }

    #[test]
    fn middle_and_trailing_parameters() {
        assert_eq!(
            atoms(":n!u@h PRIVMSG #a :hello  there "),
            (Some("n!u@h"), "PRIVMSG", vec!["#a", "hello  there "])
        );
        assert_eq!(atoms("NICK   alice"), (None, "NICK", vec!["alice"]));
        assert_eq!(atoms("PING :"), (None, "PING", vec![""]));
        assert_eq!(atoms("AWAY "), (None, "AWAY", vec![]));
        assert_eq!(Message::parse("   "), Err(ParseError::Empty));
        assert_eq!(Message::parse("@a=b :src"), Err(ParseError::NoCommand));
    }

    #[test]
    fn fifteenth_parameter_takes_the_rest() {
        let line = "CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 and more";
        let m = Message::parse(line).unwrap();
        assert_eq!(m.params().len(), MAX_PARAMS);
        assert_eq!(m.param(14), Some("15 and more"));
    }

    #[test]
    fn tags_are_unescaped_on_demand_and_the_last_duplicate_wins() {
        let m = Message::parse(r"@a=b\\and\nk;c;a=x\:y\s COMMAND").unwrap();
        assert_eq!(m.tag("a").as_deref(), Some("x;y "));
        assert_eq!(m.tag("c").as_deref(), Some(""));
        assert_eq!(m.tag("missing"), None);
        assert_eq!(m.tags().count(), 3);
        assert_eq!(unescape_tag_value(r"value\"), "value");
        assert_eq!(unescape_tag_value(r"value\1"), "value1");
    }

    #[test]
    fn write_round_trips() {
        let mut out = Vec::new();
        write(
            &mut out,
            &[],
            Some("srv"),
            "001",
            &["alice", "Welcome, alice"],
            false,
        );
        assert_eq!(out, b":srv 001 alice :Welcome, alice");
        out.clear();
        write(
            &mut out,
            &[("k", "a;b c")],
            None,
            "PRIVMSG",
            &["#a", "hi"],
            true,
        );
        assert_eq!(out, b"@k=a\\:b\\sc PRIVMSG #a :hi");
        let text = String::from_utf8(out).unwrap();
        let m = Message::parse(&text).unwrap();
        assert_eq!(m.params(), ["#a", "hi"]);
        assert_eq!(m.tag("k").as_deref(), Some("a;b c"));
    }

    #[test]
    fn long_text_splits_on_character_boundaries_within_512_bytes() {
        let source = "alice!alice@loopchat";
        let room = text_room(source, "PRIVMSG", "#lobby");
        let text = "é€😀a".repeat(200); // 2-, 3-, 4- and 1-byte characters
        let pieces: Vec<&str> = split_utf8(&text, room).collect();
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), text, "nothing lost or reordered");
        for (i, piece) in pieces.iter().enumerate() {
            let mut out = Vec::new();
            write(
                &mut out,
                &[],
                Some(source),
                "PRIVMSG",
                &["#lobby", piece],
                true,
            );
            out.extend_from_slice(b"\r\n");
            assert!(out.len() <= MAX_LINE, "{} bytes", out.len());
            let last = i + 1 == pieces.len();
            assert!(
                last || room - piece.len() < 4,
                "pieces are as full as they can be"
            );
        }
        assert_eq!(split_utf8("", 10).count(), 0);
    }

    #[test]
    fn bad_middle_parameters_cannot_break_the_line() {
        let mut out = Vec::new();
        write(
            &mut out,
            &[],
            Some("s"),
            "403",
            &["me", ":x y", "", "No such channel"],
            true,
        );
        assert_eq!(out, b":s 403 me * * :No such channel");
    }

    #[test]
    fn userhost() {
        let u = split_userhost("coolguy!~ag@localhost");
        assert_eq!((u.nick, u.user, u.host), ("coolguy", "~ag", "localhost"));
        let u = split_userhost("coolguy@127.0.0.1");
        assert_eq!((u.nick, u.user, u.host), ("coolguy", "", "127.0.0.1"));
    }
}
