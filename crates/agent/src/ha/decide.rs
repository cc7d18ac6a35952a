//! The HA decision: one pure function from what a cycle sees ([`Observation`]), what the
//! node remembers ([`Memory`]), the cluster's dynamic configuration and the node's
//! [`Policy`] to one [`Action`]. No I/O and no clock: the time is `Observation::now`.
//! It reads top to bottom in the order of Patroni's `_run_cycle`:
//!
//! 1. the store cannot be read → a primary keeps writing until its deadline (failsafe);
//! 2. the cluster is not initialized → bootstrap; the data dir is empty → clone;
//!    another cluster's data dir → refuse; paused → leave PostgreSQL alone (a
//!    running primary takes a free key, or its earlier run's, back);
//! 3. this node holds the leader key on its own lease → be the primary (in a standby
//!    cluster: the standby leader, which follows the remote primary and never promotes);
//! 4. the key is on a lease this run does not own → stop being primary, wait;
//! 5. another node holds it → follow it (demote, rewind, restart, re-clone as needed);
//! 6. nobody holds it → race for it if eligible, else stand aside (and stop being
//!    primary: another node may take the key now).
//!
//! A standby cluster (`standby_cluster` in `/config`) changes three things: bootstrap
//! clones the remote instead of initdb, the key holder is a standby leader, and the race
//! takes the key without a promotion. Removing the section makes the holder promote
//! (step 3's ordinary rule).
//!
//! The safety rules it keeps (see `crates/agent/SAFETY.md`; the property test below
//! checks them on random observations): Promote and Lead only on our own key and a live
//! lease; PostgreSQL that may run as a primary without the key is stopped, never
//! reconfigured; no race from a timeline older than the cluster's.

use std::time::{Duration, Instant};

use super::action::{Action, CloneFrom, RecloneCause, RewindFrom, StartReplica};
use super::election::{cluster_timeline, eligible, healthier_peer, Ineligible};
use super::hung::stand_aside_after_fencing;
use super::observation::{age, DataDir, Memory, Observation, Policy, StepDown};
use super::stuck::{self, AfterCrash, StallRemedy};
use super::switchover;
use super::sync::sync_allows;
use crate::cluster::{ClusterView, Member, Role};
use crate::config::DynamicConfig;
use crate::standby::StandbyCluster;
use crate::state::{PgState, PgStatus, Verdict};

/// Restarts in place of the primary's PostgreSQL, within `primary_start_timeout`, after
/// which one more exit gives the key up (a crash loop), however long each run lasted.
pub const MAX_RESTARTS_IN_PLACE: usize = 3;

/// A replica on an older timeline than the leader that has not streamed for this long
/// has diverged (its WAL went past the promotion point) and is rewound.
pub const DIVERGED_AFTER: Duration = Duration::from_secs(5);

/// The one decision of a cycle.
pub fn decide(o: &Observation, m: &Memory, config: &DynamicConfig, p: &Policy) -> Action {
    let me = p.me.as_str();
    let view = match &o.view {
        Ok(view) => view,
        Err(error) => return without_store(o, config, error),
    };
    match view.initialize.as_deref() {
        None => return bootstrap(o, config, p),
        Some("") => {
            return match &m.unrecorded_sysid {
                Some(sysid) => Action::RecordSystemIdentifier { sysid: sysid.clone() },
                // Each bootstrap of this run ends with the key released or its system
                // identifier written (or remembered above): "" on this run's lease is a
                // create whose answer was lost, and everyone would wait on it for ever.
                None if o.lease.id.is_some_and(|id| id == view.initialize_lease) => {
                    Action::ReleaseInitialize { mod_revision: view.initialize_mod_revision }
                }
                None => Action::Wait("waiting: another member is initializing the cluster".into()),
            };
        }
        Some(_) => {}
    }
    if o.data_dir == DataDir::Empty {
        return clone(view, p);
    }
    if let Some(refusal) = other_cluster(o, view, p) {
        return Action::Wait(refusal);
    }
    if view.paused() {
        return paused(o, view, me);
    }
    match &view.leader {
        Some(l) if l.name == me && o.lease.owns_leader_key => primary(o, m, view, config, me),
        Some(l) if l.name == me => {
            let sentence = "waiting: the leader key is held by an earlier run of this node; waiting for its lease to expire".to_string();
            if may_run_as_primary(&o.pg, o.postmaster.is_some(), o.standby_configured) {
                let why = "the leader key is on a lease this run does not own".into();
                return Action::Demote { why, sentence, drop_request: false };
            }
            Action::Wait(sentence)
        }
        Some(l) => follow(o, m, view, config, p, &l.name),
        None => free_key(o, m, view, config, p),
    }
}

