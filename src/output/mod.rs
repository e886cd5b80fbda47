//! Output: what each connection owes its peer, with every broadcast's
//! bytes stored once.
//!
//! A chat server's output is mostly broadcast: one line said in a room of
//! N members becomes N deliveries. Copying the line into N buffers makes
//! memory grow with N × the room's traffic, and in a reconnect storm (N
//! clients join, each join is news to every member) with N². Here the line
//! is stored once, in the [`Pool`], and each recipient's [`SendQueue`]
//! holds a span pointing at it; the flush turns a queue's spans into one
//! `writev`. A chunk of the pool is freed when the last span pointing into
//! it has been written (or dropped with its connection), so a slow reader
//! pins only what it still owes, and the `--max-sendq` cap still counts
//! every byte a connection owes.
//!
//! docs/architecture.md ("One copy per broadcast") tells the whole story
//! with a diagram.

mod pool;
mod sendq;

pub use pool::{CHUNK, Piece, Pool, Stream};
pub use sendq::{Overflow, SendQueue};
