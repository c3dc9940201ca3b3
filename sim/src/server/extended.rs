//! The extended protocol, as far as the pipeline scenario needs it: Parse,
//! Bind, Describe, Execute, Close and Sync, answered in order; the error the
//! script plants at one message, after which everything up to the Sync is
//! skipped, as PostgreSQL does.

use super::encode::{Sent, ready_for_query};

/// The rows Execute number `request` returns: `request % 3` of them, one
/// text column, values `"<request>.<i>"`. The scenario checks against this.
pub fn rows_of(request: usize) -> Vec<String> {
    (0..request % 3).map(|i| format!("{request}.{i}")).collect()
}

/// An extended-protocol session's state.
#[derive(Debug)]
pub struct Extended {
    /// The message (counted over Parse/Bind/Describe/Execute/Close) at which
    /// to fail; `None`: never.
    fail_at: Option<usize>,
    /// `fail_at` is past the last request: fail at the Sync instead, as a
    /// deferred constraint fails the implicit COMMIT.
    fail_at_sync: bool,
    seen: usize,
    executes: usize,
    skipping: bool,
}

impl Extended {
    /// Fails at message `fail_at` (or at the Sync if `at_sync`).
    pub fn new(fail_at: Option<usize>, at_sync: bool) -> Self {
        Self {
            fail_at,
            fail_at_sync: at_sync,
            seen: 0,
            executes: 0,
            skipping: false,
        }
    }

    /// Answers one frontend message into `out`; `false` if `tag` is not
    /// one of the extended protocol's.
    pub fn take(&mut self, tag: u8, body: &[u8], out: &mut Vec<u8>) -> bool {
        if tag == b'S' {
            if std::mem::take(&mut self.fail_at_sync) && !self.skipping {
                out.extend(super::pg::error(
                    "23505",
                    "deferred: duplicate key at COMMIT",
                ));
            }
            self.skipping = false;
            ready_for_query(out, b'I');
            return true;
        }
        if !matches!(tag, b'P' | b'B' | b'D' | b'E' | b'C') {
            return false;
        }
        if self.skipping {
            return true;
        }
        let at = self.seen;
        self.seen += 1;
        if self.fail_at == Some(at) {
            self.skipping = true;
            out.extend(super::pg::error("23505", "planted: duplicate key"));
            return true;
        }
        match tag {
            b'P' => out.extend_from_slice(b"1\0\0\0\x04"),
            b'B' => out.extend_from_slice(b"2\0\0\0\x04"),
            b'C' => out.extend_from_slice(b"3\0\0\0\x04"),
            // Describe portal: one text column `v`.
            b'D' if body.first() == Some(&b'P') => {
                Sent::RowDescription(vec!["v".into()]).encode(out)
            }
            b'D' => out.extend_from_slice(b"n\0\0\0\x04"),
            _ => {
                let rows = rows_of(self.executes);
                self.executes += 1;
                for value in &rows {
                    Sent::DataRow(vec![Some(value.clone().into_bytes())]).encode(out);
                }
                Sent::CommandComplete(format!("SELECT {}", rows.len())).encode(out);
            }
        }
        true
    }
}