/// Paused: PostgreSQL is left alone. A primary whose key is free, or still on the lease
/// of an earlier run of this node (the agent was restarted while paused), takes it back
/// on its live lease, as Patroni does: the key names the node that runs the primary.
fn paused(o: &Observation, view: &ClusterView, me: &str) -> Action {
    let primary_running = o.pg.is_running() && o.pg.role == Role::Primary;
    let replaces = match &view.leader {
        None => Some(None),
        Some(l) if l.name == me && !o.lease.owns_leader_key => Some(Some(l.mod_revision)),
        Some(_) => None,
    };
    match (replaces, o.lease.id) {
        (Some(replaces), Some(lease)) if primary_running && o.lease.valid_at(o.now) => {
            Action::ClaimKeyPaused { me: me.into(), lease, replaces }
        }
        _ => Action::Paused { me: me.into(), state: o.pg.state.to_string() },
    }
}

/// The store cannot be read: a primary keeps writing only until its deadline.
fn without_store(o: &Observation, config: &DynamicConfig, error: &str) -> Action {
    let error = error.to_string();
    if !o.published_holder {
        return Action::Wait(format!("store unreachable ({error}); no action"));
    }
    if !o.lease.valid_at(o.now) {
        Action::FenceWithoutStore { error }
    } else if config.failsafe_mode {
        Action::AskFailsafe { error }
    } else {
        Action::Wait(format!("store unreachable ({error}); still primary until the lease deadline"))
    }
}

/// No `/initialize`: race for it (on our lease, so a crash mid-way frees it).
fn bootstrap(o: &Observation, config: &DynamicConfig, p: &Policy) -> Action {
    if let Some(why) = &p.watchdog_missing {
        return Action::Wait(format!("waiting: the watchdog is required but {why}; another member may initialize the cluster"));
    }
    // Something that is not a PostgreSQL cluster is never wiped to make room (Patroni
    // refuses too): it may be anyone's data, and another member may initialize.
    if o.data_dir == DataDir::Invalid {
        return Action::Wait(format!(
            "refusing to initialize: data directory {} is not empty and holds no PostgreSQL cluster; move it away (another member may initialize the cluster)",
            p.data_dir.display()
        ));
    }
    if o.lease.id.is_none() {
        return Action::Wait("waiting for a lease before initializing".into());
    }
    match &config.standby_cluster {
        None => Action::Bootstrap { adopt: o.data_dir == DataDir::Valid },
        // Adopting would promote a data dir that is nobody's copy of the remote.
        Some(_) if o.data_dir == DataDir::Valid => Action::Wait(format!(
            "refusing to initialize a standby cluster over the data directory {}: it is cloned from the remote primary into an empty one; move it away",
            p.data_dir.display()
        )),
        Some(standby) => Action::BootstrapStandby { standby: standby.clone() },
    }
}

