//! The web dashboard (`GET /dashboard`) and the HA timeline it shows (`GET /events`).
//!
//! Owns: the page, one self-contained HTML file (inline CSS and JS, no external
//! resources, so it works without internet access) embedded in the binary, and the
//! read-only JSON list of the last [`EVENTS_SHOWN`] events, oldest first, as
//! `raftctl events -o json` prints them. The page polls `/cluster`, `/patroni` and
//! `/events` of the node that served it every second.
//!
//! Must not touch: the store beyond reading `events/` (through [`crate::dcs::Dcs::events`]).
//! Only GET is answered here; HEAD and OPTIONS on these paths stay health checks, as on
//! every other path (see [`super`]).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::control::Control;
use super::{json, text};

/// The page: HTML, CSS and JS in one file.
const PAGE: &str = include_str!("dashboard.html");

/// `/events` answers at most this many events (the newest).
const EVENTS_SHOWN: usize = 200;

/// The answer to `GET path` if `path` is the dashboard's, `None` otherwise. `control`
/// gives the store connection `/events` reads from.
pub async fn get(path: &str, control: Option<&Control>) -> Option<Response> {
    match path {
        "/dashboard" => Some(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()),
        "/events" => Some(events(control).await),
        _ => None,
    }
}

/// The last [`EVENTS_SHOWN`] events of the timeline, oldest first.
async fn events(control: Option<&Control>) -> Response {
    let Some(control) = control else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "this node has no store connection\n");
    };
    match control.dcs.events().await {
        Ok(mut events) => {
            let newest = events.split_off(events.len().saturating_sub(EVENTS_SHOWN));
            json(StatusCode::OK, &newest)
        }
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("cannot read the events from the store: {e}\n")),
    }
}
