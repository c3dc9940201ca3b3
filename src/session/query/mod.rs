//! A simple-protocol query read row by row, without I/O: the rows as owned
//! [`Row`]s or into a [`RowSink`], the command tags, the first error, and the
//! statements a row stream cannot serve (COPY) refused without a hang.

mod row;

use std::sync::Arc;

pub(crate) use row::columns_of;
pub use row::{Column, Row};

use super::{RowSink, Session};
use crate::error::Error;
use crate::protocol::{Message, frontend};

/// What a [`SimpleQuery`] has for the caller.
#[derive(Debug)]
pub enum QueryEvent {
    /// One row of the current statement's result.
    Row(Row),
    /// The query is over and the session `Ready` (unless the error says
    /// otherwise): `Ok` or the first error.
    Done(Result<(), Error>),
}

/// One simple Query (one or more statements), without I/O: call
/// [`SimpleQuery::next`] until it returns `None` (write the session's send
/// buffer if it is not empty, read, then call again) or [`QueryEvent::Done`].
#[derive(Debug)]
pub struct SimpleQuery {
    /// The current statement's columns, from its RowDescription.
    columns: Option<Arc<[Column]>>,
    tags: Vec<String>,
    /// The first failure; rows after it are dropped while the rest is read.
    first: Option<Error>,
    done: bool,
}

impl SimpleQuery {
    /// Encodes the Query for `sql` into `session` (which moves to `Busy`).
    ///
    /// # Errors
    /// As [`Session::query`]: the session is unchanged.
    pub fn start(session: &mut Session, sql: &str) -> Result<Self, Error> {
        session.query(sql)?;
        Ok(Self {
            columns: None,
            tags: Vec::new(),
            first: None,
            done: false,
        })
    }

    /// The command tags of the statements completed so far, in order
    /// (`SELECT 3`, `INSERT 0 1`; empty for an empty statement).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The current statement's columns, once its RowDescription arrived.
    pub fn columns(&self) -> Option<&Arc<[Column]>> {
        self.columns.as_ref()
    }

    /// The next row or the end; `None` when the buffered bytes hold nothing
    /// complete. After [`QueryEvent::Done`], `None` for good.
    pub fn next(&mut self, session: &mut Session) -> Option<QueryEvent> {
        while !self.done {
            // Rows first, without building a `Message`; the rest (and a row
            // behind a notice) come through `next_message_owned`, which looks
            // for a row again: a header read twice per non-row message, but
            // calling only `next_message_owned` cost 5-10 % more CPU per row
            // (busy benchmark, 146-154 against 158-180 ns).
            let data = match session.next_data_row_owned() {
                Ok(Some(data)) => data,
                Ok(None) => match session.next_message_owned() {
                    Ok(Some(Message::DataRow(data))) => data,
                    Ok(Some(msg)) => {
                        let step = self.control(&msg);
                        match self.act(session, step) {
                            Some(done) => return Some(QueryEvent::Done(done)),
                            None => continue,
                        }
                    }
                    Ok(None) => return None,
                    Err(e) => return Some(self.interrupted(e)),
                },
                Err(e) => return Some(self.interrupted(e)),
            };
            if self.first.is_some() {
                continue;
            }
            let Some(columns) = self.columns.clone() else {
                session.close();
                let e = Error::protocol_violation("DataRow before any RowDescription".into());
                return Some(self.interrupted(e));
            };
            return Some(match Row::new(columns, data) {
                Ok(row) => QueryEvent::Row(row),
                Err(e) => {
                    let e = session.core.protocol_failure(e);
                    self.interrupted(e)
                }
            });
        }
        None
    }

    /// Like [`SimpleQuery::next`], with every DataRow handed to `rows`
    /// instead (no [`Row`] built); returns only the end.
    ///
    /// A row the sink refuses is a protocol error that closes the session,
    /// as in [`Session::next_message_with`].
    pub fn next_with(
        &mut self,
        session: &mut Session,
        rows: &mut dyn RowSink,
    ) -> Option<Result<(), Error>> {
        while !self.done {
            let step = match session.next_message_with(rows) {
                Ok(Some(msg)) => self.control(&msg),
                Ok(None) => return None,
                Err(e) => return Some(self.interrupted(e).into_result()),
            };
            if let Some(done) = self.act(session, step) {
                return Some(done);
            }
        }
        None
    }

    /// The driver's I/O failed (or the stream broke): the query is over with
    /// the first failure, `error` attached to it.
    pub fn interrupted(&mut self, error: Error) -> QueryEvent {
        self.done = true;
        let error = match self.first.take() {
            Some(first) if error.as_db_error().is_none() => first.then(error),
            Some(first) => first,
            None => error,
        };
        QueryEvent::Done(Err(error))
    }

    /// What a message other than DataRow means; the session is not touched
    /// here, so a message borrowed from it can be looked at.
    fn control<B: AsRef<[u8]>>(&mut self, msg: &Message<B>) -> Step {
        match msg {
            Message::RowDescription(rd) => self.columns = Some(columns_of(rd)),
            Message::CommandComplete { tag } => {
                self.tags
                    .push(String::from_utf8_lossy(tag.as_ref()).into_owned());
                self.columns = None;
            }
            Message::EmptyQueryResponse => self.tags.push(String::new()),
            Message::ErrorResponse(fields) => {
                // The first error is the one that matters; later ones are drained.
                self.fail(Error::server(fields.to_db_error()));
                self.columns = None;
            }
            Message::CopyInResponse(_) => {
                self.fail(Error::usage(
                    "COPY … FROM STDIN cannot run in a row query (refused with CopyFail); use copy_in",
                ));
                return Step::RefuseCopyIn;
            }
            Message::CopyOutResponse(_) => self.fail(Error::usage(
                "COPY … TO STDOUT returns no rows (its data was read and dropped); use copy_out",
            )),
            Message::ReadyForQuery(_) => return Step::Done,
            _ => {}
        }
        Step::Continue
    }

    fn act(&mut self, session: &mut Session, step: Step) -> Option<Result<(), Error>> {
        match step {
            Step::Continue => None,
            Step::RefuseCopyIn => {
                // Without CopyFail the server would wait for data forever.
                frontend::copy_fail(
                    session.send_buf().buf_mut(),
                    "COPY FROM STDIN cannot run in a row query; use copy_in",
                );
                None
            }
            Step::Done => {
                self.done = true;
                Some(self.first.take().map_or(Ok(()), Err))
            }
        }
    }

    fn fail(&mut self, error: Error) {
        self.first.get_or_insert(error);
    }
}

/// What the driver does after a message that is not a row.
enum Step {
    Continue,
    RefuseCopyIn,
    Done,
}

impl QueryEvent {
    /// The end's outcome (`Ok` for a row).
    pub(crate) fn into_result(self) -> Result<(), Error> {
        match self {
            Self::Done(result) => result,
            // `next_with` never builds rows.
            Self::Row(_) => Ok(()),
        }
    }
}