/// The data dir is empty: clone the primary once it runs, or a streaming replica tagged
/// `clonefrom` (it spares the primary the copy: Patroni's rule). Without a running
/// primary, a node with a `no_leader` replica method (a restore from a backup
/// repository) creates its replica all the same.
fn clone(view: &ClusterView, p: &Policy) -> Action {
    let Some(leader) = view.leader_member().filter(|m| runs_as_leader(m)) else {
        if p.clone_without_leader {
            return Action::Clone { from: None };
        }
        return Action::Wait("waiting for a running primary to clone from".into());
    };
    let (source, member) = view
        .members
        .iter()
        .filter(|(n, m)| **n != p.me && m.tags.clonefrom && m.state == "running" && m.streaming())
        .max_by_key(|(_, m)| m.xlog_location.unwrap_or(0))
        .map(|(n, m)| (n.clone(), m))
        .unwrap_or((view.leader_name().unwrap_or_default().to_string(), leader));
    let Some((host, port)) = member.host_port() else { return Action::Wait(format!("{source}'s conn_url is malformed; waiting")) };
    // Stream from the primary whatever the clone came from.
    let upstream = leader.host_port().unwrap_or((host.clone(), port));
    Action::Clone { from: Some(CloneFrom { source, host, port, upstream }) }
}

/// The system identifier in `/initialize` must match the data dir's.
fn other_cluster(o: &Observation, view: &ClusterView, p: &Policy) -> Option<String> {
    let expected = view.initialize.as_deref()?;
    let local = match (&o.pg.system_identifier, &o.control) {
        (Some(s), _) => s.clone(),
        (None, Some(Ok(c))) => c.system_identifier.clone(),
        (None, Some(Err(e))) => return Some(format!("cannot read the data directory: {e}")),
        (None, None) => return None,
    };
    (local != expected).then(|| {
        format!(
            "refusing to join: data directory {} belongs to another cluster (system identifier {local}, cluster {} has {expected}); move it away to re-clone",
            p.data_dir.display(),
            p.scope
        )
    })
}

/// This node holds the leader key on its own lease.
fn primary(o: &Observation, m: &Memory, view: &ClusterView, config: &DynamicConfig, me: &str) -> Action {
    if !o.lease.valid_at(o.now) {
        return Action::FenceExpiredLease { me: me.into() };
    }
    if let (Verdict::Hung { failing_for }, Some(postmaster)) = (o.liveness, o.postmaster) {
        return Action::ReplaceHung { postmaster, failing_for };
    }
    if let Some(standby) = &config.standby_cluster {
        return standby_leader(o, m, config, standby, me);
    }
    match (o.pg.is_running(), o.pg.role) {
        (true, Role::Primary) => match switchover::due(view, o.wall) {
            Some(request) => switchover::answer(view, request, me, config.synchronous_mode),
            None => Action::Lead { me: me.into(), scheduled_at: view.failover.as_ref().and_then(|f| f.scheduled_at.clone()) },
        },
        // A replica on an older timeline than the cluster's lacks what that timeline's
        // primary acknowledged: promoting it would fork the history. It needs a rewind.
        (true, _) => match (o.pg.timeline, cluster_timeline(view, me)) {
            (Some(mine), Some(cluster)) if mine < cluster => {
                Action::GiveUpKey { why: format!("{}; not promoting", Ineligible::BehindTimeline { mine, cluster }) }
            }
            // The key was taken on an older view (a promotion postponed because `/sync`
            // changed meanwhile): another primary may have come and gone since, its
            // commits acknowledged by others. Only what `/sync` says now counts.
            _ if config.synchronous_mode && !sync_allows(view, me, config.synchronous_mode_strict) => Action::GiveUpKey {
                why: "not a synchronous standby in /sync (synchronous_mode): not promoting; a member /sync lists may take over".into(),
            },
            _ => Action::Promote { reason: "I hold the leader key" },
        },
        (false, _) if o.pg.state == PgState::Starting => {
            Action::Wait("waiting for PostgreSQL to accept connections (I hold the leader key)".into())
        }
        (false, _) => {
            let window = Duration::from_secs(config.primary_start_timeout);
            let restarts = m.restarts_in_place.iter().filter(|t| o.now.saturating_duration_since(**t) < window).count();
            match age(m.primary_down_since, o.now) {
                Some(down) if down > window => {
                    Action::GiveUpKey { why: "PostgreSQL did not start within primary_start_timeout".into() }
                }
                // It starts, then exits again (a full disk, an unwritable pg_wal): no
                // restart in place will help; a replica can take over.
                _ if restarts >= MAX_RESTARTS_IN_PLACE => Action::GiveUpKey {
                    why: format!(
                        "PostgreSQL exited again after {restarts} restarts in place within primary_start_timeout ({}s); a replica may take over",
                        window.as_secs()
                    ),
                },
                _ => Action::RestartInPlace,
            }
        }
    }
}

