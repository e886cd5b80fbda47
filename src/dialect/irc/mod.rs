//! The IRC dialect (RFC 1459/2812 as modern clients speak it).
//!
//! - [`message`]: one line's grammar, parsed and written (pure).

pub mod message;
