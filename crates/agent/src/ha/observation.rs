//! What one HA cycle knows: the facts gathered at its start ([`Observation`]), what the
//! node remembers across cycles ([`Memory`]) and what never changes during a run
//! ([`Policy`]). `decide` reads only these: no I/O and no clock (the time is `now`).
//! Plain data, so the table tests in `decide` build them by hand.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::election::PeerReport;
use super::failsafe::Promised;
use super::stuck::StallRemedy;
use crate::cluster::ClusterView;
use crate::config::Tags;
use crate::state::{PgStatus, Verdict};

/// The facts of one cycle.
#[derive(Debug, Clone)]
pub struct Observation {
    /// When the facts were gathered (monotonic, for the deadlines and `Memory`'s instants).
    pub now: Instant,
    /// The same moment on the wall clock (a switchover's `scheduled_at`).
    pub wall: SystemTime,
    /// The cluster's keys, read linearizably; `Err` says why the store could not be read.
    pub view: Result<ClusterView, String>,
    /// PostgreSQL: its state (a [`crate::state::PgState`]), role, timeline and positions.
    pub pg: PgStatus,
    /// The postmaster's pid, when one runs.
    pub postmaster: Option<i32>,
    /// `standby.signal` is in the data dir (PostgreSQL was started as a standby).
    pub standby_configured: bool,
    pub data_dir: DataDir,
    /// The control file, read when PostgreSQL does not answer; `Err` says why it could not be.
    pub control: Option<Result<ControlFacts, String>>,
    /// A base backup not yet started (`backup_label`): not a diverged primary.
    pub fresh_clone: bool,
    pub lease: LeaseFacts,
    /// The node published itself as the primary holding the key (before this cycle).
    pub published_holder: bool,
    /// The liveness probes' verdict on PostgreSQL (see `hung`).
    pub liveness: Verdict,
    /// The failsafe promise this member gave a primary, while it lasts.
    pub promised: Option<Promised>,
    /// What the other members said over REST: asked only while the leader key is free.
    pub peers: Vec<PeerReport>,
    /// How long this replica has neither streamed nor replayed (see `stuck::Stall`),
    /// and what that calls for; `Wait` unless it runs as a replica of another leader.
    pub stall: StallRemedy,
}

/// The data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDir {
    /// Missing or empty: the node clones the primary.
    Empty,
    /// Holds a cluster (`PG_VERSION` and `global/pg_control`).
    Valid,
    /// Holds something else.
    Invalid,
}

/// What the control file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFacts {
    pub system_identifier: String,
    /// The newest timeline it knows.
    pub timeline: u32,
    /// It was shut down (or crashed) as a primary ("in production").
    pub was_primary: bool,
}

/// The lease this run of the agent holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseFacts {
    pub id: Option<i64>,
    /// The write deadline: until then this node may act as primary on the lease.
    pub valid_until: Option<Instant>,
    /// The leader key, when it names this node, is on a lease this run owns.
    pub owns_leader_key: bool,
}

impl LeaseFacts {
    pub fn valid_at(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|v| v > now)
    }
}

/// What the node remembers across cycles (kept by the executor, read by `decide`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// The agent started PostgreSQL and expects it to run (a missing postmaster is a crash).
    pub expect_running: bool,
    /// When PostgreSQL of this primary was first found down (for `primary_start_timeout`).
    pub primary_down_since: Option<Instant>,
    /// When this replica was last seen streaming or on the leader's timeline.
    pub last_in_sync: Option<Instant>,
    /// This data dir may hold WAL the leader does not have (it was a primary).
    pub needs_rewind: bool,
    /// The system identifier this node bootstrapped the cluster with, while `/initialize`
    /// still holds "" on its lease (the put failed): written again before anything else.
    pub unrecorded_sysid: Option<String>,
    /// Consecutive exits of PostgreSQL started as a replica (see `stuck::after_crash`).
    pub replica_crashes: u32,
    /// This run of replica crashes already had its rewind.
    pub crash_rewound: bool,
    /// The leader's timeline when pg_rewind last succeeded here, until the replica
    /// streams: it is not rewound onto that timeline again (see `stuck::diverged`).
    pub rewound_onto: Option<u32>,
    /// When the agent last started PostgreSQL as a replica (restarts are spaced by loop_wait).
    pub last_start: Option<Instant>,
    /// When PostgreSQL was started again in place as this node's primary (within the
    /// last `primary_start_timeout`): a crash loop ends with the key given up.
    pub restarts_in_place: Vec<Instant>,
    /// When and why this node last gave up being primary on its own (it then stands
    /// aside a while, so it does not win the key straight back).
    pub stepped_down: Option<(Instant, StepDown)>,
}

/// Why a primary gave up on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// It fenced its hung PostgreSQL.
    Hung,
    /// Its PostgreSQL kept exiting after restarts in place.
    CrashLoop,
}

impl StepDown {
    /// What the node publishes while it stands aside for this (member key and
    /// `/patroni`, as `stands_aside`): the same words for the whole time.
    pub fn published(self) -> &'static str {
        match self {
            StepDown::Hung => "it fenced its hung primary",
            StepDown::CrashLoop => "its PostgreSQL kept exiting as primary",
        }
    }
}

/// What stays the same for the whole run.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub me: String,
    pub scope: String,
    pub tags: Tags,
    pub data_dir: PathBuf,
    pub remove_data_on_rewind_failure: bool,
    /// A replica method works without a running primary (`no_leader`).
    pub clone_without_leader: bool,
    /// Why a `required` watchdog is not usable: this node then never takes the key.
    pub watchdog_missing: Option<String>,
}

/// How long `since` lies before `now` (zero when it does not).
pub fn age(since: Option<Instant>, now: Instant) -> Option<Duration> {
    since.map(|t| now.saturating_duration_since(t))
}
