//! LISTEN/NOTIFY: helpers, and delivery while the connection is idle.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use crate::conn::Connection;
use crate::error::Error;
use crate::protocol::Message;
use crate::session::Notification;
use crate::transport::Transport;

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a quoted SQL string literal (standard_conforming_strings on).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl<T: Transport> Connection<T> {
    /// `LISTEN "channel"`.
    ///
    /// # Errors
    /// As [`Connection::simple_query`]; kind `InvalidInput` for a NUL in the name.
    pub async fn listen(&mut self, channel: &str) -> Result<(), Error> {
        self.simple_query(&format!("LISTEN {}", quote_ident(channel)))
            .await
            .map(drop)
    }

    /// `UNLISTEN "channel"`.
    ///
    /// # Errors
    /// As [`Connection::listen`].
    pub async fn unlisten(&mut self, channel: &str) -> Result<(), Error> {
        self.simple_query(&format!("UNLISTEN {}", quote_ident(channel)))
            .await
            .map(drop)
    }

    /// `UNLISTEN *`.
    ///
    /// # Errors
    /// As [`Connection::simple_query`].
    pub async fn unlisten_all(&mut self) -> Result<(), Error> {
        self.simple_query("UNLISTEN *").await.map(drop)
    }

    /// Sends a notification (`SELECT pg_notify(channel, payload)`).
    ///
    /// # Errors
    /// As [`Connection::simple_query`].
    pub async fn notify(&mut self, channel: &str, payload: &str) -> Result<(), Error> {
        let sql = format!(
            "SELECT pg_notify({}, {})",
            quote_literal(channel),
            quote_literal(payload)
        );
        self.simple_query(&sql).await.map(drop)
    }

    /// The next notification: from the queue if one is waiting, else read from
    /// the idle connection until one arrives. `Ok(None)` when `timeout` passes
    /// first (nothing lost: a later call continues). Dropping the call is safe.
    ///
    /// # Errors
    /// Kind `NotificationOverflow` once after drops; kind `Server` (and the
    /// connection `Closed`) when the server ends the session (a FATAL
    /// ErrorResponse, e.g. shutdown); kind `Closed`/`Io` if the connection ends;
    /// kind `State` if called while an operation is unfinished.
    pub async fn wait_notification(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Notification>, Error> {
        let wait = std::future::poll_fn(|cx| self.poll_notification(cx));
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, wait).await {
                Ok(r) => r.map(Some),
                Err(_) => Ok(None),
            },
            None => wait.await.map(Some),
        }
    }

    /// A `Stream` of notifications, reading from the idle connection as needed:
    /// each item is what [`Connection::wait_notification`] without a timeout
    /// returns (the session's queue, [`Session::notification_queue`], first).
    /// It ends (`None`) after an error that closed the connection. Dropping
    /// it loses nothing. The stream borrows the connection mutably, so no
    /// operation can run while it lives.
    ///
    /// # Errors
    /// Items: as [`Connection::wait_notification`].
    ///
    /// [`Session::notification_queue`]: crate::Session::notification_queue
    pub fn notifications(&mut self) -> Notifications<'_, T> {
        Notifications {
            conn: self,
            done: false,
        }
    }

    fn poll_notification(&mut self, cx: &mut Context<'_>) -> Poll<Result<Notification, Error>> {
        loop {
            if let Some(n) = self.session.pop_notification() {
                // Waiting idle for the next one holds no receive buffer.
                self.session.release_idle_buffers();
                return Poll::Ready(n);
            }
            if let Err(e) = self
                .check_not_abandoned()
                .and_then(|()| self.session.check_ready())
            {
                return Poll::Ready(Err(e));
            }
            // What is already buffered first: a notification can arrive in the
            // same read as the last operation's ReadyForQuery, and no new
            // bytes may ever come to wake a read. Idle, notices, notifications
            // and ParameterStatus are absorbed; a returned message means the
            // server is ending the session.
            match self.session.next_message_owned() {
                Ok(None) => {}
                Ok(Some(Message::ErrorResponse(fields))) => {
                    self.session.close();
                    return Poll::Ready(Err(Error::server(fields.to_db_error())));
                }
                Ok(Some(_)) => {
                    self.session.close();
                    return Poll::Ready(Err(Error::protocol_violation(
                        "unexpected message while the connection was idle".to_owned(),
                    )));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            if !self.session.notification_queue().is_empty() {
                continue;
            }
            match self.poll_fill_idle(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// See [`Connection::notifications`].
#[derive(Debug)]
pub struct Notifications<'a, T> {
    conn: &'a mut Connection<T>,
    done: bool,
}

impl<T: Transport> Stream for Notifications<'_, T> {
    type Item = Result<Notification, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        this.conn.poll_notification(cx).map(|r| {
            if r.as_ref()
                .is_err_and(|e| this.conn.session.is_closed() || e.is_closed())
            {
                this.done = true;
            }
            Some(r)
        })
    }
}
