//! loopchat: a multi-user chat server built as one thread around one `mio::Poll`.
//!
//! (The module map is filled in as the modules land.)

pub mod bench;
pub mod client;
pub mod protocol;
