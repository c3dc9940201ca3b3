//! COPY as states of the session, without I/O: [`CopyIn`] says what to write
//! and what the server's replies mean, [`CopyOut`] hands out the data and
//! the outcome. The async `Connection` (`src/copy.rs`) only moves bytes for
//! them: it writes what they queue, reads when they ask, and pulls the
//! caller's source or feeds the caller's sink.
//!
//! The rules that keep the byte stream in sync live here, where a unit test
//! can feed them bytes:
//! - after the server's error, nothing is sent but the rest of a CopyData
//!   frame already partly written (no CopyDone, no CopyFail): [`CopyIn`]
//!   drops its queue down to that frame and has no way to queue more;
//! - a COPY IN that met a server error is followed by a fence (an empty
//!   query) so that stray `08P01` replies to CopyData that crossed the error
//!   cannot poison the next query;
//! - when two things fail, the first is reported and the later one attached.

mod copy_in;
mod copy_out;
mod outgoing;

use bytes::Bytes;

use super::Session;
use crate::error::Error;
use crate::protocol::{Message, frontend};

pub use copy_in::{CopyIn, CopyInPhase};
pub use copy_out::{CopyOut, CopyOutEvent};

/// An error from application code (a source or a sink).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The rows count of a `COPY n` command tag.
fn copy_rows(tag: &[u8]) -> u64 {
    tag.strip_prefix(b"COPY ")
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// When an operation met two failures, the first is the one reported. A
/// later failure of the connection is attached to it ([`Error::later`]); a
/// later server error (the server's answer to CopyFail, a stray reply) only
/// repeats the first and is dropped. The session's state says what is left.
fn attach(first: Option<Error>, later: Error) -> Error {
    match first {
        Some(first) if later.as_db_error().is_none() => first.then(later),
        Some(first) => first,
        None => later,
    }
}

/// [`attach`] for an outcome that may be a success: the first failure wins.
fn first_cause(first: Option<Error>, result: Result<u64, Error>) -> Result<u64, Error> {
    match result {
        Ok(rows) => first.map_or(Ok(rows), Err),
        Err(later) => Err(attach(first, later)),
    }
}

/// The wait for CopyInResponse or CopyOutResponse, shared by both directions.
#[derive(Debug)]
struct Start {
    copy_in: bool,
    /// Why the statement is not the COPY asked for, once known.
    outcome: Option<Error>,
}

/// What a message meant while waiting for the COPY to start.
enum Started {
    /// Not decided yet: read on.
    Waiting,
    /// The COPY asked for has started.
    Copying,
    /// The statement is over without starting it; the error to return.
    Refused(Error),
}

impl Start {
    fn new(copy_in: bool) -> Self {
        Self {
            copy_in,
            outcome: None,
        }
    }

    fn on_message(&mut self, session: &mut Session, msg: Message<Bytes>) -> Started {
        match msg {
            Message::CopyInResponse(_) if self.copy_in => return Started::Copying,
            Message::CopyOutResponse(_) if !self.copy_in => return Started::Copying,
            Message::CopyOutResponse(_) => self.refuse(
                "copy_in was given COPY … TO STDOUT, which sends data to the client: use copy_out",
            ),
            Message::CopyInResponse(_) => {
                // The server waits for data: refuse it so it answers.
                frontend::copy_fail(
                    session.send_buf().buf_mut(),
                    "copy_out cannot send COPY data",
                );
                self.refuse(
                    "copy_out was given COPY … FROM STDIN, which sends data to the server: use copy_in",
                );
            }
            Message::RowDescription(_)
            | Message::CommandComplete { .. }
            | Message::EmptyQueryResponse => self.refuse(if self.copy_in {
                "copy_in needs a COPY … FROM STDIN statement"
            } else {
                "copy_out needs a COPY … TO STDOUT statement"
            }),
            Message::ErrorResponse(fields) => {
                self.outcome
                    .get_or_insert_with(|| Error::server(fields.to_db_error()));
            }
            Message::ReadyForQuery(_) => {
                return Started::Refused(
                    self.outcome
                        .take()
                        .unwrap_or_else(|| Error::usage("the statement did not start a COPY")),
                );
            }
            _ => {}
        }
        Started::Waiting
    }

    fn refuse(&mut self, why: &'static str) {
        self.outcome.get_or_insert_with(|| Error::usage(why));
    }
}
