//! The Patroni-compatible REST API (axum), so HAProxy health checks and scripts written
//! for Patroni keep working against a raftgres node.
//!
//! Owns: routing and responses. Requests are dispatched as Patroni's handler does it: by
//! the first path segment (`/patroni`, `/cluster`, `/history`, `/config`, `/liveness`,
//! `/readiness`), everything else being a health check (`/primary`, `/replica`,
//! `/read-only`, `/health`, ... see [`health::check`]). A GET health check answers the
//! node status JSON with 200 or 503; HEAD and OPTIONS (what HAProxy sends) answer the
//! status line only — on any path but `/liveness` and `/readiness`, as in Patroni
//! (so `HEAD /patroni` is a failing health check). Mutating methods go to [`control`]
//! (Basic auth when configured); on unknown paths they get 501. Over HTTPS ([`https`],
//! `restapi.certfile`) with `verify_client: optional`, they also need a client
//! certificate (403 without one).
//!
//! Must not touch: PostgreSQL or the store. Handlers read only the latest [`NodeState`]
//! the HA loop published on its watch channel, so an answer never waits on either.

pub mod control;
pub mod dashboard;
pub mod health;
pub mod https;
pub mod json;
pub mod metrics;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Router;

use crate::state::{NodeState, StateReceiver};

use control::Control;
use health::Params;

/// What the handlers share: the latest node state, and (when the node runs an agent)
/// what the mutating endpoints need.
#[derive(Clone)]
struct App {
    state: StateReceiver,
    control: Option<Arc<Control>>,
}

/// Request bodies above this are refused with 413.
const MAX_BODY: usize = 1 << 20;

/// The REST API's routes, answering from the latest state on `state`; without
/// `control`, the mutating endpoints answer 501.
pub fn router(state: StateReceiver, control: Option<Control>) -> Router {
    let app = App { state, control: control.map(Arc::new) };
    Router::new().fallback(dispatch).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(app)
}

/// Serves the REST API on `listener` (HTTPS with `tls`). Serves until the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: StateReceiver,
    control: Option<Control>,
    tls: Option<crate::tls::RestTls>,
) -> std::io::Result<()> {
    match tls {
        Some(tls) => https::serve(listener, router(state, control), tls).await,
        None => axum::serve(listener, router(state, control)).await,
    }
}

async fn dispatch(
    State(app): State<App>,
    no_cert: Option<Extension<https::NoClientCert>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let Some(control) = &app.control else { return unsupported(&method) };
        if no_cert.is_some() {
            return text(StatusCode::FORBIDDEN, "this request needs a client certificate (restapi.verify_client: optional)\n");
        }
        if !control.authorized(&headers) {
            return control::unauthorized();
        }
        let endpoint = uri.path().trim_start_matches('/').split('/').next().unwrap_or("").to_string();
        if method == Method::POST && endpoint == "failsafe" {
            let local = crate::ha::failsafe::Local::of(&app.state.borrow());
            return control.failsafe(&body, &local);
        }
        return control.handle(&method, &endpoint, &body).await;
    }
    if method == Method::GET && uri.path() == "/metrics" {
        let store = match &app.control {
            Some(c) => c.dcs.store_status().await.ok(),
            None => None,
        };
        let measured = app.control.as_ref().and_then(|c| c.store_metrics.as_ref()).map(|m| m.snapshot());
        let body = metrics::render(&app.state.borrow(), store.as_ref(), measured.as_ref());
        return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response();
    }
    if method == Method::GET {
        if let Some(response) = dashboard::get(uri.path(), app.control.as_deref()).await {
            return response;
        }
    }
    // The borrow is held only while the response is built (no await in between), so the
    // HA loop's next publish never waits on an HTTP client.
    let state = app.state.borrow();
    respond(&state, &method, &uri)
}

/// Patroni's `parse_request`: the first path segment picks a named handler.
fn respond(state: &NodeState, method: &Method, uri: &Uri) -> Response {
    let path = uri.path();
    let params = Params::from_uri(uri);
    let endpoint = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let is_get = method == Method::GET;
    let status_only = method == Method::HEAD || method == Method::OPTIONS;
    if !is_get && !status_only {
        return unsupported(method);
    }
    match endpoint {
        "liveness" => status_line(StatusCode::OK),
        "readiness" => status_line(health::ready(state, &params)),
        _ if status_only => status_line(health::check(state, path, &params)),
        "patroni" => json(StatusCode::OK, &json::Status::new(state)),
        "cluster" => json(StatusCode::OK, &json::ClusterJson::new(state)),
        "history" => json(StatusCode::OK, &state.cluster.history),
        "config" => match &state.cluster.config {
            Some((config, _)) => json(StatusCode::OK, config),
            None => text(StatusCode::BAD_GATEWAY, "no /config in the store yet: the cluster is not bootstrapped\n"),
        },
        _ => json(health::check(state, path, &params), &json::Status::new(state)),
    }
}

/// A response with a status and no body (what HAProxy reads).
fn status_line(status: StatusCode) -> Response {
    status.into_response()
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], Body::from(bytes)).into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot encode the response as JSON: {e}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.to_string()).into_response()
}

/// Methods Patroni has no handler for get 501, as Python's `BaseHTTPRequestHandler` does.
fn unsupported(method: &Method) -> Response {
    text(StatusCode::NOT_IMPLEMENTED, &format!("Unsupported method ({method})\n"))
}

#[cfg(test)]
mod tests;
