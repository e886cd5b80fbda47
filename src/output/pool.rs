//! The shared store of broadcast bytes, and the count of every byte that
//! output holds.
//!
//! A line said in a room of N members is rendered once per dialect and
//! appended here **once**; each recipient's [`SendQueue`] then holds only a
//! small span (which chunk, from where to where) pointing at those bytes.
//!
//! Broadcasts are appended to **streams**: one per room and dialect (and one
//! per dialect for events that go to several rooms at once). A stream writes
//! into its *tail* chunk until the next piece does not fit, then starts a
//! new one. Because a room's lines sit side by side in its stream, a member
//! that owes several of them holds one span for all of them: the span is
//! simply extended (see [`SendQueue::push_shared`]).
//!
//! A chunk counts the spans that point into it (`refs`). When a span is
//! written out or dropped, its chunk's count goes down, and the chunk is
//! freed as soon as it reaches zero, even if it is still its stream's tail
//! (the stream then starts a fresh one next time). So a slow reader keeps
//! alive only the chunks it still owes, and once every member has been
//! written to, the room holds no memory at all.
//!
//! Spans name chunks by index, never by pointer, so nothing here is unsafe,
//! and a freed chunk's slot can be reused: that a span never outlives its
//! chunk is what the model-based test in `tests/output_model.rs` checks.
//!
//! The pool also keeps the tally of bytes held for output in total (its
//! chunks, and every queue's own bytes), which `--max-output-memory` caps.
//!
//! [`SendQueue`]: super::SendQueue
//! [`SendQueue::push_shared`]: super::SendQueue::push_shared

use std::collections::HashMap;

use slab::Slab;

/// Bytes per chunk. Large enough that a room's busy second fits in a few
/// (one span each per lagging reader), small enough that a quiet room's
/// last lines do not pin much.
pub const CHUNK: usize = 16 * 1024;
/// Free chunks kept for reuse, so a steady broadcast load does not call
/// `malloc` for every turn; given back by [`Pool::drop_spares`].
const SPARE_CHUNKS: usize = 16;

/// Which stream a broadcast is appended to: a room (0 for "no single
/// room") and a dialect's rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stream {
    pub room: u64,
    pub dialect: u8,
}

/// Where one broadcast's bytes lie: `chunk[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub(super) chunk: u32,
    pub(super) start: u32,
    pub(super) end: u32,
}

impl Piece {
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

#[derive(Debug)]
struct Chunk {
    bytes: Vec<u8>,
    /// Spans pointing into this chunk.
    refs: u32,
    /// The stream whose tail this is, while it still takes appends.
    tail_of: Option<Stream>,
    /// Allocation order: how old the bytes in it are.
    seq: u64,
}

/// The chunks of every stream, and the output memory tally.
#[derive(Debug, Default)]
pub struct Pool {
    chunks: Slab<Chunk>,
    tails: HashMap<Stream, u32>,
    spare: Vec<Vec<u8>>,
    /// Bytes allocated by live chunks.
    chunk_bytes: usize,
    /// Bytes allocated by queues for their own bytes (replies, private
    /// lines), reported by [`SendQueue`](super::SendQueue).
    own_bytes: usize,
    /// Chunks ever allocated: the next chunk's `seq`.
    clock: u64,
    /// Bytes given back to the allocator since [`take_released`]
    /// (the loop trims the heap after a burst, see `Server::trim_heap_if_quiet`).
    ///
    /// [`take_released`]: Self::take_released
    released: usize,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Appends one broadcast's bytes to `stream`, once, for spans to point
    /// at. The piece must be handed to its recipients' queues and then
    /// [`settle`](Self::settle)d, in the same call.
    pub fn append(&mut self, stream: Stream, bytes: &[u8]) -> Piece {
        let fits = |c: &Chunk| c.bytes.capacity() - c.bytes.len() >= bytes.len();
        let key = match self.tails.get(&stream) {
            Some(&k) if self.chunks.get(k as usize).is_some_and(fits) => k,
            _ => self.new_tail(stream, bytes.len()),
        };
        let chunk = &mut self.chunks[key as usize];
        let start = chunk.bytes.len();
        chunk.bytes.extend_from_slice(bytes);
        Piece {
            chunk: key,
            start: start as u32,
            end: chunk.bytes.len() as u32,
        }
    }

