//! Owned rows: one [`Bytes`] per row (a slice of the receive buffer, no copy)
//! and the result's column descriptions, shared by every row of the result.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::Error;
use crate::protocol::data_row::Columns;
use crate::protocol::{DataRow, ProtocolError, RowDescription};

/// One column of a result, from the server's RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    type_oid: u32,
    table_oid: u32,
    column_id: i16,
    format: i16,
}

impl Column {
    /// The column's name (lossily decoded if the server sent invalid UTF-8).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OID of its data type (`pg_type.oid`), e.g. 23 for `int4`, 25 for `text`.
    pub fn type_oid(&self) -> u32 {
        self.type_oid
    }

    /// The OID of the table it comes from, or 0 for a computed column.
    pub fn table_oid(&self) -> u32 {
        self.table_oid
    }

    /// Its attribute number in that table, or 0.
    pub fn column_id(&self) -> i16 {
        self.column_id
    }

    /// Whether values come in the binary format (else text). The simple
    /// protocol always sends text.
    pub fn is_binary(&self) -> bool {
        self.format == 1
    }
}

/// Every column of a RowDescription, built once per result and shared.
pub(crate) fn columns_of<B: AsRef<[u8]>>(rd: &RowDescription<B>) -> Arc<[Column]> {
    rd.fields()
        .map(|f| Column {
            name: String::from_utf8_lossy(f.name).into_owned(),
            type_oid: f.type_oid,
            table_oid: f.table_oid,
            column_id: f.column_id,
            format: f.format,
        })
        .collect()
}

/// One result row, owned: its bytes share the receive buffer (one reference
/// count, no copy), its column descriptions are shared by the whole result.
///
/// Values are reached by walking the row (it was validated when it arrived):
/// [`Row::values`] visits each once; [`Row::get`] walks to one column, so
/// reading every column of a wide row by index costs a walk per column —
/// prefer `values()` there.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[Column]>,
    data: DataRow<Bytes>,
}

impl Row {
    /// Pairs a validated DataRow with its result's columns.
    ///
    /// # Errors
    /// [`ProtocolError::ColumnCountMismatch`] if the row's column count is not
    /// the RowDescription's: a server that does this cannot be trusted.
    pub(crate) fn new(columns: Arc<[Column]>, data: DataRow<Bytes>) -> Result<Self, ProtocolError> {
        let expected = u16::try_from(columns.len()).unwrap_or(u16::MAX);
        if data.column_count() != expected {
            return Err(ProtocolError::ColumnCountMismatch {
                expected,
                got: data.column_count(),
            });
        }
        Ok(Self { columns, data })
    }

    /// The result's columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the row has no columns (`SELECT` with an empty target list).
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The values in column order: `None` for SQL NULL, else the bytes.
    pub fn values(&self) -> Columns<'_> {
        self.data.columns()
    }

    /// The value of column `index`: `None` if there is no such column,
    /// `Some(None)` for SQL NULL.
    pub fn get(&self, index: usize) -> Option<Option<&[u8]>> {
        self.values().nth(index)
    }

    /// The value of the first column called `name` (compared exactly, as
    /// PostgreSQL reports it: unquoted names come folded to lower case).
    pub fn get_by_name(&self, name: &str) -> Option<Option<&[u8]>> {
        self.get(self.index_of(name)?)
    }

    /// The index of the first column called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The value of column `index` as text; `Ok(None)` for SQL NULL.
    ///
    /// # Errors
    /// Kind `Usage` if there is no column `index`, or its value is not UTF-8
    /// (a binary-format column, say).
    pub fn get_str(&self, index: usize) -> Result<Option<&str>, Error> {
        let value = self.get(index).ok_or_else(|| {
            Error::usage(format!(
                "no column {index}: the row has {} columns",
                self.columns.len()
            ))
        })?;
        value
            .map(|bytes| {
                std::str::from_utf8(bytes).map_err(|e| {
                    Error::usage(format!("column {index} is not valid UTF-8 text: {e}"))
                })
            })
            .transpose()
    }

    /// The row as it came: the DataRow, whose [`DataRow::raw`] is the column
    /// section on the wire.
    pub fn data_row(&self) -> &DataRow<Bytes> {
        &self.data
    }
}
