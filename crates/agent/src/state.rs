//! What the agent knows right now, published after every HA cycle (and on PostgreSQL
//! changes) through a `tokio::sync::watch` channel. The REST API and metrics read only
//! this; they never touch PostgreSQL or the store themselves.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cluster::{ClusterView, Role};
use crate::config::Tags;

/// The verdict on PostgreSQL's liveness (reached by `ha::hung::judge`), published with
/// the node's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Healthy,
    /// Some probes in a row failed, fewer than `max_failures`.
    Suspect {
        failures: u32,
    },
    /// `max_failures` probes or more in a row failed, the first `failing_for` ago.
    Hung {
        failing_for: Duration,
    },
}

/// What the local PostgreSQL is doing, as the HA loop sees it. Published (REST, the
/// member key) as Patroni's strings: "running", "starting", "stopped", ...
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PgState {
    /// No postmaster, and the agent did not start one.
    #[default]
    Stopped,
    /// A postmaster runs but did not answer the status query (yet).
    Starting,
    /// It answered the status query.
    Running,
    /// No postmaster although the agent started one.
    Crashed,
    /// Every liveness probe failed `max_failures` times in a row (see `ha::hung`).
    Hung,
    /// A long step of the agent is under way (published while it runs).
    InStep(Step),
}

/// The long steps during which PostgreSQL is published as busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    InitializingNewCluster,
    RunningCustomBootstrap,
    CreatingReplica,
    Rewinding,
}

impl PgState {
    pub fn as_str(self) -> &'static str {
        match self {
            PgState::Stopped => "stopped",
            PgState::Starting => "starting",
            PgState::Running => "running",
            PgState::Crashed => "crashed",
            PgState::Hung => "hung",
            PgState::InStep(Step::InitializingNewCluster) => "initializing new cluster",
            PgState::InStep(Step::RunningCustomBootstrap) => "running custom bootstrap script",
            PgState::InStep(Step::CreatingReplica) => "creating replica",
            PgState::InStep(Step::Rewinding) => "rewinding",
        }
    }
}

impl std::fmt::Display for PgState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PgState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// PostgreSQL as the agent last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PgStatus {
    pub state: PgState,
    pub role: Role,
    pub timeline: Option<u32>,
    /// `server_version_num`, e.g. 150004.
    pub server_version: Option<u32>,
    /// `pg_postmaster_start_time()` as PostgreSQL prints it.
    pub postmaster_start_time: Option<String>,
    /// Primary: `pg_current_wal_lsn()`.
    pub wal_lsn: Option<u64>,
    /// Replica: `pg_last_wal_receive_lsn()` / `pg_last_wal_replay_lsn()`.
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    /// Replica: `pg_last_xact_replay_timestamp()`.
    pub replayed_timestamp: Option<String>,
    /// In recovery: `streaming` while the WAL receiver streams, else `in archive
    /// recovery` (`sql::replication_state`); None on a primary.
    pub replication_state: Option<String>,
    /// Primary: `pg_stat_replication` rows.
    pub replication: Vec<ReplicationRow>,
    pub system_identifier: Option<String>,
    pub pending_restart: bool,
}

impl PgStatus {
    pub fn is_running(&self) -> bool {
        self.state == PgState::Running
    }
    /// The WAL receiver streams.
    pub fn streaming(&self) -> bool {
        self.replication_state.as_deref() == Some(crate::postgres::sql::STREAMING)
    }
    /// The WAL position that counts for failover: the primary's write position, or the
    /// higher of a replica's received and replayed positions.
    pub fn wal_position(&self) -> Option<u64> {
        match self.role {
            Role::Primary => self.wal_lsn,
            _ => match (self.receive_lsn, self.replay_lsn) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// One row of `pg_stat_replication`, as Patroni's `/patroni` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplicationRow {
    pub usename: String,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: String,
    pub sync_state: String,
    pub sync_priority: i32,
    /// `flush_lsn`: what the standby has flushed (not in Patroni's JSON).
    #[serde(skip)]
    pub flush_lsn: Option<u64>,
}

/// The agent's published state.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    pub name: String,
    pub scope: String,
    pub tags: Tags,
    pub postgres: PgStatus,
    /// True while this node holds the leader key on a lease it renewed recently enough
    /// to accept writes (see `timing`).
    pub holds_leader_key: bool,
    /// The latest read of the cluster's keys.
    pub cluster: ClusterView,
    /// When the store last answered this agent.
    pub dcs_last_seen: Option<SystemTime>,
    /// The agent's latest decision, as logged ("no action: I am node2, a replica, following node1").
    pub last_action: String,
    /// The liveness probe's verdict (see `ha::hung`).
    pub liveness: Verdict,
    /// Liveness probes that failed since the agent started.
    pub liveness_failures_total: u64,
    /// Why this node stays out of leader races for now (see `ha::decide::standing_aside`).
    pub stands_aside: Option<&'static str>,
}

impl NodeState {
    pub fn new(name: &str, scope: &str, tags: Tags) -> Self {
        Self {
            name: name.to_string(),
            scope: scope.to_string(),
            tags,
            postgres: PgStatus::default(),
            holds_leader_key: false,
            cluster: ClusterView::default(),
            dcs_last_seen: None,
            last_action: "starting".into(),
            liveness: Verdict::Healthy,
            liveness_failures_total: 0,
            stands_aside: None,
        }
    }

    pub fn paused(&self) -> bool {
        self.cluster.paused()
    }
}

/// The sending half lives in the HA loop; REST handlers hold receivers.
pub type StateSender = tokio::sync::watch::Sender<NodeState>;
pub type StateReceiver = tokio::sync::watch::Receiver<NodeState>;
