//! The terminal client: see src/bin/loopchat.rs.
