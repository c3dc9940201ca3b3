//! `Reader`: the one cursor that slices wire bytes. Every method checks bounds and
//! returns a [`ProtocolError`] naming the field it was reading; nothing here panics.

use super::error::ProtocolError;

/// A bounds-checked cursor over one message body.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    /// The bytes not yet read.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self { rest: body }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Takes exactly `n` bytes.
    #[inline]
    pub(crate) fn take(
        &mut self,
        n: usize,
        field: &'static str,
    ) -> Result<&'a [u8], ProtocolError> {
        if n > self.rest.len() {
            return Err(ProtocolError::MissingData(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    #[inline]
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], ProtocolError> {
        let bytes = self.take(N, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| ProtocolError::MissingData(field))
    }

    #[inline]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        let [b] = self.array::<1>(field)?;
        Ok(b)
    }

    #[inline]
    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, ProtocolError> {
        self.array(field).map(i16::from_be_bytes)
    }

    #[inline]
    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        self.array(field).map(i32::from_be_bytes)
    }

    #[inline]
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        self.array(field).map(u32::from_be_bytes)
    }

    /// A non-negative `i16` count, as `usize`.
    #[inline]
    pub(crate) fn count16(&mut self, field: &'static str) -> Result<usize, ProtocolError> {
        let n = self.i16(field)?;
        usize::try_from(n).map_err(|_| ProtocolError::InvalidValue {
            field,
            value: i64::from(n),
        })
    }

    /// A NUL-terminated string, without its terminator.
    #[inline]
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<&'a [u8], ProtocolError> {
        let end = memchr::memchr(0, self.rest).ok_or(ProtocolError::MissingNul(field))?;
        let s = self.take(end, field)?;
        self.take(1, field)?;
        Ok(s)
    }

    /// Fails unless every byte has been read.
    #[inline]
    pub(crate) fn finish(&self, message: &'static str) -> Result<(), ProtocolError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(ProtocolError::TrailingData(message, n)),
        }
    }
}
