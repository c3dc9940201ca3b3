//! Shared by `benches/copy.rs` and `examples/early_abort.rs`: a throwaway
//! PostgreSQL cluster, rusage measurement, and the early-abort COPY IN case.

pub(crate) mod cluster;
pub(crate) mod early_abort;
pub(crate) mod measure;
