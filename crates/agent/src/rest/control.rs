//! The REST API's mutating endpoints, as Patroni has them: `POST /switchover`,
//! `DELETE /switchover`, `POST /failover`, `PATCH|PUT /config`, `POST /restart`,
//! `DELETE /restart`, `POST /reload`, `POST /reinit`. Cluster-wide requests go through
//! [`crate::ops`] (validated, written to the store); node requests go to this node's
//! HA loop as [`Command`]s. With `restapi.authentication` configured, each needs Basic
//! auth (401 otherwise, nothing done).

use std::time::Duration;

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{json, text};
use crate::config::Credentials;
use crate::dcs::Dcs;
use crate::ha::commands::{Command, CommandSender};
use crate::ha::failsafe::{Local, Promise, Refusal};
use crate::ops::{self, Handover, OpsError, SwitchoverRequest};

/// `restapi.authentication`, shared with the HA loop, which replaces it when the node's
/// file is re-read (`reload`).
pub type SharedAuth = std::sync::Arc<std::sync::RwLock<Option<Credentials>>>;

pub fn shared_auth(auth: Option<Credentials>) -> SharedAuth {
    std::sync::Arc::new(std::sync::RwLock::new(auth))
}

/// What the mutating endpoints need.
#[derive(Clone)]
pub struct Control {
    pub dcs: Dcs,
    pub auth: SharedAuth,
    pub commands: CommandSender,
    /// What this member promised a primary in failsafe mode (`POST /failsafe`).
    pub promise: Promise,
    /// The node's store measurements, for `GET /metrics` (latency histograms, watches).
    pub store_metrics: Option<std::sync::Arc<dyn crate::store_stats::StoreStats>>,
}

/// The body of `POST /switchover` and `/failover`; any other field is refused by name
/// (nothing a Patroni script sends is silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    leader: Option<String>,
    candidate: Option<String>,
    scheduled_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct FailsafeBody {
    name: Option<String>,
    ttl: Option<u64>,
}

/// The body of `POST /restart`. Patroni's `role`, `postgres_version` and `timeout` are
/// refused by name (`raftctl restart --role/--pg-version/--timeout` apply them on the
/// client side) rather than accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    schedule: Option<String>,
    #[serde(default)]
    restart_pending: bool,
}

