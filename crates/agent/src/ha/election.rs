//! Who may take the leader key when it is free: a running replica (or the old primary),
//! not tagged `nofailover`, lagging at most `maximum_lag_on_failover` behind the last
//! known primary position, with no healthier member — higher WAL position, or the same
//! position and a higher `failover_priority`. Other members are asked for their current
//! position over their REST API (`/patroni`, 300 ms), as Patroni does; members that do
//! not answer are left out of the comparison. Ties race: the store's compare-and-swap
//! picks one winner.

use std::time::Duration;

use crate::cluster::ClusterView;
use crate::config::Tags;
use crate::state::PgStatus;

const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// What another member says about itself over REST.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerReport {
    pub name: String,
    pub running: bool,
    /// Runs as a primary (not in recovery).
    pub primary: bool,
    pub wal_position: u64,
    pub nofailover: bool,
    pub priority: i64,
}

/// Why this node may not take the key, or Ok.
pub fn eligible(pg: &PgStatus, tags: &Tags, view: &ClusterView, max_lag: u64) -> Result<u64, String> {
    if tags.nofailover {
        return Err("tagged nofailover".into());
    }
    if !pg.is_running() {
        return Err(format!("PostgreSQL is {}", pg.state));
    }
    let mine = pg.wal_position().unwrap_or(0);
    if let Some(status) = &view.status {
        let lag = status.optime.saturating_sub(mine);
        if lag > max_lag {
            return Err(format!("lagging {lag} bytes behind the last known primary position (maximum_lag_on_failover {max_lag})"));
        }
    }
    Ok(mine)
}

/// Ok when no reachable member is healthier than (`mine`, `priority`); otherwise the name of one that is.
pub fn healthiest(mine: u64, priority: i64, peers: &[PeerReport]) -> Result<(), String> {
    for p in peers.iter().filter(|p| p.running && !p.nofailover) {
        if p.wal_position > mine || (p.wal_position == mine && p.priority > priority) {
            return Err(p.name.clone());
        }
    }
    Ok(())
}

/// Asks every other member for its state, concurrently.
pub async fn probe_peers(view: &ClusterView, me: &str, client: &crate::http::Client) -> Vec<PeerReport> {
    let probes = view.members.iter().filter(|(name, _)| name.as_str() != me).map(|(name, m)| {
        let (name, url) = (name.clone(), m.api_url.clone());
        async move {
            let body = tokio::time::timeout(PROBE_TIMEOUT, client.get(&url)).await.ok()?.ok()?;
            parse_report(&name, &body)
        }
    });
    futures::future::join_all(probes).await.into_iter().flatten().collect()
}

/// Reads Patroni's `/patroni` JSON.
fn parse_report(name: &str, body: &str) -> Option<PeerReport> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let xlog = v.get("xlog");
    let pos = |k: &str| xlog.and_then(|x| x.get(k)).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let tags = v.get("tags");
    Some(PeerReport {
        name: name.to_string(),
        running: v.get("state").and_then(serde_json::Value::as_str) == Some("running"),
        primary: v.get("role").and_then(serde_json::Value::as_str) == Some("primary"),
        wal_position: pos("location").max(pos("received_location")).max(pos("replayed_location")),
        nofailover: tags.and_then(|t| t.get("nofailover")).and_then(serde_json::Value::as_bool).unwrap_or(false),
        priority: tags.and_then(|t| t.get("failover_priority")).and_then(serde_json::Value::as_i64).unwrap_or(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterStatus, Role};

    fn replica(pos: u64) -> PgStatus {
        PgStatus { state: "running".into(), role: Role::Replica, receive_lsn: Some(pos), replay_lsn: Some(pos - 10), ..Default::default() }
    }

    #[test]
    fn eligibility() {
        let view = ClusterView { status: Some(ClusterStatus { optime: 5000, ..Default::default() }), ..Default::default() };
        assert_eq!(eligible(&replica(4000), &Tags::default(), &view, 1024), Ok(4000));
        assert!(eligible(&replica(1000), &Tags::default(), &view, 1024).expect_err("lag").contains("lagging 4000"));
        assert!(eligible(&replica(4000), &Tags { nofailover: true, ..Default::default() }, &view, 1024).is_err());
        let stopped = PgStatus { state: "stopped".into(), ..Default::default() };
        assert!(eligible(&stopped, &Tags::default(), &view, 1024).is_err());
    }

    #[test]
    fn healthiest_compares_position_then_priority() {
        let p = |name: &str, pos, prio| PeerReport { name: name.into(), running: true, primary: false, wal_position: pos, nofailover: false, priority: prio };
        assert!(healthiest(100, 1, &[p("b", 90, 1), p("c", 100, 1)]).is_ok(), "ties race");
        assert_eq!(healthiest(100, 1, &[p("b", 101, 1)]), Err("b".into()));
        assert_eq!(healthiest(100, 1, &[p("b", 100, 2)]), Err("b".into()));
        let mut skip = p("b", 500, 1);
        skip.nofailover = true;
        assert!(healthiest(100, 1, &[skip]).is_ok());
    }

    #[test]
    fn parses_patroni_json() {
        let r = parse_report("n2", r#"{"state":"running","role":"replica","xlog":{"received_location":10,"replayed_location":8},"tags":{"failover_priority":3}}"#)
            .expect("report");
        assert_eq!((r.running, r.wal_position, r.priority), (true, 10, 3));
        assert!(parse_report("n2", "not json").is_none());
    }
}
