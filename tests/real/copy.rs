//! COPY IN/OUT and LISTEN/NOTIFY against the real server (SCENARIOS J, E).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use pg_transport::{
    DefaultConnection, ErrorKind, State, TransactionStatus, source_fn, source_stream,
};

use crate::cluster::*;

async fn admin() -> DefaultConnection {
    crate::client(&cluster().socket_conninfo(TRUST_USER, "")).await
}

async fn table(client: &mut DefaultConnection, name: &str) {
    client
        .simple_query(&format!(
            "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int PRIMARY KEY, v text)"
        ))
        .await
        .unwrap();
}

/// `table(name)` holding rows `(g, 'row ' || g)` for g in 1..=rows.
async fn numbered_table(client: &mut DefaultConnection, name: &str, rows: u32) {
    table(client, name).await;
    client
        .simple_query(&format!(
            "INSERT INTO {name} SELECT g, 'row ' || g FROM generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
}

async fn count(client: &mut DefaultConnection, name: &str) -> String {
    client
        .simple_query(&format!("SELECT count(*) FROM {name}"))
        .await
        .unwrap()[0]
        .rows[0][0]
        .clone()
        .unwrap()
}

/// A lazily generated COPY text source: `rows` rows in chunks of ~`chunk` bytes,
/// with row `bad` duplicated (a unique violation), counting the bytes pulled.
fn rows_source(
    rows: u64,
    bad: Option<u64>,
    chunk: usize,
    pulled: Arc<AtomicU64>,
) -> impl pg_transport::CopySource {
    let mut next = 1u64;
    source_fn(move || {
        let pulled = pulled.clone();
        let mut buf = String::with_capacity(chunk + 64);
        while buf.len() < chunk && next <= rows {
            let id = if Some(next) == bad { 1 } else { next };
            buf.push_str(&format!(
                "{id}\tvalue number {next:>8} padded out to make a row of about one hundred bytes long.\n"
            ));
            next += 1;
        }
        async move {
            pulled.fetch_add(buf.len() as u64, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from(buf))
        }
    })
}

#[tokio::test]
async fn j99_copy_in_of_valid_data_reports_the_row_count() {
    let mut c = admin().await;
    table(&mut c, "j99").await;
    let pulled = Arc::new(AtomicU64::new(0));
    let mut seen = Vec::new();
    let mut progress = |p: pg_transport::CopyProgress| seen.push(p);
    let options = pg_transport::CopyInOptions::default().progress(&mut progress);
    let rows = c
        .copy_in_with(
            "COPY j99 FROM STDIN",
            rows_source(20_000, None, 8192, pulled.clone()),
            options,
        )
        .await
        .unwrap();
    assert_eq!(rows, 20_000);
    assert!(pulled.load(Ordering::SeqCst) > 1_000_000, "about 2 MB");
    let last = seen.last().copied().unwrap();
    assert_eq!(last.rows, 20_000);
    assert_eq!(last.bytes, pulled.load(Ordering::SeqCst));
    assert!(seen.len() > 5, "progress after each batch: {}", seen.len());
    assert_eq!(count(&mut c, "j99").await, "20000");
    assert_eq!(c.state(), State::Ready);
}

#[tokio::test]
async fn j98_bad_row_early_stops_the_stream() {
    let mut c = admin().await;
    table(&mut c, "j98").await;
    let pulled = Arc::new(AtomicU64::new(0));
    // About 50 MB if it ran to the end; the duplicate is row 2.
    let e = c
        .copy_in(
            "COPY j98 FROM STDIN",
            rows_source(1_000_000, Some(2), 16 * 1024, pulled.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.as_db_error().unwrap().code.code(), "23505");
    let sent = pulled.load(Ordering::SeqCst);
    // COPY IN yields every MiB so the reactor sees the error (`Turns`):
    // without it, up to ~8 MB (the cooperative budget x the batch) went by.
    assert!(
        sent < 5_000_000,
        "stopped early: {sent} bytes pulled of ~50 MB"
    );
    assert_eq!(c.state(), State::Ready);
    assert_eq!(c.session().transaction_status(), TransactionStatus::Idle);
    assert_eq!(count(&mut c, "j98").await, "0");
}

#[tokio::test]
async fn large_chunks_are_split_and_sent_whole() {
    let mut c = admin().await;
    c.simple_query("DROP TABLE IF EXISTS big; CREATE TABLE big (v text)")
        .await
        .unwrap();
    // One 3 MiB chunk: split into CopyData messages of at most 1 MiB.
    let line = format!("{}\n", "x".repeat(1023));
    let chunk = Bytes::from(line.repeat(3 * 1024));
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(chunk)]);
    assert_eq!(
        c.copy_in("COPY big FROM STDIN", source_stream(stream))
            .await
            .unwrap(),
        3 * 1024
    );
    let mut total = 0;
    let rows = c
        .copy_out("COPY big TO STDOUT", |b: Bytes| {
            total += b.len();
            async { Ok::<_, std::io::Error>(()) }
        })
        .await
        .unwrap();
    assert_eq!(rows, 3 * 1024);
    assert_eq!(total, 3 * 1024 * 1024);
}

/// Chunks of 16 KiB and more leave as a header plus the caller's bytes in one
/// vectored write; over TLS and a Unix socket too, every byte arrives in order.
#[tokio::test]
async fn vectored_copy_in_over_tls_and_unix_arrives_whole() {
    let c = cluster();
    for (name, conninfo) in [
        ("tls", c.url(TRUST_USER, None, "sslmode=require")),
        ("unix", c.socket_conninfo(TRUST_USER, "")),
    ] {
        let mut client = crate::client(&conninfo).await;
        let table = format!("vectored_{name}");
        client
            .simple_query(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (n int, v text)"
            ))
            .await
            .unwrap();
        // Chunks of 20 KiB to 200 KiB, each whole rows, numbered.
        let mut chunks = Vec::new();
        let mut n = 0;
        for size in (1..=10).map(|k| k * 20 * 1024) {
            let mut chunk = String::new();
            while chunk.len() < size {
                chunk.push_str(&format!("{n}\t{}\n", "v".repeat(n % 97)));
                n += 1;
            }
            chunks.push(Ok::<_, std::io::Error>(Bytes::from(chunk)));
        }
        let stream = futures_util::stream::iter(chunks);
        let rows = client
            .copy_in(&format!("COPY {table} FROM STDIN"), source_stream(stream))
            .await
            .unwrap();
        assert_eq!(rows, n as u64, "{name}");
        let check = client
            .simple_query(&format!(
                "SELECT count(*) FILTER (WHERE length(v) = n % 97), min(n), max(n) FROM {table}"
            ))
            .await
            .unwrap();
        assert_eq!(
            check[0].rows[0],
            [
                Some(n.to_string()),
                Some("0".to_owned()),
                Some((n - 1).to_string())
            ],
            "{name}: every row whole"
        );
    }
}

