//! Model-based test of the output path (`loopchat::output`): send queues of
//! spans over one shared pool of broadcast chunks, against the naive model
//! they replace, one `Vec<u8>` per connection holding its own copy of
//! every line.
//!
//! Random sequences of broadcasts (to random subsets of connections, in
//! several streams, so spans merge and fragment), private lines, partial
//! writes (a writer that takes a random number of bytes, vectored or not),
//! cuts (the last line replacing what is owed) and closes. After every
//! step each connection must have received exactly the bytes the model
//! says, in the same order, and the cap must refuse exactly what the model
//! refuses. At the end every queue is drained: all chunks must be freed
//! and no output memory held. A span pointing into a freed (and reused)
//! chunk would show up as wrong bytes.

use std::io::{self, IoSlice, Write};

use loopchat::output::{CHUNK, Pool, SendQueue, Stream};
use proptest::prelude::*;

const CONNS: usize = 4;

/// A socket that takes at most `budget` more bytes, then would block.
struct Socket {
    got: Vec<u8>,
    budget: usize,
    /// Whether it takes several buffers per call (a real `writev`) or
    /// only the first (the `Write` default).
    vectored: bool,
}

impl Write for Socket {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = b.len().min(self.budget);
        self.got.extend_from_slice(&b[..n]);
        self.budget -= n;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.vectored {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            return self.write(first);
        }
        if self.budget == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(self.budget);
            self.got.extend_from_slice(&b[..take]);
            self.budget -= take;
            n += take;
            if take < b.len() {
                break;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The naive queue: a copy of every byte owed, with the same cap rule
/// (everything owed but the longest reply stays within the cap).
struct Model {
    buf: Vec<u8>,
    sent: usize,
    cap: usize,
    longest_end: usize,
    longest_len: usize,
    got: Vec<u8>,
}

impl Model {
    fn new(cap: usize) -> Model {
        Model {
            buf: Vec::new(),
            sent: 0,
            cap,
            longest_end: 0,
            longest_len: 0,
            got: Vec::new(),
        }
    }

    fn owed(&self) -> usize {
        self.buf.len() - self.sent
    }

    fn longest_owed(&self) -> usize {
        let start = self.longest_end.saturating_sub(self.longest_len);
        self.longest_end.saturating_sub(self.sent.max(start))
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        let n = bytes.len();
        if self.owed() + n - self.longest_owed().max(n) > self.cap {
            return false;
        }
        self.buf.extend_from_slice(bytes);
        if n > self.longest_owed() {
            self.longest_end = self.buf.len();
            self.longest_len = n;
        }
        true
    }

    fn write(&mut self, budget: usize) {
        let n = budget.min(self.owed());
        self.got
            .extend_from_slice(&self.buf[self.sent..self.sent + n]);
        self.sent += n;
    }

    /// The rest of a half-written line, then `bytes`.
    fn replace_with(&mut self, bytes: &[u8]) {
        let pending = &self.buf[self.sent..];
        let keep = if self.got.last().is_some_and(|&b| b != b'\n') {
            pending
                .iter()
                .position(|&b| b == b'\n')
                .map_or(pending.len(), |i| i + 1)
        } else {
            0
        };
        self.buf.truncate(self.sent + keep);
        self.buf.extend_from_slice(bytes);
        self.longest_end = 0;
        self.longest_len = 0;
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A line of `len` bytes to the connections in `to` (a bit mask), in
    /// stream `stream`.
    Broadcast {
        stream: u8,
        len: usize,
        to: u8,
    },
    /// A line of the connection's own (a reply, a private line).
    Own {
        conn: usize,
        len: usize,
    },
    Write {
        conn: usize,
        budget: usize,
        vectored: bool,
    },
    Cut {
        conn: usize,
    },
    /// The connection goes; a new one takes its slot.
    Close {
        conn: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 1usize..80, 1u8..16).prop_map(|(stream, len, to)| Op::Broadcast { stream, len, to }),
        2 => (0..CONNS, 1usize..300).prop_map(|(conn, len)| Op::Own { conn, len }),
        4 => (0..CONNS, 0usize..400, any::<bool>())
            .prop_map(|(conn, budget, vectored)| Op::Write { conn, budget, vectored }),
        1 => (0..CONNS).prop_map(|conn| Op::Cut { conn }),
        1 => (0..CONNS).prop_map(|conn| Op::Close { conn }),
    ]
}

/// A line of exactly `len` bytes (newline included), unique to `serial`.
fn line(serial: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{serial}:").into_bytes();
    while v.len() + 1 < len {
        v.push(b'a' + (serial % 26) as u8);
    }
    v.truncate(len.saturating_sub(1));
    v.push(b'\n');
    v
}

fn check(ops: &[Op], cap: usize) {
    let mut pool = Pool::new();
    let mut queues: Vec<SendQueue> = (0..CONNS).map(|_| SendQueue::new(cap)).collect();
    let mut models: Vec<Model> = (0..CONNS).map(|_| Model::new(cap)).collect();
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); CONNS];
    for (serial, op) in ops.iter().enumerate() {
        match *op {
            Op::Broadcast { stream, len, to } => {
                let bytes = line(serial, len);
                let stream = Stream {
                    room: u64::from(stream),
                    dialect: 0,
                };
                let piece = pool.append(stream, &bytes);
                for c in (0..CONNS).filter(|c| to & (1 << c) != 0) {
                    let real = queues[c].push_shared(&mut pool, piece).is_ok();
                    assert_eq!(real, models[c].push(&bytes), "cap verdict, conn {c}");
                }
                pool.settle(piece);
            }
            Op::Own { conn, len } => {
                let bytes = line(serial, len);
                let real = queues[conn].push(&mut pool, &bytes).is_ok();
                assert_eq!(real, models[conn].push(&bytes), "cap verdict, conn {conn}");
            }
            Op::Write {
                conn,
                budget,
                vectored,
            } => {
                let mut sock = Socket {
                    got: Vec::new(),
                    budget,
                    vectored,
                };
                let owed = queues[conn].len();
                queues[conn].write_to(&mut pool, &mut sock).unwrap();
                got[conn].extend_from_slice(&sock.got);
                if vectored {
                    // A real writev is offered everything the socket takes.
                    assert_eq!(sock.got.len(), budget.min(owed), "one flush, conn {conn}");
                }
                // (The one-buffer kind may stop early; the model follows.)
                models[conn].write(sock.got.len());
            }
            Op::Cut { conn } => {
                queues[conn].replace_with(&mut pool, b"! bye\n");
                models[conn].replace_with(b"! bye\n");
            }
            Op::Close { conn } => {
                queues[conn].clear(&mut pool);
                queues[conn] = SendQueue::new(cap);
                models[conn] = Model::new(cap);
                got[conn].clear();
            }
        }
        for c in 0..CONNS {
            assert_eq!(got[c], models[c].got, "bytes received by conn {c}");
            assert_eq!(queues[c].len(), models[c].owed(), "bytes owed by conn {c}");
        }
        if queues.iter().all(SendQueue::is_empty) {
            assert_eq!(pool.live_chunks(), 0, "nothing owed, nothing held");
        }
    }
    for c in 0..CONNS {
        let mut sock = Socket {
            got: Vec::new(),
            budget: usize::MAX,
            vectored: true,
        };
        queues[c].write_to(&mut pool, &mut sock).unwrap();
        got[c].extend_from_slice(&sock.got);
        models[c].write(usize::MAX);
        assert_eq!(got[c], models[c].got, "everything, in order, conn {c}");
        assert!(queues[c].is_empty());
    }
    assert_eq!(pool.live_chunks(), 0, "every chunk freed");
    assert_eq!(pool.held(), 0, "no output memory held");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Spans over a shared pool deliver exactly what one copy per
    /// connection would, with a cap that never bites...
    #[test]
    fn spans_deliver_what_copies_would(ops in prop::collection::vec(op(), 1..200)) {
        check(&ops, 1 << 20);
    }

