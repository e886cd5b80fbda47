//! Scale-out through Redis (`--redis`): see docs/scale-out.md.
pub mod envelope;
pub mod resp;
