//! Entry points for fuzzers and property tests. Not API: no stability promise.

use crate::protocol::{ProtocolError, parse_message};

/// What [`parse_stream`] ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// Every byte was consumed by complete messages.
    Clean,
    /// A partial message of this many bytes is left.
    Incomplete(usize),
    /// The parser refused the stream at this offset.
    Error(usize, ProtocolError),
}

/// Parses `bytes` as a backend stream with the message cap `max_len`, returning
/// the debug rendering of every message and how the stream ended. Never panics.
pub fn parse_stream(bytes: &[u8], max_len: usize) -> (Vec<String>, StreamEnd) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let rest = bytes.get(pos..).unwrap_or_default();
        match parse_message(rest, max_len) {
            Ok(Some((msg, n))) => {
                out.push(format!("{msg:?}"));
                pos += n;
            }
            Ok(None) if rest.is_empty() => return (out, StreamEnd::Clean),
            Ok(None) => return (out, StreamEnd::Incomplete(rest.len())),
            Err(e) => return (out, StreamEnd::Error(pos, e)),
        }
    }
}

pub use crate::mutant::Mutant;
pub use crate::mutant::mutant;
#[cfg(feature = "__mutants")]
pub use crate::mutant::set_mutant;
