//! COPY IN: the write queue and the meaning of the server's replies.

use bytes::{Bytes, BytesMut};

use super::outgoing::Outgoing;
use super::{BoxError, Start, Started, attach, copy_rows, first_cause};
use crate::error::Error;
use crate::mutant::{Mutant, mutant};
use crate::protocol::backend::message_name;
use crate::protocol::fields::Fields;
use crate::protocol::{DbError, Message, SqlState, frontend};
use crate::session::{Session, State};

/// Where a [`CopyIn`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyInPhase {
    /// The Query is sent; waiting for CopyInResponse.
    Starting,
    /// Data flows: [`CopyIn::push`] takes chunks. The server may abort at
    /// any time; read while writing, so its error is noticed.
    Sending,
    /// No more data: what is queued goes out (CopyDone, CopyFail, or after
    /// the server's error only the rest of a frame already partly written),
    /// then the reply is read to ReadyForQuery.
    Ending,
    /// The COPY met a server error: a fence (an empty query) is queued
    /// after whatever was left to write, and its reply is read.
    Fencing,
    /// Over: [`CopyIn::take_result`] has the outcome.
    Done,
}

#[derive(Debug)]
enum Phase {
    Starting(Start),
    Sending,
    Ending,
    Fencing { fenced: bool },
    Done,
}

/// One `COPY … FROM STDIN`, without I/O.
///
/// The driver writes the session's send buffer first, then what
/// [`CopyIn::to_write`] offers (reporting progress with
/// [`CopyIn::written`]), and reads whenever it can: each read is followed by
/// [`CopyIn::receive`]. Chunks go in with [`CopyIn::push`]; the end of the
/// data is [`CopyIn::finish`], a failed source [`CopyIn::fail`]. Once the
/// phase is [`CopyInPhase::Done`], [`CopyIn::take_result`] has the row count
/// or the error. The rules that keep the stream in sync cannot be broken
/// from outside: after the server's error nothing can be queued, and
/// neither CopyDone nor CopyFail follows it.
#[derive(Debug)]
pub struct CopyIn {
    out: Outgoing,
    batch: usize,
    phase: Phase,
    rows: u64,
    /// What went wrong first: the server's abort or the source's failure.
    first: Option<Error>,
    /// The first ErrorResponse while ending (the answer to CopyDone or CopyFail).
    reply_error: Option<DbError>,
    /// Whether the server sent any ErrorResponse since the COPY began: then
    /// stray replies may follow, and the fence is needed.
    server_error: bool,
    /// The outcome, once known (held while the fence runs).
    result: Option<Result<u64, Error>>,
    /// Payload bytes taken by [`CopyIn::push`].
    bytes: u64,
    /// Whether the server's error arrived while the data was still being sent.
    aborted: bool,
}

impl CopyIn {
    /// Encodes the Query for `sql` into `session` (which moves to `Busy`) and
    /// returns the COPY waiting for its CopyInResponse. Small chunks are
    /// gathered into batches of about `batch_size` bytes.
    ///
    /// # Errors
    /// As [`Session::query`]: the session is unchanged.
    pub fn start(session: &mut Session, sql: &str, batch_size: usize) -> Result<Self, Error> {
        session.query(sql)?;
        Ok(Self {
            out: Outgoing::default(),
            batch: batch_size.max(1),
            phase: Phase::Starting(Start::new(true)),
            rows: 0,
            first: None,
            reply_error: None,
            server_error: false,
            result: None,
            bytes: 0,
            aborted: false,
        })
    }

    /// Where the COPY is.
    pub fn phase(&self) -> CopyInPhase {
        match self.phase {
            Phase::Starting(_) => CopyInPhase::Starting,
            Phase::Sending => CopyInPhase::Sending,
            Phase::Ending => CopyInPhase::Ending,
            Phase::Fencing { .. } => CopyInPhase::Fencing,
            Phase::Done => CopyInPhase::Done,
        }
    }