/// This node holds a standby cluster's key: it follows the remote primary and is never
/// promoted. A PostgreSQL that may serve writes (the section was just added to a running
/// cluster: Patroni's demote-cluster) is stopped first, then rewound from the remote.
fn standby_leader(o: &Observation, m: &Memory, config: &DynamicConfig, standby: &StandbyCluster, me: &str) -> Action {
    if may_run_as_primary(&o.pg, o.postmaster.is_some(), o.standby_configured) {
        return Action::Demote {
            why: format!("standby_cluster is set: the cluster follows {}", standby.remote()),
            sentence: format!("demoted: I am {me}, the standby leader now; will rewind and follow {}", standby.remote()),
            drop_request: false,
        };
    }
    if o.pg.is_running() {
        return Action::LeadStandby { me: me.into(), standby: standby.clone() };
    }
    if o.pg.state == PgState::Starting {
        return Action::Wait("waiting for PostgreSQL to accept connections (I am the standby leader)".into());
    }
    if age(m.last_start, o.now).is_some_and(|a| a < config.timing().loop_wait) {
        return Action::Wait(format!("PostgreSQL is {}; waiting a moment before starting it again", o.pg.state));
    }
    let was_primary = !o.fresh_clone && o.control.as_ref().and_then(|c| c.as_ref().ok()).is_some_and(|c| c.was_primary);
    Action::StartStandbyLeader { standby: standby.clone(), rewind: was_primary || m.needs_rewind }
}

/// Whether a live postmaster may be serving writes: it answered as a primary, or it
/// does not answer and either was a primary when it last answered or was not started as
/// a standby (`standby.signal`). Such a server is stopped before anything else: never
/// reconfigured to follow, and the fencer is not disarmed under it.
pub fn may_run_as_primary(pg: &PgStatus, alive: bool, standby_configured: bool) -> bool {
    alive && (pg.role == Role::Primary || (!pg.is_running() && !standby_configured))
}

/// The member runs as the cluster's primary, or as a standby cluster's standby leader:
/// it can be cloned, rewound from and followed.
fn runs_as_leader(m: &Member) -> bool {
    m.role.leads() && m.state == "running"
}

/// Whom a replica streams from: the running member its `replicatefrom` tag names, else the leader.
pub fn follow_source<'a>(view: &'a ClusterView, p: &Policy, leader: &'a str) -> Option<(&'a str, &'a Member)> {
    let tagged = p.tags.replicatefrom.as_deref().and_then(|n| view.members.get_key_value(n)).filter(|(_, m)| m.state == "running");
    tagged.map(|(n, m)| (n.as_str(), m)).or_else(|| view.members.get(leader).map(|m| (leader, m)))
}

