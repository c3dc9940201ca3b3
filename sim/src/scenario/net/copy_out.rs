//! `net-copy-out`: COPY OUT with notifications between CopyData, through
//! each of the client's COPY OUT forms.

use bytes::Bytes;

use super::harness::{Client, connect, finish, simulate};
use super::reply::{copy_bytes, copy_reply};
use crate::scenario::Outcome;
use crate::scenario::variant::{COPY_OUT_SALT, CopyOutForm, CopyOutVariant};
use crate::seed::{Rng, Seed};
use crate::server::encode::Sent;
use crate::server::pg::{Reply, Script};

/// COPY OUT: every CopyData byte arrives, in order, notifications on the side.
pub fn copy_out(seed: Seed) -> Outcome {
    copy_out_with(seed, CopyOutVariant::from_seed(seed))
}

/// [`copy_out`] with its choices given.
pub fn copy_out_with(seed: Seed, v: CopyOutVariant) -> Outcome {
    let mut rng = Rng::new(Seed(seed.0 ^ COPY_OUT_SALT));
    let sent = copy_reply(&mut rng, Some(v.messages));
    let expected = copy_bytes(&sent);
    let script = Script::plain(Reply::CopyOut(sent)).tls_if(v.tls);
    let form = v.form;
    let payload_ends: Vec<usize> = {
        let mut end = 0;
        copy_payloads(&script)
            .map(|len| {
                end += len;
                end
            })
            .collect()
    };
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, _log, transcript| async move {
            let mut c = connect(plan, "prefer")
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            transcript.lock().unwrap().push(format!(
                "tls {}, form {}",
                c.tls_info().is_some(),
                form as u8
            ));
            let mut got = Vec::new();
            let mut split_inside = false;
            let sink = |b: Bytes| {
                got.extend_from_slice(&b);
                split_inside |= !b.is_empty() && !payload_ends.contains(&got.len());
                async { Ok::<_, std::io::Error>(()) }
            };
            match form {
                CopyOutForm::Callback => c.copy_out("COPY t TO STDOUT", sink).await.map(drop),
                CopyOutForm::Joined => c.copy_out_joined("COPY t TO STDOUT", sink).await.map(drop),
                CopyOutForm::Stream => copy_out_streamed(&mut c, sink).await,
            }
            .map_err(|e| format!("copy_out: {e:#}"))?;
            if split_inside {
                return Err("a chunk ended inside a CopyData message".into());
            }
            transcript
                .lock()
                .unwrap()
                .push(format!("copy out {} bytes", got.len()));
            if got != expected {
                return Err(format!(
                    "COPY data differs: {} bytes, sent {}",
                    got.len(),
                    expected.len()
                ));
            }
            Ok(())
        });
    finish(result, &log, &transcript, 0)
}

/// The payload sizes of a COPY OUT script's CopyData messages, in order.
fn copy_payloads(script: &Script) -> impl Iterator<Item = usize> + '_ {
    let sent: &[Sent] = match &script.reply {
        Reply::CopyOut(sent) => sent,
        _ => &[],
    };
    sent.iter().filter_map(|m| match m {
        Sent::CopyData(d) => Some(d.len()),
        _ => None,
    })
}

/// COPY OUT through `copy_out_stream`, each item handed to `sink`.
async fn copy_out_streamed<F, Fut>(c: &mut Client, mut sink: F) -> Result<(), pg_transport::Error>
where
    F: FnMut(Bytes) -> Fut,
    Fut: Future<Output = Result<(), std::io::Error>>,
{
    let mut stream = c.copy_out_stream("COPY t TO STDOUT").await?;
    loop {
        let next = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx)
        });
        match next.await {
            Some(Ok(b)) => {
                let _ = sink(b).await;
            }
            Some(Err(e)) => return Err(e),
            None => return Ok(()),
        }
    }
}
