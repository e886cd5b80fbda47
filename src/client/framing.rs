//! Line framing for the client's two byte streams (the socket and a piped
//! stdin). Writing uses the server's [`crate::output::SendQueue`].
//!
//! Unlike the server's `LineFramer`, which refuses an over-long line, the
//! client must still show it: a server that never sends a newline must not
//! make the client grow without limit, so an over-long line is cut at
//! [`MAX_LINE`] bytes, handed out marked as truncated, and the rest of it is
//! skipped up to the next newline.

use std::collections::VecDeque;

/// Longest line the client keeps, in bytes. Generous, because a `/who`
/// answer on a busy server is one long line.
pub const MAX_LINE: usize = 64 * 1024;

/// One line out of a [`LineReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The bytes without the line ending (`\n` or `\r\n`).
    pub bytes: Vec<u8>,
    /// The line was longer than the limit and this is only its start.
    pub truncated: bool,
}

/// Splits a byte stream into lines, keeping at most `max` bytes of a line.
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    max: usize,
    /// Skipping the tail of a line that was already handed out cut short.
    discarding: bool,
    lines: VecDeque<RawLine>,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader::new(MAX_LINE)
    }
}

impl LineReader {
    pub fn new(max: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            max,
            discarding: false,
            lines: VecDeque::new(),
        }
    }

    /// Feeds bytes in; complete lines become available from [`Self::next_line`].
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, ends) = match newline {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            data = rest;
            if self.discarding {
                if ends {
                    self.discarding = false;
                }
                continue;
            }
            let room = self.max - self.buf.len();
            if chunk.len() > room {
                self.buf.extend_from_slice(&chunk[..room]);
                let bytes = std::mem::take(&mut self.buf);
                self.lines.push_back(RawLine {
                    bytes,
                    truncated: true,
                });
                self.discarding = !ends;
                continue;
            }
            self.buf.extend_from_slice(chunk);
            if ends {
                let mut bytes = std::mem::take(&mut self.buf);
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                self.lines.push_back(RawLine {
                    bytes,
                    truncated: false,
                });
            }
        }
    }

    pub fn next_line(&mut self) -> Option<RawLine> {
        self.lines.pop_front()
    }

    /// True if complete lines are waiting.
    pub fn has_line(&self) -> bool {
        !self.lines.is_empty()
    }

    /// At end of stream: the unterminated last line, if any.
    pub fn finish(&mut self) -> Option<RawLine> {
        if self.discarding || self.buf.is_empty() {
            self.discarding = false;
            self.buf.clear();
            return None;
        }
        let mut bytes = std::mem::take(&mut self.buf);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        Some(RawLine {
            bytes,
            truncated: false,
        })
    }

    /// Forgets everything (after a reconnect the old stream's half line is
    /// meaningless).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.lines.clear();
        self.discarding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(r: &mut LineReader) -> Vec<(String, bool)> {
        std::iter::from_fn(|| r.next_line())
            .map(|l| (String::from_utf8_lossy(&l.bytes).into_owned(), l.truncated))
            .collect()
    }

    #[test]
    fn splits_lines_across_pushes() {
        let mut r = LineReader::new(100);
        r.push(b"he");
        assert!(!r.has_line());
        r.push(b"llo\r\nwor");
        r.push(b"ld\n\n");
        assert_eq!(
            lines(&mut r),
            [
                ("hello".into(), false),
                ("world".into(), false),
                ("".into(), false)
            ]
        );
        r.push(b"tail");
        assert_eq!(r.finish().map(|l| l.bytes), Some(b"tail".to_vec()));
    }

    #[test]
    fn bounds_a_line_without_newline() {
        let mut r = LineReader::new(8);
        for _ in 0..1000 {
            r.push(b"abcdefg");
        }
        assert!(r.buf.len() <= 8);
        r.push(b"xyz\nok\n");
        assert_eq!(
            lines(&mut r),
            [("abcdefga".into(), true), ("ok".into(), false)]
        );
        // A line exactly at the limit is whole.
        r.push(b"12345678\n");
        assert_eq!(lines(&mut r), [("12345678".into(), false)]);
    }
}