    /// ...and with a tight one, which must refuse exactly the same pushes.
    #[test]
    fn spans_keep_the_caps_verdicts(ops in prop::collection::vec(op(), 1..200), cap in 64usize..600) {
        check(&ops, cap);
    }
}

/// Many broadcasts in a row to a reader that does not read: its queue
/// owes one span per chunk they filled, not one per line; and a reader that
/// is skipped (the sender: no echo) owes one span per line it did get.
#[test]
fn a_rooms_lines_owed_in_a_row_are_one_span_per_chunk() {
    let mut pool = Pool::new();
    let mut reader = SendQueue::new(usize::MAX);
    let mut sender = SendQueue::new(usize::MAX);
    let stream = Stream {
        room: 1,
        dialect: 0,
    };
    let lines = 2_000;
    for i in 0..lines {
        let piece = pool.append(stream, &line(i, 50));
        reader.push_shared(&mut pool, piece).unwrap();
        if i % 2 == 0 {
            sender.push_shared(&mut pool, piece).unwrap();
        }
        pool.settle(piece);
    }
    let chunks = (lines * 50).div_ceil(CHUNK);
    assert!(
        reader.spans() <= chunks,
        "{} spans for {chunks} chunks",
        reader.spans()
    );
    assert_eq!(sender.spans(), lines / 2);
    assert_eq!(pool.live_chunks(), chunks);
    reader.clear(&mut pool);
    sender.clear(&mut pool);
    assert_eq!(pool.live_chunks(), 0);
}
