//! What the Redis bridge reads (src/bridge/): RESP2 replies and pushes
//! from Redis (`resp::decode`), and the payloads other processes publish
//! (`envelope::decode`).
//!
//! Input: the first byte picks the mode.
//! - even: the rest is a stream from Redis. A whole reply never claims
//!   more bytes than given and parses the same from exactly its bytes; no
//!   shorter prefix of it is an error or a whole reply (a reply split by a
//!   read must never drop the link); `encode` writes it back to something
//!   that decodes to the same value; nesting, arrays and bulks stay within
//!   the caps.
//!   A reply read as a nickname claim's answer (`presence::ClaimReply`)
//!   never yields a fallback name that breaks the nickname rules.
//! - odd: the rest is a published payload. If it decodes, encoding the
//!   envelope again and decoding that gives the same envelope. Read as a
//!   node id from the reapers' control channel, it is printable ASCII
//!   without spaces, or refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopchat::bridge::envelope;
use loopchat::bridge::presence::{self, ClaimReply};
use loopchat::bridge::resp::{self, MAX_ARRAY, MAX_BULK, MAX_DEPTH, Value};

/// `depth`: arrays around `v` (the top value is at 0; an array may be at
/// most at `MAX_DEPTH - 1`).
fn within_caps(v: &Value, depth: usize) {
    match v {
        Value::Bulk(b) => assert!(b.len() <= MAX_BULK, "a bulk over the cap"),
        Value::Array(items) => {
            assert!(depth < MAX_DEPTH, "nested deeper than the cap");
            assert!(items.len() <= MAX_ARRAY, "an array over the cap");
            for item in items {
                within_caps(item, depth + 1);
            }
        }
        _ => {}
    }
}

fn stream(data: &[u8]) {
    let Ok(Some((value, n))) = resp::decode(data) else {
        return;
    };
    assert!(n > 0 && n <= data.len(), "claimed {n} of {}", data.len());
    within_caps(&value, 0);
    if let Some(ClaimReply::Renamed(name)) = ClaimReply::read(&value) {
        assert!(
            loopchat::protocol::validate_nick(&name).is_ok(),
            "a fallback {name:?} that is no nickname"
        );
    }
    match resp::decode(&data[..n]) {
        Ok(Some((again, m))) => assert_eq!((&again, m), (&value, n), "the same on its own bytes"),
        other => panic!("a whole reply is not whole on its own bytes: {other:?}"),
    }
    let cuts: Vec<usize> = if n <= 128 {
        (0..n).collect()
    } else {
        vec![0, 1, n / 3, n / 2, n - 2, n - 1]
    };
    for m in cuts {
        match resp::decode(&data[..m]) {
            Ok(None) => {}
            other => panic!("a prefix of {m} of {n} bytes: {other:?}"),
        }
    }
    let mut out = Vec::new();
    resp::encode(&value, &mut out);
    match resp::decode(&out) {
        Ok(Some((again, m))) => {
            assert_eq!(m, out.len(), "encode wrote one reply");
            assert_eq!(again, value, "canonical form");
        }
        other => panic!("encoded {value:?} does not decode: {other:?}"),
    }
}

fn payload(data: &[u8]) {
    if let Some(id) = presence::read_node(data) {
        assert!(
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic()),
            "node id {id:?}"
        );
    }
    let Ok(env) = envelope::decode(data) else {
        return;
    };
    let mut out = Vec::new();
    envelope::encode(env.node, env.seq, &env.relay, &mut out);
    match envelope::decode(&out) {
        Ok(again) => assert_eq!(again, env, "round trip"),
        Err(e) => panic!("re-encoded {env:?} does not decode: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        stream(rest);
    } else {
        payload(rest);
    }
});
