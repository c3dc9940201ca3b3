//! DataRow and RowDescription: validated once at parse time, then read through
//! iterators that borrow the frame. This is the hot path: no allocation per row.

use super::error::ProtocolError;
use super::reader::Reader;

/// One DataRow: its column count and the column bytes, validated at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRow<B> {
    column_count: u16,
    /// The body after the count: per column an `i32` length (-1 = NULL) and the bytes.
    columns: B,
}

impl<B> DataRow<B> {
    /// Validates a DataRow body (everything after the header).
    #[inline]
    pub(crate) fn parse<'a>(
        body: &'a [u8],
        map: impl Fn(&'a [u8]) -> B,
    ) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body);
        let count = r.count16("DataRow.column_count")?;
        let columns = r.rest();
        for _ in 0..count {
            let len = r.i32("DataRow.column_len")?;
            match usize::try_from(len) {
                Ok(n) => {
                    r.take(n, "DataRow.column_data")?;
                }
                Err(_) if len == -1 => {}
                Err(_) => {
                    return Err(ProtocolError::InvalidValue {
                        field: "DataRow.column_len",
                        value: i64::from(len),
                    });
                }
            }
        }
        r.finish("DataRow")?;
        Ok(Self {
            column_count: u16::try_from(count).unwrap_or(u16::MAX),
            columns: map(columns),
        })
    }

    /// Validates an owned DataRow body and keeps it, without a copy or an
    /// extra reference count.
    #[inline]
    pub(crate) fn parse_owned(
        mut body: bytes::Bytes,
    ) -> Result<DataRow<bytes::Bytes>, ProtocolError> {
        let row = DataRow::parse(&body, |_| ())?;
        bytes::Buf::advance(&mut body, 2);
        Ok(DataRow {
            column_count: row.column_count,
            columns: body,
        })
    }

    /// Number of columns.
    #[inline]
    pub fn column_count(&self) -> u16 {
        self.column_count
    }
}

impl<B: AsRef<[u8]>> DataRow<B> {
    /// The columns in order: `None` for SQL NULL, else the value's bytes (text or
    /// binary as requested).
    #[inline]
    pub fn columns(&self) -> Columns<'_> {
        Columns {
            r: Reader::new(self.columns.as_ref()),
            left: self.column_count,
        }
    }

    /// Bytes of column data after the count: lengths and values together.
    pub fn payload_len(&self) -> usize {
        self.columns.as_ref().len()
    }

    /// The raw column section (lengths and values), as sent.
    pub fn raw(&self) -> &[u8] {
        self.columns.as_ref()
    }
}

/// Iterator over a [`DataRow`]'s columns.
#[derive(Debug, Clone)]
pub struct Columns<'a> {
    r: Reader<'a>,
    left: u16,
}

impl<'a> Iterator for Columns<'a> {
    type Item = Option<&'a [u8]>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        // The row was validated when it was parsed, so these reads cannot fail; if
        // they somehow did, ending the iteration is the safe answer.
        let len = self.r.i32("DataRow.column_len").ok()?;
        match usize::try_from(len) {
            Ok(n) => self.r.take(n, "DataRow.column_data").ok().map(Some),
            Err(_) => Some(None),
        }
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for Columns<'_> {}

/// One RowDescription: the count and the field descriptions, validated at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDescription<B> {
    field_count: u16,
    fields: B,
}

/// One column's description in a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    /// Column name.
    pub name: &'a [u8],
    /// OID of the source table, or 0.
    pub table_oid: u32,
    /// Attribute number in the source table, or 0.
    pub column_id: i16,
    /// OID of the column's data type.
    pub type_oid: u32,
    /// `pg_type.typlen` (negative for variable length).
    pub type_size: i16,
    /// `pg_attribute.atttypmod`.
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// Bytes after a field name: table OID, column id, type OID, size, modifier, format.
const FIELD_META_LEN: usize = 4 + 2 + 4 + 2 + 4 + 2;

impl<B> RowDescription<B> {
    #[inline]
    pub(crate) fn parse<'a>(
        body: &'a [u8],
        map: impl Fn(&'a [u8]) -> B,
    ) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body);
        let count = r.count16("RowDescription.field_count")?;
        let fields = r.rest();
        for _ in 0..count {
            r.cstr("RowDescription.name")?;
            r.take(FIELD_META_LEN, "RowDescription.field metadata")?;
        }
        r.finish("RowDescription")?;
        Ok(Self {
            field_count: u16::try_from(count).unwrap_or(u16::MAX),
            fields: map(fields),
        })
    }

    /// Number of fields.
    pub fn field_count(&self) -> u16 {
        self.field_count
    }
}

impl<B: AsRef<[u8]>> RowDescription<B> {
    /// The field descriptions in column order.
    pub fn fields(&self) -> impl Iterator<Item = FieldDescription<'_>> {
        let mut r = Reader::new(self.fields.as_ref());
        (0..self.field_count).map_while(move |_| read_field(&mut r).ok())
    }
}

fn read_field<'a>(r: &mut Reader<'a>) -> Result<FieldDescription<'a>, ProtocolError> {
    Ok(FieldDescription {
        name: r.cstr("RowDescription.name")?,
        table_oid: r.u32("RowDescription.table_oid")?,
        column_id: r.i16("RowDescription.column_id")?,
        type_oid: r.u32("RowDescription.type_oid")?,
        type_size: r.i16("RowDescription.type_size")?,
        type_modifier: r.i32("RowDescription.type_modifier")?,
        format: r.i16("RowDescription.format")?,
    })
}
