//! Server replies drawn from the seed, and what a client must make of them.

use crate::seed::Rng;
use crate::server::encode::Sent;

/// A RowDescription and the messages that follow it: as many as the seed
/// draws, or `count`. The count is drawn either way, so a smaller `count`
/// gives a prefix of the seed's messages.
pub(crate) fn rows_reply(rng: &mut Rng, count: Option<usize>) -> Vec<Sent> {
    let mut sent = vec![Sent::RowDescription(vec!["a".into(), "b".into()])];
    let drawn = rng.below(60);
    for _ in 0..count.unwrap_or(drawn) {
        sent.push(match rng.below(6) {
            0 => Sent::Notice(rng.word(20)),
            1 => Sent::Notification {
                pid: 7,
                channel: "ch".into(),
                payload: rng.word(30),
            },
            2 => Sent::ParameterStatus("application_name".into(), rng.word(10)),
            _ => Sent::DataRow(vec![
                Some(rng.word(40).into_bytes()),
                (!rng.one_in(4)).then(|| rng.word(500).into_bytes()),
            ]),
        });
    }
    sent
}

/// The DataRows in `sent` as `simple_query` returns them.
pub(super) fn text_rows(sent: &[Sent]) -> Vec<Vec<Option<String>>> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::DataRow(cols) => Some(
                cols.iter()
                    .map(|c| c.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// CopyData, notices and notifications: as many as the seed draws, or
/// `count` (a prefix of the seed's, as in [`rows_reply`]).
pub(crate) fn copy_reply(rng: &mut Rng, count: Option<usize>) -> Vec<Sent> {
    let drawn = rng.below(80);
    (0..count.unwrap_or(drawn))
        .map(|_| match rng.below(5) {
            0 => Sent::Notification {
                pid: 1,
                channel: "c".into(),
                payload: rng.word(10),
            },
            1 => Sent::Notice(rng.word(10)),
            _ => Sent::CopyData(rng.bytes(3000)),
        })
        .collect()
}

/// The COPY data in `sent`, concatenated.
pub(super) fn copy_bytes(sent: &[Sent]) -> Vec<u8> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::CopyData(d) => Some(d.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}
