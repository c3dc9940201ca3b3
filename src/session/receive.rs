//! Reception: room for reads, and the messages the caller sees, with the
//! internal ones dispatched on the way.

use bytes::{Bytes, BytesMut};

use super::{RowSink, Session};
use crate::error::Error;
use crate::mutant::{Mutant, mutant};
use crate::protocol::backend::{
    self, COPY_DATA_TAG, DATA_ROW_TAG, NEGOTIATE_PROTOCOL_VERSION_TAG, NOTICE_RESPONSE_TAG,
    NOTIFICATION_RESPONSE_TAG, PARAMETER_STATUS_TAG,
};
use crate::protocol::limits::HEADER_LEN;
use crate::protocol::{DataRow, Header, Message};

impl Session {
    /// Returns the buffer to read into, with room for the next read. A buffered
    /// header is checked against the size cap first; under the cap, its length
    /// still reserves nothing by itself: the room grows with the bytes that
    /// arrive (at most doubling what is buffered, see [`RecvBuf::prepare_read`](crate::buffer::RecvBuf::prepare_read)),
    /// so memory follows what the server sent, not what it claimed. Append at
    /// most its spare capacity, then call [`Session::commit_read`].
    ///
    /// # Errors
    /// Kind `Closed` on a closed session (do not read); kind `Protocol` (and the
    /// session closes) if the buffered header is invalid or over the cap.
    #[inline]
    pub fn prepare_read(&mut self) -> Result<&mut BytesMut, Error> {
        self.core.check_open()?;
        let missing = match backend::parse_header(self.recv.unread(), self.core.max_message_len) {
            Ok(Some(h)) => h.len.saturating_sub(self.recv.len()),
            Ok(None) => 0,
            Err(e) => return Err(self.core.protocol_failure(e)),
        };
        Ok(self.recv.prepare_read(missing))
    }

    /// Records that a read appended `n` bytes (adapts the read size).
    #[inline]
    pub fn commit_read(&mut self, n: usize) {
        self.recv.commit_read(n);
    }

