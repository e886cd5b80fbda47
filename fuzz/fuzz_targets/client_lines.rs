//! The client's server-line framing and display sanitising
//! (src/client/framing.rs `LineReader`, src/client/text.rs
//! `display_line`, src/protocol.rs `ServerLine::parse`).
//!
//! Input: byte 0 picks the line limit (1..=64), byte 1 the read size, the
//! rest is what a server sends. Properties:
//! - no line is longer than the limit or holds a `\n`; only a line that
//!   reached the limit is marked truncated;
//! - splitting the stream at other points gives the same lines;
//! - the displayed text of every line (and of every part the client
//!   parses out of it) holds no control character (C0, DEL, C1) and no
//!   bidirectional-formatting character, and text without those is
//!   shown unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopchat::client::framing::{LineReader, RawLine};
use loopchat::client::text::{display_line, display_str};
use loopchat::protocol::ServerLine;

fn lines(max: usize, stream: &[u8], chunk: usize) -> Vec<RawLine> {
    let mut r = LineReader::new(max);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        r.push(piece);
        while let Some(l) = r.next_line() {
            out.push(l);
        }
    }
    out.extend(r.finish());
    out
}

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn check_shown(raw: &[u8]) {
    let shown = display_line(raw);
    for c in shown.chars() {
        assert!(!c.is_control() && !is_bidi(c), "{c:?} in {shown:?}");
    }
    if let Ok(s) = std::str::from_utf8(raw)
        && !s.chars().any(|c| c.is_control() || is_bidi(c))
    {
        assert_eq!(shown, s);
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, stream @ ..] = data else {
        return;
    };
    let max = usize::from(*a % 64) + 1;
    let whole = lines(max, stream, stream.len());
    for l in &whole {
        assert!(l.bytes.len() <= max, "{} > {max}", l.bytes.len());
        assert!(!l.bytes.contains(&b'\n'));
        if l.truncated {
            assert_eq!(l.bytes.len(), max);
        }
        check_shown(&l.bytes);
        let text = String::from_utf8_lossy(&l.bytes);
        let parts: Vec<&str> = match ServerLine::parse(&text) {
            ServerLine::Notice(t) | ServerLine::Error(t) | ServerLine::Other(t) => vec![t],
            ServerLine::Chat { from, text }
            | ServerLine::Private { from, text }
            | ServerLine::Action { from, text } => vec![from, text],
            ServerLine::PrivateSent { to, text } => vec![to, text],
        };
        for p in parts {
            check_shown(p.as_bytes());
        }
        if let Some(names) = ServerLine::parse(&text).room_members() {
            for n in names {
                check_shown(n.as_bytes());
            }
        }
        for c in display_str(&text).chars() {
            assert!(!c.is_control());
        }
    }
    assert_eq!(lines(max, stream, usize::from(*b) + 1), whole);
    assert_eq!(lines(max, stream, 1), whole);
});
