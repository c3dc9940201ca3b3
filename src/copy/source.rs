//! Where COPY IN data comes from, and the settings of one COPY IN.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::io::AsyncRead;

use crate::session::copy::BoxError;

/// Where COPY IN data comes from. Build one with [`source_fn`],
/// [`source_stream`] or [`source_reader`], or implement it.
pub trait CopySource: Send {
    /// The next chunk of COPY data; an empty chunk means the end.
    ///
    /// The future may be dropped before it completes (when the server aborts
    /// the COPY meanwhile): nothing it did is used then.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Bytes, BoxError>> + Send;
}

/// A source from an async callback returning chunks (empty = end).
pub fn source_fn<F, Fut, E>(f: F) -> FnSource<F>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<Bytes, E>> + Send,
    E: Into<BoxError>,
{
    FnSource(f)
}

/// See [`source_fn`].
#[derive(Debug)]
pub struct FnSource<F>(F);

impl<F, Fut, E> CopySource for FnSource<F>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<Bytes, E>> + Send,
    E: Into<BoxError>,
{
    async fn next_chunk(&mut self) -> Result<Bytes, BoxError> {
        (self.0)().await.map_err(Into::into)
    }
}

/// A source from a `Stream` of chunks; the stream's end (or an empty chunk) ends the COPY.
pub fn source_stream<S, E>(stream: S) -> StreamSource<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: Into<BoxError>,
{
    StreamSource(stream)
}

/// See [`source_stream`].
#[derive(Debug)]
pub struct StreamSource<S>(S);

impl<S, E> CopySource for StreamSource<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: Into<BoxError>,
{
    async fn next_chunk(&mut self) -> Result<Bytes, BoxError> {
        match std::future::poll_fn(|cx| Pin::new(&mut self.0).poll_next(cx)).await {
            None => Ok(Bytes::new()),
            Some(r) => r.map_err(Into::into),
        }
    }
}

/// A source reading an `AsyncRead` (a file, a pipe) in chunks of `chunk_size` bytes.
pub fn source_reader<R: AsyncRead + Unpin + Send>(reader: R, chunk_size: usize) -> ReaderSource<R> {
    ReaderSource {
        reader,
        chunk_size: chunk_size.max(1),
        buf: BytesMut::new(),
    }
}

/// See [`source_reader`].
#[derive(Debug)]
pub struct ReaderSource<R> {
    reader: R,
    chunk_size: usize,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin + Send> CopySource for ReaderSource<R> {
    async fn next_chunk(&mut self) -> Result<Bytes, BoxError> {
        self.buf.reserve(self.chunk_size);
        let n = tokio_util::io::read_buf(&mut self.reader, &mut self.buf).await?;
        Ok(self.buf.split_to(n).freeze())
    }
}

/// How far a COPY IN has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CopyProgress {
    /// Payload bytes handed to the transport.
    pub bytes: u64,
    /// Newlines among them: rows, for text and CSV formats.
    pub rows: u64,
}

/// Settings of one COPY IN, for [`Connection::copy_in_with`](crate::Connection::copy_in_with).
///
/// Start from [`CopyInOptions::default`] and chain the setters (the struct is
/// `#[non_exhaustive]`, so other crates cannot build it as a literal):
///
/// ```
/// # use std::time::Duration;
/// # use pg_transport::{CopyInOptions, CopyProgress};
/// let mut shown = 0;
/// let mut progress = |p: CopyProgress| shown = p.rows;
/// let options = CopyInOptions::default()
///     .batch_size(256 * 1024)
///     .timeout(Duration::from_secs(60))
///     .progress(&mut progress);
/// assert_eq!(options.batch_size, 256 * 1024);
/// ```
#[non_exhaustive]
pub struct CopyInOptions<'a> {
    /// Called after each batch is written.
    pub progress: Option<&'a mut (dyn FnMut(CopyProgress) + Send)>,
    /// Small chunks are gathered into batches of about this size before a write.
    pub batch_size: usize,
    /// Bound on the whole COPY; on expiry the connection is closed and the
    /// timeout returned.
    pub timeout: Option<Duration>,
}

impl Default for CopyInOptions<'_> {
    fn default() -> Self {
        Self {
            progress: None,
            batch_size: 64 * 1024,
            timeout: None,
        }
    }
}

impl<'a> CopyInOptions<'a> {
    /// Calls `progress` after each batch is written, with the bytes and rows
    /// handed to the transport so far. It runs inside the COPY, so it should
    /// be quick; it cannot fail.
    #[must_use]
    pub fn progress(mut self, progress: &'a mut (dyn FnMut(CopyProgress) + Send)) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Gathers small chunks into batches of about `bytes` before a write
    /// (default 64 KiB). Chunks of 16 KiB and more are sent as they are,
    /// without copying, whatever this says. Zero writes every chunk at once.
    #[must_use]
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// Bounds the whole COPY by `limit` (default: no bound). On expiry
    /// [`Connection::copy_in_with`](crate::Connection::copy_in_with) closes
    /// the connection, asks the server to cancel the statement, and fails
    /// with kind `Timeout`.
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
}

impl std::fmt::Debug for CopyInOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyInOptions")
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
