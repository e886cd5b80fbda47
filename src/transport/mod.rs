//! Transports: how a connection's bytes become lines (or messages), and
//! lines become bytes again, independently of what the lines say.
//!
//! The **dialect** ([`crate::dialect`]: the line grammar or IRC) decides
//! what a line means; the **transport** decides how lines travel. One port
//! serves three transports, told apart by a connection's first bytes:
//!
//! | transport | first bytes | a line is | module |
//! |---|---|---|---|
//! | TCP lines (`nc`, telnet, IRC clients) | anything else | bytes up to `\n` | [`crate::framing`] (`LineFramer`) |
//! | HTTP (a browser, curl) | `GET ` or `HEAD ` | (one request, one response) | [`http`] |
//! | WebSocket (the chat page, web IRC clients) | an HTTP upgrade to `/ws` | one message | [`websocket`] (`WsFramer`) |
//!
//! All of them are written the same way, **sans-I/O**: a state machine
//! with no socket and no clock. The loop reads into its one shared buffer
//! and hands the bytes in; what comes out is lines or messages for the
//! dialect, and bytes for the connection's send queue. So the transports
//! are tested without sockets, and every protection of the loop (flood
//! control, the send-queue cap, timeouts) applies to all of them unchanged.
//! The `LineFramer` stays where it was, in `src/framing.rs`: it is the
//! first transport, and the tour starts there.
//!
//! `examples/ws_echo.rs` shows the WebSocket transport in a small loop of
//! its own; `.ci/autobahn.sh` runs the Autobahn conformance suite against it.

pub mod http;
pub mod websocket;
