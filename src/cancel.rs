//! [`CancelToken`]: cancels the query a connection is running, from another
//! task. It lives beside the connection that holds it rather than in
//! `connect/`, which knows how to reach the server: `connect` hands the token
//! a [`Cancel`] target when it makes a connection, so `conn.rs` depends on
//! this file only, never on `connect`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Error;

/// The future [`Cancel::cancel`] returns.
pub(crate) type CancelFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// Sends a CancelRequest for one connection. Implemented where connections
/// are made (`connect`), which knows the address, the TLS settings and the key.
pub(crate) trait Cancel: fmt::Debug + Send + Sync {
    /// Sends the request and waits for the server to close the cancel
    /// connection.
    fn cancel(&self) -> CancelFuture<'_>;
}

/// What [`cancel`](crate::connect::cancel) needs, kept by a connection made
/// with [`connect`](crate::connect()).
#[derive(Clone)]
pub struct CancelToken {
    target: Arc<dyn Cancel>,
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.target.fmt(f)
    }
}

impl CancelToken {
    /// A token cancelling through `target`.
    pub(crate) fn new(target: impl Cancel + 'static) -> Self {
        Self {
            target: Arc::new(target),
        }
    }

    /// Sends a CancelRequest for the connection this token came from.
    ///
    /// # Errors
    /// As [`cancel`](crate::connect::cancel): kind `Io`/`Timeout` if the
    /// cancel connection cannot be made or the server does not close it; kind
    /// `Tls` if TLS is required and fails; kind `InvalidInput` for an
    /// oversized key.
    pub async fn cancel(&self) -> Result<(), Error> {
        self.target.cancel().await
    }
}
