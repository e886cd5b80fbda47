//! The load generator: see src/bin/loopchat-bench.rs.
