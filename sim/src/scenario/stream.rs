//! Stream-level scenarios over the sans-IO session (no network yet).

use pg_transport::protocol::Message;
use pg_transport::protocol::limits::DEFAULT_MAX_MESSAGE_LEN;
use pg_transport::{ErrorKind, Session, SessionConfig, State};

use super::Outcome;
use crate::seed::{Rng, Seed};
use crate::server::encode::{Sent, authentication_ok, ready_for_query};

/// Message cap for half the runs: small, so a buffer that grew towards the cap
/// shows; the other half run with the library's default, which a declared
/// length must not turn into a reservation either.
const SMALL_MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Largest read the session's default receive buffer asks for.
const READ_SIZE_MAX: usize = 256 * 1024;

struct Run {
    rng: Rng,
    /// The client's message cap, drawn from the seed.
    max_message_len: usize,
    faults: u32,
    splits: u32,
    transcript: Vec<String>,
}

impl Run {
    fn new(seed: Seed) -> Self {
        let mut rng = Rng::new(seed);
        let max_message_len = match rng.one_in(2) {
            true => DEFAULT_MAX_MESSAGE_LEN,
            false => SMALL_MAX_MESSAGE_LEN,
        };
        Self {
            rng,
            max_message_len,
            faults: 0,
            splits: 0,
            transcript: vec![format!("max_message_len {max_message_len}")],
        }
    }

    fn finish(self, result: Result<(), String>) -> Outcome {
        Outcome {
            faults: self.faults,
            splits: self.splits,
            transcript: self.transcript,
            result,
        }
    }

    /// A read size: mostly small, sometimes a single byte, sometimes large.
    fn read_size(&mut self) -> usize {
        match self.rng.below(4) {
            0 => 1,
            1 => 1 + self.rng.below(16),
            2 => 1 + self.rng.below(512),
            _ => 1 + self.rng.below(32 * 1024),
        }
    }

    fn sent_message(&mut self, copy: bool) -> Sent {
        let rng = &mut self.rng;
        match rng.below(if copy { 4 } else { 7 }) {
            0 => Sent::Notice(rng.word(30)),
            1 => Sent::Notification {
                pid: rng.below(1 << 20) as i32,
                channel: rng.word(8),
                payload: rng.word(40),
            },
            2 => Sent::ParameterStatus(format!("p{}", rng.below(4)), rng.word(12)),
            3 if copy => Sent::CopyData(rng.bytes(2000)),
            3 | 4 => {
                let cols = rng.below(6);
                Sent::DataRow(
                    (0..cols)
                        .map(|_| (!rng.one_in(5)).then(|| rng.bytes(300)))
                        .collect(),
                )
            }
            5 => Sent::EmptyQuery,
            _ => Sent::RowDescription((0..rng.below(5)).map(|_| rng.word(10)).collect()),
        }
    }
}

fn busy_session(max_message_len: usize) -> Result<Session, String> {
    let mut s = Session::new(SessionConfig::default().max_message_len(max_message_len));
    s.startup(&[("user", "sim")]).map_err(|e| e.to_string())?;
    let mut hello = Vec::new();
    authentication_ok(&mut hello);
    ready_for_query(&mut hello, b'I');
    s.feed(&hello).map_err(|e| e.to_string())?;
    while s.next_message().map_err(|e| e.to_string())?.is_some() {}
    s.query("SELECT sim").map_err(|e| e.to_string())?;
    s.send_buf().clear();
    Ok(s)
}

/// What `deliver` reports: a returned message, then the stream offset just after it.
enum Seen<'a> {
    Message(Message<&'a [u8]>),
    Consumed(usize),
}

