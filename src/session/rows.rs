//! Row sinks: where DataRows go when the caller does not want them returned one
//! by one. A sink sees each row as a borrowed view; nothing is allocated per row
//! unless the sink itself stores it.

use crate::protocol::limits::DEFAULT_ROW_BUFFER_LIMIT;
use crate::protocol::{DataRow, ProtocolError};

/// Receives DataRows consumed by [`Session::next_message_with`](super::Session::next_message_with).
pub trait RowSink {
    /// Takes one row.
    ///
    /// # Errors
    /// A [`ProtocolError`] if the row cannot be accepted (wrong column count, full).
    /// The session then closes: a row that was sent cannot be un-sent.
    fn row(&mut self, row: DataRow<&[u8]>) -> Result<(), ProtocolError>;
}

/// Counts rows and skips their contents.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowCounter {
    /// Rows seen so far.
    pub rows: u64,
}

impl RowSink for RowCounter {
    fn row(&mut self, _row: DataRow<&[u8]>) -> Result<(), ProtocolError> {
        self.rows += 1;
        Ok(())
    }
}

/// Stores rows compactly: all column bytes in one buffer, plus per-column offsets.
///
/// Every row must have the same column count as the first. The total is capped
/// (by default at `i32::MAX` bytes, the reach of the offsets); a row that would
/// pass the cap or has the wrong column count is refused and leaves the buffer
/// unchanged.
#[derive(Debug, Clone)]
pub struct RowBuffer {
    column_count: Option<u16>,
    data: Vec<u8>,
    /// Per column, in row order: `(offset into data, length)`, length -1 for NULL.
    columns: Vec<(i32, i32)>,
    limit: usize,
}

impl Default for RowBuffer {
    fn default() -> Self {
        Self::with_limit(DEFAULT_ROW_BUFFER_LIMIT)
    }
}

impl RowBuffer {
    /// An empty buffer holding at most `limit` bytes of column data
    /// (capped at `i32::MAX`).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            column_count: None,
            data: Vec::new(),
            columns: Vec::new(),
            limit: limit.min(DEFAULT_ROW_BUFFER_LIMIT),
        }
    }

    /// Number of rows held.
    pub fn len(&self) -> usize {
        match self.column_count {
            Some(0) | None => 0,
            Some(n) => self.columns.len() / usize::from(n),
        }
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Bytes of column data held.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Column count of the rows held, once a row has arrived.
    pub fn column_count(&self) -> Option<u16> {
        self.column_count
    }

    /// Row `row`, column `column`: `None` if out of range, `Some(None)` for NULL.
    pub fn get(&self, row: usize, column: usize) -> Option<Option<&[u8]>> {
        let n = usize::from(self.column_count?);
        if column >= n {
            return None;
        }
        let &(offset, len) = self.columns.get(row.checked_mul(n)?.checked_add(column)?)?;
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Some(None);
        };
        Some(self.data.get(offset..offset + len))
    }

    /// Drops all rows, keeping the allocations for reuse.
    pub fn clear(&mut self) {
        self.column_count = None;
        self.data.clear();
        self.columns.clear();
    }
}

impl RowSink for RowBuffer {
    fn row(&mut self, row: DataRow<&[u8]>) -> Result<(), ProtocolError> {
        let got = row.column_count();
        if let Some(expected) = self.column_count.filter(|&n| n != got) {
            return Err(ProtocolError::ColumnCountMismatch { expected, got });
        }
        let row_len: usize = row.columns().map(|c| c.map_or(0, <[u8]>::len)).sum();
        if self.data.len() + row_len > self.limit {
            return Err(ProtocolError::RowSinkFull {
                len: self.data.len(),
                row_len,
                max: self.limit,
            });
        }
        self.column_count = Some(got);
        for column in row.columns() {
            // Both fit in i32: the total stays within `limit`, which is at most i32::MAX.
            let offset = i32::try_from(self.data.len()).unwrap_or(i32::MAX);
            match column {
                None => self.columns.push((offset, -1)),
                Some(bytes) => {
                    self.columns
                        .push((offset, i32::try_from(bytes.len()).unwrap_or(i32::MAX)));
                    self.data.extend_from_slice(bytes);
                }
            }
        }
        Ok(())
    }
}
