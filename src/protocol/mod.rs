//! The sans-IO protocol layer: bytes in, typed messages out; messages in, bytes out.
//!
//! Contract: nothing here panics on any input, allocates past the limits in
//! [`limits`], awaits, reads a clock or draws randomness. It depends on `bytes`,
//! `memchr` and `thiserror` only — never on tokio, sockets or another module of
//! this crate.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

pub mod auth;
pub mod backend;
pub mod data_row;
pub mod error;
pub mod fields;
pub mod frontend;
pub mod limits;
mod reader;
mod tags;

pub use backend::{
    Authentication, Header, Message, TransactionStatus, parse_body, parse_header, parse_message,
};
pub use data_row::{Columns, DataRow, FieldDescription, RowDescription};
pub use error::{EncodeError, ProtocolError};
pub use fields::{DbError, Fields, SqlState};
