//! The simulated server's side of the wire. It encodes with its own code (never
//! `pg_transport::protocol`), so a parser bug cannot hide behind a matching
//! encoder bug.

pub(crate) mod auth;
pub(crate) mod encode;
pub(crate) mod pg;
pub(crate) mod tls;
