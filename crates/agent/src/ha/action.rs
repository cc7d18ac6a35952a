//! What one HA cycle does: the [`Action`] `decide` picks. Its `Display` is the cycle's
//! sentence when the action succeeds ("no action: I am node2, a replica, following
//! node1"); the executor (`execute`) carries it out and returns that sentence, or the
//! one that says what went wrong.

use std::fmt;
use std::time::Duration;

use super::stuck::AfterCrash;
use crate::cluster::FailoverRequest;
use crate::standby::StandbyCluster;

/// One cycle's action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing to do but say why (waiting, standing aside, refusing, ...).
    Wait(String),

    // --- the store cannot be read ---
    /// A primary whose write deadline passed without the store: stop PostgreSQL now.
    FenceWithoutStore { error: String },
    /// A primary in failsafe mode without the store: ask every other member to confirm.
    AskFailsafe { error: String },

    // --- joining ---
    /// Race for `/initialize` and create the cluster with initdb, or (`adopt`) claim it
    /// with the data dir already here (the store was recreated).
    Bootstrap { adopt: bool },
    /// Race for `/initialize` and create a standby cluster: clone the remote primary
    /// (`standby_cluster.create_replica_methods`, else pg_basebackup) instead of initdb
    /// and start as its standby leader.
    BootstrapStandby { standby: StandbyCluster },
    /// Write the system identifier the bootstrap could not record in `/initialize`.
    RecordSystemIdentifier { sysid: String },
    /// `/initialize` holds "" on this run's lease but no bootstrap of this run took it
    /// (the create went through but its answer was lost): delete it, if still the one
    /// put at `mod_revision`, so that the race runs again.
    ReleaseInitialize { mod_revision: i64 },
    /// The data dir is empty: fill it with the replica methods (`create_replica_methods`)
    /// from `from`, then stream; with no `from` (no primary runs) only the methods that
    /// work without one, then start read-only.
    Clone { from: Option<CloneFrom> },
    /// The cluster is paused: the fencer is disarmed and PostgreSQL left alone.
    Paused { me: String, state: String },
    /// Paused, with PostgreSQL running as primary and the leader key free or left by an
    /// earlier run of this node (an agent restarted while paused): take the key on
    /// `lease`, by compare-and-swap on the old key's mod revision (`replaces`) or by
    /// creating it. The fencer stays disarmed: the cluster is paused.
    ClaimKeyPaused { me: String, lease: i64, replaces: Option<i64> },

    // --- holding the leader key ---
    /// The lease was not renewed before the write deadline: stop PostgreSQL now.
    FenceExpiredLease { me: String },
    /// PostgreSQL is hung: kill it, confirm it dead, then release the key.
    ReplaceHung { postmaster: i32, failing_for: Duration },
    /// A switchover or manual failover applies now: hand the key over.
    HandOver(HandOver),
    /// A switchover request that cannot be carried out: removed, `why` says why.
    CancelSwitchover { why: String },
    /// Run as the primary: fencer armed, slots, `/sync`, `/status`.
    Lead { me: String, scheduled_at: Option<String> },
    /// PostgreSQL runs as a replica under our key: promote it.
    Promote { reason: &'static str },
    /// PostgreSQL of the primary is down: start it again.
    RestartInPlace,
    /// A standby cluster's leader key is ours and PostgreSQL runs as a replica: keep it
    /// streaming from the remote primary (never promoted), with one slot per member.
    LeadStandby { me: String, standby: StandbyCluster },
    /// A standby cluster's leader key is ours and PostgreSQL is down: start it as the
    /// standby leader, after a rewind from the remote when it ran as a primary.
    StartStandbyLeader { standby: StandbyCluster, rewind: bool },
    /// Release the key: PostgreSQL did not come back within `primary_start_timeout`,
    /// or it cannot become this timeline's primary.
    GiveUpKey { why: String },

    // --- not holding it ---
    /// PostgreSQL may run as a primary without our key: stop it at once (a rewind
    /// follows). `drop_request`: as in `StandAside`.
    Demote { why: String, sentence: String, drop_request: bool },
    /// A replica whose timeline split from the leader's: stop it; a rewind follows.
    StopDiverged { me: String, leader: String },
    /// A replica stalled on the leader's timeline: stop it; the next cycle starts it.
    RestartStalled { stalled: String },
    /// Remove the data directory; the next cycle clones the leader again.
    Reclone { leader: String, cause: RecloneCause },
    /// A running replica: point it at `source` (reload when the configuration changed).
    /// `nostream`: the replica is tagged so: it replays from the archive, `source` is the leader.
    Configure { me: String, source: String, host: String, port: u16, cascading: bool, nostream: bool },
    /// Start PostgreSQL as a replica of `source`, after a rewind from the leader if one is due.
    StartReplica(StartReplica),

    // --- nobody holds the key ---
    /// This node may not take the key now. `drop_request`: an operator chose it, so the
    /// request goes (the others stand aside for a chosen candidate). `needs_rewind`: its
    /// data dir is behind the cluster's timeline.
    StandAside { why: String, drop_request: bool, needs_rewind: bool },
    /// Nobody runs: start PostgreSQL read-only to take part in the election.
    StartReadOnly,
    /// Take the key with a compare-and-swap on `lease`; promote when PostgreSQL is a replica.
    Race { lease: i64, promote: bool },
    /// A standby cluster: take the key the same way, never promoting: the next cycle
    /// points PostgreSQL at the remote primary.
    RaceStandby { lease: i64 },
}

/// Handing the key over to `candidate` (its PostgreSQL at `host:port`).
#[derive(Debug, Clone, PartialEq)]
pub struct HandOver {
    pub candidate: String,
    pub host: String,
    pub port: u16,
    /// The request named nobody: it is rewritten to name `candidate` first.
    pub pin: Option<FailoverRequest>,
}