#[tokio::test]
async fn j101_source_error_sends_copy_fail_and_keeps_ready() {
    let mut c = admin().await;
    table(&mut c, "j101").await;
    let mut calls = 0;
    let source = source_fn(move || {
        calls += 1;
        async move {
            match calls {
                1 => Ok(Bytes::from_static(b"1\tone\n")),
                _ => Err(std::io::Error::other("disk on fire\0 (with a NUL)")),
            }
        }
    });
    let e = c.copy_in("COPY j101 FROM STDIN", source).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Callback);
    assert!(e.report().to_string().contains("disk on fire"), "{e:#}");
    assert!(
        std::error::Error::source(&e).is_some(),
        "the source's error is kept"
    );
    assert_eq!(c.state(), State::Ready);
    assert_eq!(count(&mut c, "j101").await, "0");
}

#[tokio::test]
async fn j105_j106_copy_in_misuse() {
    let mut c = admin().await;
    table(&mut c, "j105").await;
    c.simple_query("INSERT INTO j105 VALUES (1, 'a')")
        .await
        .unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let source = || {
        let p = p.clone();
        source_fn(move || {
            p.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::io::Error>(Bytes::new()) }
        })
    };
    let e = c
        .copy_in("COPY j105 TO STDOUT", source())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(e.to_string().contains("copy_out"), "{e}");
    for sql in ["SELECT 1", "SET application_name = 'x'"] {
        let e = c.copy_in(sql, source()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{sql}");
        assert_eq!(c.state(), State::Ready);
    }
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        0,
        "the source was never pulled"
    );
    assert_eq!(count(&mut c, "j105").await, "1");
}

