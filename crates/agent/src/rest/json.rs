//! The JSON bodies of the REST API, shaped like Patroni's: the node status (`/patroni`
//! and every health check's GET body) and the cluster view (`/cluster`, Patroni 4's
//! `cluster_as_json`).
//!
//! Owns: the serde shapes of those bodies and how they are derived from a [`NodeState`].
//! Must not touch: routing, status codes, or anything outside the published state.

use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::cluster::{format_lsn, Role};
use crate::config::Tags;
use crate::state::{NodeState, ReplicationRow};

use super::health::primary_position;

/// `GET /patroni`: what this node says about itself.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    postmaster_start_time: Option<&'a str>,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xlog: Option<Xlog<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication_state: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    replication: &'a [ReplicationRow],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pause: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cluster_unlocked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    dcs_last_seen: Option<u64>,
    #[serde(skip_serializing_if = "Tags::is_empty")]
    tags: &'a Tags,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_system_identifier: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pending_restart: bool,
    /// raftgres's own (Patroni has no such state): why this node stays out of leader
    /// races for now.
    #[serde(skip_serializing_if = "Option::is_none")]
    stands_aside: Option<&'static str>,
    patroni: PatroniInfo<'a>,
}

/// `xlog` of `/patroni`: the primary's write position, or a replica's positions.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Xlog<'a> {
    Primary {
        location: u64,
    },
    Replica {
        #[serde(skip_serializing_if = "Option::is_none")]
        received_location: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        replayed_location: Option<u64>,
        /// Patroni sends `null` here until a transaction has been replayed.
        replayed_timestamp: Option<&'a str>,
        paused: bool,
    },
}

#[derive(Debug, Serialize)]
struct PatroniInfo<'a> {
    version: &'static str,
    scope: &'a str,
    name: &'a str,
}

impl<'a> Status<'a> {
    pub fn new(state: &'a NodeState) -> Self {
        let pg = &state.postgres;
        let xlog = if !pg.is_running() {
            None
        } else {
            match pg.role {
                Role::Primary => pg.wal_lsn.map(|location| Xlog::Primary { location }),
                Role::Replica | Role::StandbyLeader => Some(Xlog::Replica {
                    received_location: pg.receive_lsn.or(pg.replay_lsn),
                    replayed_location: pg.replay_lsn,
                    replayed_timestamp: pg.replayed_timestamp.as_deref(),
                    paused: false,
                }),
                Role::Uninitialized => None,
            }
        };
        Self {
            state: pg.state.as_str(),
            postmaster_start_time: pg.postmaster_start_time.as_deref(),
            role: pg.role.as_str(),
            server_version: pg.server_version,
            xlog,
            timeline: pg.timeline,
            replication_state: pg.replication_state.as_deref(),
            replication: &pg.replication,
            pause: state.paused(),
            cluster_unlocked: state.cluster.leader.is_none(),
            dcs_last_seen: state.dcs_last_seen.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
            tags: &state.tags,
            database_system_identifier: pg.system_identifier.as_deref(),
            pending_restart: pg.pending_restart,
            stands_aside: state.stands_aside,
            patroni: PatroniInfo { version: crate::VERSION, scope: &state.scope, name: &state.name },
        }
    }
}

/// `GET /cluster`: every member as the store shows it.
#[derive(Debug, Serialize)]
pub struct ClusterJson<'a> {
    members: Vec<MemberJson<'a>>,
    scope: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pause: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_switchover: Option<ScheduledSwitchover<'a>>,
}

/// One member of `/cluster`. Replicas carry, for each of their received, replayed and
/// overall positions, the LSN (`"0/3000060"`) and the lag in bytes behind the primary,
/// or `"unknown"` for both when the member did not report that position.
#[derive(Debug, Serialize)]
struct MemberJson<'a> {
    name: &'a str,
    role: &'static str,
    state: &'a str,
    api_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pending_restart: bool,
    #[serde(skip_serializing_if = "Tags::is_empty")]
    tags: &'a Tags,
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_lag: Option<Lag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_lag: Option<Lag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<Lag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lsn: Option<String>,
}

/// A lag in bytes, or `"unknown"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
enum Lag {
    Bytes(u64),
    Unknown(&'static str),
}

#[derive(Debug, Serialize)]
struct ScheduledSwitchover<'a> {
    at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
}

/// `(lag, lsn)` of one position of a replica, as Patroni 4 reports them.
fn lag_and_lsn(primary_at: u64, position: Option<u64>) -> (Option<Lag>, Option<String>) {
    match position.filter(|&p| p > 0) {
        None => (Some(Lag::Unknown("unknown")), Some("unknown".to_string())),
        Some(p) => (Some(Lag::Bytes(primary_at.saturating_sub(p))), Some(format_lsn(p))),
    }
}

impl<'a> ClusterJson<'a> {
    pub fn new(state: &'a NodeState) -> Self {
        let cluster = &state.cluster;
        let leader = cluster.leader_name();
        let primary_at = primary_position(state).unwrap_or(0);
        let members = cluster
            .members
            .iter()
            .map(|(name, m)| {
                let is_leader = leader == Some(name.as_str());
                let state = match (is_leader, m.replication_state.as_deref()) {
                    (false, Some(rs)) if !rs.is_empty() => rs,
                    _ => m.state.as_str(),
                };
                let (host, port) = match m.host_port() {
                    Some((host, port)) => (Some(host), Some(port)),
                    None => (None, None),
                };
                let mut json = MemberJson {
                    name,
                    role: match (is_leader, m.role) {
                        (true, Role::StandbyLeader) => "standby_leader",
                        (true, _) => "leader",
                        (false, _) => "replica",
                    },
                    state,
                    api_url: &m.api_url,
                    host,
                    port,
                    timeline: m.timeline,
                    pending_restart: m.pending_restart,
                    tags: &m.tags,
                    receive_lag: None,
                    receive_lsn: None,
                    replay_lag: None,
                    replay_lsn: None,
                    lag: None,
                    lsn: None,
                };
                if !is_leader {
                    (json.receive_lag, json.receive_lsn) = lag_and_lsn(primary_at, m.receive_lsn);
                    (json.replay_lag, json.replay_lsn) = lag_and_lsn(primary_at, m.replay_lsn);
                    (json.lag, json.lsn) = lag_and_lsn(primary_at, m.xlog_location);
                }
                json
            })
            .collect();
        let scheduled_switchover = cluster.failover.as_ref().and_then(|f| {
            f.scheduled_at.as_deref().map(|at| ScheduledSwitchover { at, from: f.leader.as_deref(), to: f.member.as_deref() })
        });
        Self { members, scope: &state.scope, pause: state.paused(), scheduled_switchover }
    }
}
