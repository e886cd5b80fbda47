//! Decoding the terminal's key bytes.
//!
//! The full-screen interface reads fd 0 itself, when the poll says it is
//! readable, and decodes the bytes here. crossterm's own reader was tried
//! first, but it has a private edge-triggered epoll and reads 1 KiB per
//! wake-up: a paste longer than that left the rest in the kernel until the
//! next key press. Reading ourselves until the descriptor is drained avoids
//! that and keeps the terminal one plain source of the one `Poll`.
//!
//! Only what the line editor uses is recognised: text, control keys, Enter,
//! Backspace, and the usual CSI/SS3 sequences for arrows, Home/End,
//! Delete and PageUp/PageDown (xterm, VT220, rxvt and tmux forms).

/// One key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    /// Ctrl with a letter (`'a'..='z'`).
    Ctrl(char),
    Enter,
    Backspace,
    Delete,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    PageUp,
    PageDown,
    Tab,
    Esc,
    /// A sequence or byte that means nothing here.
    Unknown,
}

/// Longest escape sequence kept while waiting for its end; anything longer
/// is dropped as garbage.
const MAX_SEQ: usize = 32;

/// Turns bytes into keys, keeping an incomplete sequence for the next read.
#[derive(Debug, Default)]
pub struct KeyDecoder {
    pending: Vec<u8>,
}

impl KeyDecoder {
    pub fn new() -> KeyDecoder {
        KeyDecoder::default()
    }

    /// Decodes `bytes`. `more` says the read filled its buffer, so a lone
    /// ESC at the end may be the start of a sequence still to come; otherwise
    /// it is the Esc key.
    pub fn feed(&mut self, bytes: &[u8], more: bool, out: &mut Vec<Key>) {
        self.pending.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < buf.len() {
            match decode_one(&buf[i..], more) {
                Some((key, used)) => {
                    if let Some(k) = key {
                        out.push(k);
                    }
                    i += used;
                }
                None => {
                    // Incomplete: keep it, unless it is too long to be real.
                    if buf.len() - i <= MAX_SEQ {
                        self.pending = buf[i..].to_vec();
                    }
                    break;
                }
            }
        }
    }
}

/// Decodes the key at the start of `b`: `Some((key, bytes used))`, or `None`
/// if `b` is an incomplete sequence.
fn decode_one(b: &[u8], more: bool) -> Option<(Option<Key>, usize)> {
    let first = b[0];
    let key = match first {
        0x1b => return decode_escape(b, more),
        b'\r' | b'\n' => Key::Enter,
        0x7f | 0x08 => Key::Backspace,
        b'\t' => Key::Tab,
        0x01..=0x1a => Key::Ctrl((first + 0x60) as char),
        0x00 | 0x1c..=0x1f => Key::Unknown,
        0x20..=0x7e => Key::Char(first as char),
        _ => return decode_utf8(b),
    };
    Some((Some(key), 1))
}

fn decode_utf8(b: &[u8]) -> Option<(Option<Key>, usize)> {
    let len = match b[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Some((Some(Key::Unknown), 1)),
    };
    if b.len() < len {
        // Could still be valid once the rest arrives.
        if b[1..].iter().all(|&c| c & 0xc0 == 0x80) {
            return None;
        }
        return Some((Some(Key::Unknown), 1));
    }
    match std::str::from_utf8(&b[..len])
        .ok()
        .and_then(|s| s.chars().next())
    {
        Some(c) => Some((Some(Key::Char(c)), len)),
        None => Some((Some(Key::Unknown), 1)),
    }
}

