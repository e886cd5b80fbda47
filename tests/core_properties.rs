//! Property test over the socket-free chat (`LineFramer` + `Hub`: the chat
//! core and the line dialect): arbitrary interleavings of connect / partial
//! bytes / disconnect for several connections, moving between rooms.
//! Invariants checked after every step:
//! - nothing panics;
//! - the core's nickname index, its rooms and its members agree;
//! - no framer holds more than one line's worth of bytes;
//! - every chat line reaches every other user in the sender's room exactly
//!   once, in order, and never its sender, a user in another room, or an
//!   unjoined connection;
//! - all of it with `--quiet-joins-above` off, 0, 1 or 2 (a quiet joiner's
//!   first line is revealed to IRC users only: line users get the line
//!   alone).
//!
//! Besides, `fixed_seed_transcript` runs one long sequence from a fixed seed
//! and compares everything each connection received, byte for byte, with
//! `tests/transcripts/core_properties_seed.txt`. After an intended change of
//! output: `LOOPCHAT_BLESS=1 cargo test --test core_properties`, then review
//! `git diff tests/transcripts/`.

mod golden;

use std::collections::HashMap;

use loopchat::chat::{ConnId, LeaveReason};
use loopchat::framing::{Frame, LineFramer};
use loopchat::hub::{Hub, Outbox};
use proptest::prelude::*;

const CONNS: usize = 4;
const MAX_LINE: usize = 40;

#[derive(Default)]
struct Mailbox {
    /// Complete lines received by each connection, oldest first.
    lines: HashMap<ConnId, Vec<String>>,
    closed: Vec<ConnId>,
}

impl Outbox for Mailbox {
    fn send(&mut self, to: ConnId, bytes: &[u8]) {
        assert!(bytes.ends_with(b"\n"), "every send is whole lines");
        let text = std::str::from_utf8(bytes).expect("the server sends UTF-8");
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "control character relayed: {text:?}"
        );
        let inbox = self.lines.entry(to).or_default();
        inbox.extend(text.lines().map(str::to_string));
    }
    fn close(&mut self, conn: ConnId) {
        self.closed.push(conn);
    }
}

#[derive(Debug, Clone)]
enum Step {
    Connect(usize),
    /// Bytes arriving in one or more reads.
    Bytes(usize, Vec<Vec<u8>>),
    Disconnect(usize),
}

/// Pieces that, glued together, make nicknames, chat, commands and junk.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"ann".to_vec()),
        Just(b"bob".to_vec()),
        Just(b"Ann".to_vec()),
        Just(b"hello ".to_vec()),
        Just(b"/nick ".to_vec()),
        Just(b"/msg ann ".to_vec()),
        Just(b"/me ".to_vec()),
        Just(b"/who".to_vec()),
        Just(b"/quit".to_vec()),
        Just(b"//".to_vec()),
        Just(b"\x1b[1m".to_vec()),
        Just(vec![0xc3]),
        Just("é".as_bytes().to_vec()),
        Just(vec![0xff, 0xfb, 0x01]),
        Just(b"x".repeat(25)),
        Just(b" ".to_vec()),
    ]
}

/// Whole lines a user might type: nicknames, chat, commands.
fn typed_line() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("ann"),
        Just("bob"),
        Just("Cy"),
        Just("dee"),
        Just("hello"),
        Just("hi there"),
        Just("//slash"),
        Just("/me waves"),
        Just("/who"),
        Just("/msg ann yo"),
        Just("/nick eve"),
        Just("/quit"),
    ]
}

/// Lines that move users between rooms (kept apart from `typed_line` so the
/// fixed-seed transcript, recorded before rooms existed, stays as it was).
fn room_line() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("/join #b"),
        Just("/join #B"),
        Just("/join #lobby"),
        Just("/rooms"),
        Just("/topic hi"),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    steps_from(typed_line().boxed())
}

/// `step()` with room moves among the typed lines.
fn step_with_rooms() -> impl Strategy<Value = Step> {
    steps_from(prop_oneof![3 => typed_line(), 1 => room_line()].boxed())
}

fn steps_from(lines: BoxedStrategy<&'static str>) -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..CONNS).prop_map(Step::Connect),
        // A typed line, cut at a random point into two reads.
        8 => (0..CONNS, lines, any::<bool>(), 0usize..12).prop_map(|(c, line, crlf, cut)| {
            let mut bytes = line.as_bytes().to_vec();
            bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            let cut = cut.min(bytes.len());
            Step::Bytes(c, vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()])
        }),
        // Junk and fragments, which may leave a partial line behind.
        2 => (0..CONNS, proptest::collection::vec(piece(), 1..6))
            .prop_map(|(c, ps)| Step::Bytes(c, vec![ps.concat()])),
        1 => (0..CONNS).prop_map(Step::Disconnect),
    ]
}

