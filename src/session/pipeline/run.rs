//! Reading a pipeline's replies back, request by request.

use std::sync::Arc;

use bytes::Bytes;

use super::{Kind, Pipeline, Prepared, Response, RowSet};
use crate::error::Error;
use crate::protocol::limits::MAX_SIMPLE_QUERY_RESULT_BYTES;
use crate::protocol::{Message, frontend};
use crate::session::Session;
use crate::session::query::{Column, Row, columns_of};

/// One [`Pipeline`] in flight, without I/O. [`PipelineRun::start`] queues
/// its messages and a Sync in the session's send buffer; write that out
/// *while* calling [`PipelineRun::next`] on what arrives (a large pipeline
/// written before reading can fill both sockets' buffers and stall both
/// sides), until it returns the responses.
#[derive(Debug)]
pub struct PipelineRun {
    kinds: Vec<Kind>,
    responses: Vec<Response>,
    /// The reply being read for request `responses.len()`.
    columns: Option<Arc<[Column]>>,
    rows: Vec<Row>,
    params: Option<Vec<u32>>,
    /// The request is a COPY: its data is dropped, its outcome a usage error.
    copy: bool,
    /// A request failed: the server skips to the Sync, so do we.
    failed: bool,
    /// Bytes of rows held; `None` once over the cap (rows are then dropped).
    held: Option<usize>,
    /// An error after the last request's reply (the implicit COMMIT).
    late: Option<Error>,
    /// ReadyForQuery arrived (or the stream broke).
    done: bool,
    /// The outcome was handed out.
    reported: bool,
}

impl PipelineRun {
    /// Queues `pipeline`'s messages and a Sync into `session` (which moves
    /// to `Busy`).
    ///
    /// # Errors
    /// As [`Session::begin_request`]: not `Ready`, or closed; the session is
    /// unchanged.
    pub fn start(session: &mut Session, pipeline: &Pipeline) -> Result<Self, Error> {
        session.begin_request(|buf| {
            buf.extend_from_slice(pipeline.bytes());
            frontend::sync(buf);
            Ok(())
        })?;
        Ok(Self {
            kinds: pipeline.kinds().to_vec(),
            responses: Vec::with_capacity(pipeline.len()),
            columns: None,
            rows: Vec::new(),
            params: None,
            copy: false,
            failed: false,
            held: Some(0),
            late: None,
            done: false,
            reported: false,
        })
    }

    /// The responses, one per request in order, once ReadyForQuery arrived;
    /// `None` when the buffered bytes hold nothing more (write what the
    /// session queued, read, call again). After the end, `None` for good.
    ///
    /// The outcome is `Err` only for the pipeline as a whole: a broken
    /// stream (kind `Protocol`/`Closed`, the session closed), an error after
    /// the last request (the implicit COMMIT failed, so nothing of the
    /// pipeline was kept; kind `Server`, the session `Ready`), or rows over
    /// the 64 MiB cap (kind `Usage`, drained, `Ready`).
    pub fn next(&mut self, session: &mut Session) -> Option<Result<Vec<Response>, Error>> {
        while !self.done {
            let msg = match session.next_message_owned() {
                Ok(Some(msg)) => msg,
                Ok(None) => return None,
                Err(e) => return Some(self.interrupted(e)),
            };
            if let Err(e) = self.take(session, msg) {
                session.close();
                return Some(self.interrupted(e));
            }
        }
        if self.reported {
            return None;
        }
        self.reported = true;
        Some(self.finish())
    }

    /// The driver's I/O failed: the pipeline is over with `error`.
    pub fn interrupted(&mut self, error: Error) -> Result<Vec<Response>, Error> {
        (self.done, self.reported) = (true, true);
        self.late = None;
        Err(error)
    }

    fn finish(&mut self) -> Result<Vec<Response>, Error> {
        if let Some(late) = self.late.take() {
            return Err(late);
        }
        if self.held.is_none() {
            return Err(Error::usage(format!(
                "the pipeline's rows exceed {MAX_SIMPLE_QUERY_RESULT_BYTES} bytes; the reply was \
                 read and dropped; stream large results with query_stream or copy_out"
            )));
        }
        Ok(std::mem::take(&mut self.responses))
    }

