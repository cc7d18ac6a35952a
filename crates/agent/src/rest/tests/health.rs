//! Status codes of the health checks, `/liveness` and `/readiness` for GET, HEAD and
//! OPTIONS, with the `?lag=`, `?replication_state=` and `tag_*` filters.

use axum::http::{Method, StatusCode};

use super::*;

const HEALTH_PATHS: [&str; 15] = [
    "/",
    "/primary",
    "/master",
    "/read-write",
    "/leader",
    "/standby-leader",
    "/replica",
    "/read-only",
    "/health",
    "/synchronous",
    "/sync",
    "/asynchronous",
    "/async",
    "/read-only-sync",
    "/no-such-check",
];

async fn expect_all(state: &NodeState, codes: [u16; 15]) {
    for (path, want) in HEALTH_PATHS.iter().zip(codes) {
        expect(state, path, want).await;
    }
}

#[tokio::test]
async fn primary_passes_the_primary_checks_only() {
    expect_all(&primary(), [200, 200, 200, 200, 200, 503, 503, 200, 200, 503, 503, 503, 503, 200, 503]).await;
}

#[tokio::test]
async fn streaming_replica_passes_the_replica_checks() {
    expect_all(&lagging_replica(), [503, 503, 503, 503, 503, 503, 200, 200, 200, 503, 503, 200, 200, 503, 503]).await;
}

#[tokio::test]
async fn noloadbalance_replica_is_healthy_but_not_balanced() {
    expect_all(&noloadbalance_replica(), [503, 503, 503, 503, 503, 503, 503, 503, 200, 503, 503, 503, 503, 503, 503]).await;
}

#[tokio::test]
async fn stopped_node_fails_everything() {
    expect_all(&stopped(), [503; 15]).await;
}

#[tokio::test]
async fn hung_replica_fails_everything() {
    // A streaming replica whose PostgreSQL failed every liveness probe (see `ha::hung`).
    let mut state = lagging_replica();
    let hung = crate::ha::hung::Verdict::Hung { failing_for: std::time::Duration::from_secs(7) };
    state.postgres = crate::ha::hung::published(state.postgres, hung);
    expect_all(&state, [503; 15]).await;
}

#[tokio::test]
async fn unlocked_cluster_still_has_replicas() {
    expect_all(&unlocked(), [503, 503, 503, 503, 503, 503, 200, 200, 200, 503, 503, 200, 200, 503, 503]).await;
    let (_, body) = get_json(&unlocked(), "/patroni").await;
    assert_eq!(body["cluster_unlocked"], true);
}

#[tokio::test]
async fn a_primary_without_the_key_is_not_primary() {
    let mut s = primary();
    s.holds_leader_key = false;
    expect(&s, "/primary", 503).await;
    expect(&s, "/leader", 503).await;
    expect(&s, "/read-only", 503).await;
    expect(&s, "/health", 200).await;
}

#[tokio::test]
async fn lag_filter_compares_with_the_primary_position() {
    let s = lagging_replica();
    // Its position is max(received, replayed): 20,000 bytes behind.
    expect(&s, "/replica?lag=20000", 200).await;
    expect(&s, "/replica?lag=19999", 503).await;
    expect(&s, "/replica?lag=16kB", 503).await;
    expect(&s, "/replica?lag=20kB", 200).await;
    expect(&s, "/replica?lag=10MB", 200).await;
    expect(&s, "/read-only?lag=1kB", 503).await;
    expect(&s, "/asynchronous?lag=1GB", 200).await;
    // Unparsable limits mean no limit, as in Patroni.
    expect(&s, "/replica?lag=lots", 200).await;
    expect(&s, "/replica?lag=", 200).await;
    expect(&s, "/replica?lag=-1", 503).await;
}

#[tokio::test]
async fn replication_state_and_tag_filters() {
    let s = lagging_replica();
    expect(&s, "/replica?replication_state=streaming", 200).await;
    expect(&s, "/replica?replication_state=in%20archive%20recovery", 503).await;
    expect(&s, "/replica?tag_nofailover=true", 200).await;
    expect(&s, "/replica?tag_nofailover=false", 503).await;
    expect(&s, "/replica?tag_clonefrom=true", 503).await;
    expect(&s, "/health?tag_nofailover=true&tag_nosync=true", 503).await;
    // Leader and primary checks ignore tags, as Patroni's do.
    expect(&primary(), "/primary?tag_nofailover=true", 200).await;
    expect(&primary(), "/read-only?tag_nofailover=true", 503).await;
}

