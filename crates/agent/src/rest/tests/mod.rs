//! Router tests: hand-built [`NodeState`]s (a primary holding the key, a lagging streaming
//! replica, a replica tagged `noloadbalance`, a stopped node, an unlocked cluster) sent
//! through `router(...)` with `tower::ServiceExt::oneshot`. This file owns the fixtures
//! and request helpers; `health` tests the status codes, `bodies` the JSON documents.

mod bodies;
mod control;
mod dashboard;
mod health;

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::router;
use crate::cluster::{ClusterStatus, ClusterView, HistoryEntry, LeaderKey, Member, Role};
use crate::config::Tags;
use crate::state::{NodeState, PgStatus, ReplicationRow};

pub(super) const PRIMARY_AT: u64 = 0x300_0000;
/// node2 has received 20,000 bytes less than the primary and replayed 30,000 less.
pub(super) const NODE2_RECEIVED: u64 = PRIMARY_AT - 20_000;
pub(super) const NODE2_REPLAYED: u64 = PRIMARY_AT - 30_000;

pub(super) fn member(port: u16, role: Role, xlog: u64) -> Member {
    Member {
        conn_url: format!("postgres://10.0.0.{port}:5432/postgres"),
        api_url: format!("http://10.0.0.{port}:8008/patroni"),
        state: "running".into(),
        role,
        version: crate::VERSION.into(),
        xlog_location: Some(xlog),
        timeline: Some(2),
        ..Default::default()
    }
}

pub(super) fn cluster(leader: Option<&str>) -> ClusterView {
    let mut view = ClusterView {
        revision: 7,
        initialize: Some("7300000000000000001".into()),
        leader: leader.map(|name| LeaderKey { name: name.into(), lease: 1, mod_revision: 5 }),
        config: Some((json!({"ttl": 30, "loop_wait": 10, "maximum_lag_on_failover": 25_000}), 3)),
        history: vec![HistoryEntry(
            1,
            0x200_0060,
            "no recovery target specified".into(),
            "2026-01-01T00:00:00+00:00".into(),
            "node1".into(),
        )],
        status: Some(ClusterStatus { optime: PRIMARY_AT - 100, ..Default::default() }),
        ..Default::default()
    };
    view.members.insert("node1".into(), member(1, Role::Primary, PRIMARY_AT));
    let mut node2 = member(2, Role::Replica, NODE2_RECEIVED);
    node2.receive_lsn = Some(NODE2_RECEIVED);
    node2.replay_lsn = Some(NODE2_REPLAYED);
    node2.replication_state = Some("streaming".into());
    view.members.insert("node2".into(), node2);
    let mut node3 = member(3, Role::Replica, PRIMARY_AT);
    node3.tags.noloadbalance = true;
    node3.xlog_location = None;
    view.members.insert("node3".into(), node3);
    view
}

pub(super) fn running(role: Role) -> PgStatus {
    PgStatus {
        state: crate::state::PgState::Running,
        role,
        timeline: Some(2),
        server_version: Some(160002),
        postmaster_start_time: Some("2026-01-01 00:00:00.000 UTC".into()),
        system_identifier: Some("7300000000000000001".into()),
        ..Default::default()
    }
}

pub(super) fn primary() -> NodeState {
    let mut s = NodeState::new("node1", "demo", Tags::default());
    s.postgres = running(Role::Primary);
    s.postgres.wal_lsn = Some(PRIMARY_AT);
    s.postgres.replication = vec![ReplicationRow {
        usename: "replicator".into(),
        application_name: "node2".into(),
        client_addr: Some("10.0.0.2".into()),
        state: "streaming".into(),
        sync_state: "async".into(),
        sync_priority: 0,
        flush_lsn: Some(PRIMARY_AT),
    }];
    s.holds_leader_key = true;
    s.cluster = cluster(Some("node1"));
    s.dcs_last_seen = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    s
}

pub(super) fn lagging_replica() -> NodeState {
    let mut s = NodeState::new("node2", "demo", Tags { nofailover: true, ..Default::default() });
    s.postgres = running(Role::Replica);
    s.postgres.receive_lsn = Some(NODE2_RECEIVED);
    s.postgres.replay_lsn = Some(NODE2_REPLAYED);
    s.postgres.replication_state = Some("streaming".into());
    s.cluster = cluster(Some("node1"));
    s
}

pub(super) fn noloadbalance_replica() -> NodeState {
    let mut s = NodeState::new("node3", "demo", Tags { noloadbalance: true, ..Default::default() });
    s.postgres = running(Role::Replica);
    s.postgres.receive_lsn = Some(PRIMARY_AT);
    s.postgres.replay_lsn = Some(PRIMARY_AT);
    s.postgres.replication_state = Some("streaming".into());
    s.cluster = cluster(Some("node1"));
    s
}

pub(super) fn stopped() -> NodeState {
    let mut s = NodeState::new("node2", "demo", Tags::default());
    s.postgres.role = Role::Replica;
    s.cluster = cluster(Some("node1"));
    s
}

/// A replica (caught up, streaming) in a cluster whose leader key is gone.
pub(super) fn unlocked() -> NodeState {
    let mut s = noloadbalance_replica();
    s.tags = Tags::default();
    s.cluster = cluster(None);
    s.cluster.config = None;
    s
}

pub(super) async fn call(state: &NodeState, method: Method, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let (_tx, rx) = tokio::sync::watch::channel(state.clone());
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).expect("request");
    let response = router(rx, None).oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
    (status, content_type, body)
}

pub(super) async fn get_json(state: &NodeState, uri: &str) -> (StatusCode, Value) {
    let (status, content_type, body) = call(state, Method::GET, uri).await;
    assert_eq!(content_type.as_deref(), Some("application/json"), "{uri}");
    (status, serde_json::from_slice(&body).expect("json body"))
}

/// Asserts the status of `uri` for GET (with the status JSON as body), HEAD and OPTIONS
/// (no body).
pub(super) async fn expect(state: &NodeState, uri: &str, want: u16) {
    let (status, body) = get_json(state, uri).await;
    assert_eq!(status.as_u16(), want, "GET {uri} on {}", state.name);
    assert_eq!(body["patroni"]["name"], state.name.as_str());
    for method in [Method::HEAD, Method::OPTIONS] {
        let (status, _, body) = call(state, method.clone(), uri).await;
        assert_eq!(status.as_u16(), want, "{method} {uri} on {}", state.name);
        assert!(body.is_empty(), "{method} {uri} has a body");
    }
}
