//! The IRC message parser and writer (src/dialect/irc/message.rs).
//!
//! Input: one line (any bytes; lossily decoded, as far as the first
//! `\n`, as the framer would cut it). Properties:
//! - a parsed message has at most 15 parameters; only the last may be
//!   empty, start with `:` or hold a space;
//! - writing it back (tags, source, command, parameters) and parsing the
//!   result gives the same message (tags compared after unescaping),
//!   unless the command starts with `@` or `:` (see below);
//! - writing that again gives the same bytes (the writer's output is a
//!   fixed point);
//! - tag values survive escape then unescape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopchat::dialect::irc::message::{
    MAX_PARAMS, Message, escape_tag_value, unescape_tag_value, write, write_line,
};

type Owned = (Vec<(String, String)>, Option<String>, String, Vec<String>);

fn owned(m: &Message<'_>) -> Owned {
    (
        m.tags()
            .map(|(k, v)| (k.to_string(), v.into_owned()))
            .collect(),
        m.source.map(str::to_string),
        m.command.to_string(),
        m.params().iter().map(|p| p.to_string()).collect(),
    )
}

fn rewrite(m: &Message<'_>, colon_last: bool) -> Vec<u8> {
    let tags: Vec<(&str, String)> = m.tags().map(|(k, v)| (k, v.into_owned())).collect();
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut out = Vec::new();
    write(&mut out, &tags, m.source, m.command, m.params(), colon_last);
    out
}

fuzz_target!(|data: &[u8]| {
    let line = data.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let text = String::from_utf8_lossy(line);
    let Ok(msg) = Message::parse(&text) else {
        return;
    };
    let params = msg.params();
    assert!(params.len() <= MAX_PARAMS);
    assert!(!msg.command.is_empty() && !msg.command.contains(' '));
    if let Some((_, middle)) = params.split_last() {
        for p in middle {
            assert!(
                !p.is_empty() && !p.starts_with(':') && !p.contains(' '),
                "{p:?}"
            );
        }
    }
    for (key, value) in msg.tags() {
        assert!(!key.contains(';') && !key.contains(' ') && !key.contains('='));
        let mut esc = Vec::new();
        escape_tag_value(&value, &mut esc);
        let esc = String::from_utf8(esc).unwrap();
        assert_eq!(unescape_tag_value(&esc), value);
    }
    // A "command" starting with `@` (after tags that were all empty, as in
    // `@; @x`) or `:` cannot be written back without becoming tags or a
    // source. Neither is a command (a word or three digits): the dialect
    // answers 421 and writes it back as `*`. Not checked.
    if msg.command.starts_with(['@', ':']) {
        return;
    }
    let want = owned(&msg);
    for colon_last in [false, true] {
        let out = rewrite(&msg, colon_last);
        let out = String::from_utf8(out).expect("the writer keeps UTF-8");
        let again = Message::parse(&out)
            .unwrap_or_else(|e| panic!("{out:?} (from {text:?}) does not parse: {e:?}"));
        assert_eq!(owned(&again), want, "{text:?} -> {out:?}");
        let out2 = String::from_utf8(rewrite(&again, colon_last)).unwrap();
        assert_eq!(out, out2, "not a fixed point");
    }
    if msg.tags().next().is_none() {
        let mut line = Vec::new();
        write_line(&mut line, msg.source, msg.command, msg.params(), false);
        assert!(line.ends_with(b"\r\n"));
    }
});
