//! `examples/table_copy.rs` end to end between two databases of the test
//! cluster: a million rows with the counts checked, the target's error
//! cancelling the source, the source's error aborting the target; both
//! connections `Ready` afterwards and nothing kept on the target.

#[path = "../../examples/table_copy.rs"]
mod example;

use example::{Failed, Job, Side, copy};
use pg_transport::{DefaultConnection, ErrorKind, SqlState, State};

use crate::cluster::*;

/// A fresh database `name` with a connection to it.
async fn database(name: &str) -> DefaultConnection {
    let mut admin = crate::client(&cluster().socket_conninfo(TRUST_USER, "")).await;
    admin
        .simple_query(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    admin
        .simple_query(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    crate::client(&cluster().socket_conninfo(TRUST_USER, &format!("dbname={name}"))).await
}

async fn scalar(c: &mut DefaultConnection, sql: &str) -> String {
    let result = c.simple_query(sql).await.unwrap();
    result[0].rows[0][0].clone().unwrap()
}

const WIDE: &str = "CREATE TABLE wide (id int PRIMARY KEY, name text, amount numeric, seen timestamptz, tags text[])";

async fn source_with_rows(name: &str, rows: u32) -> DefaultConnection {
    let mut source = database(name).await;
    source
        .simple_query(&format!(
            "{WIDE}; INSERT INTO wide SELECT g, 'name ' || g, g * 1.5, \
             '2026-01-01'::timestamptz + g * interval '1 second', ARRAY['a', g::text] \
             FROM generate_series(1, {rows}) g; ANALYZE wide"
        ))
        .await
        .unwrap();
    source
}

fn job(query: Option<&str>) -> Job {
    Job {
        table: "wide".into(),
        query: query.map(str::to_owned),
        format: "text".into(),
    }
}

#[tokio::test]
async fn a_million_rows_arrive_with_the_counts_checked() {
    let mut source = source_with_rows("tc_src_a", 1_000_000).await;
    let mut target = database("tc_dst_a").await;
    target.simple_query(WIDE).await.unwrap();
    let mut seen = 0;
    let copied = copy(&mut source, &mut target, &job(None), |rows, _| seen = rows)
        .await
        .unwrap();
    assert_eq!((copied.rows, seen), (1_000_000, 1_000_000));
    let digest = "SELECT count(*), sum(id), md5(string_agg(wide::text, ',' ORDER BY id)) FROM wide";
    assert_eq!(
        scalar(&mut target, digest).await,
        scalar(&mut source, digest).await
    );
    let row = target
        .simple_query("SELECT name, amount, tags FROM wide WHERE id = 777")
        .await
        .unwrap();
    assert_eq!(
        row[0].rows[0],
        [
            Some("name 777".to_owned()),
            Some("1165.5".to_owned()),
            Some("{a,777}".to_owned())
        ]
    );
    assert_eq!(
        (source.state(), target.state()),
        (State::Ready, State::Ready)
    );
}

#[tokio::test]
async fn the_targets_error_cancels_the_source_and_keeps_nothing() {
    let mut source = source_with_rows("tc_src_b", 200_000).await;
    let mut target = database("tc_dst_b").await;
    target.simple_query(WIDE).await.unwrap();
    // Row 100,000 is already there: the target refuses it part-way.
    target
        .simple_query("INSERT INTO wide (id) VALUES (100000)")
        .await
        .unwrap();
    let Failed { side, error } = copy(&mut source, &mut target, &job(None), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(side, Side::Target);
    assert_eq!(error.code(), Some(SqlState::UNIQUE_VIOLATION));
    assert_eq!(
        (source.state(), target.state()),
        (State::Ready, State::Ready)
    );
    assert_eq!(scalar(&mut target, "SELECT count(*) FROM wide").await, "1");
    assert_eq!(
        scalar(&mut source, "SELECT count(*) FROM wide").await,
        "200000"
    );
}

#[tokio::test]
async fn the_sources_error_aborts_the_target_and_keeps_nothing() {
    let mut source = database("tc_src_c").await;
    let mut target = database("tc_dst_c").await;
    target.simple_query(WIDE).await.unwrap();
    // The source's query fails at row 150,000.
    let failing =
        "SELECT g, 'n', 1 / (150000 - g), now(), ARRAY['x'] FROM generate_series(1, 300000) g";
    let Failed { side, error } = copy(&mut source, &mut target, &job(Some(failing)), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(side, Side::Source);
    assert_eq!(error.code(), Some(SqlState::DIVISION_BY_ZERO));
    assert_eq!(
        (source.state(), target.state()),
        (State::Ready, State::Ready)
    );
    assert_eq!(scalar(&mut target, "SELECT count(*) FROM wide").await, "0");
    // The target's COPY was refused with CopyFail; its connection works.
    let e = target.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
}
