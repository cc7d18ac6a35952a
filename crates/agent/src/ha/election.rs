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
use crate::state::{PgState, PgStatus};

const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// What another member says about itself over REST.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerReport {
    pub name: String,
    pub running: bool,
    /// Runs as a primary (not in recovery).
    pub primary: bool,
    pub wal_position: u64,
    /// The timeline it runs on (None when it did not say).
    pub timeline: Option<u32>,
    pub nofailover: bool,
    pub priority: i64,
    /// It stays out of leader races for now (`stands_aside` in its `/patroni`).
    pub stands_aside: bool,
}

#[cfg(test)]
impl PeerReport {
    /// What a running replica says (for tests).
    pub fn replica(name: &str, timeline: u32, wal_position: u64, priority: i64) -> Self {
        Self {
            name: name.into(),
            running: true,
            primary: false,
            wal_position,
            timeline: Some(timeline),
            nofailover: false,
            priority,
            stands_aside: false,
        }
    }
}

/// Why this node may not take the leader key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligible {
    NoFailover,
    /// PostgreSQL is not running (its state as shown).
    NotRunning(PgState),
    /// Its timeline is older than the cluster's: it may hold WAL nobody else has, and
    /// it lacks what the newer timeline's primary acknowledged (Patroni's `check_timeline`).
    BehindTimeline {
        mine: u32,
        cluster: u32,
    },
    /// Its timeline is not known while the cluster's is.
    UnknownTimeline {
        cluster: u32,
    },
    Lagging {
        lag: u64,
        max_lag: u64,
    },
}

impl std::fmt::Display for Ineligible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ineligible::NoFailover => write!(f, "tagged nofailover"),
            Ineligible::NotRunning(state) => write!(f, "PostgreSQL is {state}"),
            Ineligible::BehindTimeline { mine, cluster } => {
                write!(f, "my timeline {mine} is behind the cluster's timeline {cluster}; a rewind or a re-clone must come first")
            }
            Ineligible::UnknownTimeline { cluster } => write!(f, "my timeline is unknown and the cluster is on timeline {cluster}"),
            Ineligible::Lagging { lag, max_lag } => {
                write!(f, "lagging {lag} bytes behind the last known primary position (maximum_lag_on_failover {max_lag})")
            }
        }
    }
}

/// The newest timeline the cluster is known to have reached: the one after `/history`'s
/// latest switch, or a higher one another member reports in its member key.
pub fn cluster_timeline(view: &ClusterView, me: &str) -> Option<u32> {
    let from_history = view.history.last().map(|h| h.0.saturating_add(1));
    let from_members = view.members.iter().filter(|(name, _)| name.as_str() != me).filter_map(|(_, m)| m.timeline).max();
    from_history.max(from_members)
}

/// This node's WAL position if it may take the key, or why not. LSNs are compared only
/// once the node is known to be on the cluster's newest timeline.
pub fn eligible(pg: &PgStatus, tags: &Tags, view: &ClusterView, me: &str, max_lag: u64) -> Result<u64, Ineligible> {
    if tags.nofailover {
        return Err(Ineligible::NoFailover);
    }
    if !pg.is_running() {
        return Err(Ineligible::NotRunning(pg.state));
    }
    if let Some(cluster) = cluster_timeline(view, me) {
        match pg.timeline {
            None => return Err(Ineligible::UnknownTimeline { cluster }),
            Some(mine) if mine < cluster => return Err(Ineligible::BehindTimeline { mine, cluster }),
            Some(_) => {}
        }
    }
    let mine = pg.wal_position().unwrap_or(0);
    if let Some(status) = &view.status {
        let lag = status.optime.saturating_sub(mine);
        if lag > max_lag {
            return Err(Ineligible::Lagging { lag, max_lag });
        }
    }
    Ok(mine)
}