#[tokio::test]
async fn j108_copy_out_misuse_and_from_stdin() {
    let mut c = admin().await;
    table(&mut c, "j108").await;
    let mut calls = 0;
    for sql in ["SELECT 1", "SET application_name = 'y'"] {
        let e = c
            .copy_out(sql, |_| {
                calls += 1;
                async { Ok::<_, std::io::Error>(()) }
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{sql}");
        assert_eq!(c.state(), State::Ready);
    }
    let e = c
        .copy_out("COPY j108 FROM STDIN", |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(e.to_string().contains("copy_in"), "{e}");
    assert_eq!(c.state(), State::Ready);
    assert_eq!(calls, 0, "sink never invoked");
    assert_eq!(count(&mut c, "j108").await, "0");
}

#[tokio::test]
async fn copy_out_delivers_every_row_and_sink_failure_drains() {
    let mut c = admin().await;
    numbered_table(&mut c, "cout", 5000).await;
    let mut got = Vec::new();
    let rows = c
        .copy_out("COPY cout TO STDOUT", |b: Bytes| {
            got.extend_from_slice(&b);
            async { Ok::<_, std::io::Error>(()) }
        })
        .await
        .unwrap();
    assert_eq!(rows, 5000);
    let text = String::from_utf8(got).unwrap();
    assert_eq!(text.lines().count(), 5000);
    assert_eq!(text.lines().nth(41), Some("42\trow 42"));

    // In a transaction: the sink fails part-way; drained; the transaction is untouched.
    c.simple_query("BEGIN").await.unwrap();
    let mut calls = 0;
    let e = c
        .copy_out("COPY cout TO STDOUT", |_| {
            calls += 1;
            let fail = calls == 3;
            async move {
                if fail {
                    Err(std::io::Error::other("sink full"))
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Callback);
    assert_eq!(calls, 3, "not called after it failed");
    assert_eq!(c.state(), State::Ready);
    assert_eq!(
        c.session().transaction_status(),
        TransactionStatus::InTransaction
    );
    c.simple_query("COMMIT").await.unwrap();
}

#[tokio::test]
async fn j110_j102_cancelled_copy_closes() {
    let mut c = admin().await;
    table(&mut c, "j110").await;
    c.simple_query("INSERT INTO j110 SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
        .await
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_millis(50),
        c.copy_out("COPY j110 TO STDOUT", |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, std::io::Error>(())
        }),
    )
    .await;
    assert!(r.is_err());
    assert_eq!(c.state(), State::Closed, "J110");

    let mut c = admin().await;
    let slow = source_fn(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, std::io::Error>(Bytes::new())
    });
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        c.copy_in("COPY j110 FROM STDIN", slow),
    )
    .await;
    assert!(r.is_err());
    assert_eq!(c.state(), State::Closed, "J102");
}

#[tokio::test]
async fn j114_notices_during_copy_in_are_absorbed() {
    let mut c = admin().await;
    c.simple_query(
        "DROP TABLE IF EXISTS j114; CREATE TABLE j114 (id int);
         CREATE OR REPLACE FUNCTION j114_notice() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE NOTICE 'row %', NEW.id; RETURN NEW; END $$;
         CREATE TRIGGER j114_t BEFORE INSERT ON j114 FOR EACH ROW EXECUTE FUNCTION j114_notice();",
    )
    .await
    .unwrap();
    let notices = Arc::new(AtomicUsize::new(0));
    let n = notices.clone();
    c.session_mut().set_notice_callback(move |_| {
        n.fetch_add(1, Ordering::SeqCst);
    });
    let data: String = (1..=3000).map(|i| format!("{i}\n")).collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let rows = c
        .copy_in(
            "COPY j114 FROM STDIN",
            source_stream(futures_util::stream::iter(chunks)),
        )
        .await
        .unwrap();
    assert_eq!(rows, 3000);
    assert_eq!(notices.load(Ordering::SeqCst), 3000);
}

#[tokio::test]
async fn backend_terminated_mid_copy_in_closes() {
    let mut c = admin().await;
    table(&mut c, "killed").await;
    let pid = c.session().backend_key().unwrap().process_id;
    let mut sent = 0;
    let source = source_fn(move || {
        sent += 1;
        let n = sent;
        async move {
            if n == 5 {
                // psql returns once the signal is sent; wait for the backend
                // to be gone (its FATAL and FIN then wait on the socket).
                let c = cluster();
                c.psql(&format!("SELECT pg_terminate_backend({pid})"))
                    .unwrap();
                let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}");
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while c.psql(&sql).unwrap() != "0" {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "backend {pid} still there"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Ok::<_, std::io::Error>(Bytes::from(format!("{n}\tx\n").repeat(1).into_bytes()))
        }
    });
    let e = c
        .copy_in("COPY killed FROM STDIN", source)
        .await
        .unwrap_err();
    // Over the Unix socket the next write fails at once (EPIPE) with the
    // server's FATAL still unread (see liveness::f61 over the Unix socket).
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.report().to_string().contains("Broken pipe"), "{e:#}");
    assert_eq!(c.state(), State::Closed);
    // A Closed connection never reports itself connected.
    assert!(!c.is_connected());
}

/// A NOTIFY committed by another session while the listener is in a COPY IN
/// reaches the listener once, after the COPY: PostgreSQL delivers
/// notifications between commands, never inside one, so this shows none is
/// lost across a COPY, not delivery mid-COPY (the simulator's net-copy-out
/// interleaves notifications with CopyData, which a real server does not do
/// on cue). Then while idle, by timeout, and as a stream.
#[tokio::test]
async fn notification_sent_during_copy_arrives_once_after_it_and_while_idle() {
    let c0 = cluster();
    let mut listener = admin().await;
    listener.listen("jobs").await.unwrap();
    table(&mut listener, "ncopy").await;
    let mut notifier = admin().await;
    // The source notifies from another session part-way through the COPY
    // (psql returns once the NOTIFY has committed).
    let mut step = 0;
    let source = source_fn(move || {
        step += 1;
        let n = step;
        async move {
            if n == 2 {
                c0.psql("NOTIFY jobs, 'during copy'").unwrap();
            }
            Ok::<_, std::io::Error>(if n <= 3 {
                Bytes::from(format!("{n}\tv\n"))
            } else {
                Bytes::new()
            })
        }
    });
    assert_eq!(
        listener
            .copy_in("COPY ncopy FROM STDIN", source)
            .await
            .unwrap(),
        3
    );
    let n = listener
        .wait_notification(Some(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (n.channel.as_str(), n.payload.as_str()),
        ("jobs", "during copy")
    );
    // While idle: nothing else is running on the listener.
    let waiter = async {
        listener
            .wait_notification(Some(Duration::from_secs(5)))
            .await
    };
    // join! polls the waiter first: it is parked on the socket before the
    // notification is sent. Its payload also shows "during copy" came once.
    let sender = async {
        notifier.notify("jobs", "while idle").await.unwrap();
    };
    let (got, ()) = tokio::join!(waiter, sender);
    assert_eq!(got.unwrap().unwrap().payload, "while idle");
    // Timeout with nothing pending: None, and the connection is still usable.
    assert!(
        listener
            .wait_notification(Some(Duration::from_millis(50)))
            .await
            .unwrap()
            .is_none()
    );
    listener.ping().await.unwrap();
    // The stream form.
    use futures_util::StreamExt;
    notifier.notify("jobs", "via stream").await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), listener.notifications().next())
        .await
        .unwrap();
    assert_eq!(next.unwrap().unwrap().payload, "via stream");
    listener.unlisten_all().await.unwrap();
}

#[tokio::test]
async fn e54_e58_queue_overflow_and_both_deliveries_against_the_server() {
    let c0 = cluster();
    let mut listener = admin().await;
    // E54: a bounded queue of 3, five notifications, nobody pulling.
    let mut config: pg_transport::Config = c0.socket_conninfo(TRUST_USER, "").parse().unwrap();
    config.session.notification_capacity = 3;
    let (mut bounded, _) = pg_transport::connect(&config).await.unwrap();
    bounded.listen("burst").await.unwrap();
    listener.listen("burst").await.unwrap();
    let pushed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let p = pushed.clone();
    listener
        .session_mut()
        .set_notification_delivery(pg_transport::NotificationDelivery::Both(Box::new(
            move |n| p.lock().unwrap().push(n.payload.clone()),
        )));
    c0.psql("SELECT pg_notify('burst', g::text) FROM generate_series(1, 5) g")
        .unwrap();
    // Reading happens when the connections are next used.
    bounded.ping().await.unwrap();
    let overflow = bounded.wait_notification(None).await.unwrap_err();
    assert_eq!(overflow.notifications_dropped(), Some(2));
    let rest: Vec<String> = {
        let mut v = Vec::new();
        while v.len() < 3 {
            v.push(
                bounded
                    .wait_notification(None)
                    .await
                    .unwrap()
                    .unwrap()
                    .payload,
            );
        }
        v
    };
    assert_eq!(rest, ["3", "4", "5"]);
    // E58: callback and queue both get all five, in order.
    listener.ping().await.unwrap();
    let mut pulled = Vec::new();
    while pulled.len() < 5 {
        pulled.push(
            listener
                .wait_notification(Some(Duration::from_secs(5)))
                .await
                .unwrap()
                .unwrap()
                .payload,
        );
    }
    assert_eq!(pulled, ["1", "2", "3", "4", "5"]);
    assert_eq!(*pushed.lock().unwrap(), pulled);
}

#[tokio::test]
async fn copy_out_with_notices_between_rows_delivers_every_row() {
    let mut c = admin().await;
    c.simple_query(
        "CREATE OR REPLACE FUNCTION noisy(i int) RETURNS int LANGUAGE plpgsql AS
           $$ BEGIN RAISE NOTICE 'row %', i; RETURN i; END $$;",
    )
    .await
    .unwrap();
    let notices = Arc::new(AtomicUsize::new(0));
    let n = notices.clone();
    c.session_mut().set_notice_callback(move |_| {
        n.fetch_add(1, Ordering::SeqCst);
    });
    let mut got = Vec::new();
    let rows = c
        .copy_out(
            "COPY (SELECT noisy(g) FROM generate_series(1, 2000) g) TO STDOUT",
            |b: Bytes| {
                got.extend_from_slice(&b);
                async { Ok::<_, std::io::Error>(()) }
            },
        )
        .await
        .unwrap();
    assert_eq!(rows, 2000);
    let text = String::from_utf8(got).unwrap();
    let expected: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    assert_eq!(
        text, expected,
        "every row, in order, none lost behind a notice"
    );
    assert_eq!(notices.load(Ordering::SeqCst), 2000);
}

#[tokio::test]
async fn copy_out_joined_hands_over_the_same_bytes_in_fewer_chunks() {
    let mut c = admin().await;
    numbered_table(&mut c, "cjoin", 20000).await;
    let (mut one, mut one_calls) = (Vec::new(), 0);
    let rows = c
        .copy_out("COPY cjoin TO STDOUT", |b: Bytes| {
            one.extend_from_slice(&b);
            one_calls += 1;
            async { Ok::<_, std::io::Error>(()) }
        })
        .await
        .unwrap();
    assert_eq!((rows, one_calls), (20000, 20000), "one payload per row");
    let (mut joined, mut chunks) = (Vec::new(), Vec::new());
    let rows = c
        .copy_out_joined("COPY cjoin TO STDOUT", |b: Bytes| {
            joined.extend_from_slice(&b);
            chunks.push(b);
            async { Ok::<_, std::io::Error>(()) }
        })
        .await
        .unwrap();
    assert_eq!(rows, 20000);
    assert_eq!(joined, one, "the same bytes, in order");
    assert!(
        chunks.iter().all(|c| c.ends_with(b"\n")),
        "every chunk holds whole rows"
    );
    assert!(
        chunks.len() < 20000 / 10,
        "{} chunks: not joined",
        chunks.len()
    );
    assert_eq!(c.state(), State::Ready);
}

#[tokio::test]
async fn copy_out_stream_yields_every_payload_then_the_count() {
    use futures_util::StreamExt;
    let mut c = admin().await;
    numbered_table(&mut c, "cstream", 3000).await;
    let mut expected = Vec::new();
    c.copy_out("COPY cstream TO STDOUT", |b: Bytes| {
        expected.extend_from_slice(&b);
        async { Ok::<_, std::io::Error>(()) }
    })
    .await
    .unwrap();

    let mut stream = c.copy_out_stream("COPY cstream TO STDOUT").await.unwrap();
    let (mut got, mut items) = (Vec::new(), 0);
    while let Some(item) = stream.next().await {
        got.extend_from_slice(&item.unwrap());
        items += 1;
    }
    assert_eq!(stream.rows(), Some(3000));
    assert!(stream.next().await.is_none(), "stays ended");
    assert_eq!((got, items), (expected, 3000));
    assert_eq!(c.state(), State::Ready);

    // Misuse is refused before any item, the connection kept.
    for sql in ["COPY cstream FROM STDIN", "SELECT 1"] {
        let e = c.copy_out_stream(sql).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{sql}: {e}");
        assert_eq!(c.state(), State::Ready, "{sql}");
    }

    // A server error part-way: data, then the error as the last item, Ready.
    let mut stream = c
        .copy_out_stream("COPY (SELECT 1 / (1000 - g) FROM generate_series(1, 2000) g) TO STDOUT")
        .await
        .unwrap();
    let mut before_error = 0;
    let mut error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => before_error += 1,
            Err(e) => error = Some(e),
        }
    }
    let error = error.expect("the server's error");
    assert_eq!(error.as_db_error().unwrap().code.code(), "22012", "{error}");
    assert_eq!(before_error, 999, "every row before the failing one");
    assert_eq!(c.state(), State::Ready);
    c.simple_query("SELECT 1").await.unwrap();

    // Dropped part-way: abandoned, Closed, never reused.
    let mut stream = c.copy_out_stream("COPY cstream TO STDOUT").await.unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    assert_eq!(c.state(), State::Closed);
    assert!(!c.is_connected());
    assert!(c.simple_query("SELECT 1").await.unwrap_err().is_closed());
}