fn decode_escape(b: &[u8], more: bool) -> Option<(Option<Key>, usize)> {
    let Some(&second) = b.get(1) else {
        return if more {
            None
        } else {
            Some((Some(Key::Esc), 1))
        };
    };
    match second {
        b'[' => {
            // CSI: parameters 0x30-0x3f, intermediates 0x20-0x2f, a final byte.
            let rest = &b[2..];
            let end = rest.iter().position(|&c| !(0x20..=0x3f).contains(&c))?;
            let fin = rest[end];
            let used = 2 + end + 1;
            if !(0x40..=0x7e).contains(&fin) {
                return Some((Some(Key::Unknown), used));
            }
            let params = std::str::from_utf8(&rest[..end]).unwrap_or("");
            let first_param = params.split(';').next().unwrap_or("");
            let key = match fin {
                b'A' => Key::Up,
                b'B' => Key::Down,
                b'C' => Key::Right,
                b'D' => Key::Left,
                b'H' => Key::Home,
                b'F' => Key::End,
                b'~' => match first_param {
                    "1" | "7" => Key::Home,
                    "4" | "8" => Key::End,
                    "3" => Key::Delete,
                    "5" => Key::PageUp,
                    "6" => Key::PageDown,
                    _ => Key::Unknown,
                },
                _ => Key::Unknown,
            };
            Some((Some(key), used))
        }
        b'O' => {
            let &third = b.get(2)?;
            let key = match third {
                b'A' => Key::Up,
                b'B' => Key::Down,
                b'C' => Key::Right,
                b'D' => Key::Left,
                b'H' => Key::Home,
                b'F' => Key::End,
                b'M' => Key::Enter,
                _ => Key::Unknown,
            };
            Some((Some(key), 3))
        }
        // ESC before an ordinary key (Alt+key, or Esc typed quickly before
        // it): the Esc, then the key decoded on its own.
        _ => Some((Some(Key::Esc), 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(chunks: &[&[u8]]) -> Vec<Key> {
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, false, &mut out);
        }
        out
    }

    #[test]
    fn text_and_controls() {
        assert_eq!(
            keys(&[b"a\xc3\xa9\r\x7f\x08\x17\x03\t"]),
            [
                Key::Char('a'),
                Key::Char('é'),
                Key::Enter,
                Key::Backspace,
                Key::Backspace,
                Key::Ctrl('w'),
                Key::Ctrl('c'),
                Key::Tab
            ]
        );
    }

    #[test]
    fn sequences() {
        assert_eq!(
            keys(&[b"\x1b[A\x1b[B\x1b[C\x1b[D\x1b[H\x1b[F\x1bOH\x1bOF\x1b[1~\x1b[4~\x1b[3~\x1b[5~\x1b[6~"]),
            [
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End,
                Key::Delete,
                Key::PageUp,
                Key::PageDown
            ]
        );
        // Modified arrows act as arrows; unknown sequences are skipped whole.
        assert_eq!(
            keys(&[b"\x1b[1;5C\x1b[99zq"]),
            [Key::Right, Key::Unknown, Key::Char('q')]
        );
    }

    #[test]
    fn split_reads() {
        assert_eq!(
            keys(&[b"\x1b[", b"5~", b"\xe2\x9c", b"\x93"]),
            [Key::PageUp, Key::Char('✓')]
        );
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        d.feed(b"x\x1b", true, &mut out);
        assert_eq!(out, [Key::Char('x')]);
        d.feed(b"[D", false, &mut out);
        assert_eq!(out, [Key::Char('x'), Key::Left]);
    }

    #[test]
    fn lone_escape_and_garbage() {
        assert_eq!(keys(&[b"\x1b"]), [Key::Esc]);
        assert_eq!(keys(&[b"\x1bb"]), [Key::Esc, Key::Char('b')]);
        assert_eq!(
            keys(&[b"\xff\x80a"]),
            [Key::Unknown, Key::Unknown, Key::Char('a')]
        );
        // An endless CSI is dropped, not kept.
        let mut long = b"\x1b[".to_vec();
        long.extend(std::iter::repeat_n(b'1', 100));
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        d.feed(&long, false, &mut out);
        assert!(d.pending.is_empty());
    }

    #[test]
    fn a_long_paste_is_decoded_whole() {
        let paste = "y".repeat(3000);
        assert_eq!(keys(&[paste.as_bytes()]).len(), 3000);
    }
}
