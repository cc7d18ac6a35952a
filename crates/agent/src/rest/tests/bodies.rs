//! The JSON documents: `/patroni` (and health-check GET bodies), `/cluster`, `/history`,
//! `/config`, and serving over a real TCP listener.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::*;

#[tokio::test]
async fn patroni_status_of_a_primary() {
    let (status, body) = get_json(&primary(), "/patroni").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "running");
    assert_eq!(body["role"], "primary");
    assert_eq!(body["server_version"], 160002);
    assert_eq!(body["xlog"], json!({"location": PRIMARY_AT}));
    assert_eq!(body["timeline"], 2);
    assert_eq!(body["replication"][0]["application_name"], "node2");
    assert_eq!(body["dcs_last_seen"], 1_700_000_000);
    assert_eq!(body["database_system_identifier"], "7300000000000000001");
    assert_eq!(body["patroni"], json!({"version": crate::VERSION, "scope": "demo", "name": "node1"}));
    for absent in ["pending_restart", "pause", "tags", "cluster_unlocked", "replication_state"] {
        assert!(body.get(absent).is_none(), "{absent} should be omitted");
    }
    // A health check's GET body is the same document.
    let (_, health) = get_json(&primary(), "/replica").await;
    assert_eq!(health, body);
}

#[tokio::test]
async fn patroni_status_of_replicas_and_stopped_nodes() {
    let (_, body) = get_json(&lagging_replica(), "/patroni").await;
    assert_eq!(body["role"], "replica");
    assert_eq!(body["replication_state"], "streaming");
    assert_eq!(
        body["xlog"],
        json!({"received_location": NODE2_RECEIVED, "replayed_location": NODE2_REPLAYED, "replayed_timestamp": null, "paused": false})
    );
    assert_eq!(body["tags"], json!({"nofailover": true}));
    assert!(body.get("replication").is_none());

    let mut s = stopped();
    s.postgres.pending_restart = true;
    s.cluster.config = Some((json!({"pause": true}), 4));
    let (_, body) = get_json(&s, "/patroni").await;
    assert_eq!(body["state"], "stopped");
    assert_eq!(body["role"], "replica");
    assert_eq!(body["pending_restart"], true);
    assert_eq!(body["pause"], true);
    assert!(body.get("xlog").is_none() && body.get("timeline").is_none() && body.get("dcs_last_seen").is_none());
}

#[tokio::test]
async fn cluster_lists_members_as_patroni_4() {
    let (status, body) = get_json(&lagging_replica(), "/cluster").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["scope"], "demo");
    assert!(body.get("pause").is_none());
    let members = body["members"].as_array().expect("members");
    let names: Vec<_> = members.iter().map(|m| m["name"].as_str().unwrap_or_default()).collect();
    assert_eq!(names, ["node1", "node2", "node3"]);
    let (leader, node2, node3) = (&members[0], &members[1], &members[2]);
    assert_eq!(leader["role"], "leader");
    assert_eq!(leader["state"], "running");
    assert_eq!(leader["host"], "10.0.0.1");
    assert_eq!(leader["port"], 5432);
    assert_eq!(leader["api_url"], "http://10.0.0.1:8008/patroni");
    assert_eq!(leader["timeline"], 2);
    assert!(leader.get("lag").is_none() && leader.get("tags").is_none());
    assert_eq!(node2["role"], "replica");
    assert_eq!(node2["state"], "streaming");
    assert_eq!(node2["lag"], 20_000);
    assert_eq!(node2["lsn"], crate::cluster::format_lsn(NODE2_RECEIVED));
    assert_eq!(node2["receive_lag"], 20_000);
    assert_eq!(node2["replay_lag"], 30_000);
    assert_eq!(node2["replay_lsn"], crate::cluster::format_lsn(NODE2_REPLAYED));
    assert_eq!(node3["tags"], json!({"noloadbalance": true}));
    assert_eq!(node3["lag"], "unknown");
    assert_eq!(node3["lsn"], "unknown");

    let mut paused = primary();
    paused.cluster.config = Some((json!({"pause": true}), 4));
    paused.cluster.failover = Some(crate::cluster::FailoverRequest {
        leader: Some("node1".into()),
        member: Some("node2".into()),
        scheduled_at: Some("2026-01-01T12:00:00+00:00".into()),
    });
    let (_, body) = get_json(&paused, "/cluster").await;
    assert_eq!(body["pause"], true);
    assert_eq!(body["scheduled_switchover"], json!({"at": "2026-01-01T12:00:00+00:00", "from": "node1", "to": "node2"}));
}

#[tokio::test]
async fn history_and_config() {
    let (status, body) = get_json(&primary(), "/history").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([[1, 0x200_0060, "no recovery target specified", "2026-01-01T00:00:00+00:00", "node1"]]));
    let (status, body) = get_json(&primary(), "/config").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["maximum_lag_on_failover"], 25_000);
    let (status, _, _) = call(&unlocked(), Method::GET, "/config").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let mut empty = unlocked();
    empty.cluster.history.clear();
    assert_eq!(get_json(&empty, "/history").await.1, json!([]));
}

#[tokio::test]
async fn serve_answers_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_tx, rx) = tokio::sync::watch::channel(primary());
    let server = tokio::spawn(crate::rest::serve(listener, rx, None, None));
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"OPTIONS /primary HTTP/1.0\r\n\r\n").await.expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    assert!(reply.starts_with("HTTP/1.0 200 OK"), "{reply}");
    server.abort();
}