#[tokio::test]
async fn copy_out_to_writes_every_row_to_a_writer_from_a_spawned_task() {
    let mut c = admin().await;
    numbered_table(&mut c, "cwriter", 5000).await;
    // Spawned: the futures are Send.
    let (rows, file, mut c) = tokio::spawn(async move {
        let mut file: Vec<u8> = Vec::new();
        let rows = c
            .copy_out_to("COPY cwriter TO STDOUT", &mut file)
            .await
            .unwrap();
        let mut count = 0u64;
        c.copy_out("COPY cwriter TO STDOUT", |_| {
            count += 1;
            async { Ok::<_, std::io::Error>(()) }
        })
        .await
        .unwrap();
        assert_eq!(count, 5000);
        (rows, file, c)
    })
    .await
    .unwrap();
    assert_eq!(rows, 5000);
    let text = String::from_utf8(file).unwrap();
    let expected: String = (1..=5000).map(|g| format!("{g}\trow {g}\n")).collect();
    assert_eq!(text, expected);

    // A writer that fails: Callback with the I/O error, drained, Ready.
    struct Full;
    impl tokio::io::AsyncWrite for Full {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Err(std::io::Error::other("disk full")))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
    let e = c
        .copy_out_to("COPY cwriter TO STDOUT", &mut Full)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Callback);
    assert_eq!(e.report().to_string(), "COPY OUT sink failed: disk full");
    assert_eq!(c.state(), State::Ready);
    c.simple_query("SELECT 1").await.unwrap();
}

