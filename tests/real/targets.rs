//! target_session_attrs against a primary and its streaming replica (I-group).

use pg_transport::connect::TargetSessionAttrs;
use pg_transport::{Config, ErrorKind};

use crate::cluster::*;

fn config(ports: &[u16], target: &str) -> Config {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let hosts = vec!["127.0.0.1"; ports.len()].join(",");
    format!("host={hosts} port={} user={TRUST_USER} dbname=postgres sslmode=disable target_session_attrs={target}", ports.join(","))
        .parse()
        .unwrap()
}

async fn chosen(ports: &[u16], target: &str) -> pg_transport::Result<u16> {
    let (mut client, info) = pg_transport::connect(&config(ports, target)).await?;
    let recovery = client.simple_query("SELECT pg_is_in_recovery()").await?;
    let port = info.host.port;
    let in_recovery = recovery[0].rows[0][0].as_deref() == Some("t");
    assert_eq!(
        in_recovery,
        port == replica().port,
        "port {port} and its recovery state agree"
    );
    Ok(port)
}

#[tokio::test]
async fn target_session_attrs_pick_the_right_server() {
    let primary = cluster().port;
    let standby = replica().port;
    assert_eq!(chosen(&[standby, primary], "any").await.unwrap(), standby);
    assert_eq!(
        chosen(&[standby, primary], "read-write").await.unwrap(),
        primary
    );
    assert_eq!(
        chosen(&[standby, primary], "primary").await.unwrap(),
        primary
    );
    assert_eq!(
        chosen(&[primary, standby], "read-only").await.unwrap(),
        standby
    );
    assert_eq!(
        chosen(&[primary, standby], "standby").await.unwrap(),
        standby
    );
    assert_eq!(
        chosen(&[primary, standby], "prefer-standby").await.unwrap(),
        standby
    );
    assert_eq!(
        chosen(&[primary], "prefer-standby").await.unwrap(),
        primary,
        "no standby: any will do"
    );
    assert_eq!(
        config(&[primary], "prefer-standby").target_session_attrs,
        TargetSessionAttrs::PreferStandby
    );
}

#[tokio::test]
async fn no_server_matches() {
    let standby = replica().port;
    let e = chosen(&[standby], "read-write").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connect);
    assert!(e.to_string().contains("target_session_attrs"), "{e}");
}
