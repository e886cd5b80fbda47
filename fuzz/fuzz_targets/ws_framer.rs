//! The server's WebSocket framer, client frames in (src/transport/websocket.rs).
//!
//! Input: byte 0 picks the message limit (0..=255 bytes, small so that
//! "too big" is common), byte 1 seeds the split points and the pauses,
//! the rest is what the client sends (arbitrary bytes, so mostly broken
//! frames; the seeds are valid masked frames). Properties:
//! - the events do not depend on how the input is cut into reads, nor on
//!   the caller pausing after any event and resuming;
//! - the framer never holds more than the limit plus a control frame
//!   (`max_message + 125`), and, when never paused, no input of its own
//!   (`held() == 0`);
//! - a text message is UTF-8; no message is longer than the limit;
//!   replies are a pong (at most 127 bytes) or a close frame, which the
//!   client-side parser reads back;
//! - nothing follows `Closed` or `Fail`, and after them the framer
//!   holds no memory.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use loopchat::transport::websocket::{MAX_CONTROL, Opcode, WsEvent, WsFramer, parse_unmasked};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Reply(Vec<u8>),
    Closed(Option<u16>, Vec<u8>),
    Fail(u16, Vec<u8>),
}

fn own(e: &WsEvent<'_>) -> Ev {
    match *e {
        WsEvent::Text(t) => Ev::Text(t.to_vec()),
        WsEvent::Binary(b) => Ev::Binary(b.to_vec()),
        WsEvent::Reply(r) => Ev::Reply(r.to_vec()),
        WsEvent::Closed { code, reply } => Ev::Closed(code, reply.to_vec()),
        WsEvent::Fail { code, reply } => Ev::Fail(code, reply.to_vec()),
    }
}

/// A small deterministic generator for split points and pauses.
struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// Feeds `input` in reads cut by `rng` (whole if `None`), pausing after
/// events when `pause` is set, and checks the framer after every read.
fn run(max: usize, input: &[u8], mut rng: Option<Rng>, pause: bool) -> Vec<Ev> {
    let mut framer = WsFramer::new(max);
    let mut events: Vec<Ev> = Vec::new();
    let mut pause_rng = Rng(0x9e37_79b9);
    let mut at = 0;
    while at < input.len() {
        let n = match rng.as_mut() {
            Some(r) => (r.next() as usize % 40 + 1).min(input.len() - at),
            None => input.len() - at,
        };
        let mut read = input[at..at + n].to_vec();
        at += n;
        let mut on = |e: WsEvent<'_>| {
            events.push(own(&e));
            if pause && pause_rng.next() % 3 == 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        framer.feed(&mut read, &mut on);
        // The caller resumes before reading again.
        while framer.held() > 0 {
            framer.resume(&mut on);
        }
        let own_bytes = framer.capacity();
        assert!(
            own_bytes <= max + MAX_CONTROL,
            "holds {own_bytes} bytes, limit {max}"
        );
        if framer.is_closed() {
            assert_eq!(framer.capacity(), 0, "closed but holds memory");
        }
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let [a, b, input @ ..] = data else {
        return;
    };
    let max = usize::from(*a);
    let whole = run(max, input, None, false);
    for (i, e) in whole.iter().enumerate() {
        let last = i + 1 == whole.len();
        match e {
            Ev::Text(t) => {
                assert!(std::str::from_utf8(t).is_ok());
                assert!(t.len() <= max);
            }
            Ev::Binary(m) => assert!(m.len() <= max),
            Ev::Reply(r) => {
                assert!(r.len() <= 2 + MAX_CONTROL);
                let (f, used) = parse_unmasked(r).unwrap().unwrap();
                assert_eq!((f.opcode, f.fin, used), (Opcode::Pong, true, r.len()));
            }
            Ev::Closed(_, reply) | Ev::Fail(_, reply) => {
                assert!(last, "events after the close: {whole:?}");
                let (f, used) = parse_unmasked(reply).unwrap().unwrap();
                assert_eq!((f.opcode, used), (Opcode::Close, reply.len()));
            }
        }
    }
    let seed = u32::from(*b) | 0x100;
    assert_eq!(
        run(max, input, Some(Rng(seed)), false),
        whole,
        "split reads"
    );
    assert_eq!(run(max, input, None, true), whole, "paused");
    assert_eq!(
        run(max, input, Some(Rng(seed)), true),
        whole,
        "split and paused"
    );
});
