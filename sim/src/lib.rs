//! `pg-sim` as a library: the seeded scenarios, the fault layer and the
//! simulated server, shared by the `cargo sim` runner (`main.rs`) and the
//! tests in `sim/tests/` (fixed seeds, planted bugs, proptest fault plans,
//! the differential test against a real server), so each builds the same
//! code once instead of re-including its files.
//!
//! Depends on pg-transport's public API (and its `internal` module) only;
//! pg-transport never depends on it.

pub mod chop;
pub mod scenario;
pub mod seed;
pub mod server;
