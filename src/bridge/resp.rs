//! RESP2, the Redis protocol, without sockets: [`decode`] reads one reply
//! from a byte slice, [`Command`] encodes one command.
//!
//! Like the line framer, the decoder treats "not all here yet" as a normal
//! answer (`Ok(None)`), not an error: the caller keeps the bytes and calls
//! again after the next read. It does not keep state between calls, so a
//! partial reply is scanned again from its start when more bytes come;
//! replies to chat traffic are a few bytes, so that costs nothing worth a
//! resumable parser (a pipelined burst of 1,000 `:1\r\n` replies is
//! decoded one after the other, each scanned once).
//!
//! A peer cannot make us allocate without limit: a bulk string longer than
//! [`MAX_BULK`], an array of more than [`MAX_ARRAY`] elements, nesting
//! deeper than [`MAX_DEPTH`] or a simple line longer than [`MAX_LINE`]
//! without its `\r\n` is an [`Error`], and the caller drops the link.
//! (Redis itself never sends such things to us; a proxy gone wrong or the
//! wrong service on that port might.)

use std::fmt;

/// Longest bulk string accepted (a published chat line is a few hundred
/// bytes; Redis's own default limit for a bulk is 512 MB).
pub const MAX_BULK: usize = 1 << 20;
/// Most elements in one array (our replies: 3 for a push, 1 per channel
/// for the others).
pub const MAX_ARRAY: usize = 1024;
/// Deepest nesting of arrays (our replies are 1 deep; Redis 7's `COMMAND
/// INFO`, the deepest reply we know, is 5).
pub const MAX_DEPTH: usize = 8;
/// Longest simple string, error or integer line.
pub const MAX_LINE: usize = 64 * 1024;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$5\r\nhello`; `$-1` is `Nil`.
    Bulk(Vec<u8>),
    /// `*2\r\n...`; `*-1` is `Nil`.
    Array(Vec<Value>),
    Nil,
}

/// The bytes are not RESP2 (or break a limit): drop the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A type byte other than `+ - : $ *`.
    BadType(u8),
    /// A length or integer that is not a number.
    BadNumber,
    /// A bulk string not followed by `\r\n`.
    BadTerminator,
    /// A line, bulk, array or nesting over its limit.
    TooBig,
    /// A simple string or error that is not UTF-8.
    NotUtf8,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadType(b) => write!(f, "RESP: unknown type byte 0x{b:02x}"),
            Error::BadNumber => f.write_str("RESP: bad number"),
            Error::BadTerminator => f.write_str("RESP: bulk string without CRLF"),
            Error::TooBig => f.write_str("RESP: value over the limits"),
            Error::NotUtf8 => f.write_str("RESP: simple string not UTF-8"),
        }
    }
}

impl std::error::Error for Error {}

/// Decodes one value from the start of `buf`: `Ok(Some((value, bytes
/// used)))`, `Ok(None)` if `buf` holds only part of one, or an error.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, Error> {
    decode_at(buf, 0)
}

fn decode_at(buf: &[u8], depth: usize) -> Result<Option<(Value, usize)>, Error> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some((line, after)) = line(&buf[1..])? else {
        return Ok(None);
    };
    let used = 1 + after;
    match kind {
        b'+' => Ok(Some((Value::Simple(text(line)?), used))),
        b'-' => Ok(Some((Value::Error(text(line)?), used))),
        b':' => Ok(Some((Value::Int(number(line)?), used))),
        b'$' => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Value::Nil, used)));
            }
            let len = usize::try_from(len).map_err(|_| Error::BadNumber)?;
            if len > MAX_BULK {
                return Err(Error::TooBig);
            }
            let rest = &buf[used..];
            if rest.len() < len + 2 {
                return Ok(None);
            }
            if &rest[len..len + 2] != b"\r\n" {
                return Err(Error::BadTerminator);
            }
            Ok(Some((Value::Bulk(rest[..len].to_vec()), used + len + 2)))
        }
        b'*' => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Value::Nil, used)));
            }
            let len = usize::try_from(len).map_err(|_| Error::BadNumber)?;
            if len > MAX_ARRAY || depth >= MAX_DEPTH {
                return Err(Error::TooBig);
            }
            // Not `with_capacity(len)`: the elements may never come.
            let mut items = Vec::new();
            let mut at = used;
            for _ in 0..len {
                match decode_at(&buf[at..], depth + 1)? {
                    None => return Ok(None),
                    Some((v, n)) => {
                        items.push(v);
                        at += n;
                    }
                }
            }
            Ok(Some((Value::Array(items), at)))
        }
        other => Err(Error::BadType(other)),
    }
}

/// The line at the start of `buf` (without `\r\n`) and the bytes it used.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, Error> {
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((&buf[..end], end + 2))),
        None if buf.len() > MAX_LINE + 1 => Err(Error::TooBig),
        None => Ok(None),
    }
}

fn text(line: &[u8]) -> Result<String, Error> {
    std::str::from_utf8(line)
        .map(str::to_string)
        .map_err(|_| Error::NotUtf8)
}

