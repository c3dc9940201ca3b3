//! Typed wire errors: what was wrong, in which message, and in which field.

/// A backend byte stream that breaks the protocol.
///
/// Any of these means the stream is desynchronised: the connection that saw it is
/// closed and must not be reused. The caller's remedy is to reconnect; if it
/// recurs, something between us and the server (a proxy, a MITM, a bug) is
/// corrupting the stream, and the variant says where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The length field is below 4 (it counts itself) or negative.
    #[error("Invalid message length {len} in message of type {tag:?}", tag = char::from(*.tag))]
    InvalidLength {
        /// The message type byte.
        tag: u8,
        /// The length field as sent.
        len: i32,
    },
    /// The length field exceeds the configured message-size cap.
    #[error(
        "message of type {tag:?} claims {len} bytes, over the {max}-byte limit (raise max_message_len if this is legitimate)",
        tag = char::from(*.tag)
    )]
    MessageTooLarge {
        /// The message type byte.
        tag: u8,
        /// Total message size claimed by the header, type byte included.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// A type byte no backend sends (frontend-only bytes included).
    #[error("Unknown backend message type {tag:?} (0x{byte:02x})", tag = char::from(*.byte), byte = .byte)]
    UnknownMessageType {
        /// The offending type byte.
        byte: u8,
    },
    /// The body ended before the named field was complete.
    #[error("truncated message: {0} is missing")]
    MissingData(&'static str),
    /// A string field has no NUL terminator inside the body.
    #[error("missing NUL terminator in {0}")]
    MissingNul(&'static str),
    /// The body has bytes left over after its last field.
    #[error("{0} has {1} unexpected trailing bytes")]
    TrailingData(&'static str, usize),
    /// An ErrorResponse or NoticeResponse with an empty body.
    #[error("{0} has an empty body")]
    EmptyBody(&'static str),
    /// A field holds a value the protocol does not allow.
    #[error("invalid value {value} for {field}")]
    InvalidValue {
        /// The field, as `Message.field`.
        field: &'static str,
        /// The value as sent (bytes are widened).
        value: i64,
    },
    /// A declared count is above our named cap (see `protocol::limits`).
    #[error("too many {what}: {count} (limit {max})")]
    TooMany {
        /// What was being counted.
        what: &'static str,
        /// The count as sent, or as far as it was counted.
        count: i64,
        /// The cap in force.
        max: usize,
    },
    /// A DataRow whose column count differs from the rows before it in a row sink.
    #[error("DataRow has {got} columns, expected {expected}")]
    ColumnCountMismatch {
        /// Columns of the rows already in the sink.
        expected: u16,
        /// Columns of this row.
        got: u16,
    },
    /// A row sink would exceed its byte limit with this row.
    #[error("row buffer full: {len} bytes held, this row needs {row_len} more, limit {max}")]
    RowSinkFull {
        /// Bytes already held.
        len: usize,
        /// Bytes this row adds.
        row_len: usize,
        /// The sink's limit.
        max: usize,
    },
}

/// Caller input that cannot be put on the wire.
///
/// Nothing was written: the send buffer is as it was before the call, and the
/// connection stays usable. Fix the input and call again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string that goes on the wire NUL-terminated contains a NUL byte.
    #[error("{what} contains a NUL byte at offset {offset}; PostgreSQL strings cannot contain NUL")]
    NulInString {
        /// Which argument.
        what: &'static str,
        /// Byte offset of the first NUL.
        offset: usize,
    },
    /// A message would not fit the protocol's `i32` length field.
    #[error("{what} is {len} bytes, over the protocol's limit of {max}")]
    TooLong {
        /// Which message or argument.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list longer than its `i16` count field allows.
    #[error("{what} has {count} entries, over the protocol's limit of {max}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A startup parameter with an empty name (it would end the parameter list).
    #[error("startup parameter name is empty")]
    EmptyParameterName,
}