impl Control {
    /// True when the request carries the configured credentials (or none are configured).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let auth = self.auth.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(creds) = auth.as_ref() else { return true };
        let expected = format!("Basic {}", crate::http::base64(format!("{}:{}", creds.username, creds.password).as_bytes()));
        let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
        // Compare every byte, so the time taken says nothing about where they differ.
        given.len() == expected.len() && given.iter().zip(expected.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    pub async fn handle(&self, method: &Method, endpoint: &str, body: &[u8]) -> Response {
        match (method.as_str(), endpoint) {
            ("POST", "switchover") => match parse::<SwitchoverBody>(body) {
                Ok(b) => self.switchover(b).await,
                Err(r) => r,
            },
            ("DELETE", "switchover") => match ops::cancel_switchover(&self.dcs).await {
                Ok(m) => text(StatusCode::OK, &format!("{m}\n")),
                Err(OpsError::Refused(m)) => text(StatusCode::NOT_FOUND, &format!("{m}\n")),
                Err(e) => ops_error(e),
            },
            ("POST", "failover") => match parse::<SwitchoverBody>(body) {
                Ok(SwitchoverBody { candidate: Some(c), .. }) => self.failover(&c).await,
                Ok(_) => text(StatusCode::BAD_REQUEST, "failover needs a candidate: {\"candidate\": \"node2\"}\n"),
                Err(r) => r,
            },
            ("PATCH", "config") | ("PUT", "config") => match parse::<Value>(body) {
                Ok(v) => {
                    let result = if method == Method::PATCH {
                        ops::patch_config(&self.dcs, &v).await
                    } else {
                        ops::replace_config(&self.dcs, &v).await
                    };
                    match result {
                        Ok(config) => json(StatusCode::OK, &config),
                        Err(OpsError::Refused(m)) => text(StatusCode::BAD_REQUEST, &format!("{m}\n")),
                        Err(e) => ops_error(e),
                    }
                }
                Err(r) => r,
            },
            ("POST", "restart") => match parse::<RestartBody>(body) {
                Ok(RestartBody { schedule: Some(at), restart_pending }) => match crate::schedule::parse(&at, &chrono::Local) {
                    Ok(at) => {
                        let at = std::time::SystemTime::from(at);
                        self.command(Command::ScheduleRestart { at, only_pending: restart_pending }, StatusCode::ACCEPTED).await
                    }
                    Err(e) => text(StatusCode::BAD_REQUEST, &format!("cannot parse the schedule: {e}\n")),
                },
                Ok(b) => self.command(Command::Restart { only_pending: b.restart_pending }, StatusCode::OK).await,
                Err(r) => r,
            },
            ("DELETE", "restart") => self.command(Command::CancelRestart, StatusCode::OK).await,
            ("POST", "reload") => self.command(Command::Reload, StatusCode::ACCEPTED).await,
            ("POST", "reinit") => self.command(Command::Reinit, StatusCode::OK).await,
            _ => super::unsupported(method),
        }
    }

    /// `POST /failsafe` from a primary that lost the store's quorum: confirm, and promise
    /// not to take the leader key for its ttl (see `ha::failsafe` for who may be
    /// confirmed). 412 when the cluster's `failsafe_mode` is off, 400 on a bad request,
    /// 409 with the reason when this member may not confirm that caller.
    pub fn failsafe(&self, body: &[u8], local: &Local) -> Response {
        let request = match parse::<FailsafeBody>(body) {
            Ok(r) => r,
            Err(r) => return r,
        };
        match self.promise.confirm(request.name.as_deref(), request.ttl, local) {
            Ok(()) => text(StatusCode::OK, "Accepted\n"),
            Err(Refusal::Off) => text(StatusCode::PRECONDITION_FAILED, "failsafe_mode is off\n"),
            Err(Refusal::BadRequest(why)) => text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
            Err(Refusal::Conflict(why)) => text(StatusCode::CONFLICT, &format!("not confirming: {why}\n")),
        }
    }

    async fn switchover(&self, body: SwitchoverBody) -> Response {
        let scheduled = body.scheduled_at.is_some();
        let req = SwitchoverRequest { leader: body.leader, candidate: body.candidate, scheduled_at: body.scheduled_at };
        let before = match self.leader_now().await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match ops::switchover(&self.dcs, &req).await {
            Ok(_) if scheduled => text(StatusCode::ACCEPTED, "Switchover scheduled\n"),
            Ok(_) => self.wait_new_leader(before.as_deref(), req.candidate.as_deref(), Action::Switchover).await,
            Err(e) => ops_error(e),
        }
    }

    async fn failover(&self, candidate: &str) -> Response {
        let before = match self.leader_now().await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match ops::failover(&self.dcs, candidate).await {
            Ok(_) => self.wait_new_leader(before.as_deref(), Some(candidate), Action::Failover).await,
            Err(e) => ops_error(e),
        }
    }

    /// Who holds the leader key now, read before the request is written: without it, the
    /// wait could not tell the old primary from a new one (503 when the store is away).
    async fn leader_now(&self) -> Result<Option<String>, Response> {
        match self.dcs.read_cluster().await {
            Ok(view) => Ok(view.leader_name().map(str::to_string)),
            Err(e) => Err(ops_error(OpsError::Store(format!("the store did not answer: {e}")))),
        }
    }

    /// Until another member holds the leader key and the request is gone (Patroni's
    /// `poll_failover_result`: "Successfully switched over to ...", or "... instead of"
    /// when a member other than the candidate won).
    async fn wait_new_leader(&self, before: Option<&str>, candidate: Option<&str>, action: Action) -> Response {
        let (what, title) = match action {
            Action::Switchover => ("switched", "Switchover"),
            Action::Failover => ("failed", "Failover"),
        };
        match ops::await_handover(&self.dcs, before).await {
            Handover::NewLeader(new, _) => {
                let message = match candidate {
                    Some(c) if c != new => format!("{} over to \"{new}\" instead of \"{c}\"\n", capitalized(what)),
                    _ => format!("Successfully {what} over to \"{new}\"\n"),
                };
                text(StatusCode::OK, &message)
            }
            Handover::Refused => {
                text(StatusCode::SERVICE_UNAVAILABLE, &format!("{title} failed: the primary refused or aborted it (see its log)\n"))
            }
            Handover::TimedOut => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{title} status unknown\n")),
        }
    }

    async fn command(&self, command: Command, ok: StatusCode) -> Response {
        let (reply, answer) = oneshot::channel();
        if self.commands.send((command, reply)).await.is_err() {
            return text(StatusCode::SERVICE_UNAVAILABLE, "the agent is not running\n");
        }
        match tokio::time::timeout(Duration::from_secs(120), answer).await {
            Ok(Ok(Ok(m))) => text(ok, &format!("{m}\n")),
            Ok(Ok(Err(m))) if command == Command::CancelRestart => text(StatusCode::NOT_FOUND, &format!("{m}\n")),
            Ok(Ok(Err(m))) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{m}\n")),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "the agent did not answer\n"),
        }
    }
}

/// Which request `wait_new_leader` reports on.
#[derive(Clone, Copy)]
enum Action {
    Switchover,
    Failover,
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// A JSON body (an empty body reads as `{}`), or a 400 saying what is wrong with it.
#[allow(clippy::result_large_err)] // the error is the response itself, built once
fn parse<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| text(StatusCode::BAD_REQUEST, &format!("request body refused: {e}\n")))
}

fn ops_error(e: OpsError) -> Response {
    let status = match e {
        OpsError::Refused(_) => StatusCode::PRECONDITION_FAILED,
        OpsError::Conflict(_) => StatusCode::CONFLICT,
        OpsError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    text(status, &format!("{e}\n"))
}

/// 401 with the challenge browsers and curl understand.
pub fn unauthorized() -> Response {
    let mut r = text(StatusCode::UNAUTHORIZED, "authentication required\n");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"raftgres\""));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patroni_fields_this_agent_does_not_apply_are_refused_by_name() {
        for (body, field) in
            [(r#"{"timeout": 30}"#, "timeout"), (r#"{"postgres_version": "15.2"}"#, "postgres_version"), (r#"{"role": "replica"}"#, "role")]
        {
            let e = serde_json::from_str::<RestartBody>(body).expect_err(body).to_string();
            assert!(e.contains(&format!("unknown field `{field}`")), "{e}");
        }
        let e = serde_json::from_str::<SwitchoverBody>(r#"{"leader": "a", "candidat": "b"}"#).expect_err("typo").to_string();
        assert!(e.contains("unknown field `candidat`"), "{e}");
        let ok: RestartBody =
            serde_json::from_str(r#"{"restart_pending": true, "schedule": "2026-12-06T10:00+02:00"}"#).expect("known fields");
        assert!(ok.restart_pending && ok.schedule.is_some());
        let ok: SwitchoverBody = serde_json::from_str(r#"{"leader": "a", "candidate": "b", "scheduled_at": null}"#).expect("known fields");
        assert_eq!(ok.candidate.as_deref(), Some("b"));
    }
}