/// Another node holds the key: follow it.
fn follow(o: &Observation, m: &Memory, view: &ClusterView, config: &DynamicConfig, p: &Policy, leader: &str) -> Action {
    let me = p.me.as_str();
    let demoted = format!("demoted: I am {me}; {leader} holds the leader key; will rewind and follow it");
    if may_run_as_primary(&o.pg, o.postmaster.is_some(), o.standby_configured) {
        return Action::Demote { why: format!("{leader} holds the leader key"), sentence: demoted, drop_request: false };
    }
    let Some(leader_member) = view.members.get(leader) else {
        return Action::Wait(format!("following {leader}: waiting for its member key"));
    };
    let (source, source_member) = match p.tags.nostream {
        true => (leader, leader_member),
        false => follow_source(view, p, leader).unwrap_or((leader, leader_member)),
    };
    let Some((host, port)) = source_member.host_port() else { return Action::Wait(format!("{source}'s conn_url is malformed; waiting")) };
    let cascading = source != leader;
    let pg = &o.pg;
    if pg.is_running() || pg.state == PgState::Starting {
        let in_sync = pg.streaming() || !older(pg.timeline, leader_member.timeline);
        let out_of_sync_for = age(m.last_in_sync, o.now).unwrap_or_default();
        if !in_sync && stuck::diverged(pg.timeline, leader_member.timeline, m.rewound_onto) && out_of_sync_for > DIVERGED_AFTER {
            return Action::StopDiverged { me: me.into(), leader: leader.into() };
        }
        let nostream = p.tags.nostream;
        // Not streaming is what a nostream replica is meant to do: never a stall (`stuck`
        // does not count one either).
        let stall = if nostream { StallRemedy::Wait } else { o.stall };
        return match stall {
            StallRemedy::Wait => Action::Configure { me: me.into(), source: source.into(), host, port, cascading, nostream },
            StallRemedy::Restart => Action::RestartStalled { stalled: stalled(config, me, leader, &host, port) },
            StallRemedy::Reclone if p.remove_data_on_rewind_failure => Action::Reclone {
                leader: leader.into(),
                cause: RecloneCause::Stalled { stalled: stalled(config, me, leader, &host, port) },
            },
            StallRemedy::Reclone => Action::Wait(format!(
                "{}, even after a restart; not re-cloning (remove_data_directory_on_rewind_failure is off): `raftctl reinit` does",
                stalled(config, me, leader, &host, port)
            )),
        };
    }
    if age(m.last_start, o.now).is_some_and(|a| a < config.timing().loop_wait) {
        return Action::Wait(format!("PostgreSQL is {}; waiting a moment before starting it again", pg.state));
    }
    let control = o.control.as_ref().and_then(|c| c.as_ref().ok());
    let after_crash = (pg.state == PgState::Crashed).then(|| {
        let crashes = m.replica_crashes + 1;
        (crashes, stuck::after_crash(crashes, control.map(|c| c.timeline), leader_member.timeline, m.crash_rewound))
    });
    if matches!(after_crash, Some((_, AfterCrash::Reclone))) && p.remove_data_on_rewind_failure {
        return Action::Reclone { leader: leader.into(), cause: RecloneCause::KeepsCrashing };
    }
    let crash_rewind = matches!(after_crash, Some((_, AfterCrash::Rewind)));
    let was_primary = !o.fresh_clone && control.is_some_and(|c| c.was_primary);
    let mut rewind = None;
    if was_primary || m.needs_rewind || crash_rewind {
        if !runs_as_leader(leader_member) {
            return Action::Wait(format!("waiting for {leader} to run as primary before rewinding"));
        }
        let (host, port) = leader_member.host_port().unwrap_or((host.clone(), port));
        rewind = Some(RewindFrom { leader: leader.into(), host, port, timeline: leader_member.timeline });
    }
    Action::StartReplica(StartReplica { source: source.into(), host, port, cascading, rewind, after_crash })
}

fn older(mine: Option<u32>, theirs: Option<u32>) -> bool {
    matches!((mine, theirs), (Some(a), Some(b)) if a < b)
}

/// The sentence that says a replica stalled.
fn stalled(config: &DynamicConfig, me: &str, leader: &str, host: &str, port: u16) -> String {
    format!(
        "PostgreSQL of {me} has neither streamed nor replayed WAL for {}s, on the timeline of {leader}, which runs as primary and whose PostgreSQL ({host}:{port}) is reachable",
        stuck::patience(&config.timing()).as_secs()
    )
}

