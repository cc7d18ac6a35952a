//! etcd's health endpoints on the client port:
//!
//! - `GET /health`: `{"health":"true","reason":""}` when this member knows a leader and
//!   a linearizable read succeeds within [`HEALTH_TIMEOUT`]; otherwise status 503 with
//!   `{"health":"false","reason":"RAFT NO LEADER"}` or `"QGET ERROR:..."` (etcd 3.5's
//!   reasons).
//! - `GET /readyz`: `ok`, or 503 naming the failed check, on the same checks.
//! - `GET /livez`: `ok` while the process serves requests.

use std::time::Duration;

use raftgres_store::Store;

/// How long the linearizable read may take (etcd's health check waits 1 s).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Why this member is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    NoLeader,
    ReadFailed(String),
}

impl Unhealthy {
    /// etcd's `reason`.
    pub fn reason(&self) -> String {
        match self {
            Unhealthy::NoLeader => "RAFT NO LEADER".to_string(),
            Unhealthy::ReadFailed(why) => format!("QGET ERROR:{why}"),
        }
    }

    /// The failed check as `/readyz` names it.
    fn readyz(&self) -> String {
        match self {
            Unhealthy::NoLeader => "[-]leader failed: RAFT NO LEADER".to_string(),
            Unhealthy::ReadFailed(why) => format!("[-]linearizable_read failed: {why}"),
        }
    }
}

/// A leader, then a linearizable read through it.
pub async fn check(store: &Store) -> Result<(), Unhealthy> {
    if !store.has_leader() {
        return Err(Unhealthy::NoLeader);
    }
    match tokio::time::timeout(HEALTH_TIMEOUT, store.read_barrier()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Unhealthy::ReadFailed(e.to_string())),
        Err(_) => Err(Unhealthy::ReadFailed("context deadline exceeded".to_string())),
    }
}

/// `/health`'s JSON.
pub fn health_json(result: &Result<(), Unhealthy>) -> String {
    let (health, reason) = match result {
        Ok(()) => ("true", String::new()),
        Err(e) => ("false", e.reason()),
    };
    // etcd's field order; the reason may hold any text.
    format!(r#"{{"health":"{health}","reason":{}}}"#, serde_json::Value::from(reason))
}

/// `/readyz`'s text.
pub fn readyz_text(result: &Result<(), Unhealthy>) -> String {
    match result {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{}\nreadyz check failed", e.readyz()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_etcd_does() {
        assert_eq!(health_json(&Ok(())), r#"{"health":"true","reason":""}"#);
        assert_eq!(health_json(&Err(Unhealthy::NoLeader)), r#"{"health":"false","reason":"RAFT NO LEADER"}"#);
        let slow = Err(Unhealthy::ReadFailed("context deadline exceeded".into()));
        assert_eq!(health_json(&slow), r#"{"health":"false","reason":"QGET ERROR:context deadline exceeded"}"#);
        assert_eq!(readyz_text(&Ok(())), "ok");
        assert_eq!(readyz_text(&slow), "[-]linearizable_read failed: context deadline exceeded\nreadyz check failed");
    }
}