/// What the room should do with a line from a joined user, if it is chat.
fn expected_chat(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    if text.trim_matches([' ', '\t']).is_empty()
        || text.chars().any(|c| c.is_control() && c != '\t')
    {
        return None;
    }
    match text.strip_prefix('/') {
        Some(rest) if rest.starts_with('/') => Some(rest.to_string()),
        Some(_) => None,
        None => Some(text.to_string()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn core_invariants(
        steps in proptest::collection::vec(step_with_rooms(), 1..60),
        quiet_above in proptest::option::of(0usize..3),
    ) {
        let mut room = Hub::new(MAX_LINE);
        room.set_quiet_joins_above(quiet_above);
        let mut out = Mailbox::default();
        let mut framers: HashMap<usize, LineFramer> = HashMap::new();

        for step in steps {
            match step {
                Step::Connect(c) => {
                    if framers.contains_key(&c) { continue; }
                    framers.insert(c, LineFramer::new(MAX_LINE));
                    room.connected(c, &mut out);
                }
                Step::Disconnect(c) => {
                    if framers.remove(&c).is_some() {
                        room.disconnected(c, &LeaveReason::Closed, &mut out);
                    }
                }
                Step::Bytes(c, reads) => for bytes in reads {
                    let conns: Vec<usize> = framers.keys().copied().collect();
                    let Some(framer) = framers.get_mut(&c) else { continue };
                    framer.push(&bytes);
                    while let Some(framer) = framers.get_mut(&c) {
                        let line = match framer.next_frame() {
                            None => break,
                            Some(Frame::TooLong) => None,
                            Some(Frame::Line(l)) => Some(l.to_vec()),
                        };
                        // Who is here before the line, and what each has had.
                        let sender_nick = room.nick(c).map(str::to_string);
                        let home = |k: ConnId| room.core().rooms_of(k).next().map(str::to_ascii_lowercase);
                        let sender_room = home(c);
                        let joined: Vec<ConnId> = room
                            .users()
                            .map(|(id, _)| id)
                            .filter(|&id| home(id) == sender_room)
                            .collect();
                        let before: HashMap<ConnId, usize> = conns.iter()
                            .map(|&k| (k, out.lines.get(&k).map_or(0, Vec::len)))
                            .collect();
                        match &line {
                            Some(l) => room.handle_frame(c, Frame::Line(l), &mut out),
                            None => room.handle_frame(c, Frame::TooLong, &mut out),
                        }
                        let chat = match (&sender_nick, &line) {
                            (Some(nick), Some(l)) => expected_chat(l).map(|t| format!("[{nick}] {t}")),
                            _ => None,
                        };
                        if let Some(want) = chat {
                            let others: Vec<ConnId> = joined.iter().copied().filter(|&k| k != c).collect();
                            for &k in &conns {
                                let new = &out.lines.get(&k).map_or(&[][..], |v| &v[before[&k]..]);
                                if others.contains(&k) {
                                    prop_assert_eq!(new.to_vec(), vec![want.clone()], "recipient #{}", k);
                                } else if k == c {
                                    prop_assert!(new.iter().all(|l| !l.starts_with('[')), "echo: {:?}", new);
                                } else {
                                    prop_assert!(new.is_empty(), "unjoined #{} got {:?}", k, new);
                                }
                            }
                        }
                        if out.closed.contains(&c) {
                            break;
                        }
                    }
                    if out.closed.contains(&c) {
                        framers.remove(&c);
                        out.closed.retain(|&k| k != c);
                    }
                },
            }
            prop_assert!(room.check_consistency().is_ok(), "{:?}", room.check_consistency());
            for f in framers.values() {
                prop_assert!(f.buffered() <= MAX_LINE + 1, "framer holds {}", f.buffered());
            }
            // Nobody who is not connected is in the room.
            for (id, _) in room.users() {
                prop_assert!(framers.contains_key(&id));
            }
        }
    }
}

/// A fixed-seed sequence of the same steps, 300 long; the whole per-user
/// output is a golden transcript (see the module header). The steps are in
/// the transcript too, so a change in how proptest generates them shows as
/// a change of input, not a puzzling change of output.
#[test]
fn fixed_seed_transcript() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let steps = proptest::collection::vec(step(), 300)
        .new_tree(&mut runner)
        .expect("a sequence")
        .current();
    let mut s = golden::Script::new(MAX_LINE);
    for step in steps {
        match step {
            Step::Connect(c) if !s.is_open(c) => s.connect(c),
            Step::Connect(_) => {}
            Step::Disconnect(c) if s.is_open(c) => s.gone(c, LeaveReason::Closed),
            Step::Disconnect(_) => {}
            Step::Bytes(c, reads) => {
                for bytes in reads {
                    if s.is_open(c) {
                        s.send_bytes(c, &bytes);
                    }
                }
            }
        }
        assert!(s.room.check_consistency().is_ok());
    }
    golden::check(
        "core_properties_seed",
        &s.transcript("core_properties: a fixed-seed sequence (seed [7; 32], 300 steps)"),
    );
}