fn number(line: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Error::BadNumber)
}

/// Appends `value` in RESP2 to `out` (for tests, and for anyone who needs
/// to answer like Redis).
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Simple(s) => line_value(out, b'+', s.as_bytes()),
        Value::Error(s) => line_value(out, b'-', s.as_bytes()),
        Value::Int(n) => line_value(out, b':', n.to_string().as_bytes()),
        Value::Bulk(b) => bulk(out, b),
        Value::Array(items) => {
            line_value(out, b'*', items.len().to_string().as_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Value::Nil => out.extend_from_slice(b"$-1\r\n"),
    }
}

fn line_value(out: &mut Vec<u8>, kind: u8, line: &[u8]) {
    out.push(kind);
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    line_value(out, b'$', bytes.len().to_string().as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends the command `args` (an array of bulk strings, the form Redis
/// reads) to `out`: `command(out, &[b"PUBLISH", channel, payload])`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    line_value(out, b'*', args.len().to_string().as_bytes());
    for arg in args {
        bulk(out, arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bulk_of(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_each_type() {
        let cases: Vec<(&[u8], Value)> = vec![
            (b"+OK\r\n", Value::Simple("OK".into())),
            (b"-ERR no\r\n", Value::Error("ERR no".into())),
            (b":-12\r\n", Value::Int(-12)),
            (b"$5\r\nhe\r\no\r\n", Value::Bulk(b"he\r\no".to_vec())),
            (b"$0\r\n\r\n", Value::Bulk(Vec::new())),
            (b"$-1\r\n", Value::Nil),
            (b"*-1\r\n", Value::Nil),
            (
                b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n:1\r\n",
                Value::Array(vec![bulk_of("message"), bulk_of("ch"), Value::Int(1)]),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes), Ok(Some((want, bytes.len()))), "{bytes:?}");
        }
    }

    #[test]
    fn partial_frames_are_none_and_the_rest_is_left() {
        let all = b"*2\r\n$3\r\nabc\r\n:5\r\n+OK\r\n";
        for cut in 0..17 {
            assert_eq!(decode(&all[..cut]), Ok(None), "cut at {cut}");
        }
        let (v, used) = decode(all).unwrap().unwrap();
        assert_eq!(v, Value::Array(vec![bulk_of("abc"), Value::Int(5)]));
        assert_eq!(&all[used..], b"+OK\r\n");
    }

    #[test]
    fn limits_and_garbage_are_errors() {
        assert_eq!(decode(b"?x\r\n"), Err(Error::BadType(b'?')));
        assert_eq!(decode(b":x\r\n"), Err(Error::BadNumber));
        assert_eq!(decode(b"$-2\r\n"), Err(Error::BadNumber));
        assert_eq!(decode(b"$3\r\nabcXY"), Err(Error::BadTerminator));
        let huge = format!("${}\r\n", MAX_BULK + 1);
        assert_eq!(decode(huge.as_bytes()), Err(Error::TooBig));
        let wide = format!("*{}\r\n", MAX_ARRAY + 1);
        assert_eq!(decode(wide.as_bytes()), Err(Error::TooBig));
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert_eq!(decode(deep.as_bytes()), Err(Error::TooBig));
        let long = vec![b'+'; MAX_LINE + 3];
        assert_eq!(decode(&long), Err(Error::TooBig));
        // A claimed length alone allocates nothing: the bytes must come.
        assert_eq!(decode(b"*1000\r\n"), Ok(None));
        assert_eq!(decode(b"$1000000\r\n"), Ok(None));
    }

    #[test]
    fn commands_are_arrays_of_bulks() {
        let mut out = Vec::new();
        command(&mut out, &[b"PUBLISH", b"ch", b"a b"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$3\r\na b\r\n");
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            "[ -~]{0,20}".prop_map(Value::Simple),
            "[ -~]{0,20}".prop_map(Value::Error),
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bulk),
            Just(Value::Nil),
        ];
        leaf.prop_recursive(3, 30, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
        })
    }

    proptest! {
        /// Whatever we encode decodes to the same value, and any prefix of
        /// it is "incomplete", never an error or a different value.
        #[test]
        fn round_trip_at_any_split(values in proptest::collection::vec(value(), 1..4), cut in any::<prop::sample::Index>()) {
            let mut bytes = Vec::new();
            for v in &values {
                encode(v, &mut bytes);
            }
            let cut = cut.index(bytes.len() + 1);
            // Feed the bytes in two pieces, as two reads would.
            let mut buf = bytes[..cut].to_vec();
            let mut got = Vec::new();
            let drain = |buf: &mut Vec<u8>, got: &mut Vec<Value>| {
                while let Some((v, used)) = decode(buf).unwrap() {
                    got.push(v);
                    buf.drain(..used);
                }
            };
            drain(&mut buf, &mut got);
            buf.extend_from_slice(&bytes[cut..]);
            drain(&mut buf, &mut got);
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, values);
        }
    }
}
