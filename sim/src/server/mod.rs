//! The simulated server's side of the wire. It encodes with its own code (never
//! `pg_transport::protocol`), so a parser bug cannot hide behind a matching
//! encoder bug.

pub mod auth;
pub mod encode;
pub mod extended;
pub mod pg;
mod tls;