/// `rows` COPY text rows numbered from 1, row `bad` carrying id 1 again.
fn row_text(rows: u64, bad: Option<u64>) -> Vec<u8> {
    let mut text = String::new();
    for n in 1..=rows {
        let id = if Some(n) == bad { 1 } else { n };
        text.push_str(&format!("{id}\twritten row {n}\n"));
    }
    text.into_bytes()
}

#[tokio::test]
async fn copy_in_writer_takes_tokio_io_copy_and_reports_the_count() {
    let mut c = admin().await;
    table(&mut c, "writer_ok").await;
    let text = row_text(50_000, None);
    let mut writer = c.copy_in_writer("COPY writer_ok FROM STDIN").await.unwrap();
    let copied = tokio::io::copy(&mut &text[..], &mut writer).await.unwrap();
    assert_eq!(copied, text.len() as u64);
    assert_eq!(writer.finish().await.unwrap(), 50_000);
    assert_eq!(count(&mut c, "writer_ok").await, "50000");
    assert_eq!(c.state(), State::Ready);
}

/// The server's error ends the writer at a write, long before the data
/// does; the connection is Ready at once, and finish says the same.
#[tokio::test]
async fn copy_in_writer_fails_a_write_soon_after_the_servers_error() {
    use tokio::io::AsyncWriteExt;
    let mut c = admin().await;
    table(&mut c, "writer_dup").await;
    let mut writer = c
        .copy_in_writer("COPY writer_dup FROM STDIN")
        .await
        .unwrap();
    writer.write_all(&row_text(2, Some(2))).await.unwrap();
    let filler = row_text(10_000, None);
    let mut written = 0usize;
    // At most 1 GB if the error were never noticed.
    let e = loop {
        assert!(written < 1 << 30, "no error after {written} bytes");
        match writer.write_all(&filler).await {
            Ok(()) => written += filler.len(),
            Err(e) => break e,
        }
    };
    // Without the writer's periodic yield this was 27.8 MB on PostgreSQL 16 in
    // CI: readiness is only refreshed when the task yields.
    assert!(written < 5 << 20, "stopped early: {written} bytes written");
    let pg = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<pg_transport::Error>())
        .expect("the server's error inside the io::Error");
    assert_eq!(pg.code().map(|c| c.code().to_owned()), Some("23505".into()));
    let e = writer.finish().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.as_db_error().unwrap().code.code(), "23505");
    assert_eq!(c.state(), State::Ready);
    assert_eq!(count(&mut c, "writer_dup").await, "0");
}

