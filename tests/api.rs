//! The shape of the public API, checked at compile time: every public future
//! and stream is `Send` (so a tokio user can `tokio::spawn` it), over the
//! connection [`connect`] returns and over any `T: Transport`; the error type
//! is what `?`, `Box<dyn Error + Send + Sync>` and error-reporting crates
//! need; the paved-path re-exports exist; the deprecated names still resolve.
//!
//! Nothing is polled and no server is needed: the futures are only built,
//! inside functions the compiler type-checks but the tests never call. A
//! future that is not `Send` fails the build here, naming the call.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use pg_transport::connect::{self, ConfigBuilder, HostEntry, SslMode};
use pg_transport::notify::Notifications;
use pg_transport::session::BackendKey;
use pg_transport::session::copy::BoxError;
use pg_transport::transport::{
    MaybeTls, Socket, SocketOptions, TcpTransport, TlsTransport, Transport, UnixTransport,
};
use pg_transport::{
    BulkRead, CancelToken, Config, ConnectInfo, Connection, CopyInOptions, CopyInWriter,
    CopyOutStream, CopyProgress, CopySource, DbError, DefaultConnection, Error, ErrorKind, Message,
    Notification, NotificationDelivery, QueryResult, RowBuffer, RowCounter, Session, SessionConfig,
    SqlState, State, TransactionStatus, source_fn, source_reader, source_stream,
};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWrite;

fn assert_send<T: Send>(_: &T) {}

fn assert_send_stream<S: Stream + Send + Unpin>(_: &S) {}

fn assert_send_type<T: Send>() {}

fn assert_send_sync<T: Send + Sync + 'static>() {}

/// Builds (never polls) the future of every public async method of
/// `Connection`, on `$c: &mut Connection<_>`.
macro_rules! connection_futures {
    ($c:expr) => {{
        let c = $c;
        assert_send(&c.fill_recv_buf(None));
        assert_send(&c.fill_recv_buf(Some(Duration::from_secs(1))));
        assert_send(&c.recv_message(None));
        assert_send(&c.send_msg(b"x"));
        assert_send(&c.send_buf_msg());
        assert_send(&c.simple_query("SELECT 1"));
        assert_send(&c.query_stream("SELECT 1"));
        assert_send(&c.query_with("SELECT 1", &mut pg_transport::RowCounter::default()));
        assert_send(&c.pipeline(&pg_transport::session::pipeline::Pipeline::new()));
        assert_send(&c.ping());
        assert_send(&c.close_transport());
        assert_send(&c.close());
        // notify.rs
        assert_send(&c.listen("channel"));
        assert_send(&c.unlisten("channel"));
        assert_send(&c.unlisten_all());
        assert_send(&c.notify("channel", "payload"));
        assert_send(&c.wait_notification(None));
        assert_send(&c.wait_notification(Some(Duration::from_secs(1))));
        assert_send_stream(&c.notifications());
        // copy/: COPY OUT with each kind of sink, and as a stream.
        assert_send(&c.copy_out("COPY t TO STDOUT", |_: Bytes| async {
            Ok::<_, io::Error>(())
        }));
        assert_send(&c.copy_out_joined("COPY t TO STDOUT", |_: Bytes| async {
            Ok::<_, io::Error>(())
        }));
        let mut file: Vec<u8> = Vec::new();
        assert_send(&c.copy_out_to("COPY t TO STDOUT", &mut file));
        assert_send(&c.copy_out_stream("COPY t TO STDOUT"));
        assert_send(&c.copy_in_writer("COPY t FROM STDIN"));
        // copy/: COPY IN from each kind of source, with and without options.
        assert_send(&c.copy_in(
            "COPY t FROM STDIN",
            source_fn(|| async { Ok::<_, io::Error>(Bytes::new()) }),
        ));
        assert_send(&c.copy_in(
            "COPY t FROM STDIN",
            source_stream(futures_util::stream::empty::<Result<Bytes, io::Error>>()),
        ));
        assert_send(&c.copy_in(
            "COPY t FROM STDIN",
            source_reader(tokio::io::empty(), 64 * 1024),
        ));
        let mut progress = |_: CopyProgress| {};
        let options = CopyInOptions::default()
            .progress(&mut progress)
            .batch_size(1024)
            .timeout(Duration::from_secs(1));
        assert_send(&c.copy_in_with(
            "COPY t FROM STDIN",
            source_fn(|| async { Ok::<_, io::Error>(Bytes::new()) }),
            options,
        ));
    }};
}

/// Every public future of `Connection`, over any transport.
fn connection_futures_are_send<T: Transport>(c: &mut Connection<T>) {
    connection_futures!(c);
}

/// The same over the connection `connect` returns, named: a change that made
/// the generic check vacuous (a `Transport` bound dropped, say) still fails
/// here.
fn default_connection_futures_are_send(c: &mut DefaultConnection) {
    connection_futures!(c);
}

/// The streams, over any transport.
fn streams_are_send<T: Transport>(
    copy: &CopyOutStream<'_, T>,
    notes: &Notifications<'_, T>,
    rows: &pg_transport::RowStream<'_, T>,
) {
    assert_send_stream(copy);
    assert_send_stream(rows);
    assert_send_stream(notes);
}

/// The COPY IN writer and its `finish`, over any transport.
fn copy_in_writer_is_send<T: Transport>(writer: CopyInWriter<'_, T>) {
    assert_send(&writer);
    assert_send(&writer.finish());
}

