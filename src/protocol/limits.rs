//! Every size and count cap the parser enforces, with where the number comes from.
//!
//! Each cap is checked before anything is allocated or looped over: a hostile
//! header or count can never make us reserve memory or spin.

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