/// As a Sink of Bytes: large chunks go out without a copy, `close` ends
/// the COPY; the server's error ends the sink at `poll_ready`.
#[tokio::test]
async fn copy_in_writer_is_a_sink_of_bytes() {
    use futures_util::SinkExt;
    let mut c = admin().await;
    table(&mut c, "sink_ok").await;
    let mut sink = c.copy_in_writer("COPY sink_ok FROM STDIN").await.unwrap();
    for chunk in row_text(30_000, None).chunks(100_000) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    sink.close().await.unwrap();
    assert_eq!(sink.rows(), Some(30_000));
    drop(sink);
    assert_eq!(count(&mut c, "sink_ok").await, "30000");

    table(&mut c, "sink_dup").await;
    let mut sink = c.copy_in_writer("COPY sink_dup FROM STDIN").await.unwrap();
    sink.send(Bytes::from(row_text(2, Some(2)))).await.unwrap();
    let filler = Bytes::from(row_text(10_000, None));
    let mut sent = 0usize;
    let e = loop {
        assert!(sent < 1 << 30, "no error after {sent} bytes");
        match sink.send(filler.clone()).await {
            Ok(()) => sent += filler.len(),
            Err(e) => break e,
        }
    };
    assert!(sent < 5 << 20, "stopped early: {sent} bytes sent");
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.as_db_error().unwrap().code.code(), "23505");
    drop(sink);
    assert_eq!(c.state(), State::Ready);
    assert_eq!(count(&mut c, "sink_dup").await, "0");
}

#[tokio::test]
async fn copy_in_writer_refuses_a_statement_that_is_not_copy_from_stdin() {
    let mut c = admin().await;
    table(&mut c, "writer_misuse").await;
    let e = c
        .copy_in_writer("COPY writer_misuse TO STDOUT")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    let e = c
        .copy_in_writer("COPY no_such_table FROM STDIN")
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code.code(), "42P01");
    assert_eq!(c.state(), State::Ready);
}

/// Dropped before the end: the COPY is abandoned and the connection Closed.
#[tokio::test]
async fn copy_in_writer_dropped_midway_closes_the_connection() {
    use tokio::io::AsyncWriteExt;
    let mut c = admin().await;
    table(&mut c, "writer_drop").await;
    let mut writer = c
        .copy_in_writer("COPY writer_drop FROM STDIN")
        .await
        .unwrap();
    writer.write_all(&row_text(10, None)).await.unwrap();
    drop(writer);
    assert_eq!(c.state(), State::Closed);
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
}
