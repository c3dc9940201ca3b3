//! Pure authentication exchanges: MD5 and SCRAM-SHA-256(-PLUS). Nonces come in
//! as arguments; nothing here draws randomness or does I/O.

pub mod md5;
pub mod scram;
