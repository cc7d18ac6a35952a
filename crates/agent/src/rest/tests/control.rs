//! The mutating endpoints: Basic auth (401 with a challenge, GET stays open) and input
//! errors, against a store that is not there (requests that pass reach it and get 503).

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use tower::ServiceExt;

use super::primary;
use crate::cluster::Keys;
use crate::config::Credentials;
use crate::dcs::Dcs;
use crate::rest::control::Control;
use crate::rest::router;

fn control(auth: bool) -> (Control, crate::ha::commands::CommandReceiver) {
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    let dcs = Dcs::new(channel, Keys::new("/service/", "demo"), std::time::Duration::from_millis(300));
    let (commands, rx) = crate::ha::commands::channel();
    let auth = auth.then(|| Credentials { username: "admin".into(), password: "s3cr:t".into() });
    (Control { dcs, auth: crate::rest::control::shared_auth(auth), commands, promise: Default::default(), store_metrics: None }, rx)
}

async fn send(control: Control, method: Method, uri: &str, auth: Option<&str>, body: &str) -> (StatusCode, Option<String>) {
    let (_tx, rx) = tokio::sync::watch::channel(primary());
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        request = request.header(header::AUTHORIZATION, format!("Basic {}", crate::http::base64(a.as_bytes())));
    }
    let response =
        router(rx, Some(control)).oneshot(request.body(Body::from(body.to_string())).expect("request")).await.expect("infallible");
    let challenge = response.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_string);
    (response.status(), challenge)
}

#[tokio::test]
async fn mutating_requests_need_the_configured_credentials() {
    let (c, _rx) = control(true);
    let (status, challenge) = send(c.clone(), Method::POST, "/switchover", None, "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Basic realm=\"raftgres\""));
    assert_eq!(send(c.clone(), Method::POST, "/reload", Some("admin:wrong"), "").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(c.clone(), Method::DELETE, "/switchover", Some("admin"), "").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(c.clone(), Method::POST, "/failover", Some("admin:s3cr:t"), "{}").await.0, StatusCode::BAD_REQUEST, "no candidate");
    assert_eq!(send(c.clone(), Method::GET, "/patroni", None, "").await.0, StatusCode::OK, "reads stay open");
    assert_eq!(send(c, Method::OPTIONS, "/primary", None, "").await.0, StatusCode::OK);
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_and_reach_nothing() {
    let (c, _rx) = control(false);
    assert_eq!(send(c.clone(), Method::POST, "/switchover", None, "{not json").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(c.clone(), Method::PATCH, "/config", None, "[1,").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(c.clone(), Method::POST, "/restart", None, r#"{"schedule": "soon"}"#).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(c.clone(), Method::POST, "/nosuch", None, "").await.0, StatusCode::NOT_IMPLEMENTED);
    let big = "x".repeat(2 << 20);
    assert_eq!(send(c.clone(), Method::POST, "/switchover", None, &big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(send(c.clone(), Method::PUT, "/config", None, "{\"ttl\": ").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(c.clone(), Method::POST, "/failover", None, r#"{"candidate": 3}"#).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(c.clone(), Method::POST, "/failover", None, "").await.0, StatusCode::BAD_REQUEST, "no candidate");
    assert_eq!(send(c.clone(), Method::PUT, "/switchover", None, "").await.0, StatusCode::NOT_IMPLEMENTED);
    // Valid requests reach the (absent) store.
    for (method, uri, body) in [
        (Method::POST, "/switchover", r#"{"candidate": "node2"}"#),
        (Method::POST, "/failover", r#"{"candidate": "node2"}"#),
        (Method::DELETE, "/switchover", ""),
        (Method::PATCH, "/config", r#"{"ttl": 20}"#),
    ] {
        assert_eq!(send(c.clone(), method.clone(), uri, None, body).await.0, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}");
    }
}

#[tokio::test]
async fn node_commands_need_a_running_agent() {
    let (c, rx) = control(false);
    drop(rx);
    assert_eq!(send(c, Method::POST, "/reload", None, "").await.0, StatusCode::SERVICE_UNAVAILABLE);
}

/// `POST /failsafe` to a member in `state` (with `failsafe_mode` on), as `auth`.
async fn failsafe(state: crate::state::NodeState, auth: Option<&str>, body: &str) -> StatusCode {
    let (c, _rx) = control(true);
    let (_tx, rx) = tokio::sync::watch::channel(state);
    let mut request = Request::builder().method(Method::POST).uri("/failsafe");
    if let Some(a) = auth {
        request = request.header(header::AUTHORIZATION, format!("Basic {}", crate::http::base64(a.as_bytes())));
    }
    router(rx, Some(c)).oneshot(request.body(Body::from(body.to_string())).expect("request")).await.expect("infallible").status()
}

fn with_failsafe(mut state: crate::state::NodeState) -> crate::state::NodeState {
    if let Some((config, _)) = &mut state.cluster.config {
        config["failsafe_mode"] = serde_json::json!(true);
        config["retry_timeout"] = serde_json::json!(4);
        config["safety_margin"] = serde_json::json!(5);
    }
    state
}

#[tokio::test]
async fn failsafe_confirms_only_the_known_leader_from_a_replica_with_credentials() {
    const ADMIN: Option<&str> = Some("admin:s3cr:t");
    let replica = with_failsafe(super::noloadbalance_replica());
    let ask = r#"{"name": "node1", "ttl": 30}"#;
    assert_eq!(failsafe(replica.clone(), None, ask).await, StatusCode::UNAUTHORIZED, "anyone could block failover");
    assert_eq!(failsafe(replica.clone(), ADMIN, ask).await, StatusCode::OK);
    assert_eq!(failsafe(replica.clone(), ADMIN, r#"{"name": "node2", "ttl": 30}"#).await, StatusCode::CONFLICT, "not the leader");
    assert_eq!(
        failsafe(replica.clone(), ADMIN, r#"{"name": "node1", "ttl": 3600}"#).await,
        StatusCode::BAD_REQUEST,
        "above the cluster's ttl"
    );
    assert_eq!(failsafe(replica, ADMIN, r#"{"name": "node1"}"#).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        failsafe(with_failsafe(super::primary()), ADMIN, r#"{"name": "node3", "ttl": 30}"#).await,
        StatusCode::CONFLICT,
        "the primary confirms nobody"
    );
    let mut demoting = with_failsafe(super::noloadbalance_replica());
    demoting.postgres.role = crate::cluster::Role::Primary;
    assert_eq!(failsafe(demoting, ADMIN, ask).await, StatusCode::CONFLICT, "a member running as primary confirms nobody");
    assert_eq!(failsafe(super::noloadbalance_replica(), ADMIN, ask).await, StatusCode::PRECONDITION_FAILED, "failsafe_mode off");
}