/// Nobody holds the key: race for it, or stand aside. A node that runs PostgreSQL as a
/// primary and does not race stops being primary (Patroni demotes here too): another
/// node may take the key and promote, and nothing else would stop this one.
fn free_key(o: &Observation, m: &Memory, view: &ClusterView, config: &DynamicConfig, p: &Policy) -> Action {
    // Not only a server that answered as primary: one that does not answer and was not
    // started as a standby may be serving writes just as well.
    let primary_without_key = may_run_as_primary(&o.pg, o.postmaster.is_some(), o.standby_configured);
    let me = &p.me;
    if let (Some(standby), true) = (&config.standby_cluster, primary_without_key) {
        return Action::Demote {
            why: format!("standby_cluster is set and the leader key is free: the cluster follows {}", standby.remote()),
            sentence: format!("demoted: I am {me}; this is a standby cluster of {}: no primary runs here", standby.remote()),
            drop_request: false,
        };
    }
    let action = race_or_stand(o, m, view, config, p);
    if matches!(action, Action::Race { .. } | Action::RaceStandby { .. }) || !primary_without_key {
        return action;
    }
    Action::Demote {
        why: format!("the leader key is free and I did not take it: {action}"),
        sentence: format!("demoted: I am {me}; the leader key is free and I did not take it ({action})"),
        drop_request: matches!(action, Action::StandAside { drop_request: true, .. }),
    }
}

fn race_or_stand(o: &Observation, m: &Memory, view: &ClusterView, config: &DynamicConfig, p: &Policy) -> Action {
    let me = p.me.as_str();
    let stand = |why: String| Action::StandAside { why, drop_request: false, needs_rewind: false };
    let requested = switchover::due(view, o.wall).and_then(|f| f.member.clone());
    if let Some(candidate) = requested.as_deref().filter(|c| *c != me) {
        if view.members.get(candidate).is_some_and(|m| m.state == "running") {
            return stand(format!("no leader: a switchover to {candidate} is in progress; standing aside"));
        }
    }
    let chosen = requested.as_deref() == Some(me);
    let refuse = |why: String, needs_rewind: bool| Action::StandAside {
        why: format!("no leader: I am {me} and may not take over ({why})"),
        drop_request: chosen,
        needs_rewind,
    };
    if let Some(promised) = &o.promised {
        return stand(promised.to_string());
    }
    if let Some(why) = &p.watchdog_missing {
        return refuse(format!("watchdog required but {why}"), false);
    }
    if let Some(why) = hung_refusal(o, m, config) {
        return refuse(why, false);
    }
    if !o.pg.is_running() && o.pg.state != PgState::Starting && o.data_dir == DataDir::Valid && !p.tags.nofailover {
        // Started read-only, a former primary would lose the control file's "was
        // primary" mark that makes it rewind before following.
        let control = o.control.as_ref().and_then(|c| c.as_ref().ok());
        if let (Some(cluster), Some(c)) = (cluster_timeline(view, me), control) {
            if c.timeline < cluster {
                let why = Ineligible::BehindTimeline { mine: c.timeline, cluster };
                return Action::StandAside {
                    why: format!("no leader: I am {me} and may not take over ({why})"),
                    drop_request: false,
                    needs_rewind: true,
                };
            }
        }
        return Action::StartReadOnly;
    }
    // The chosen candidate of a switchover or manual failover skips the lag and
    // healthier_peer checks: the operator picked it (and the old primary checked it).
    let max_lag = if chosen { u64::MAX } else { config.maximum_lag_on_failover };
    let mine = match eligible(&o.pg, &p.tags, view, me, max_lag) {
        Ok(position) => position,
        Err(why) => {
            let behind_as_primary = matches!(why, Ineligible::BehindTimeline { .. }) && o.pg.role == Role::Primary;
            return refuse(why.to_string(), behind_as_primary);
        }
    };
    let may_promote = |name: &str| !config.synchronous_mode || sync_allows(view, name, config.synchronous_mode_strict);
    if !may_promote(me) {
        return Action::StandAside {
            why: format!("no leader: I am {me}, not a synchronous standby (synchronous_mode): only a member listed in /sync may take over"),
            drop_request: chosen,
            needs_rewind: false,
        };
    }
    if !chosen {
        let peers: Vec<_> = o.peers.iter().filter(|peer| may_promote(&peer.name)).cloned().collect();
        if let Some(peer) = peers.iter().find(|peer| peer.primary && peer.running) {
            return stand(format!("no leader, but {} still runs as primary: not racing", peer.name));
        }
        let priority = p.tags.failover_priority.unwrap_or(1);
        if let Some(better) = healthier_peer(o.pg.timeline, mine, priority, &peers) {
            return stand(format!("no leader: {} is healthier than me ({me}); letting it take over", better.name));
        }
    }
    match o.lease.id.filter(|_| o.lease.valid_at(o.now)) {
        Some(lease) if config.standby_cluster.is_some() => Action::RaceStandby { lease },
        Some(lease) => Action::Race { lease, promote: o.pg.role != Role::Primary },
        None => stand("no leader: waiting for my lease to be renewed before racing".into()),
    }
}