    /// One message of the reply. `Err` is a violation: the stream cannot
    /// be trusted.
    fn take(&mut self, session: &mut Session, msg: Message<Bytes>) -> Result<(), Error> {
        let Some(&kind) = self.kinds.get(self.responses.len()) else {
            return self.after_last(msg);
        };
        if self.failed || matches!(msg, Message::ReadyForQuery(_)) {
            // After an error the server skips to the Sync: only
            // ReadyForQuery can come (checked there).
            return self.after_last(msg);
        }
        use Kind as K;
        match (kind, msg) {
            (K::Query | K::Prepare, Message::ParseComplete)
            | (K::Query | K::Execute, Message::BindComplete) => {}
            (K::Prepare, Message::ParameterDescription(pd)) => {
                self.params = Some(pd.oids().collect());
            }
            (K::Prepare, Message::RowDescription(rd)) => self.prepared(columns_of(&rd)),
            (K::Prepare, Message::NoData) => self.prepared(Arc::from([])),
            (K::Query | K::Execute, Message::RowDescription(rd)) => {
                self.columns = Some(columns_of(&rd));
            }
            (K::Query | K::Execute, Message::NoData) => self.columns = Some(Arc::from([])),
            (K::Query | K::Execute, Message::DataRow(data)) => {
                let columns = self.columns.clone().ok_or_else(|| {
                    Error::protocol_violation("DataRow before its RowDescription".into())
                })?;
                let row = Row::new(columns, data).map_err(Error::protocol)?;
                self.hold(row);
            }
            (K::Query | K::Execute, Message::CommandComplete { tag }) => {
                self.rows_done(String::from_utf8_lossy(&tag).into_owned());
            }
            (K::Query | K::Execute, Message::EmptyQueryResponse) => self.rows_done(String::new()),
            (K::Close, Message::CloseComplete) => self.responses.push(Response::Closed),
            (_, Message::ErrorResponse(fields)) => {
                self.failed = true;
                self.clear();
                let error = Error::server(fields.to_db_error());
                self.responses.push(Response::Failed(error));
            }
            (K::Query | K::Execute, Message::CopyInResponse(_)) => {
                // Without CopyFail the server would wait for data forever;
                // its error (quoting the reason) then fails the request.
                frontend::copy_fail(
                    session.send_buf().buf_mut(),
                    "COPY FROM STDIN cannot run in a pipeline; use copy_in",
                );
            }
            (K::Query | K::Execute, Message::CopyOutResponse(_)) => self.copy = true,
            (K::Query | K::Execute, Message::CopyData(_) | Message::CopyDone) if self.copy => {}
            (_, msg) => return Err(unexpected(&msg, self.responses.len())),
        }
        Ok(())
    }

    /// After the last reply (or after an error): only ReadyForQuery, or
    /// the implicit COMMIT's error before it.
    fn after_last(&mut self, msg: Message<Bytes>) -> Result<(), Error> {
        match msg {
            Message::ReadyForQuery(_) => {
                // Requests the server skipped after an error.
                let skipped = self.kinds.len() - self.responses.len();
                if skipped > 0 && !self.failed {
                    return Err(Error::protocol_violation(format!(
                        "ReadyForQuery before request {} of the pipeline was answered",
                        self.responses.len() + 1
                    )));
                }
                self.responses
                    .extend(std::iter::repeat_with(|| Response::Skipped).take(skipped));
                self.done = true;
            }
            Message::ErrorResponse(fields) if !self.failed => {
                self.failed = true;
                self.late = Some(Error::server(fields.to_db_error()));
            }
            // A second error (a FATAL one before the server closes, say):
            // the first is what the caller gets.
            Message::ErrorResponse(_) => {}
            msg => return Err(unexpected(&msg, self.responses.len())),
        }
        Ok(())
    }

    fn prepared(&mut self, columns: Arc<[Column]>) {
        let param_types = self.params.take().unwrap_or_default();
        self.responses.push(Response::Prepared(Prepared {
            param_types,
            columns,
        }));
    }

    fn hold(&mut self, row: Row) {
        self.held = self
            .held
            .map(|held| held + row.data_row().payload_len())
            .filter(|&held| held <= MAX_SIMPLE_QUERY_RESULT_BYTES);
        // Over the cap, rows are dropped (what is held stays bounded by the
        // cap) and the reply read to its end, which then reports the cap.
        if self.held.is_some() {
            self.rows.push(row);
        }
    }

    fn rows_done(&mut self, tag: String) {
        let (columns, rows) = (self.columns.take(), std::mem::take(&mut self.rows));
        let response = if std::mem::take(&mut self.copy) {
            Response::Failed(Error::usage(
                "COPY … TO STDOUT cannot run in a pipeline (its data was read and dropped); use copy_out",
            ))
        } else {
            Response::Rows(RowSet {
                columns: columns.unwrap_or_else(|| Arc::from([])),
                rows,
                tag,
            })
        };
        self.responses.push(response);
    }

    fn clear(&mut self) {
        self.columns = None;
        self.rows.clear();
        self.params = None;
        self.copy = false;
    }
}

fn unexpected(msg: &Message<Bytes>, request: usize) -> Error {
    Error::protocol_violation(format!(
        "{} is not a reply to request {} of the pipeline",
        msg.name(),
        request + 1
    ))
}
