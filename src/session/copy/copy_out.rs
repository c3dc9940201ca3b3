//! COPY OUT: the data, the row count and the outcome.

use bytes::Bytes;

use super::{BoxError, Start, Started, attach, copy_rows, first_cause};
use crate::error::Error;
use crate::protocol::Message;
use crate::session::Session;

/// What a [`CopyOut`] has for the caller.
#[derive(Debug)]
pub enum CopyOutEvent {
    /// COPY data: one CopyData payload, or with `joined` several whole ones,
    /// sharing the receive buffer (no copy).
    Data(Bytes),
    /// The COPY is over (the session is `Ready` unless the error says
    /// otherwise): the row count from `COPY n`, or the first error.
    Done(Result<u64, Error>),
}

#[derive(Debug)]
enum Phase {
    Starting(Start),
    Data,
    Done,
}

/// One `COPY … TO STDOUT`, without I/O: call [`CopyOut::next`] until it
/// returns `None` (read more, then call again) or [`CopyOutEvent::Done`].
/// A driver that wants the per-row path at its cheapest calls
/// [`CopyOut::next_data`] first and [`CopyOut::next`] when it has nothing.
#[derive(Debug)]
pub struct CopyOut {
    phase: Phase,
    /// Data flows and nothing failed: the fast path may hand out CopyData.
    fast: bool,
    /// A bad header met on the fast path, reported by the next [`CopyOut::next`].
    broken: Option<Error>,
    joined: bool,
    rows: Option<u64>,
    /// The first failure (the sink's or the server's); data after it is
    /// dropped while the rest of the reply is read.
    first: Option<Error>,
    /// CopyData payload bytes handed out.
    bytes: u64,
}

impl CopyOut {
    /// Encodes the Query for `sql` into `session` (which moves to `Busy`).
    /// With `joined`, the CopyData messages buffered together come as one
    /// [`CopyOutEvent::Data`] (see [`Session::next_copy_data_joined`]).
    ///
    /// # Errors
    /// As [`Session::query`]: the session is unchanged.
    pub fn start(session: &mut Session, sql: &str, joined: bool) -> Result<Self, Error> {
        session.query(sql)?;
        Ok(Self {
            phase: Phase::Starting(Start::new(false)),
            fast: false,
            broken: None,
            joined,
            rows: None,
            first: None,
            bytes: 0,
        })
    }

    /// The row count from the command tag, once it has arrived.
    pub fn rows(&self) -> Option<u64> {
        self.rows
    }

    /// The COPY data handed out so far, in bytes (CopyData headers excluded).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The next thing for the caller; `None` when the buffered bytes hold
    /// nothing complete: read, then call again. If the session's send buffer
    /// is then not empty (the statement was a `COPY … FROM STDIN`, refused
    /// with CopyFail), write it before reading.
    ///
    /// After [`CopyOutEvent::Done`], `None` for good.
    #[inline]
    pub fn next(&mut self, session: &mut Session) -> Option<CopyOutEvent> {
        if let Some(data) = self.next_data(session) {
            return Some(CopyOutEvent::Data(data));
        }
        self.next_message(session)
    }

    /// The per-row fast path alone: the next payload if the next buffered
    /// message is a complete CopyData and the COPY is handing data out;
    /// `None` for anything else (then call [`CopyOut::next`], which also
    /// reports a bad header met here). Builds no `Message` and no event.
    #[inline]
    pub fn next_data(&mut self, session: &mut Session) -> Option<Bytes> {
        if !self.fast {
            return None;
        }
        let next = if self.joined {
            session.next_copy_data_joined()
        } else {
            session.next_copy_data()
        };
        match next {
            Ok(data) => {
                if let Some(d) = &data {
                    self.bytes += d.len() as u64;
                }
                data
            }
            Err(e) => {
                self.fast = false;
                self.broken = Some(e);
                None
            }
        }
    }

    /// The sink refused data: its error becomes the outcome (kind
    /// `Callback`), and the rest of the COPY is read and dropped.
    pub fn sink_failed(&mut self, error: BoxError) {
        self.fast = false;
        if self.first.is_none() {
            self.first = Some(Error::callback("COPY OUT sink failed", error));
        }
    }

    /// The driver's I/O failed with `error`: the COPY is over, with the first
    /// failure reported and `error` attached to it.
    pub fn interrupted(&mut self, error: Error) -> CopyOutEvent {
        self.phase = Phase::Done;
        self.fast = false;
        CopyOutEvent::Done(Err(attach(self.first.take(), error)))
    }

    fn next_message(&mut self, session: &mut Session) -> Option<CopyOutEvent> {
        if let Some(e) = self.broken.take() {
            return Some(self.interrupted(e));
        }
        loop {
            if matches!(self.phase, Phase::Done) {
                return None;
            }
            let msg = match session.next_message_owned() {
                Ok(Some(msg)) => msg,
                Ok(None) => return None,
                Err(e) => return Some(self.interrupted(e)),
            };
            if let Phase::Starting(start) = &mut self.phase {
                match start.on_message(session, msg) {
                    Started::Waiting => {}
                    // Back to the fast path for the data that follows.
                    Started::Copying => {
                        self.phase = Phase::Data;
                        self.fast = true;
                        return self.next(session);
                    }
                    Started::Refused(e) => {
                        self.phase = Phase::Done;
                        return Some(CopyOutEvent::Done(Err(e)));
                    }
                }
            } else if let Some(event) = self.on_message(msg) {
                return Some(event);
            }
        }
    }

    /// Waits for the start only: `Some(Ok(()))` once the data can flow
    /// (nothing of it consumed), `Some(Err(_))` if the statement ended without
    /// starting the COPY, `None` to read more. For a driver that hands the
    /// data out later (a stream).
    pub fn start_only(&mut self, session: &mut Session) -> Option<Result<(), Error>> {
        loop {
            let Phase::Starting(start) = &mut self.phase else {
                return Some(Ok(()));
            };
            let msg = match session.next_message_owned() {
                Ok(Some(msg)) => msg,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            match start.on_message(session, msg) {
                Started::Waiting => {}
                Started::Copying => {
                    self.phase = Phase::Data;
                    self.fast = true;
                }
                Started::Refused(e) => {
                    self.phase = Phase::Done;
                    return Some(Err(e));
                }
            }
        }
    }

    fn on_message(&mut self, msg: Message<Bytes>) -> Option<CopyOutEvent> {
        match msg {
            // CopyData comes this way when a notice or notification preceded
            // it (the fast path only looks at the next frame).
            Message::CopyData(data) if self.first.is_none() => {
                self.bytes += data.len() as u64;
                return Some(CopyOutEvent::Data(data));
            }
            Message::CommandComplete { tag } => self.rows = Some(copy_rows(&tag)),
            Message::ErrorResponse(fields) => {
                self.fast = false;
                self.first
                    .get_or_insert_with(|| Error::server(fields.to_db_error()));
            }
            Message::ReadyForQuery(_) => {
                self.phase = Phase::Done;
                self.fast = false;
                let rows = self.rows.unwrap_or(0);
                return Some(CopyOutEvent::Done(first_cause(self.first.take(), Ok(rows))));
            }
            _ => {}
        }
        None
    }
}