    /// Opens a new tail for `stream` with room for at least `need` bytes;
    /// the old tail takes no more appends (and goes if nobody needs it).
    fn new_tail(&mut self, stream: Stream, need: usize) -> u32 {
        if let Some(old) = self.tails.remove(&stream) {
            if let Some(c) = self.chunks.get_mut(old as usize) {
                c.tail_of = None;
            }
            self.free_if_unused(old);
        }
        let bytes = match self.spare.pop() {
            Some(b) if need <= CHUNK => b,
            other => {
                self.spare.extend(other);
                Vec::with_capacity(need.max(CHUNK))
            }
        };
        self.chunk_bytes += bytes.capacity();
        let key = self.chunks.insert(Chunk {
            bytes,
            refs: 0,
            tail_of: Some(stream),
            seq: self.clock,
        }) as u32;
        self.clock += 1;
        self.tails.insert(stream, key);
        key
    }

    /// The broadcast of `piece` has been handed to every recipient: if none
    /// took it (all were closing), its chunk may be unused.
    pub fn settle(&mut self, piece: Piece) {
        self.free_if_unused(piece.chunk);
    }

    /// One more span points into `chunk`.
    pub(super) fn retain(&mut self, chunk: u32) {
        if let Some(c) = self.chunks.get_mut(chunk as usize) {
            c.refs += 1;
        }
    }

    /// One span fewer points into `chunk`; frees it at zero.
    pub(super) fn release(&mut self, chunk: u32) {
        if let Some(c) = self.chunks.get_mut(chunk as usize) {
            c.refs = c.refs.saturating_sub(1);
        }
        self.free_if_unused(chunk);
    }

    fn free_if_unused(&mut self, key: u32) {
        if self.chunks.get(key as usize).is_none_or(|c| c.refs > 0) {
            return;
        }
        let mut c = self.chunks.remove(key as usize);
        if let Some(stream) = c.tail_of {
            self.tails.remove(&stream);
        }
        self.chunk_bytes -= c.bytes.capacity();
        if self.spare.len() < SPARE_CHUNKS && c.bytes.capacity() == CHUNK {
            c.bytes.clear();
            self.spare.push(c.bytes);
        } else {
            self.released += c.bytes.capacity();
        }
    }

    /// The bytes of `chunk[start..end]`.
    pub(super) fn bytes(&self, chunk: u32, start: u32, end: u32) -> &[u8] {
        self.chunks
            .get(chunk as usize)
            .and_then(|c| c.bytes.get(start as usize..end as usize))
            .unwrap_or(&[])
    }

    /// How old `chunk` is (allocation order).
    pub(super) fn seq(&self, chunk: u32) -> u64 {
        self.chunks
            .get(chunk as usize)
            .map_or(self.clock, |c| c.seq)
    }

    /// Now, on the same clock as [`seq`](Self::seq): bytes queued now are
    /// younger than every chunk allocated before.
    pub(super) fn now(&self) -> u64 {
        self.clock
    }

    /// A queue's own bytes grew or shrank from `before` to `after`.
    pub(super) fn own_changed(&mut self, before: usize, after: usize) {
        self.own_bytes = (self.own_bytes + after).saturating_sub(before);
        self.released += before.saturating_sub(after);
    }

    /// Bytes given back to the allocator since the last call.
    pub fn released(&self) -> usize {
        self.released
    }

    /// Resets [`released`](Self::released).
    pub fn take_released(&mut self) -> usize {
        std::mem::take(&mut self.released)
    }

    /// Every byte held for output: live chunks and queues' own bytes
    /// (spare chunks not counted: at most [`SPARE_CHUNKS`] of them).
    pub fn held(&self) -> usize {
        self.chunk_bytes + self.own_bytes
    }

    /// Bytes in live chunks.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// Live chunks (for tests: zero once every queue is empty).
    pub fn live_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Gives back the spare chunks (counted as released).
    pub fn drop_spares(&mut self) {
        self.released += self.spare.iter().map(Vec::capacity).sum::<usize>();
        self.spare = Vec::new();
    }
}
