//! Dialects: how a connection's lines become chat requests and chat events
//! become its bytes. Today the line grammar lives in `room` and `protocol`;
//! the IRC dialect is being built here, starting with its message grammar.

pub mod irc;