/// Why this node may not race because of its own PostgreSQL: it is hung, or this node
/// gave up being primary a short while ago (it fenced its hung PostgreSQL, or that one
/// kept exiting): it would win the key straight back.
fn hung_refusal(o: &Observation, m: &Memory, config: &DynamicConfig) -> Option<String> {
    if let Verdict::Hung { failing_for } = o.liveness {
        return Some(format!("PostgreSQL is hung: every liveness probe failed for {:.1} s", failing_for.as_secs_f64()));
    }
    let (ago, why) = standing_aside(m, o.now, config)?;
    Some(match why {
        StepDown::Hung => format!("I fenced my hung primary {:.0} s ago", ago.as_secs_f64()),
        StepDown::CrashLoop => format!("my PostgreSQL kept exiting as primary {:.0} s ago", ago.as_secs_f64()),
    })
}

/// How long ago and why this node gave up being primary on its own, while it still
/// stands aside for that (`stand_aside_after_fencing`). The node publishes it (member
/// key and `/patroni`, `stands_aside`), so no switchover names it and no peer waits for
/// it as the healthier one: it would refuse the key.
pub fn standing_aside(m: &Memory, now: Instant, config: &DynamicConfig) -> Option<(Duration, StepDown)> {
    let (at, why) = m.stepped_down?;
    let ago = now.saturating_duration_since(at);
    (ago < stand_aside_after_fencing(&config.timing())).then_some((ago, why))
}

/// What a cycle remembers of what it saw, before deciding: a replica of another leader
/// that streams, or is known to be on the leader's timeline, is in sync (its crash count
/// and rewind marks start over).
pub fn remember(m: &mut Memory, o: &Observation, p: &Policy) {
    let Ok(view) = &o.view else { return };
    let Some(leader) = view.leader_name().filter(|l| *l != p.me).and_then(|l| view.members.get(l)) else { return };
    let pg = &o.pg;
    if !(pg.is_running() || pg.state == PgState::Starting) || may_run_as_primary(pg, o.postmaster.is_some(), o.standby_configured) {
        return;
    }
    let streaming = pg.streaming();
    if streaming {
        m.rewound_onto = None;
    }
    // An unknown timeline (PostgreSQL starting, not answering yet) proves nothing.
    if streaming || (pg.timeline.is_some() && !older(pg.timeline, leader.timeline)) {
        m.last_in_sync = Some(o.now);
        m.replica_crashes = 0;
        m.crash_rewound = false;
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