/// Why the data directory is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecloneCause {
    /// Neither streamed nor replayed for the patience, even after a restart.
    Stalled { stalled: String },
    /// Kept exiting even after a rewind.
    KeepsCrashing,
}

/// Starting a replica.
/// Where a clone comes from: the member `source` at `host:port` (the primary, or a
/// replica tagged `clonefrom`); the replica then streams from `upstream` (the primary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneFrom {
    pub source: String,
    pub host: String,
    pub port: u16,
    pub upstream: (String, u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartReplica {
    pub source: String,
    pub host: String,
    pub port: u16,
    /// `source` is another replica (`replicatefrom`): no slot.
    pub cascading: bool,
    /// pg_rewind from the leader first.
    pub rewind: Option<RewindFrom>,
    /// PostgreSQL exited: the exits in a row now, and what `stuck::after_crash` said.
    pub after_crash: Option<(u32, AfterCrash)>,
}

/// The leader a rewind reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewindFrom {
    pub leader: String,
    pub host: String,
    pub port: u16,
    pub timeline: Option<u32>,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Wait(why) => f.write_str(why),
            Action::FenceWithoutStore { error } => {
                write!(f, "demoted: the store is unreachable ({error}) and the lease could not be renewed in time")
            }
            Action::AskFailsafe { error } => write!(f, "failsafe: the store is unreachable ({error}); asking every other member"),
            Action::Bootstrap { adopt: false } => f.write_str("racing to initialize a new cluster"),
            Action::Bootstrap { adopt: true } => f.write_str("racing to initialize the cluster with my data directory"),
            Action::BootstrapStandby { standby } => write!(f, "racing to initialize a standby cluster of {}", standby.remote()),
            Action::RecordSystemIdentifier { sysid } => write!(f, "recorded the system identifier {sysid} in /initialize"),
            Action::ReleaseInitialize { .. } => {
                write!(f, "released /initialize: my earlier race for it went through though its answer was lost; racing again")
            }
            Action::Clone { from: Some(from) } => write!(f, "cloning {}", from.source),
            Action::Clone { from: None } => f.write_str("creating a replica without a running primary (the no_leader replica methods)"),
            Action::Paused { me, state } => write!(f, "paused: not managing PostgreSQL (I am {me}, {state})"),
            Action::ClaimKeyPaused { me, .. } => {
                write!(f, "paused: took the leader key for my running primary (I am {me}); PostgreSQL left alone")
            }
            Action::FenceExpiredLease { me } => write!(f, "demoted: I am {me}; my lease was not renewed before its write deadline"),
            Action::ReplaceHung { failing_for, .. } => {
                write!(f, "primary hung for {:.1} s: fenced and released the leader key", failing_for.as_secs_f64())
            }
            Action::HandOver(to) => write!(f, "switchover: handing over to {}", to.candidate),
            Action::CancelSwitchover { why } => f.write_str(why),
            Action::Lead { me, scheduled_at: Some(at) } => {
                write!(f, "no action: I am {me}, the primary; a switchover is scheduled at {at}")
            }
            Action::Lead { me, scheduled_at: None } => write!(f, "no action: I am {me}, the primary, holding the leader key"),
            Action::Promote { reason } => write!(f, "promoting ({reason})"),
            Action::RestartInPlace => f.write_str("restarting PostgreSQL in place: it was down while I hold the leader key"),
            Action::LeadStandby { me, standby } => {
                write!(f, "no action: I am {me}, the standby leader, following {}", standby.remote())
            }
            Action::StartStandbyLeader { standby, rewind: false } => {
                write!(f, "starting PostgreSQL as the standby leader, following {}", standby.remote())
            }
            Action::StartStandbyLeader { standby, rewind: true } => {
                write!(f, "rewinding from {0} and starting PostgreSQL as the standby leader, following it", standby.remote())
            }
            Action::GiveUpKey { why } => write!(f, "gave up the leader key: {why}"),
            Action::Demote { sentence, .. } => f.write_str(sentence),
            Action::StopDiverged { me, leader } => write!(f, "stopped: I am {me}, a replica that diverged from {leader}; will rewind"),
            Action::RestartStalled { stalled } => write!(f, "stopped: {stalled}; starting it again"),
            Action::Reclone { leader, cause: RecloneCause::Stalled { stalled } } => {
                write!(f, "removed the data directory: {stalled}, even after a restart; cloning {leader} again")
            }
            Action::Reclone { leader, cause: RecloneCause::KeepsCrashing } => {
                write!(f, "PostgreSQL keeps exiting even after a rewind: removed the data directory to clone {leader} again")
            }
            Action::Configure { me, source, nostream: true, .. } => {
                write!(f, "no action: I am {me}, a replica tagged nostream, replaying WAL from the archive ({source} is the leader)")
            }
            Action::Configure { me, source, .. } => write!(f, "no action: I am {me}, a replica, following {source}"),
            Action::StartReplica(s) => write!(f, "starting PostgreSQL as a replica of {}", s.source),
            Action::StandAside { why, drop_request: true, .. } => {
                write!(f, "{why}; dropped the switchover/failover request that named me")
            }
            Action::StandAside { why, .. } => f.write_str(why),
            Action::StartReadOnly => f.write_str("no leader: starting PostgreSQL read-only to take part in the election"),
            Action::Race { promote: true, .. } => f.write_str("racing for the leader key to promote"),
            Action::Race { promote: false, .. } => f.write_str("racing for the leader key as the running primary"),
            Action::RaceStandby { .. } => f.write_str("racing for the leader key to become the standby leader (never promoting)"),
        }
    }
}
