//! The server's line framer, telnet filtering included (src/framing.rs).
//!
//! Input: byte 0 picks the line limit (1..=64, small so that over-long
//! lines are common), byte 1 the chunk size, the rest is the stream.
//! Properties:
//! - no line is longer than the limit, and none holds a `\n`;
//! - after the frames are drained, the framer holds at most limit + 1
//!   bytes (a line that may still end in `\r\n`);
//! - the telnet answers are whole `IAC verb option` triples;
//! - splitting the stream at other points changes nothing: the same
//!   frames and the same answers as one push of the whole stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopchat::framing::{Frame, LineFramer};

const IAC: u8 = 255;

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Line(Vec<u8>),
    TooLong,
}

fn run(max: usize, stream: &[u8], chunk: usize) -> (Vec<Out>, Vec<u8>) {
    let mut framer = LineFramer::new(max);
    let mut frames = Vec::new();
    let mut replies = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        framer.push(piece);
        replies.extend(framer.take_replies());
        while let Some(frame) = framer.next_frame() {
            match frame {
                Frame::Line(line) => {
                    assert!(line.len() <= max, "line of {} > {max}", line.len());
                    assert!(!line.contains(&b'\n'));
                    frames.push(Out::Line(line.to_vec()));
                }
                Frame::TooLong => frames.push(Out::TooLong),
            }
        }
        assert!(
            framer.buffered() <= max + 1,
            "holds {} bytes, limit {max}",
            framer.buffered()
        );
    }
    (frames, replies)
}

fuzz_target!(|data: &[u8]| {
    let [a, b, stream @ ..] = data else {
        return;
    };
    let max = usize::from(*a % 64) + 1;
    let chunk = usize::from(*b) + 1;
    let (frames, replies) = run(max, stream, stream.len());
    assert_eq!(replies.len() % 3, 0);
    for r in replies.chunks(3) {
        assert_eq!(r[0], IAC);
        assert!((251..=254).contains(&r[1]), "verb {}", r[1]);
    }
    if !replies.is_empty() {
        let mut f = LineFramer::new(max);
        f.push(stream);
        assert!(f.speaks_telnet());
    }
    let (frames2, replies2) = run(max, stream, chunk);
    assert_eq!(frames, frames2, "chunk {chunk}");
    assert_eq!(replies, replies2, "chunk {chunk}");
    let (frames1, replies1) = run(max, stream, 1);
    assert_eq!(frames, frames1, "byte by byte");
    assert_eq!(replies, replies1, "byte by byte");
});
