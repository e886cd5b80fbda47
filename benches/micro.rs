//! Micro benchmarks of the server's pure hot paths (criterion):
//! `cargo bench --bench micro`.
//!
//! - the line framer: bytes/s through `LineFramer::push` + `next_frame`;
//! - one chat line from one user to 1,000 others: `Hub::handle_frame`
//!   formats it once and the outbox queues it for 1,000 `SendQueue`s (then
//!   the queues are emptied into a sink, as the loop's writes would): once
//!   as the loop does it (the bytes stored once in a `Pool`, a span for each
//!   recipient: `..._recipients`), and once copying the bytes into each
//!   queue, as loopchat did before issue 11 (`..._recipients_copied`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use loopchat::chat::ConnId;
use loopchat::framing::{Frame, LineFramer};
use loopchat::hub::{Hub, Outbox};
use loopchat::output::{Pool, SendQueue, Stream};
use std::hint::black_box;

fn framer(c: &mut Criterion) {
    // 64 KiB of 64-byte lines (63 bytes of text and a newline), pushed in
    // 1,500-byte pieces like TCP segments, so lines straddle pushes.
    let line = [b"b1:2:3:".as_slice(), &[b'x'; 56], b"\n"].concat();
    let input: Vec<u8> = line.iter().copied().cycle().take(64 * 1024).collect();
    let mut g = c.benchmark_group("framer");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("64KiB_of_64B_lines", |b| {
        let mut f = LineFramer::new(4096);
        b.iter(|| {
            let mut lines = 0usize;
            for piece in input.chunks(1500) {
                f.push(black_box(piece));
                while let Some(frame) = f.next_frame() {
                    if let Frame::Line(l) = frame {
                        lines += l.len();
                    }
                }
            }
            black_box(lines)
        })
    });
    g.finish();
}

/// The loop's outbox, reduced to its queues and the shared pool.
struct Queues {
    queues: Vec<SendQueue>,
    pool: Pool,
    /// Store broadcasts once (the loop's way), or copy them into each queue.
    shared: bool,
}

impl Outbox for Queues {
    fn send(&mut self, to: ConnId, line: &[u8]) {
        if let Some(q) = self.queues.get_mut(to) {
            let _ = q.push(&mut self.pool, line);
        }
    }
    fn send_many(&mut self, stream: Stream, bytes: &[u8], to: impl Iterator<Item = ConnId>) {
        if !self.shared {
            for conn in to {
                self.send(conn, bytes);
            }
            return;
        }
        let piece = self.pool.append(stream, bytes);
        for conn in to {
            if let Some(q) = self.queues.get_mut(conn) {
                let _ = q.push_shared(&mut self.pool, piece);
            }
        }
        self.pool.settle(piece);
    }
    fn close(&mut self, _conn: ConnId) {}
}

impl Queues {
    fn drain(&mut self) {
        for q in &mut self.queues {
            let _ = q.write_to(&mut self.pool, &mut std::io::sink());
        }
    }
}

fn broadcast(c: &mut Criterion) {
    const USERS: usize = 1001;
    let mut g = c.benchmark_group("room");
    g.throughput(Throughput::Elements((USERS - 1) as u64));
    for (name, shared) in [
        ("one_64B_line_to_1000_recipients", true),
        ("one_64B_line_to_1000_recipients_copied", false),
    ] {
        let mut room = Hub::new(4096);
        let mut out = Queues {
            queues: (0..USERS).map(|_| SendQueue::new(1 << 20)).collect(),
            pool: Pool::new(),
            shared,
        };
        for id in 0..USERS {
            room.connected(id, &mut out);
            let nick = format!("user{id}");
            room.handle_frame(id, Frame::Line(nick.as_bytes()), &mut out);
        }
        out.drain();
        assert_eq!(room.joined_count(), USERS);
        let text = [b"b1:2:3:".as_slice(), &[b'x'; 57]].concat();
        g.bench_function(name, |b| {
            b.iter(|| {
                room.handle_frame(0, Frame::Line(black_box(&text)), &mut out);
                out.drain();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, framer, broadcast);
criterion_main!(benches);