/// A reachable member that is healthier than this node (on `timeline` at `mine`, with
/// `priority`), if any: `None` means this node may race. A newer timeline is healthier
/// whatever its position; positions are compared only within one timeline.
pub fn healthier_peer(timeline: Option<u32>, mine: u64, priority: i64, peers: &[PeerReport]) -> Option<&PeerReport> {
    peers.iter().filter(|p| p.running && !p.nofailover && !p.stands_aside).find(|p| match (p.timeline, timeline) {
        (Some(theirs), Some(mine_tli)) if theirs != mine_tli => theirs > mine_tli,
        _ => p.wal_position > mine || (p.wal_position == mine && p.priority > priority),
    })
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
        timeline: v.get("timeline").and_then(serde_json::Value::as_u64).and_then(|t| u32::try_from(t).ok()),
        nofailover: tags.and_then(|t| t.get("nofailover")).and_then(serde_json::Value::as_bool).unwrap_or(false),
        priority: tags.and_then(|t| t.get("failover_priority")).and_then(serde_json::Value::as_i64).unwrap_or(1),
        stands_aside: v.get("stands_aside").is_some_and(|why| !why.is_null()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterStatus, HistoryEntry, Member, Role};

    fn replica(pos: u64) -> PgStatus {
        PgStatus {
            state: PgState::Running,
            role: Role::Replica,
            timeline: Some(1),
            receive_lsn: Some(pos),
            replay_lsn: Some(pos - 10),
            ..Default::default()
        }
    }

    fn promoted_to(timeline: u32) -> HistoryEntry {
        HistoryEntry(timeline - 1, 0x300_0000, "no recovery target specified".into(), String::new(), "n2".into())
    }

    #[test]
    fn eligibility() {
        let view = ClusterView { status: Some(ClusterStatus { optime: 5000, ..Default::default() }), ..Default::default() };
        assert_eq!(eligible(&replica(4000), &Tags::default(), &view, "n1", 1024), Ok(4000));
        assert_eq!(eligible(&replica(1000), &Tags::default(), &view, "n1", 1024), Err(Ineligible::Lagging { lag: 4000, max_lag: 1024 }));
        assert!(eligible(&replica(1000), &Tags::default(), &view, "n1", 1024).expect_err("lag").to_string().contains("lagging 4000"));
        assert_eq!(
            eligible(&replica(4000), &Tags { nofailover: true, ..Default::default() }, &view, "n1", 1024),
            Err(Ineligible::NoFailover)
        );
        let stopped = PgStatus { state: PgState::Stopped, ..Default::default() };
        assert_eq!(eligible(&stopped, &Tags::default(), &view, "n1", 1024), Err(Ineligible::NotRunning(PgState::Stopped)));
    }

    /// Issue 16 item 5: a former primary on timeline 1 with WAL nobody received (a
    /// higher LSN than the new primary's) must not race once `/history` says timeline 2.
    #[test]
    fn a_node_behind_the_cluster_timeline_may_not_race() {
        let view = ClusterView {
            history: vec![promoted_to(2)],
            status: Some(ClusterStatus { optime: 5000, ..Default::default() }),
            ..Default::default()
        };
        let diverged = PgStatus { role: Role::Replica, ..replica(9000) };
        assert_eq!(eligible(&diverged, &Tags::default(), &view, "n1", 1024), Err(Ineligible::BehindTimeline { mine: 1, cluster: 2 }));
        let on_new = PgStatus { timeline: Some(2), ..replica(5000) };
        assert_eq!(eligible(&on_new, &Tags::default(), &view, "n1", 1024), Ok(5000));
        let unknown = PgStatus { timeline: None, ..replica(5000) };
        assert_eq!(eligible(&unknown, &Tags::default(), &view, "n1", 1024), Err(Ineligible::UnknownTimeline { cluster: 2 }));
    }

    #[test]
    fn a_peer_on_a_newer_timeline_raises_the_cluster_timeline() {
        let mut view = ClusterView { history: vec![promoted_to(2)], ..Default::default() };
        view.members.insert("n3".into(), Member { timeline: Some(3), ..Default::default() });
        view.members.insert("n1".into(), Member { timeline: Some(7), ..Default::default() });
        assert_eq!(cluster_timeline(&view, "n1"), Some(3), "my own member key does not count");
        let on_two = PgStatus { timeline: Some(2), ..replica(5000) };
        assert_eq!(eligible(&on_two, &Tags::default(), &view, "n1", u64::MAX), Err(Ineligible::BehindTimeline { mine: 2, cluster: 3 }));
        assert_eq!(cluster_timeline(&ClusterView::default(), "n1"), None);
    }

    #[test]
    fn healthiest_compares_position_then_priority() {
        assert!(
            healthier_peer(Some(1), 100, 1, &[PeerReport::replica("b", 1, 90, 1), PeerReport::replica("c", 1, 100, 1)]).is_none(),
            "ties race"
        );
        assert_eq!(healthier_peer(Some(1), 100, 1, &[PeerReport::replica("b", 1, 101, 1)]).map(|p| p.name.as_str()), Some("b"));
        assert_eq!(healthier_peer(Some(1), 100, 1, &[PeerReport::replica("b", 1, 100, 2)]).map(|p| p.name.as_str()), Some("b"));
        let mut skip = PeerReport::replica("b", 1, 500, 1);
        skip.nofailover = true;
        assert!(healthier_peer(Some(1), 100, 1, &[skip]).is_none());
        let aside = PeerReport { stands_aside: true, ..PeerReport::replica("b", 1, 500, 1) };
        assert!(healthier_peer(Some(1), 100, 1, &[aside]).is_none(), "a peer that stands aside would refuse the key");
    }

    /// Issue 16 item 5: LSNs of two timelines say nothing about who has more.
    #[test]
    fn healthiest_compares_positions_only_within_one_timeline() {
        assert_eq!(
            healthier_peer(Some(1), 9000, 1, &[PeerReport::replica("b", 2, 100, 1)]).map(|p| p.name.as_str()),
            Some("b"),
            "a newer timeline wins"
        );
        assert!(healthier_peer(Some(2), 100, 1, &[PeerReport::replica("b", 1, 9000, 1)]).is_none(), "an older timeline never wins");
        let silent = PeerReport { timeline: None, ..PeerReport::replica("b", 1, 200, 1) };
        assert_eq!(healthier_peer(Some(1), 100, 1, &[silent]).map(|p| p.name.as_str()), Some("b"), "no timeline: positions decide");
    }

    #[test]
    fn parses_patroni_json() {
        let r = parse_report("n2", r#"{"state":"running","role":"replica","timeline":2,"xlog":{"received_location":10,"replayed_location":8},"tags":{"failover_priority":3}}"#)
            .expect("report");
        assert_eq!((r.running, r.wal_position, r.priority, r.timeline, r.stands_aside), (true, 10, 3, Some(2), false));
        let aside = parse_report("n2", r#"{"state":"running","role":"replica","stands_aside":"its PostgreSQL kept exiting as primary"}"#)
            .expect("report");
        assert!(aside.stands_aside);
        assert!(parse_report("n2", "not json").is_none());
    }
}