/// Delivers `wire` in seeded reads (never more than the room prepared), calling
/// `on` for each returned message and then with the offset after it. Returns
/// the session's first error, if any.
fn deliver(
    run: &mut Run,
    s: &mut Session,
    wire: &[u8],
    mut on: impl FnMut(&mut Run, Seen<'_>) -> Result<(), String>,
) -> Result<Option<pg_transport::Error>, String> {
    let mut fed = 0;
    while fed < wire.len() {
        let want = run.read_size();
        let buf = match s.prepare_read() {
            Ok(buf) => buf,
            Err(e) => return Ok(Some(e)),
        };
        let n = want.min(buf.capacity() - buf.len()).min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        s.commit_read(n);
        fed += n;
        run.splits += u32::from(fed < wire.len());
        // Memory follows the bytes that arrived: never more than about twice
        // what was fed (and never past the cap), plus a read's room.
        let bound = 2 * (fed.min(run.max_message_len) + READ_SIZE_MAX);
        if s.recv_buf().capacity() > bound {
            return Err(format!(
                "receive buffer grew to {} bytes after {fed} arrived (bound {bound})",
                s.recv_buf().capacity()
            ));
        }
        loop {
            match s.next_message() {
                Ok(Some(m)) => {
                    on(run, Seen::Message(m))?;
                    on(run, Seen::Consumed(fed - s.recv_buf().len()))?;
                }
                Ok(None) => break,
                Err(e) => return Ok(Some(e)),
            }
        }
    }
    Ok(None)
}

/// Checks a returned message against what the server sent.
fn matches(sent: &Sent, got: &Message<&[u8]>) -> bool {
    match (sent, got) {
        (Sent::RowDescription(names), Message::RowDescription(rd)) => rd
            .fields()
            .map(|f| f.name)
            .eq(names.iter().map(|n| n.as_bytes())),
        (Sent::DataRow(cols), Message::DataRow(row)) => {
            row.columns().eq(cols.iter().map(|c| c.as_deref()))
        }
        (Sent::CommandComplete(tag), Message::CommandComplete { tag: got }) => {
            tag.as_bytes() == *got
        }
        (Sent::EmptyQuery, Message::EmptyQueryResponse) => true,
        (Sent::CopyData(d), Message::CopyData(got)) => d == got,
        _ => false,
    }
}

/// The server's reply to a query: messages, then CommandComplete and ReadyForQuery.
fn reply(run: &mut Run) -> (Vec<Sent>, Vec<u8>, Vec<usize>) {
    let count = 1 + run.rng.below(40);
    let mut sent: Vec<Sent> = (0..count).map(|_| run.sent_message(false)).collect();
    sent.push(Sent::CommandComplete(format!("SELECT {count}")));
    let mut wire = Vec::new();
    let mut ends = Vec::new();
    for m in &sent {
        m.encode(&mut wire);
        ends.push(wire.len());
    }
    ready_for_query(&mut wire, b'I');
    (sent, wire, ends)
}

/// Checks the client returned exactly the non-internal messages, in order, each
/// with the stream position just after it; and delivered every notification.
pub(crate) fn query_stream(seed: Seed) -> Outcome {
    let mut run = Run::new(seed);
    let result = (|| {
        let mut s = busy_session(run.max_message_len)?;
        let (sent, wire, ends) = reply(&mut run);
        let visible: Vec<(usize, &Sent)> = sent
            .iter()
            .zip(&ends)
            .filter(|(m, _)| !m.is_internal())
            .map(|(m, e)| (*e, m))
            .collect();
        let mut next = 0;
        let err = deliver(&mut run, &mut s, &wire, |run, seen| match seen {
            Seen::Message(m) => {
                run.transcript.push(tag_of(&m));
                if let Message::ReadyForQuery(_) = m {
                    next += 1;
                    return Ok(());
                }
                match visible.get(next) {
                    Some((_, want)) if matches(want, &m) => Ok(()),
                    want => Err(format!("message {next}: sent {want:?}, got {m:?}")),
                }
            }
            Seen::Consumed(consumed) => {
                run.transcript.push(format!("@{consumed}"));
                let end = visible.get(next).map_or(wire.len(), |(end, _)| *end);
                next += usize::from(next < visible.len());
                match consumed == end {
                    true => Ok(()),
                    false => Err(format!(
                        "position {consumed} after message {next}, expected {end}"
                    )),
                }
            }
        })?;
        if let Some(e) = err {
            return Err(format!("unexpected error: {e:#}"));
        }
        if next != visible.len() + 1 {
            return Err(format!("{} of {} messages returned", next, visible.len()));
        }
        check_notifications(&mut s, &sent)?;
        let mut last = std::collections::BTreeMap::new();
        for m in &sent {
            if let Sent::ParameterStatus(name, value) = m {
                last.insert(name, value);
            }
        }
        for (name, value) in last {
            if s.parameter(name) != Some(value.as_str()) {
                return Err(format!(
                    "parameter {name}: {:?}, last sent {value:?}",
                    s.parameter(name)
                ));
            }
        }
        if s.state() != State::Ready {
            return Err(format!("state {:?} after ReadyForQuery", s.state()));
        }
        Ok(())
    })();
    run.finish(result)
}

fn check_notifications(s: &mut Session, sent: &[Sent]) -> Result<(), String> {
    for want in sent.iter().filter_map(|m| match m {
        Sent::Notification {
            pid,
            channel,
            payload,
        } => Some((pid, channel, payload)),
        _ => None,
    }) {
        match s.pop_notification() {
            Some(Ok(n)) if (&n.process_id, &n.channel, &n.payload) == want => {}
            other => return Err(format!("notification {want:?}: got {other:?}")),
        }
    }
    match s.pop_notification() {
        None => Ok(()),
        Some(extra) => Err(format!("extra notification {extra:?}")),
    }
}

fn tag_of(m: &Message<&[u8]>) -> String {
    format!("{m:?}")
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("?")
        .to_owned()
}

/// COPY OUT through the owned path: the data arrives whole, in order.
pub(crate) fn copy_out(seed: Seed) -> Outcome {
    let mut run = Run::new(seed);
    let result = (|| {
        let mut s = busy_session(run.max_message_len)?;
        let mut wire = vec![b'H', 0, 0, 0, 9, 0, 0, 1, 0, 0];
        let mut sent = Vec::new();
        for _ in 0..1 + run.rng.below(60) {
            let m = run.sent_message(true);
            m.encode(&mut wire);
            sent.push(m);
        }
        wire.extend_from_slice(&[b'c', 0, 0, 0, 4]);
        Sent::CommandComplete("COPY".into()).encode(&mut wire);
        ready_for_query(&mut wire, b'I');
        let expected: Vec<u8> = sent
            .iter()
            .filter_map(|m| {
                if let Sent::CopyData(d) = m {
                    Some(&d[..])
                } else {
                    None
                }
            })
            .flatten()
            .copied()
            .collect();
        let mut got = Vec::new();
        let mut fed = 0;
        while fed < wire.len() {
            let n = run.read_size().min(wire.len() - fed);
            s.feed(&wire[fed..fed + n]).map_err(|e| e.to_string())?;
            fed += n;
            run.splits += u32::from(fed < wire.len());
            while let Some(m) = s.next_message_owned().map_err(|e| e.to_string())? {
                run.transcript.push(format!("{fed}:{}", owned_tag(&m)));
                if let Message::CopyData(b) = m {
                    got.extend_from_slice(&b);
                }
            }
        }
        if got != expected {
            return Err(format!(
                "copy data differs: {} bytes received, {} sent",
                got.len(),
                expected.len()
            ));
        }
        check_notifications(&mut s, &sent)?;
        if s.state() != State::Ready {
            return Err(format!("state {:?} after COPY", s.state()));
        }
        Ok(())
    })();
    run.finish(result)
}

fn owned_tag(m: &Message<bytes::Bytes>) -> String {
    format!("{m:?}")
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("?")
        .to_owned()
}

/// One frame header corrupted: everything before it is returned exactly, then a
/// protocol error, the session Closed, and nothing more read.
pub(crate) fn corrupt_frame(seed: Seed) -> Outcome {
    let mut run = Run::new(seed);
    let result = (|| {
        let mut s = busy_session(run.max_message_len)?;
        let (sent, mut wire, ends) = reply(&mut run);
        let victim = run.rng.below(sent.len());
        let at = if victim == 0 { 0 } else { ends[victim - 1] };
        let (fault, says) = corrupt_header(&mut run, &mut wire, at);
        run.faults += 1;
        run.transcript
            .push(format!("corrupt message {victim} at {at} (kind {fault})"));
        let visible_before = sent[..victim].iter().filter(|m| !m.is_internal()).count();
        let mut seen = 0;
        let err = deliver(&mut run, &mut s, &wire, |run, event| match event {
            Seen::Message(m) => {
                run.transcript.push(tag_of(&m));
                seen += 1;
                Ok(())
            }
            Seen::Consumed(consumed) if consumed > at => {
                Err(format!("message returned past the corruption at {at}"))
            }
            Seen::Consumed(_) => Ok(()),
        })?;
        let Some(e) = err else {
            return Err("corrupted stream accepted".into());
        };
        run.transcript.push(format!("error: {e:#}"));
        if e.kind() != ErrorKind::Protocol {
            return Err(format!("expected a protocol error, got {e:#}"));
        }
        // What the parser found is the source: checked on the chain.
        if let Some(says) = says.filter(|says| !e.report().to_string().contains(says.as_str())) {
            return Err(format!("expected the error to say {says:?}, got {e:#}"));
        }
        if s.state() != State::Closed {
            return Err(format!("state {:?} after a protocol error", s.state()));
        }
        if seen != visible_before {
            return Err(format!(
                "{seen} messages before the corruption, expected {visible_before}"
            ));
        }
        match s.next_message() {
            Err(e) if e.kind() == ErrorKind::Closed => Ok(()),
            other => Err(format!("session reused after a protocol error: {other:?}")),
        }
    })();
    run.finish(result)
}

/// Corrupts the frame header at `at` in a seeded way: its tag (kind 0), a
/// length under 4 (kind 1) or one over the cap (kind 2). Returns the kind
/// and, for a bad length, words the client's error must contain.
fn corrupt_header(run: &mut Run, wire: &mut [u8], at: usize) -> (usize, Option<String>) {
    // Half the seeds corrupt the length below 4, where an off-by-one in
    // the header check would hide; the edges 3 and 0 are the likeliest.
    let fault = match run.rng.below(6) {
        0 => 0,
        1..=3 => 1,
        _ => 2,
    };
    // What the error must say: refused at the corrupted header itself,
    // not by some later check that its acceptance happened to trip.
    let mut says = None;
    match fault {
        0 => wire[at] = b"XQP?@!V"[run.rng.below(7)],
        1 => {
            let len: i32 = match run.rng.below(10) {
                0..=2 => 3,
                3 | 4 => 0,
                5 => 1,
                6 => 2,
                7 => -1,
                8 => i32::MIN,
                _ => -(1 + run.rng.below(i32::MAX as usize) as i32),
            };
            wire[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
            says = Some(format!("Invalid message length {len} in message"));
        }
        _ => {
            // Over the cap (which counts the tag byte too): half the time
            // the smallest such length, else any larger positive i32.
            let over = run.max_message_len;
            let len = if run.rng.one_in(2) {
                over
            } else {
                over + 1 + run.rng.below(i32::MAX as usize - over)
            };
            wire[at + 1..at + 5].copy_from_slice(&(len as i32).to_be_bytes());
            says = Some(format!("claims {} bytes, over the", len + 1));
        }
    }
    (fault, says)
}

/// The stream stops at a seeded byte (the server closed): only the complete
/// messages before that point are returned.
pub(crate) fn eof_mid_stream(seed: Seed) -> Outcome {
    let mut run = Run::new(seed);
    let result = (|| {
        let mut s = busy_session(run.max_message_len)?;
        let (sent, wire, ends) = reply(&mut run);
        let cut = run.rng.below(wire.len());
        run.faults += 1;
        run.transcript.push(format!("eof at {cut}"));
        let complete = ends
            .iter()
            .zip(&sent)
            .filter(|(e, m)| **e <= cut && !m.is_internal())
            .count();
        let mut seen = 0;
        if let Some(e) = deliver(&mut run, &mut s, &wire[..cut], |run, event| {
            if let Seen::Message(m) = event {
                run.transcript.push(tag_of(&m));
                seen += 1;
            }
            Ok(())
        })? {
            return Err(format!("unexpected error before EOF: {e:#}"));
        }
        // What the async driver does on EOF.
        s.close();
        if seen != complete {
            return Err(format!(
                "{seen} messages before EOF at {cut}, expected {complete}"
            ));
        }
        match s.next_message() {
            Err(e) if e.kind() == ErrorKind::Closed => Ok(()),
            other => Err(format!("closed session still parses: {other:?}")),
        }
    })();
    run.finish(result)
}
