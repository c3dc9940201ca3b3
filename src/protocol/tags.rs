//! The type bytes of backend messages, which of them we accept, and their names.

/// `R`: an Authentication* request.
pub const AUTHENTICATION_TAG: u8 = b'R';
/// `K`: BackendKeyData.
pub const BACKEND_KEY_DATA_TAG: u8 = b'K';
/// `2`: BindComplete.
pub const BIND_COMPLETE_TAG: u8 = b'2';
/// `3`: CloseComplete.
pub const CLOSE_COMPLETE_TAG: u8 = b'3';
/// `C`: CommandComplete.
pub const COMMAND_COMPLETE_TAG: u8 = b'C';
/// `d`: CopyData.
pub const COPY_DATA_TAG: u8 = b'd';
/// `c`: CopyDone.
pub const COPY_DONE_TAG: u8 = b'c';
/// `G`: CopyInResponse.
pub const COPY_IN_RESPONSE_TAG: u8 = b'G';
/// `H`: CopyOutResponse.
pub const COPY_OUT_RESPONSE_TAG: u8 = b'H';
/// `W`: CopyBothResponse.
pub const COPY_BOTH_RESPONSE_TAG: u8 = b'W';
/// `D`: DataRow.
pub const DATA_ROW_TAG: u8 = b'D';
/// `I`: EmptyQueryResponse.
pub const EMPTY_QUERY_RESPONSE_TAG: u8 = b'I';
/// `E`: ErrorResponse.
pub const ERROR_RESPONSE_TAG: u8 = b'E';
/// `v`: NegotiateProtocolVersion.
pub const NEGOTIATE_PROTOCOL_VERSION_TAG: u8 = b'v';
/// `n`: NoData.
pub const NO_DATA_TAG: u8 = b'n';
/// `N`: NoticeResponse.
pub const NOTICE_RESPONSE_TAG: u8 = b'N';
/// `A`: NotificationResponse.
pub const NOTIFICATION_RESPONSE_TAG: u8 = b'A';
/// `t`: ParameterDescription.
pub const PARAMETER_DESCRIPTION_TAG: u8 = b't';
/// `S`: ParameterStatus.
pub const PARAMETER_STATUS_TAG: u8 = b'S';
/// `1`: ParseComplete.
pub const PARSE_COMPLETE_TAG: u8 = b'1';
/// `s`: PortalSuspended.
pub const PORTAL_SUSPENDED_TAG: u8 = b's';
/// `Z`: ReadyForQuery.
pub const READY_FOR_QUERY_TAG: u8 = b'Z';
/// `T`: RowDescription.
pub const ROW_DESCRIPTION_TAG: u8 = b'T';

/// Whether `tag` is the type byte of a backend message we accept.
///
/// FunctionCallResponse (`V`) is deliberately absent: we never send FunctionCall,
/// so a `V` from the server means the stream is not what we think it is.
#[inline]
#[expect(
    clippy::indexing_slicing,
    reason = "a u8 always indexes a 256-entry table"
)]
pub const fn is_backend_tag(tag: u8) -> bool {
    BACKEND_TAGS[tag as usize]
}

/// `is_backend_tag` as a table: one load instead of a jump table per message.
#[expect(
    clippy::indexing_slicing,
    reason = "const evaluation: an out-of-range index fails the build"
)]
const BACKEND_TAGS: [bool; 256] = {
    let mut table = [false; 256];
    let tags = b"RK23CdcGHWDIEvnNAtS1sZT";
    let mut i = 0;
    while i < tags.len() {
        table[tags[i] as usize] = true;
        i += 1;
    }
    table
};

/// The protocol's name for a backend message type, for error messages.
pub const fn message_name(tag: u8) -> &'static str {
    match tag {
        AUTHENTICATION_TAG => "Authentication",
        BACKEND_KEY_DATA_TAG => "BackendKeyData",
        BIND_COMPLETE_TAG => "BindComplete",
        CLOSE_COMPLETE_TAG => "CloseComplete",
        COMMAND_COMPLETE_TAG => "CommandComplete",
        COPY_DATA_TAG => "CopyData",
        COPY_DONE_TAG => "CopyDone",
        COPY_IN_RESPONSE_TAG => "CopyInResponse",
        COPY_OUT_RESPONSE_TAG => "CopyOutResponse",
        COPY_BOTH_RESPONSE_TAG => "CopyBothResponse",
        DATA_ROW_TAG => "DataRow",
        EMPTY_QUERY_RESPONSE_TAG => "EmptyQueryResponse",
        ERROR_RESPONSE_TAG => "ErrorResponse",
        NEGOTIATE_PROTOCOL_VERSION_TAG => "NegotiateProtocolVersion",
        NO_DATA_TAG => "NoData",
        NOTICE_RESPONSE_TAG => "NoticeResponse",
        NOTIFICATION_RESPONSE_TAG => "NotificationResponse",
        PARAMETER_DESCRIPTION_TAG => "ParameterDescription",
        PARAMETER_STATUS_TAG => "ParameterStatus",
        PARSE_COMPLETE_TAG => "ParseComplete",
        PORTAL_SUSPENDED_TAG => "PortalSuspended",
        READY_FOR_QUERY_TAG => "ReadyForQuery",
        ROW_DESCRIPTION_TAG => "RowDescription",
        _ => "unknown message",
    }
}
