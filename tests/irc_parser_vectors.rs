//! The IRC message parser against the ircdocs parser test vectors
//! (PyPI `irc-parser-tests`, CC0): every `msg-split` line parses into the
//! listed atoms, every `msg-join` message is written as one of its listed
//! forms, and every `userhost-split` source splits as listed.
//!
//! The vectors are not copied into this repository: `.ci/run` installs the
//! package (pinned in `.ci/requirements.txt`) into a virtualenv and sets
//! `LOOPCHAT_PYTHON` to its interpreter. Locally, `pip install
//! irc-parser-tests` is enough. Without the package the test says so and
//! passes, except under CI (`CI` set), where it fails.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::process::Command;

use loopchat::dialect::irc::message::{self, Message};
use serde_json::Value;

/// The vectors as JSON, `{ "msg-split": ..., "msg-join": ..., "userhost-split": ... }`,
/// or `None` if Python or the package is missing.
fn load_vectors() -> Option<Value> {
    let python = std::env::var("LOOPCHAT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import json, parser_tests.data as d\n\
                  print(json.dumps({'msg-split': d.msg_split, 'msg-join': d.msg_join, \
                  'userhost-split': d.userhost_split}))";
    let out = Command::new(&python).args(["-c", script]).output();
    match out {
        Ok(out) if out.status.success() => match serde_json::from_slice(&out.stdout) {
            Ok(v) => Some(v),
            Err(e) => panic!("the vectors are not JSON: {e}"),
        },
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            missing(&format!("{python}: {why}"))
        }
        Err(e) => missing(&format!("{python}: {e}")),
    }
}

fn missing(why: &str) -> Option<Value> {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the IRC parser vectors (.ci/run installs irc-parser-tests): {why}"
    );
    eprintln!("SKIPPED: irc-parser-tests is not installed ({why})");
    None
}

fn tests(vectors: &Value, file: &str) -> Vec<Value> {
    vectors[file]["tests"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no tests"))
        .clone()
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The tags a vector expects, with a tag given no value as "".
fn tag_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn msg_split_vectors() {
    let Some(vectors) = load_vectors() else {
        return;
    };
    let cases = tests(&vectors, "msg-split");
    assert!(cases.len() >= 30, "expected the whole msg-split file");
    for case in &cases {
        let input = case["input"].as_str().expect("input");
        let atoms = &case["atoms"];
        let m = Message::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
        assert_eq!(m.source, atoms["source"].as_str(), "source of {input:?}");
        assert_eq!(
            m.command,
            atoms["verb"].as_str().expect("verb"),
            "verb of {input:?}"
        );
        let params: Vec<&str> = m.params().to_vec();
        assert_eq!(params, str_list(&atoms["params"]), "params of {input:?}");
        let want = tag_map(&atoms["tags"]);
        // The last duplicate wins, as the vectors require.
        let mut got = BTreeMap::new();
        for (k, _) in m.tags() {
            let v = m.tag(k).unwrap_or(Cow::Borrowed(""));
            got.insert(k.to_string(), v.into_owned());
        }
        assert_eq!(got, want, "tags of {input:?}");
    }
}

#[test]
fn msg_join_vectors() {
    let Some(vectors) = load_vectors() else {
        return;
    };
    let cases = tests(&vectors, "msg-join");
    assert!(cases.len() >= 10, "expected the whole msg-join file");
    for case in &cases {
        let atoms = &case["atoms"];
        let tags = tag_map(&atoms["tags"]);
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let params = str_list(&atoms["params"]);
        let params: Vec<&str> = params.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        message::write(
            &mut out,
            &tags,
            atoms["source"].as_str(),
            atoms["verb"].as_str().expect("verb"),
            &params,
            false,
        );
        let line = String::from_utf8(out).expect("UTF-8");
        let matches = str_list(&case["matches"]);
        assert!(
            matches.contains(&line),
            "{}: wrote {line:?}, want one of {matches:?}",
            case["desc"]
        );
    }
}

#[test]
fn userhost_split_vectors() {
    let Some(vectors) = load_vectors() else {
        return;
    };
    for case in tests(&vectors, "userhost-split") {
        let source = case["source"].as_str().expect("source");
        let atoms = &case["atoms"];
        let u = message::split_userhost(source);
        let part = |k: &str| atoms[k].as_str().unwrap_or_default().to_string();
        assert_eq!(
            (u.nick.to_string(), u.user.to_string(), u.host.to_string()),
            (part("nick"), part("user"), part("host")),
            "{source:?}"
        );
    }
}