#[tokio::test]
async fn custom_tags_filter_the_checks_and_show_in_the_documents() {
    let mut s = lagging_replica();
    s.tags.custom = [("dc", serde_json::json!("east")), ("rack", serde_json::json!(3))].map(|(k, v)| (k.to_string(), v)).into();
    if let Some(me) = s.cluster.members.get_mut("node2") {
        me.tags = s.tags.clone();
    }
    expect(&s, "/replica?tag_dc=east", 200).await;
    expect(&s, "/replica?tag_dc=east&tag_rack=3&tag_nofailover=true", 200).await;
    expect(&s, "/read-only?tag_rack=3", 200).await;
    expect(&s, "/replica?tag_dc=west", 503).await;
    expect(&s, "/replica?tag_zone=a", 503).await;
    expect(&s, "/health?tag_rack=4", 503).await;
    let (_, body) = get_json(&s, "/patroni").await;
    assert_eq!(body["tags"], serde_json::json!({"nofailover": true, "dc": "east", "rack": 3}));
    let (_, body) = get_json(&s, "/cluster").await;
    let node2 = body["members"].as_array().and_then(|m| m.iter().find(|m| m["name"] == "node2")).expect("node2");
    assert_eq!(node2["tags"], serde_json::json!({"nofailover": true, "dc": "east", "rack": 3}));
}

#[tokio::test]
async fn odd_requests_do_not_panic() {
    let s = lagging_replica();
    for uri in ["/replica?%zz=%%&&=&lag", "/replica?lag=99999999999999999999999999999999999999999TB", "//replica//x?a=b=c", "/%FF"] {
        let (status, _, _) = call(&s, Method::GET, uri).await;
        assert!(status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE, "{uri}: {status}");
    }
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let (status, _, _) = call(&s, method, "/restart").await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    }
}

#[tokio::test]
async fn liveness_and_readiness() {
    for s in [primary(), lagging_replica(), stopped()] {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            let (status, _, body) = call(&s, method, "/liveness").await;
            assert_eq!(status, StatusCode::OK);
            assert!(body.is_empty());
        }
    }
    let readiness = |s: NodeState, uri: &'static str| async move { call(&s, Method::GET, uri).await.0.as_u16() };
    assert_eq!(readiness(primary(), "/readiness").await, 200);
    assert_eq!(readiness(stopped(), "/readiness").await, 503);
    // Config says maximum_lag_on_failover 25,000; node2 replayed 30,000 behind, received 20,000.
    assert_eq!(readiness(lagging_replica(), "/readiness").await, 503);
    assert_eq!(readiness(lagging_replica(), "/readiness?mode=write").await, 200);
    assert_eq!(readiness(lagging_replica(), "/readiness?lag=30000").await, 200);
    assert_eq!(readiness(noloadbalance_replica(), "/readiness").await, 200);
    let mut not_streaming = noloadbalance_replica();
    not_streaming.postgres.replication_state = Some("in archive recovery".into());
    assert_eq!(readiness(not_streaming.clone(), "/readiness").await, 503);
    // Tagged nostream, replaying the archive is all it does: ready within the lag.
    not_streaming.tags.nostream = true;
    assert_eq!(readiness(not_streaming, "/readiness").await, 200);
}

#[tokio::test]
async fn a_nostream_replica_passes_the_replica_checks_with_its_replay_lag() {
    let mut s = lagging_replica();
    s.tags.nostream = true;
    s.postgres.receive_lsn = None;
    s.postgres.replication_state = Some("in archive recovery".into());
    expect_all(&s, [503, 503, 503, 503, 503, 503, 200, 200, 200, 503, 503, 200, 200, 503, 503]).await;
    expect(&s, "/replica?replication_state=in%20archive%20recovery", 200).await;
    expect(&s, "/replica?replication_state=streaming", 503).await;
    // node2 replayed 30,000 bytes behind the primary (and received nothing).
    expect(&s, "/replica?lag=30000", 200).await;
    expect(&s, "/replica?lag=29999", 503).await;
    expect(&s, "/replica?tag_nostream=true", 200).await;
}

#[tokio::test]
async fn a_standby_leader_is_a_leader_and_neither_primary_nor_replica() {
    // A standby cluster's key holder: PostgreSQL answers `replica`, published as the
    // standby leader (`ha::publish`); it holds no primary's key.
    let mut s = lagging_replica();
    s.postgres.role = Role::StandbyLeader;
    s.cluster = cluster(Some("node2"));
    expect_all(&s, [503, 503, 503, 503, 200, 200, 503, 200, 200, 503, 503, 503, 503, 200, 503]).await;
    assert_eq!(call(&s, Method::GET, "/readiness").await.0, StatusCode::OK, "a running standby leader is ready");
    let (_, body) = get_json(&s, "/patroni").await;
    assert_eq!(body["role"], "standby_leader");
    assert!(body["xlog"]["received_location"].is_u64(), "positions as a replica's: {body}");
    s.cluster.members.get_mut("node2").expect("node2").role = Role::StandbyLeader;
    let (_, body) = get_json(&s, "/cluster").await;
    assert_eq!(body["members"][1]["role"], "standby_leader", "{body}");
}