/// COPY with the caller's own source, sink or writer, not one of ours: Send
/// whenever what the caller passes is.
fn copy_with_any_source_or_sink_is_send<T, S, F, Fut, E, W>(
    c: &mut Connection<T>,
    source: S,
    sink: F,
    writer: &mut W,
) where
    T: Transport,
    S: CopySource,
    F: FnMut(Bytes) -> Fut + Send,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<BoxError>,
    W: AsyncWrite + Unpin + Send + ?Sized,
{
    assert_send(&c.copy_in("COPY t FROM STDIN", source));
    assert_send(&c.copy_out("COPY t TO STDOUT", sink));
    assert_send(&c.copy_out_to("COPY t TO STDOUT", writer));
}

/// Connecting, cancelling, and the transports' own connects.
fn connect_futures_are_send<T: Transport>(
    config: &Config,
    info: &ConnectInfo,
    key: &BackendKey,
    host: &HostEntry,
    transport: T,
    token: &CancelToken,
) {
    assert_send(&pg_transport::connect(config));
    assert_send(&connect::connect_transport(transport, config, host));
    assert_send(&connect::cancel(config, info, key));
    assert_send(&token.cancel());
}

fn transport_futures_are_send<T: Transport>(
    addr: SocketAddr,
    options: &SocketOptions,
    path: &Path,
    inner: T,
    tls: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) {
    assert_send(&TcpTransport::connect(addr, options));
    assert_send(&UnixTransport::connect(path));
    assert_send(&TlsTransport::connect(inner, tls, name));
}

#[test]
fn public_futures_and_streams_are_send() {
    // The checks above are compile-time: naming them here keeps them from
    // being dead code. They are never called (they would need a server).
    type Real = MaybeTls<Socket>;
    let _ = connection_futures_are_send::<Real> as fn(&mut DefaultConnection);
    let _ = default_connection_futures_are_send as fn(&mut DefaultConnection);
    let _ = streams_are_send::<Real> as fn(&_, &_, &_);
    let _ = copy_in_writer_is_send::<Real> as fn(_);
    let _ = copy_with_any_source_or_sink_is_send::<
        Real,
        pg_transport::copy::ReaderSource<tokio::io::Empty>,
        fn(Bytes) -> std::future::Ready<Result<(), io::Error>>,
        std::future::Ready<Result<(), io::Error>>,
        io::Error,
        Vec<u8>,
    > as fn(&mut _, _, _, &mut _);
    let _ = connect_futures_are_send::<Socket> as fn(&_, &_, &_, &_, _, &_);
    let _ = transport_futures_are_send::<Socket> as fn(_, &_, &_, _, _, _);
}

#[test]
fn the_error_type_is_send_sync_static_and_std_error() {
    fn std_error<E: std::error::Error + Send + Sync + 'static>() {}
    std_error::<Error>();
    // `?` from our error into the usual boxed error.
    let boxed: Box<dyn std::error::Error + Send + Sync> =
        Error::io("reading", io::Error::other("gone")).into();
    assert!(boxed.to_string().contains("reading"), "{boxed}");
    assert!(boxed.source().is_some());
    assert_send_sync::<ErrorKind>();
    assert_send_sync::<DbError>();
}

#[test]
fn public_types_cross_tasks() {
    // A token is handed to another task to cancel from there.
    assert_send_sync::<CancelToken>();
    assert_send_sync::<Config>();
    assert_send_sync::<ConfigBuilder>();
    assert_send_sync::<ConnectInfo>();
    // A connection moves into a task (it is not Sync: the session's
    // callbacks are `Send` only; share it behind a `tokio::sync::Mutex`).
    assert_send_type::<DefaultConnection>();
    assert_send_type::<Session>();
    assert_send_type::<NotificationDelivery>();
    assert_send_type::<CopyInOptions<'static>>();
    assert_send_sync::<SessionConfig>();
    assert_send_sync::<BulkRead>();
    assert_send_sync::<Notification>();
    assert_send_sync::<QueryResult>();
    assert_send_sync::<Message<Bytes>>();
    assert_send_sync::<State>();
    assert_send_sync::<TransactionStatus>();
    assert_send_sync::<SqlState>();
    assert_send_sync::<RowBuffer>();
    assert_send_sync::<RowCounter>();
    assert_send_sync::<pg_transport::Result<()>>();
}

#[test]
fn config_is_built_from_another_crate_despite_non_exhaustive() {
    // `Config` cannot be a literal here; the builder is the typed way in.
    let config = Config::builder()
        .host("db")
        .port(5432)
        .user("app")
        .dbname("x")
        .password("pw")
        .sslmode(SslMode::VerifyFull)
        .build()
        .expect("valid settings");
    let string: Config = "host=db port=5432 user=app dbname=x password=pw sslmode=verify-full"
        .parse()
        .expect("valid string");
    assert_eq!(config, string);
}

#[test]
#[expect(deprecated, reason = "the old names must keep working for one release")]
fn deprecated_names_still_resolve() {
    let old: Option<pg_transport::Client> = None::<DefaultConnection>;
    assert!(old.is_none());
    let config = Config::new();
    assert_eq!(connect::get_hosts(&config), connect::host_list(&config));
    let session = Session::new(SessionConfig::default());
    assert!(std::ptr::eq(
        session.notifications(),
        session.notification_queue()
    ));
}
