//! Byte buffers: [`RecvBuf`] for what the server sends, [`SendBuf`] for what we send.
//!
//! This layer knows "bytes consumed", not messages; it depends on `bytes` only.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod recv;
mod send;

pub use recv::{RecvBuf, RecvBufConfig};
pub use send::{SEND_BUF_IDLE_CAPACITY_MAX, SendBuf};
