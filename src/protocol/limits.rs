//! Every size, count and time cap, with where the number comes from: the
//! parser's, and the defaults the session and the async shell bound their
//! queues, collections, CPU and waits with.
//!
//! Each cap is checked before anything is allocated or looped over: a hostile
//! header or count can never make us reserve memory or spin.

use std::time::Duration;

/// Bytes in a backend message header: one type byte and a four-byte length.
pub const HEADER_LEN: usize = 5;

/// Default cap on one backend message, header included: 1 GiB.
///
/// PostgreSQL's own `MaxAllocSize` is 1 GiB - 1, so no legal single field can be
/// larger; a DataRow of several such fields could be, and callers that expect that
/// raise the cap through the session's configuration.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 1 << 30;

/// Most fields in one ErrorResponse or NoticeResponse.
///
/// The server sends at most 18 distinct field types today (`src/backend/utils/error/elog.c`);
/// 128 leaves room for future ones while bounding a hostile stream.
pub const MAX_ERROR_FIELDS: usize = 128;

/// Most mechanisms in one AuthenticationSASL message (the server offers two today).
pub const MAX_SASL_MECHANISMS: usize = 64;

/// Most unrecognised options in one NegotiateProtocolVersion message.
pub const MAX_PROTOCOL_OPTIONS: usize = 1024;

/// Longest BackendKeyData secret: protocol 3.2 allows up to 256 bytes (3.0 uses 4).
pub const MAX_CANCEL_KEY_LEN: usize = 256;

/// Largest payload we put in one frontend message: the length field is an `i32`
/// that counts itself.
pub const MAX_FRONTEND_BODY_LEN: usize = i32::MAX as usize - 4;

/// Largest CopyData payload we send in one message when splitting a large chunk.
///
/// The server accepts any size up to its 1 GiB message limit; 1 MiB keeps the
/// server's per-message buffer (and ours) small while amortising the header.
pub const MAX_COPY_DATA_CHUNK: usize = 1 << 20;

/// Default cap on the bytes a session `RowBuffer` holds: its
/// offsets are `i32`, as in the original design.
pub const DEFAULT_ROW_BUFFER_LIMIT: usize = i32::MAX as usize;

/// Default capacity of a session's notification queue; past it the oldest
/// notification is dropped and the next pull reports the overflow (kind
/// `NotificationOverflow`, with the count).
///
/// A NOTIFY payload is shorter than 8000 bytes (PostgreSQL's
/// `NOTIFY_PAYLOAD_MAX_LENGTH`) and a channel name shorter than 64
/// (`NAMEDATALEN`), so a full queue holds at most about 32 MiB however long
/// nobody pulls; an unbounded one grew for as long as the server sent. 4096 is
/// a backlog a listener that pulls at all should never reach. A capacity of 0
/// in the configuration still means unbounded, for callers who want that.
pub const DEFAULT_NOTIFICATION_CAPACITY: usize = 4096;

/// Most bytes `Connection::simple_query` collects as text rows; past it the
/// rest of the response is read and dropped, and the call fails with kind
/// `Usage` (the connection stays `Ready`).
///
/// Counted as the converted strings plus the per-row and per-column
/// bookkeeping, so it bounds the heap the result takes; without it a server
/// could fill memory with rows. 64 MiB is over ten times the largest result
/// our own tests collect (50,000 rows of ~100 bytes, `tests/real/bulk.rs`);
/// larger results belong to a streamed read (`copy_out`, or `recv_message`),
/// which holds one message at a time.
pub const MAX_SIMPLE_QUERY_RESULT_BYTES: usize = 64 << 20;

/// Fewest PBKDF2 iterations a SCRAM server may ask for: RFC 7677 says at least
/// 4096 (PostgreSQL's default `scram_iterations`); a lower count is a downgrade.
pub const MIN_SCRAM_ITERATIONS: u32 = 4096;

/// Most PBKDF2 iterations a SCRAM server may ask for: the count comes from the
/// server before it has proved anything, and each iteration costs us two
/// HMAC-SHA-256, so an unbounded count (up to `u32::MAX`, an hour or more of
/// one core) is a CPU denial of service.
///
/// OWASP's 2023 guidance for PBKDF2-HMAC-SHA-256 is 600,000; PostgreSQL allows
/// any `scram_iterations` up to `INT_MAX`. 10,000,000 leaves 16 times OWASP's
/// figure (2,441 times the default) for administrators who raise it, while
/// bounding a hostile server to seconds of one core per attempt.
pub const MAX_SCRAM_ITERATIONS: u32 = 10_000_000;

/// Longest CopyFail reason we send, in bytes; a longer one is truncated (at a
/// character boundary), not refused.
///
/// Truncated because the CopyFail must go out regardless: it is how a COPY IN
/// is aborted, and refusing it would leave the server waiting for data. The
/// server accepts up to its 1 GiB limit (`PQ_LARGE_MESSAGE_LIMIT` in COPY
/// mode) but only echoes the reason in its error ("COPY from stdin failed:
/// …") and its log; 64 KiB keeps both readable and small.
pub const MAX_COPY_FAIL_REASON_LEN: usize = 64 * 1024;

/// How long `Connection::close` waits to hand Terminate to the transport
/// before it closes anyway: closing must not hang on a server that stopped
/// reading. One second is ample for a few bytes into a socket buffer with room;
/// a buffer without room after that long means the server is gone.
pub const TERMINATE_WAIT: Duration = Duration::from_secs(1);

/// How long a COPY IN that timed out waits for its CancelRequest to be
/// delivered before giving up on it (the COPY's own timeout error is returned
/// either way). A CancelRequest is a fresh connection and 16 bytes; five
/// seconds covers a slow connect without stretching the caller's timeout much
/// further. (`connect::cancel` has its own 10-second bound for the server to
/// close the cancel connection.)
pub const COPY_CANCEL_WAIT: Duration = Duration::from_secs(5);