    /// Appends `bytes` as if read from the server (tests, simulations, callers
    /// doing their own I/O).
    ///
    /// # Errors
    /// As [`Session::prepare_read`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.prepare_read()?.extend_from_slice(bytes);
        self.commit_read(bytes.len());
        Ok(())
    }

    /// The next message the caller must see, borrowed from the receive buffer;
    /// `Ok(None)` when no complete message is buffered (the partial one stays,
    /// the position at its start).
    ///
    /// Notices, notifications, ParameterStatus and NegotiateProtocolVersion are
    /// consumed and dispatched, never returned. DataRows are returned.
    ///
    /// # Errors
    /// Kind `Closed` on a closed session. Kind `Protocol` for a malformed or
    /// unexpected message; kind `Auth` for an authentication method we do not
    /// support. Both close the session; the position is already past the bad
    /// message, so earlier messages are never parsed again.
    #[inline]
    pub fn next_message(&mut self) -> Result<Option<Message<&[u8]>>, Error> {
        self.next_borrowed(None)
    }

    /// Like [`Session::next_message`], but DataRows go to `rows` instead of being
    /// returned (count them with [`RowCounter`](super::RowCounter), keep them with [`RowBuffer`](super::RowBuffer)).
    ///
    /// # Errors
    /// As [`Session::next_message`]; a row the sink refuses is a protocol error.
    #[inline]
    pub fn next_message_with(
        &mut self,
        rows: &mut dyn RowSink,
    ) -> Result<Option<Message<&[u8]>>, Error> {
        self.next_borrowed(Some(rows))
    }

    /// The COPY OUT fast path: if the next buffered message is a complete
    /// CopyData, its payload (sharing the receive buffer, no copy); `Ok(None)`
    /// for anything else or an incomplete message — then call
    /// [`Session::next_message_owned`]. Skips building a [`Message`].
    ///
    /// # Errors
    /// Kind `Closed` on a closed session; kind `Protocol` for a bad header (closes).
    #[inline]
    pub fn next_copy_data(&mut self) -> Result<Option<Bytes>, Error> {
        self.core.check_open()?;
        match backend::parse_header(self.recv.unread(), self.core.max_message_len) {
            Ok(Some(h)) if h.tag == COPY_DATA_TAG && h.len <= self.recv.len() => {
                let mut payload = self.recv.take_bytes(h.len);
                bytes::Buf::advance(&mut payload, HEADER_LEN);
                Ok(Some(payload))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(self.core.protocol_failure(e)),
        }
    }

    /// The row fast path: if the next buffered message is a complete DataRow,
    /// the row, checked (sharing the receive buffer, no copy); `Ok(None)` for
    /// anything else or an incomplete message — then call
    /// [`Session::next_message_owned`]. Skips building a [`Message`], whose
    /// 72-byte move was most of what an owned row cost
    /// (docs/benchmarks.md, issue 13 §2).
    ///
    /// # Errors
    /// Kind `Closed` on a closed session; kind `Protocol` for a bad header or
    /// a malformed row (closes).
    #[inline]
    pub fn next_data_row_owned(&mut self) -> Result<Option<DataRow<Bytes>>, Error> {
        self.core.check_open()?;
        match backend::parse_header(self.recv.unread(), self.core.max_message_len) {
            Ok(Some(h)) if h.tag == DATA_ROW_TAG && h.len <= self.recv.len() => {
                let mut body = self.recv.take_bytes(h.len);
                bytes::Buf::advance(&mut body, HEADER_LEN);
                match DataRow::<()>::parse_owned(body) {
                    Ok(row) => Ok(Some(row)),
                    Err(e) => Err(self.core.protocol_failure(e)),
                }
            }
            Ok(_) => Ok(None),
            Err(e) => Err(self.core.protocol_failure(e)),
        }
    }

    /// Every complete CopyData at the front of the receive buffer, joined into
    /// one [`Bytes`]: the payloads are moved together in place, over the
    /// five-byte headers between them, so a whole read's worth of rows costs
    /// one hand-over instead of one per message. `None` when the front is not a
    /// complete CopyData. Message boundaries are not kept (each chunk holds
    /// whole messages); use [`Session::next_copy_data`] to keep them.
    ///
    /// # Errors
    /// Kind `Closed` on a closed session; kind `Protocol` for a bad header at
    /// the front (closes). A bad header after some CopyData ends the run; the
    /// next call reports it.
    pub fn next_copy_data_joined(&mut self) -> Result<Option<Bytes>, Error> {
        self.core.check_open()?;
        let max = self.core.max_message_len;
        let unread = self.recv.unread_mut();
        // `read`: where the next frame starts; `joined`: payload bytes gathered
        // so far, kept from offset HEADER_LEN on (the first payload's place).
        let (mut read, mut joined) = (0, 0);
        loop {
            let rest = unread.get(read..).unwrap_or_default();
            match backend::parse_header(rest, max) {
                Ok(Some(h))
                    if (h.tag == COPY_DATA_TAG || mutant(Mutant::JoinedPastNonCopyData))
                        && h.len <= rest.len() =>
                {
                    let body = h.len - HEADER_LEN;
                    if joined != read {
                        unread.copy_within(read + HEADER_LEN..read + h.len, HEADER_LEN + joined);
                    }
                    joined += body;
                    read += h.len;
                }
                Err(e) if read == 0 => return Err(self.core.protocol_failure(e)),
                _ => break,
            }
        }
        if read == 0 {
            return Ok(None);
        }
        let mut chunk = self.recv.take_bytes(read);
        bytes::Buf::advance(&mut chunk, HEADER_LEN);
        chunk.truncate(joined);
        Ok(Some(chunk))
    }

    /// Like [`Session::next_message`], but the message owns its payloads: `Bytes`
    /// that share the receive buffer's allocation (no copy).
    ///
    /// # Errors
    /// As [`Session::next_message`].
    #[inline(always)]
    pub fn next_message_owned(&mut self) -> Result<Option<Message<Bytes>>, Error> {
        // Rows, the bulk of most responses, without the general path.
        if let Some(row) = self.next_data_row_owned()? {
            return Ok(Some(Message::DataRow(row)));
        }
        let Some(header) = self.skip_internal(None)? else {
            return Ok(None);
        };
        let mut body = self.recv.take_bytes(header.len);
        bytes::Buf::advance(&mut body, HEADER_LEN);
        // The bulk messages move the frame in whole: one reference count per
        // message instead of one per field. A DataRow returns at once:
        // `observe` never acts on one.
        if header.tag == DATA_ROW_TAG {
            return match DataRow::<()>::parse_owned(body) {
                Ok(row) => Ok(Some(Message::DataRow(row))),
                Err(e) => Err(self.core.protocol_failure(e)),
            };
        }
        let parsed = match header.tag {
            COPY_DATA_TAG => Ok(Message::CopyData(body)),
            tag => backend::parse_body(tag, &body, |s| body.slice_ref(s)),
        };
        // The same tail as `next_borrowed`, written out: a shared helper made
        // this path 13-25 % slower (one more move of the 72-byte message).
        let msg = match parsed {
            Ok(msg) => msg,
            Err(e) => return Err(self.core.protocol_failure(e)),
        };
        self.core.observe(&msg)?;
        Ok(Some(msg))
    }

    #[inline]
    fn next_borrowed(
        &mut self,
        rows: Option<&mut dyn RowSink>,
    ) -> Result<Option<Message<&[u8]>>, Error> {
        let Some(header) = self.skip_internal(rows)? else {
            return Ok(None);
        };
        let body = self
            .recv
            .take(header.len)
            .get(HEADER_LEN..)
            .unwrap_or_default();
        if header.tag == DATA_ROW_TAG {
            return match DataRow::parse(body, |s| s) {
                Ok(row) => Ok(Some(Message::DataRow(row))),
                Err(e) => Err(self.core.protocol_failure(e)),
            };
        }
        let msg = match backend::parse_body(header.tag, body, |s| s) {
            Ok(msg) => msg,
            Err(e) => return Err(self.core.protocol_failure(e)),
        };
        self.core.observe(&msg)?;
        Ok(Some(msg))
    }

    /// Consumes every buffered message the caller does not see and returns the
    /// header of the next one it does, left unconsumed; `None` if incomplete.
    #[inline]
    fn skip_internal(
        &mut self,
        mut rows: Option<&mut dyn RowSink>,
    ) -> Result<Option<Header>, Error> {
        self.core.check_open()?;
        loop {
            let header = match backend::parse_header(self.recv.unread(), self.core.max_message_len)
            {
                Ok(Some(h)) if h.len <= self.recv.len() => h,
                Ok(_) => return Ok(None),
                Err(e) => return Err(self.core.protocol_failure(e)),
            };
            let to_sink = header.tag == DATA_ROW_TAG && rows.is_some();
            let internal = matches!(
                header.tag,
                NOTICE_RESPONSE_TAG
                    | NOTIFICATION_RESPONSE_TAG
                    | PARAMETER_STATUS_TAG
                    | NEGOTIATE_PROTOCOL_VERSION_TAG
            );
            if !to_sink && !internal {
                return Ok(Some(header));
            }
            if header.tag == NOTIFICATION_RESPONSE_TAG && mutant(Mutant::NotificationNoAdvance) {
                let frame = self
                    .recv
                    .unread()
                    .get(HEADER_LEN..header.len)
                    .unwrap_or_default();
                if let Ok(msg) = backend::parse_body(header.tag, frame, |s| s) {
                    self.core.absorb(&msg)?;
                }
                return Ok(None);
            }
            // Advance first: whatever happens to this message, it is never parsed twice.
            let body = self
                .recv
                .take(header.len)
                .get(HEADER_LEN..)
                .unwrap_or_default();
            let parsed = match rows.as_deref_mut() {
                Some(sink) if to_sink => DataRow::parse(body, |s| s).and_then(|row| sink.row(row)),
                _ => match backend::parse_body(header.tag, body, |s| s) {
                    Ok(msg) => {
                        self.core.absorb(&msg)?;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = parsed {
                return Err(self.core.protocol_failure(e));
            }
        }
    }
}
