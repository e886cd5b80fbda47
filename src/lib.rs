//! loopchat: a multi-user chat server built as one thread around one
//! `mio::Poll`, with its terminal client and a load generator.
//!
//! # Layout
//!
//! Read them in this order; each module says why it exists.
//!
//! | module | owns | sockets? |
//! |---|---|---|
//! | [`framing`] | bytes in, lines out: `LineFramer`, the line-length limit, telnet filtering and answers | no |
//! | [`transport`] | the other transports on the same port: [`transport::http`] (sniffing `GET `, the request head, routes, responses) and [`transport::websocket`] (`WsFramer`: RFC 6455 frames in, messages out; the handshake key) | no |
//! | [`chat`] | **the chat core**: users, nicknames, who hears what; requests in, events out, no grammar | no |
//! | [`dialect`] | grammars: the line dialect and IRC (decode a line into requests, render an event into bytes); the first line picks one | no |
//! | [`protocol`] | the line grammar's markers and nickname rules, and parsing server lines (for the client and bench) | no |
//! | [`hub`] | connections meet the core: each line decoded by its dialect, each event rendered once per dialect | no |
//! | [`accounts`] | account names and argon2id hashes, the accounts file | no (a file) |
//! | [`output`] | output: each broadcast stored once ([`output::Pool`]), each connection's spans of it ([`output::SendQueue`]), the cap, `writev` | no (any `Write`) |
//! | [`tls`] | TLS (feature `tls`): a rustls session per TLS connection, bytes in, plaintext and records out; the certificate, reloaded on SIGHUP | no |
//! | [`ratelimit`] | flood control: a token bucket per connection | no |
//! | [`timers`] | every timer of the loop in one heap | no |
//! | [`turn_stats`] | what one turn of the loop did, for `--trace-turns` | no |
//! | [`config`] | every limit's default and the command line | no |
//! | [`activation`] | systemd socket activation: listening sockets passed as `LISTEN_FDS` | adopts them |
//! | [`bridge`] | `--redis`: other processes' rooms through Redis pub/sub; [`bridge::resp`] (the RESP2 codec), [`bridge::envelope`] (what is published, on which channel) and [`bridge::presence`] (leases, nickname claims, the reaper: Lua scripts) are pure, [`bridge::Bridge`] holds the two links in the loop's Poll | yes (two links to Redis) |
//! | [`logging`] | the server's log: dated lines, never blocking on stderr, storms summed up | no (stderr, a file) |
//! | [`server`] | **the event loop**: accept, read, hand lines to the hub, flush, close | yes |
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
//! back the line `hi`. The loop passes it to [`hub::Hub::handle_frame`]:
//! the connection's dialect ([`dialect::line::decode`]) reads it as the
//! request "say hi", and the core ([`chat::Core`]) decides who hears it: the
//! event "alice said hi", for every other member. The hub renders that event
//! once ([`dialect::line::render`]: `[alice] hi\n`) and hands the bytes
//! and the list of recipients to `Outbox::send_many`; the loop's outbox
//! stores them **once** in the [`output::Pool`], adds a span pointing at
//! them to each recipient's [`output::SendQueue`] and puts the recipient on
//! the flush list. Before the loop sleeps again, `flush_pending` gives each
//! recipient one `writev()` carrying everything queued for it this turn. If IRC users are in the
//! room too, the hub renders the same event a second time, once, in IRC
//! ([`dialect::irc::render`]: `:alice!alice@loopchat PRIVMSG #lobby :hi`),
//! and an IRC user's `PRIVMSG` travels the same way in reverse: decoded by
//! [`dialect::irc::handle`] into the same "say" request. docs/architecture.md
//! tells the same story with diagrams.

pub mod accounts;
pub mod activation;
pub mod bench;
pub mod bridge;
pub mod chat;
pub mod client;
pub mod config;
pub mod dialect;
pub mod framing;
pub mod hub;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub mod timers;
pub mod tls;
pub mod transport;
pub mod turn_stats;
pub mod web;
