//! The message payload: who sent it, its sequence number and when it was
//! meant to be sent.
//!
//! Carrying the intended send time inside the message means a receiver needs
//! no lookup to compute the corrected latency, and carrying the sender id and
//! sequence number lets every receiver check loss, duplicates and order on
//! its own. The text is plain ASCII (`b<sender>:<seq>:<intended_ns>:` padded
//! with `x`) so any chat server relays it unchanged.

use std::io::Write;

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the sending client among the senders (0-based).
    pub sender: u32,
    /// Per-sender sequence number, from 0.
    pub seq: u64,
    /// Intended send time, in nanoseconds since the run started.
    pub intended_ns: u64,
}

/// Appends the payload for `stamp` (padded to `size` bytes when the header is
/// shorter) and a newline to `out`.
pub fn encode(stamp: Stamp, size: usize, out: &mut Vec<u8>) {
    encode_text(stamp, size, out);
    out.push(b'\n');
}

/// The payload alone, without the newline (a dialect frames it).
pub fn encode_text(stamp: Stamp, size: usize, out: &mut Vec<u8>) {
    let start = out.len();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "b{}:{}:{}:",
        stamp.sender, stamp.seq, stamp.intended_ns
    );
    let written = out.len() - start;
    if written < size {
        out.resize(start + size, b'x');
    }
}

/// The length of the header alone for the largest figures a run can produce;
/// `--size` below this still works, the payload is just the header.
pub const MAX_HEADER_LEN: usize = 1 + 10 + 1 + 20 + 1 + 20 + 1;

/// Reads a payload back. `None` when `text` is not one of ours (another user
/// chatting on the same server, or a mangled line).
pub fn decode(text: &[u8]) -> Option<Stamp> {
    let rest = text.strip_prefix(b"b")?;
    let (sender, rest) = number(rest)?;
    let (seq, rest) = number(rest)?;
    let (intended_ns, _) = number(rest)?;
    Some(Stamp {
        sender: u32::try_from(sender).ok()?,
        seq,
        intended_ns,
    })
}

/// Parses decimal digits up to a `:` and returns the value and what follows
/// the colon.
fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    let colon = s.iter().position(|&b| b == b':')?;
    if colon == 0 || colon > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &s[..colon] {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((v, &s[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let stamp = Stamp {
            sender: 3,
            seq: 12345,
            intended_ns: 987_654_321,
        };
        let mut out = Vec::new();
        encode(stamp, 64, &mut out);
        assert_eq!(out.len(), 65);
        assert_eq!(out.last(), Some(&b'\n'));
        assert!(out.starts_with(b"b3:12345:987654321:xxx"));
        assert_eq!(decode(&out[..64]), Some(stamp));
    }

    #[test]
    fn short_size_keeps_the_header() {
        let stamp = Stamp {
            sender: 0,
            seq: u64::MAX,
            intended_ns: u64::MAX,
        };
        let mut out = Vec::new();
        encode(stamp, 4, &mut out);
        assert!(out.len() <= MAX_HEADER_LEN + 1);
        assert_eq!(decode(&out[..out.len() - 1]), Some(stamp));
    }

    #[test]
    fn foreign_text_is_not_a_payload() {
        for text in [
            &b"hello"[..],
            b"b",
            b"b1:2:",
            b"bx:1:2:",
            b"b1::2:",
            b"b99999999999:1:2:",
            b"b1:99999999999999999999999:2:",
        ] {
            assert_eq!(decode(text), None, "{:?}", String::from_utf8_lossy(text));
        }
    }
}