    /// The batch size: write once this many bytes are queued.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// The COPY data taken by [`CopyIn::push`], in bytes (CopyData headers
    /// excluded), whether or not it was written before the COPY ended.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the server's error ended the COPY while its data was still
    /// being sent (an early abort), not in answer to CopyDone or CopyFail.
    pub fn aborted(&self) -> bool {
        self.aborted
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Frames `chunk` as CopyData messages and queues them: copied into the
    /// batch when small, referenced without a copy from 16 KiB on, split into
    /// messages of at most 1 MiB.
    ///
    /// # Errors
    /// Kind `State` unless [`CopyInPhase::Sending`] (the server aborted, or
    /// the COPY was finished): nothing is queued.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), Error> {
        if !matches!(self.phase, Phase::Sending) {
            return Err(Error::state(format!(
                "COPY IN is {:?}, not sending: no more data can be queued",
                self.phase()
            )));
        }
        self.bytes += chunk.len() as u64;
        self.out.push_copy_data(chunk, self.batch);
        Ok(())
    }

    /// What to write next, in order, for a vectored write; then call
    /// [`CopyIn::written`] with the count the transport took. The session's
    /// own send buffer, if not empty, goes first.
    pub fn to_write(&mut self) -> impl Iterator<Item = &[u8]> {
        self.out.seal();
        self.out.segments()
    }

