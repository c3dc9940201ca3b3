//! Streamed queries against the real server: every row of a large result,
//! the server's error part-way, a stream dropped part-way, the sink form.

use std::time::Duration;

use futures_util::TryStreamExt;
use pg_transport::{DefaultConnection, ErrorKind, RowCounter, SqlState, State};

use crate::cluster::*;

async fn admin() -> DefaultConnection {
    crate::client(&cluster().socket_conninfo(TRUST_USER, "")).await
}

#[tokio::test]
async fn query_stream_hands_out_every_row_by_index_and_name() {
    let mut c = admin().await;
    let mut rows = c
        .query_stream("SELECT g AS n, 'row ' || g AS label, NULL::int AS nothing FROM generate_series(1, 100000) g")
        .await
        .unwrap();
    let mut expected = 1u32;
    while let Some(row) = rows.try_next().await.unwrap() {
        assert_eq!(row.get_str(0).unwrap(), Some(expected.to_string().as_str()));
        let label = row.get_by_name("label").unwrap().unwrap();
        assert_eq!(label, format!("row {expected}").as_bytes());
        assert_eq!(row.get_by_name("nothing"), Some(None));
        expected += 1;
    }
    assert_eq!(expected, 100_001);
    assert_eq!(rows.tags(), ["SELECT 100000"]);
    drop(rows);
    assert_eq!(c.state(), State::Ready);
    let columns = c
        .query_stream("SELECT 1 AS one, 'x'::text AS two")
        .await
        .unwrap();
    let all: Vec<_> = columns.try_collect().await.unwrap();
    let types: Vec<u32> = all[0].columns().iter().map(|c| c.type_oid()).collect();
    assert_eq!(types, [23, 25], "int4 and text");
}

#[tokio::test]
async fn the_servers_error_part_way_ends_the_stream_and_leaves_ready() {
    let mut c = admin().await;
    let mut rows = c
        .query_stream("SELECT g, 1 / (1000 - g) FROM generate_series(1, 2000) g")
        .await
        .unwrap();
    let mut seen = 0;
    let error = loop {
        match rows.try_next().await {
            Ok(Some(_)) => seen += 1,
            Ok(None) => panic!("the stream ended without the error after {seen} rows"),
            Err(e) => break e,
        }
    };
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(error.code(), Some(SqlState::DIVISION_BY_ZERO));
    assert!(seen < 1000, "rows after the failing one: {seen}");
    assert!(
        rows.try_next().await.unwrap().is_none(),
        "nothing after the error"
    );
    drop(rows);
    assert_eq!(c.state(), State::Ready);
    let again = c.simple_query("SELECT 'still here'").await.unwrap();
    assert_eq!(again[0].rows, [[Some("still here".to_owned())]]);
}

#[tokio::test]
async fn a_stream_dropped_part_way_leaves_the_connection_closed() {
    let mut c = admin().await;
    let mut rows = c
        .query_stream("SELECT g FROM generate_series(1, 100000) g")
        .await
        .unwrap();
    assert!(rows.try_next().await.unwrap().is_some());
    drop(rows);
    assert_eq!(c.state(), State::Closed);
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert!(e.to_string().contains("cancelled part-way"), "{e}");
}

#[tokio::test]
async fn query_with_counts_rows_of_every_statement_and_refuses_copy() {
    let mut c = admin().await;
    let mut counter = RowCounter::default();
    let tags = c
        .query_with(
            "SELECT g FROM generate_series(1, 50000) g; SELECT 1; CREATE TEMP TABLE q_tmp (v int)",
            &mut counter,
        )
        .await
        .unwrap();
    assert_eq!(counter.rows, 50_001);
    assert_eq!(tags, ["SELECT 50000", "SELECT 1", "CREATE TABLE"]);
    // COPY FROM STDIN is refused with CopyFail (no hang); the connection stays usable.
    let e = c
        .query_with("COPY q_tmp FROM STDIN", &mut counter)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(e.to_string().contains("use copy_in"), "{e}");
    assert_eq!(c.state(), State::Ready);
    // The stream writes its CopyFail too; without it the server would wait forever.
    let stream = c.query_stream("COPY q_tmp FROM STDIN").await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(30), stream.try_collect::<Vec<_>>())
        .await
        .expect("the stream hung: no CopyFail reached the server");
    assert!(refused.unwrap_err().to_string().contains("use copy_in"));
    assert_eq!(c.state(), State::Ready);
    let stream = c.query_stream("COPY (SELECT 1) TO STDOUT").await.unwrap();
    let e = stream.try_collect::<Vec<_>>().await.unwrap_err();
    assert!(e.to_string().contains("use copy_out"), "{e}");
    assert_eq!(c.state(), State::Ready);
    assert_eq!(c.simple_query("SELECT 2").await.unwrap()[0].tag, "SELECT 1");
}
