//! loopchat: a multi-user chat server built as one thread around one
//! `mio::Poll`, with its terminal client and a load generator.
//!
//! # Layout
//!
//! Read them in this order; each module says why it exists.
//!
//! | module | owns | sockets? |
//! |---|---|---|
//! | [`protocol`] | the line grammar: markers, nickname rules, parsing server lines | no |
//! | [`dialect`] | other grammars: the IRC message parser and writer (the IRC dialect is being built) | no |
//! | [`framing`] | bytes in, lines out: `LineFramer`, the line-length limit, telnet filtering | no |
//! | [`accounts`] | account names and argon2id hashes, the accounts file | no (a file) |
//! | [`room`] | the chat: users, nicknames, commands, who receives which line | no |
//! | [`sendq`] | a connection's pending output, its cap, partial writes | no (any `Write`) |
//! | [`ratelimit`] | flood control: a token bucket per connection | no |
//! | [`timers`] | every timer of the loop in one heap | no |
//! | [`config`] | every limit's default and the command line | no |
//! | [`server`] | **the event loop**: accept, read, hand lines to the room, flush, close | yes |
//! | [`client`] | the `loopchat` terminal client | yes |
//! | [`bench`] | the `loopchat-bench` load generator | yes |
//!
//! The binaries in `src/bin/` only parse arguments and call into these.
//!
//! # Following one message
//!
//! A user types `hi`. [`server::Server`]'s loop wakes with a READABLE event
//! for that user's token, `read_from` reads the bytes into the shared buffer
//! and pushes them into the connection's [`framing::LineFramer`], which hands
//! back the line `hi`. The loop passes it to [`room::Room::handle_frame`],
//! which formats `[alice] hi\n` once and calls `Outbox::send` for each other
//! user; the loop's outbox appends those bytes to each recipient's
//! [`sendq::SendQueue`] and puts the recipient on the flush list. Before the
//! loop sleeps again, `flush_pending` gives each recipient one `write()`
//! carrying everything queued for it this turn. docs/architecture.md tells
//! the same story with diagrams.

pub mod accounts;
pub mod bench;
pub mod client;
pub mod config;
pub mod dialect;
pub mod framing;
pub mod protocol;
pub mod ratelimit;
pub mod room;
pub mod sendq;
pub mod server;
pub mod timers;