    /// Records that the transport took the first `n` bytes of [`CopyIn::to_write`].
    pub fn written(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// The data is complete: queues CopyDone, unless the server has already
    /// aborted (then nothing more is sent).
    pub fn finish(&mut self) {
        if matches!(self.phase, Phase::Sending) {
            let mut done = BytesMut::new();
            frontend::copy_done(&mut done);
            self.out.push_message(done.freeze());
            self.phase = Phase::Ending;
        }
    }

    /// The source failed with `error`: keeps only the rest of a frame already
    /// partly written, queues CopyFail with the error's text (NUL bytes
    /// replaced), and makes `error` the outcome (kind `Callback`). If the
    /// server has already aborted, its error stays the outcome and nothing
    /// is sent.
    pub fn fail(&mut self, error: BoxError) {
        if !matches!(self.phase, Phase::Sending) {
            return;
        }
        self.out.keep_started_frame_only();
        let mut fail = BytesMut::new();
        frontend::copy_fail(&mut fail, &format!("COPY source failed: {error}"));
        self.out.push_message(fail.freeze());
        self.first = Some(Error::callback("COPY IN source failed", error));
        self.phase = Phase::Ending;
    }

    /// Handles every complete message buffered in `session` that the COPY is
    /// waiting for; stops at the end of the COPY's own reply, so nothing of
    /// a later exchange is consumed. A stream that cannot be trusted ends
    /// the COPY ([`CopyInPhase::Done`], the session `Closed`).
    pub fn receive(&mut self, session: &mut Session) {
        while !matches!(self.phase, Phase::Done) {
            let step = match session.next_message_owned() {
                Ok(Some(msg)) => self.on_message(session, msg),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                let e = self.interrupted(session, e);
                self.end(Err(e));
            }
        }
    }

    /// The outcome, once [`CopyInPhase::Done`]: the row count from `COPY n`,
    /// or the first error.
    ///
    /// # Errors
    /// - Kind `Server`: the server refused the statement or aborted the
    ///   COPY; the session is `Ready`.
    /// - Kind `Callback`: the source failed (see [`CopyIn::fail`]); `Ready`.
    /// - Kind `Usage`: the statement is not `COPY … FROM STDIN`; `Ready`.
    /// - Kind `Protocol`: the server sent what it cannot send during a COPY
    ///   IN; the session is `Closed`.
    pub fn take_result(&mut self) -> Option<Result<u64, Error>> {
        match self.phase {
            Phase::Done => self.result.take(),
            _ => None,
        }
    }

    /// The driver's I/O failed with `error` (the session is already closed
    /// by then, or is closed now): ends the COPY and returns the error to
    /// report, which is the first failure with `error` attached as its
    /// [`Error::later`] when the COPY had already failed.
    pub fn interrupted(&mut self, session: &mut Session, error: Error) -> Error {
        let reported = match (&self.phase, self.result.take()) {
            // The fence failed: the COPY's own outcome stays the one reported.
            (Phase::Fencing { .. }, Some(Err(first))) => {
                session.close();
                first.then(error)
            }
            _ => attach(self.first.take(), error),
        };
        self.phase = Phase::Done;
        reported
    }

    fn on_message(&mut self, session: &mut Session, msg: Message<Bytes>) -> Result<(), Error> {
        match &mut self.phase {
            Phase::Starting(start) => match start.on_message(session, msg) {
                Started::Waiting => {}
                Started::Copying => self.phase = Phase::Sending,
                Started::Refused(e) => self.end(Err(e)),
            },
            Phase::Sending => match msg {
                Message::ErrorResponse(fields) => self.abort(fields.to_db_error()),
                other => {
                    session.close();
                    return Err(Error::protocol_violation(format!(
                        "{} from the server during COPY IN, before CopyDone",
                        message_kind(&other)
                    )));
                }
            },
            Phase::Ending => match msg {
                Message::CommandComplete { tag } => self.rows = copy_rows(&tag),
                Message::ErrorResponse(fields) => {
                    self.server_error = true;
                    self.reply_error.get_or_insert_with(|| fields.to_db_error());
                }
                Message::ReadyForQuery(_) => self.replied(session)?,
                _ => {}
            },
            Phase::Fencing { fenced } => match msg {
                Message::EmptyQueryResponse => *fenced = true,
                Message::ErrorResponse(fields) if !*fenced && is_violation(&fields) => {}
                Message::ErrorResponse(fields) => {
                    return Err(Error::server(fields.to_db_error()));
                }
                Message::ReadyForQuery(_) if *fenced => self.phase = Phase::Done,
                // A stray pair ended; the fence's reply is still to come.
                Message::ReadyForQuery(_) => session.begin_request(|_| Ok(()))?,
                _ => {}
            },
            Phase::Done => {}
        }
        Ok(())
    }

    /// The server aborted the COPY: finish the frame already on its way (a
    /// half-sent frame would desynchronise the stream; the server discards
    /// CopyData after an error), queue nothing more.
    fn abort(&mut self, error: DbError) {
        self.server_error = true;
        self.aborted = true;
        self.out.keep_started_frame_only();
        if mutant(Mutant::CopyDoneAfterAbort) {
            let mut done = BytesMut::new();
            frontend::copy_done(&mut done);
            self.out.push_message(done.freeze());
        }
        self.first = Some(Error::server(error));
        self.phase = Phase::Ending;
    }

    /// The COPY's ReadyForQuery: the outcome is known. After a server error,
    /// the fence: an empty query, whose reply the server sends after any
    /// `08P01` + ReadyForQuery pairs it still owes for CopyData that crossed
    /// its error (some servers send one per message, arriving at any time);
    /// those are consumed, so none can poison the next query. One round
    /// trip, on the error path only.
    fn replied(&mut self, session: &mut Session) -> Result<(), Error> {
        let reply = self
            .reply_error
            .take()
            .map_or(Ok(self.rows), |db| Err(Error::server(db)));
        let result = first_cause(self.first.take(), reply);
        if self.server_error && session.state() == State::Ready {
            // Queued behind the rest of a started frame, never before it: a
            // query inside a CopyData frame would be taken for its payload.
            session.begin_request(|_| Ok(()))?;
            let mut fence = BytesMut::new();
            frontend::query(&mut fence, "").map_err(Error::invalid_input)?;
            self.out.push_message(fence.freeze());
            self.result = Some(result);
            self.phase = Phase::Fencing { fenced: false };
        } else {
            self.end(result);
        }
        Ok(())
    }

    fn end(&mut self, result: Result<u64, Error>) {
        self.result = Some(result);
        self.phase = Phase::Done;
    }
}

/// Whether an ErrorResponse is 08P01 (protocol violation).
fn is_violation(fields: &Fields<Bytes>) -> bool {
    fields.iter().any(|(code, v)| {
        code == b'C' && SqlState::from_code(v) == Some(SqlState::PROTOCOL_VIOLATION)
    })
}

fn message_kind<B>(m: &Message<B>) -> &'static str {
    let tag = match m {
        Message::CommandComplete { .. } => b'C',
        Message::ReadyForQuery(_) => b'Z',
        Message::CopyData(_) => b'd',
        Message::DataRow(_) => b'D',
        Message::RowDescription(_) => b'T',
        _ => 0,
    };
    match tag {
        0 => "an unexpected message",
        t => message_name(t),
    }
}
