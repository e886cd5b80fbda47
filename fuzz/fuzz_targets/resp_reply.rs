//! The bench's RESP2 reply parser (`bench::dialect::resp`, what
//! `loopchat-bench --dialect resp` reads from Redis) and its command
//! encoder.
//!
//! Input: the first byte picks the mode.
//! - even: the rest is a server stream. A whole reply never claims more
//!   bytes than given, parses the same from exactly its bytes, and no
//!   shorter prefix of it is a whole reply; an array yields exactly its
//!   count of elements; written back in canonical RESP2 it parses to the
//!   same value. Nesting, element counts and bulk lengths stay within the
//!   parser's caps.
//! - odd: the rest is a command's parts (read with `arbitrary`), encoded
//!   by `command` and parsed back: one array of the same bulk strings,
//!   claiming every byte, unless the parts pass the caps (then an error).
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use loopchat::bench::dialect::resp::{self, MAX_DEPTH, MAX_ELEMENTS, Parsed, Value};
use loopchat::bench::dialect::{MAX_UNIT, Need};

/// A parsed value, owned, so values from different buffers compare.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Owned>>),
}

fn owned(v: Value<'_>, depth: usize) -> Owned {
    assert!(depth <= MAX_DEPTH, "nested deeper than the cap");
    match v {
        Value::Simple(s) => Owned::Simple(s.to_vec()),
        Value::Error(s) => Owned::Error(s.to_vec()),
        Value::Integer(i) => Owned::Integer(i),
        Value::Bulk(b) => {
            if let Some(b) = b {
                assert!(b.len() <= MAX_UNIT, "a bulk string over the cap");
            }
            Owned::Bulk(b.map(<[u8]>::to_vec))
        }
        Value::Array(None) => Owned::Array(None),
        Value::Array(Some(a)) => {
            assert!(a.len <= MAX_ELEMENTS, "an array over the cap");
            let items: Vec<Owned> = a.iter().map(|e| owned(e, depth + 1)).collect();
            assert_eq!(items.len(), a.len, "an array yields its count");
            Owned::Array(Some(items))
        }
    }
}

/// Canonical RESP2 for `v`.
fn encode(v: &Owned, out: &mut Vec<u8>) {
    match v {
        Owned::Simple(s) => {
            out.push(b'+');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Owned::Error(s) => {
            out.push(b'-');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Owned::Integer(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
        Owned::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Owned::Bulk(Some(b)) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Owned::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Owned::Array(Some(items)) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in items {
                encode(item, out);
            }
        }
    }
}

fn whole(buf: &[u8]) -> Option<(Owned, usize)> {
    match resp::parse(buf) {
        Ok(Parsed::Done(v, n)) => Some((owned(v, 0), n)),
        _ => None,
    }
}

fn stream(data: &[u8]) {
    let parsed = resp::parse(data);
    let Ok(Parsed::Done(v, n)) = parsed else {
        if let Ok(Parsed::Need(Need::Bytes(k))) = parsed {
            assert!(k > 0, "needs no bytes but is not done");
        }
        return;
    };
    assert!(n > 0 && n <= data.len(), "claimed {n} of {}", data.len());
    let value = owned(v, 0);
    assert_eq!(whole(&data[..n]), Some((value_again(&data[..n]), n)));
    // No shorter prefix is a whole reply (all of them when short).
    let cuts: Vec<usize> = if n <= 128 {
        (0..n).collect()
    } else {
        vec![0, 1, n / 3, n / 2, n - 2, n - 1]
    };
    for m in cuts {
        assert!(
            !matches!(resp::parse(&data[..m]), Ok(Parsed::Done(..))),
            "a prefix of {m} of {n} bytes is a whole reply"
        );
    }
    let mut again = Vec::new();
    encode(&value, &mut again);
    assert_eq!(whole(&again), Some((value, again.len())), "canonical form");
}

fn value_again(buf: &[u8]) -> Owned {
    match whole(buf) {
        Some((v, _)) => v,
        None => panic!("a whole reply is not whole on its own bytes"),
    }
}

fn command(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(parts) = u.arbitrary::<Vec<Vec<u8>>>() else {
        return;
    };
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    resp::command(&refs, &mut out);
    let too_big = parts.len() > MAX_ELEMENTS || parts.iter().any(|p| p.len() > MAX_UNIT);
    match whole(&out) {
        Some((v, n)) => {
            assert!(!too_big, "over the caps but parsed");
            assert_eq!(n, out.len(), "the command's every byte");
            let want = Owned::Array(Some(
                parts.into_iter().map(|p| Owned::Bulk(Some(p))).collect(),
            ));
            assert_eq!(v, want);
        }
        None => assert!(too_big, "a command within the caps did not parse"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        stream(rest);
    } else {
        command(rest);
    }
});
