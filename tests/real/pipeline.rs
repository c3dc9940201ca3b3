//! Pipelines against the real server: replies per request, an error at
//! each position skipping the rest and rolling the pipeline back, binary
//! formats, and a pipeline larger than the sockets' buffers.

use std::time::Duration;

use pg_transport::session::pipeline::{Format, Pipeline, Response};
use pg_transport::{DefaultConnection, ErrorKind, SqlState, State};

use crate::cluster::*;

async fn admin() -> DefaultConnection {
    crate::client(&cluster().socket_conninfo(TRUST_USER, "")).await
}

fn words(responses: &[Response]) -> Vec<String> {
    responses
        .iter()
        .map(|r| match r {
            Response::Rows(set) => {
                let first = set
                    .rows
                    .first()
                    .map(|row| row.get_str(0).unwrap().map(str::to_owned));
                format!("{} {:?}", set.tag, first.flatten())
            }
            Response::Prepared(p) => format!("prepared {:?}", p.param_types),
            Response::Closed => "closed".into(),
            Response::Failed(e) => format!(
                "failed {}",
                e.code()
                    .map_or_else(|| "-".to_owned(), |c| c.code().to_owned())
            ),
            Response::Skipped => "skipped".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn every_request_is_answered_in_order() {
    let mut c = admin().await;
    c.simple_query("DROP TABLE IF EXISTS pipe_a; CREATE TABLE pipe_a (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let mut p = Pipeline::new();
    p.query("SELECT $1::int + 1", &[Some(b"41")])
        .unwrap()
        .prepare("ins", "INSERT INTO pipe_a VALUES ($1, $2)", &[])
        .unwrap()
        .execute("ins", &[Some(b"1"), Some(b"one")])
        .unwrap()
        .execute("ins", &[Some(b"2"), None])
        .unwrap()
        .query("SELECT count(*) FROM pipe_a", &[])
        .unwrap()
        .close("ins")
        .unwrap()
        .query("", &[])
        .unwrap();
    let responses = c.pipeline(&p).await.unwrap();
    assert_eq!(
        words(&responses),
        [
            "SELECT 1 Some(\"42\")",
            "prepared [23, 25]",
            "INSERT 0 1 None",
            "INSERT 0 1 None",
            "SELECT 1 Some(\"2\")",
            "closed",
            " None",
        ]
    );
    assert_eq!(c.state(), State::Ready);
}

#[tokio::test]
async fn an_error_at_each_position_fails_it_skips_the_rest_and_rolls_back() {
    let mut c = admin().await;
    c.simple_query("DROP TABLE IF EXISTS pipe_b; CREATE TABLE pipe_b (id int PRIMARY KEY)")
        .await
        .unwrap();
    for failing in 0..4 {
        let mut p = Pipeline::new();
        for i in 0..4 {
            if i == failing {
                // A duplicate key: the row 100 goes in twice.
                p.query("INSERT INTO pipe_b VALUES (100), (100)", &[])
                    .unwrap();
            } else {
                p.query(
                    "INSERT INTO pipe_b VALUES ($1)",
                    &[Some(i.to_string().as_bytes())],
                )
                .unwrap();
            }
        }
        let responses = c.pipeline(&p).await.unwrap();
        let mut want = vec!["INSERT 0 1 None".to_owned(); failing];
        want.push("failed 23505".into());
        want.resize(4, "skipped".into());
        assert_eq!(words(&responses), want, "failing request {failing}");
        assert_eq!(c.state(), State::Ready);
        // One implicit transaction: the requests before the error are gone too.
        let count = c.simple_query("SELECT count(*) FROM pipe_b").await.unwrap();
        assert_eq!(count[0].rows, [[Some("0".to_owned())]], "failing {failing}");
    }
    // A syntax error fails at Parse; the next pipeline runs normally.
    let mut p = Pipeline::new();
    p.query("SELEC 1", &[])
        .unwrap()
        .query("SELECT 2", &[])
        .unwrap();
    let responses = c.pipeline(&p).await.unwrap();
    assert_eq!(words(&responses), ["failed 42601", "skipped"]);
    let mut p = Pipeline::new();
    p.query("SELECT 3", &[]).unwrap();
    assert_eq!(
        words(&c.pipeline(&p).await.unwrap()),
        ["SELECT 1 Some(\"3\")"]
    );
}

#[tokio::test]
async fn a_failed_implicit_commit_is_the_pipelines_error() {
    let mut c = admin().await;
    c.simple_query(
        "DROP TABLE IF EXISTS pipe_c; CREATE TABLE pipe_c (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)",
    )
    .await
    .unwrap();
    let mut p = Pipeline::new();
    p.query("INSERT INTO pipe_c VALUES (1)", &[])
        .unwrap()
        .query("INSERT INTO pipe_c VALUES (1)", &[])
        .unwrap();
    let e = c.pipeline(&p).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.code(), Some(SqlState::UNIQUE_VIOLATION));
    assert_eq!(c.state(), State::Ready);
    let count = c.simple_query("SELECT count(*) FROM pipe_c").await.unwrap();
    assert_eq!(count[0].rows, [[Some("0".to_owned())]]);
}

#[tokio::test]
async fn binary_parameters_and_results() {
    let mut c = admin().await;
    let mut p = Pipeline::new();
    p.query_typed(
        "SELECT $1::int8 * 2",
        &[20],
        &[Some(&21i64.to_be_bytes())],
        Format::Binary,
        Format::Binary,
    )
    .unwrap();
    let responses = c.pipeline(&p).await.unwrap();
    let set = responses[0].rows().unwrap();
    assert!(set.columns[0].is_binary());
    assert_eq!(set.rows[0].get(0), Some(Some(&42i64.to_be_bytes()[..])));
}

#[tokio::test]
async fn a_pipeline_larger_than_the_socket_buffers_completes() {
    // Written before reading, 50,000 requests (about 3 MB) and their replies
    // (about 4 MB) fill both Unix socket buffers and stall both sides; the
    // requests must be written while the replies are read.
    let mut c = admin().await;
    let mut p = Pipeline::new();
    for i in 0..50_000u32 {
        p.query(
            "SELECT $1::int, repeat('x', 20)",
            &[Some(i.to_string().as_bytes())],
        )
        .unwrap();
    }
    let responses = tokio::time::timeout(Duration::from_secs(120), c.pipeline(&p))
        .await
        .expect("the pipeline stalled: requests and replies blocked each other")
        .unwrap();
    assert_eq!(responses.len(), 50_000);
    for (i, r) in responses.iter().enumerate() {
        let value = r.rows().unwrap().rows[0].get_str(0).unwrap();
        assert_eq!(value, Some(i.to_string().as_str()));
    }
    assert_eq!(c.state(), State::Ready);
}
