//! Inputs found by the fuzz targets (fuzz/, docs/fuzzing.md), kept as
//! plain tests so that `cargo test` guards them without nightly.

use loopchat::accounts::Accounts;
use loopchat::dialect::irc::message::{Message, write};

/// fuzz/accounts_file: a last line without "\n" that ends in "\r" was
/// saved as "...\r\n", and the next load and save dropped the "\r": the
/// file changed on every save until then.
/// Then a comment ending in CRs before its CRLF: the same, one CR lost
/// per save.
#[test]
fn accounts_file_comment_ending_in_cr_is_stable() {
    let dir = std::env::temp_dir().join(format!("loopchat-fuzz-regr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("accounts");
    for (input, want) in [
        (&b"# c# c\r"[..], &b"# c# c\n"[..]),
        (b"#\r\r\raa\r\r\r\n\r\r\n# x\r\n", b"#\r\r\raa\n\n# x\n"),
    ] {
        std::fs::write(&path, input).unwrap();
        let mut store = Accounts::load(&path).unwrap();
        store.save_atomic().unwrap();
        let first = std::fs::read(&path).unwrap();
        Accounts::load(&path).unwrap().save_atomic().unwrap();
        let second = std::fs::read(&path).unwrap();
        assert_eq!(first, second, "{input:?}");
        assert_eq!(first, want, "{input:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// fuzz/irc_message: a tag with an empty key (`=` between two `;`) was
/// reported by `tags()`, but cannot be written back: the message did not
/// survive a parse, write, parse round trip.
#[test]
fn irc_tag_with_empty_key_is_no_tag() {
    let line = "@a;=;=x;b=\\s foo";
    let msg = Message::parse(line).unwrap();
    let tags: Vec<(String, String)> = msg
        .tags()
        .map(|(k, v)| (k.to_string(), v.into_owned()))
        .collect();
    assert_eq!(tags, [("a".into(), "".into()), ("b".into(), " ".into())]);
    let borrowed: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = Vec::new();
    write(
        &mut out,
        &borrowed,
        msg.source,
        msg.command,
        msg.params(),
        false,
    );
    let out = String::from_utf8(out).unwrap();
    let again = Message::parse(&out).unwrap();
    let tags2: Vec<(String, String)> = again
        .tags()
        .map(|(k, v)| (k.to_string(), v.into_owned()))
        .collect();
    assert_eq!(tags2, tags, "{out:?}");
}
