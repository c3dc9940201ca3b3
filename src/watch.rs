//! The receive watch: while COPY IN is busy sending (or waiting for its source),
//! the connection keeps reading, so the server's ErrorResponse is noticed while
//! a write is still pending.
//!
//! It is a poll, not a spawned task: bytes it reads are committed to the
//! receive buffer only when a read completes (cancel-safe), messages already
//! buffered are parsed first and in order, and dropping a pending watch loses
//! nothing. At most one read is ever in flight, because there is only one
//! `&mut Connection`.

use std::task::{Context, Poll};

use crate::conn::Connection;
use crate::error::Error;
use crate::protocol::backend::message_name;
use crate::protocol::{DbError, Message};
use crate::transport::Transport;

impl<T: Transport> Connection<T> {
    /// Ready with the server's error once an ErrorResponse has arrived;
    /// pending while the server is quiet. Notices, notifications and
    /// ParameterStatus are dispatched on the way.
    ///
    /// # Errors
    /// A transport error, EOF, or any other message (the server cannot send
    /// one before our CopyDone) — the stream is then not what COPY IN expects.
    pub(crate) fn poll_watch(&mut self, cx: &mut Context<'_>) -> Poll<Result<DbError, Error>> {
        loop {
            match self.session.next_message_owned() {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(Some(Message::ErrorResponse(fields))) => {
                    return Poll::Ready(Ok(fields.to_db_error()));
                }
                Ok(Some(other)) => {
                    return Poll::Ready(Err(Error::protocol_violation(format!(
                        "{} from the server during COPY IN, before CopyDone",
                        message_kind(&other)
                    ))));
                }
                Ok(None) => {}
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
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
