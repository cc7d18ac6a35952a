//! Following the primary: demote if this node still runs as primary, rewind a data dir
//! that was a primary (or that diverged), point `primary_conninfo` and the slot at the
//! leader (or at the member named by the `replicatefrom` tag), and start or reload. A
//! replica that crash-loops or stops streaming for good is handled as `stuck` decides.

use std::time::{Duration, Instant};

use super::stuck::{self, AfterCrash, StallRemedy};
use super::Agent;
use crate::cluster::{ClusterView, Member, Role};
use crate::postgres::StopMode;
use crate::state::PgStatus;

/// How long the check that the upstream's PostgreSQL port accepts connections may take.
const REACHABLE_TIMEOUT: Duration = Duration::from_secs(1);

/// A replica on an older timeline than the leader that has not streamed for this long
/// has diverged (its WAL went past the promotion point) and is rewound.
const DIVERGED_AFTER: Duration = Duration::from_secs(5);

impl Agent {
    /// PostgreSQL must not run as a primary: stop it at once. The fencer is disarmed
    /// only once PostgreSQL is known not to run as a primary.
    pub(super) async fn demote_if_primary(&mut self, pg: &PgStatus, why: &str) -> bool {
        let alive = self.pg.postmaster_pid().is_some();
        if may_run_as_primary(pg, alive, self.pg.is_standby_configured()) {
            tracing::warn!("demoting: {why}");
            self.fence_now().await;
            self.needs_rewind = true;
            return true;
        }
        self.lease.fencer().disarm();
        false
    }

    pub(super) async fn follow(&mut self, view: &ClusterView, pg: &PgStatus, leader: &str) -> String {
        let me = self.config.name.clone();
        if self.demote_if_primary(pg, &format!("{leader} holds the leader key")).await {
            return format!("demoted: I am {me}; {leader} holds the leader key; will rewind and follow it");
        }
        let Some(leader_member) = view.members.get(leader) else {
            return format!("following {leader}: waiting for its member key");
        };
        let source = self
            .config
            .tags
            .replicatefrom
            .as_ref()
            .and_then(|name| view.members.get(name).filter(|m| m.state == "running").map(|m| (name.clone(), m)))
            .unwrap_or((leader.to_string(), leader_member));
        let Some((host, port)) = source.1.host_port() else { return format!("{}'s conn_url is malformed; waiting", source.0) };
        let source_name = source.0;

        if pg.is_running() || pg.state == "starting" {
            let on_old_timeline = matches!((pg.timeline, leader_member.timeline), (Some(a), Some(b)) if a < b);
            if pg.replication_state.is_some() {
                self.rewound_onto = None;
            }
            if pg.replication_state.is_some() || !on_old_timeline {
                self.last_in_sync = Instant::now();
                self.replica_crashes = 0;
                self.crash_rewound = false;
            } else if stuck::diverged(pg.timeline, leader_member.timeline, self.rewound_onto)
                && self.last_in_sync.elapsed() > DIVERGED_AFTER
            {
                tracing::warn!("not streaming from {leader} for {:?} and on an older timeline: rewinding", DIVERGED_AFTER);
                self.stop_replica().await;
                self.needs_rewind = true;
                return format!("stopped: I am {me}, a replica that diverged from {leader}; will rewind");
            }
            if let Some(action) = self.check_stall(pg, leader, leader_member, &host, port).await {
                return action;
            }
            return match self.configure_replica(&host, port, source_name != leader) {
                Ok(true) => match self.pg.reload().await {
                    Ok(()) => format!("I am {me}, a replica: now following {source_name} ({host}:{port})"),
                    Err(e) => format!("cannot reload PostgreSQL: {e}"),
                },
                Ok(false) => format!("no action: I am {me}, a replica, following {source_name}"),
                Err(e) => format!("cannot write the configuration: {e}"),
            };
        }

        if self.last_start.is_some_and(|t| t.elapsed() < self.timing().loop_wait) {
            return format!("PostgreSQL is {}; waiting a moment before starting it again", pg.state);
        }
        if pg.state == "crashed" {
            if let Some(action) = self.after_crash(leader, leader_member).await {
                return action;
            }
        }
        // A fresh base backup carries the primary's control file ("in production") and a
        // backup_label; it is not a diverged primary.
        let fresh_clone = self.pg.data_dir().join("backup_label").exists();
        let was_primary = !fresh_clone && self.controldata().await.is_some_and(|c| c.was_primary());
        if was_primary || self.needs_rewind {
            if leader_member.role != Role::Primary || leader_member.state != "running" {
                return format!("waiting for {leader} to run as primary before rewinding");
            }
            let (lhost, lport) = leader_member.host_port().unwrap_or((host.clone(), port));
            if let Some(failure) = self.rewind(&lhost, lport, leader).await {
                return failure;
            }
            self.rewound_onto = leader_member.timeline;
        }
        if let Err(e) = self.configure_replica(&host, port, source_name != leader) {
            return format!("cannot write the configuration: {e}");
        }
        self.last_start = Some(Instant::now());
        match self.pg.start().await {
            Ok(()) => {
                self.expect_running = true;
                self.last_in_sync = Instant::now();
                format!("starting PostgreSQL as a replica of {source_name}")
            }
            Err(e) => format!("cannot start PostgreSQL: {e}"),
        }
    }

    /// PostgreSQL of this replica exited again: count it, and rewind or re-clone as
    /// `stuck::after_crash` says. Some(action) when this cycle must not start it.
    async fn after_crash(&mut self, leader: &str, leader_member: &Member) -> Option<String> {
        self.replica_crashes += 1;
        let crashes = self.replica_crashes;
        let timeline = self.controldata().await.map(|c| c.latest_timeline());
        match stuck::after_crash(crashes, timeline, leader_member.timeline, self.crash_rewound) {
            AfterCrash::Restart if crashes >= 3 => {
                tracing::warn!(
                    "PostgreSQL exited {crashes} times in a row as a replica of {leader}, on its timeline: starting it again (a rewind cannot repair that); see {}",
                    self.pg.log_file().display()
                );
                None
            }
            AfterCrash::Restart => None,
            AfterCrash::Rewind => {
                tracing::warn!("PostgreSQL exited {crashes} times in a row as a replica of {leader}, on an older timeline: rewinding");
                self.needs_rewind = true;
                self.crash_rewound = true;
                None
            }
            AfterCrash::Reclone if self.config.postgresql.remove_data_directory_on_rewind_failure => {
                self.replica_crashes = 0;
                self.crash_rewound = false;
                Some(match self.remove_data_to_reclone().await {
                    Ok(()) => format!("PostgreSQL keeps exiting even after a rewind: removed the data directory to clone {leader} again"),
                    Err(e) => format!("PostgreSQL keeps exiting even after a rewind, and {e}"),
                })
            }
            AfterCrash::Reclone => {
                tracing::warn!("PostgreSQL keeps exiting even after a rewind; not removing the data directory (remove_data_directory_on_rewind_failure is off)");
                None
            }
        }
    }

    /// A running replica that has neither streamed nor replayed for a while although
    /// it could: restart it, then re-clone it (see `stuck`). Some(action) when done.
    async fn check_stall(&mut self, pg: &PgStatus, leader: &str, leader_member: &Member, host: &str, port: u16) -> Option<String> {
        if !pg.is_running() || pg.role != Role::Replica {
            return None;
        }
        let mut seen = stuck::Seen {
            streaming: pg.replication_state.is_some(),
            replay_lsn: pg.replay_lsn,
            on_leader_timeline: stuck::on_leader_timeline(pg.timeline, leader_member.timeline, self.rewound_onto),
            leader_healthy: leader_member.role == Role::Primary && leader_member.state == "running",
            upstream_reachable: false,
        };
        if seen.could_stream() {
            seen.upstream_reachable = reachable(host, port).await;
        }
        let patience = stuck::patience(&self.timing());
        let me = self.config.name.clone();
        let stalled = format!(
            "PostgreSQL of {me} has neither streamed nor replayed WAL for {}s, on the timeline of {leader}, which runs as primary and whose PostgreSQL ({host}:{port}) is reachable",
            patience.as_secs()
        );
        match self.stall.observe(&seen, Instant::now(), patience) {
            StallRemedy::Wait => None,
            StallRemedy::Restart => {
                tracing::warn!("{stalled}: restarting it (see {})", self.pg.log_file().display());
                self.stop_replica().await;
                Some(format!("stopped: {stalled}; starting it again"))
            }
            StallRemedy::Reclone if self.config.postgresql.remove_data_directory_on_rewind_failure => {
                tracing::warn!("{stalled}, even after a restart: its WAL cannot be replayed any more; removing the data directory to clone {leader} again");
                Some(match self.remove_data_to_reclone().await {
                    Ok(()) => format!("removed the data directory: {stalled}, even after a restart; cloning {leader} again"),
                    Err(e) => format!("{stalled}, even after a restart, and the data directory could not be removed: {e}"),
                })
            }
            StallRemedy::Reclone => Some(format!(
                "{stalled}, even after a restart; not re-cloning (remove_data_directory_on_rewind_failure is off): `raftctl reinit` does"
            )),
        }
    }

    /// Stops this replica's PostgreSQL; the next cycle starts (or rewinds) it.
    async fn stop_replica(&mut self) {
        if let Err(e) = self.pg.stop(StopMode::Fast, Duration::from_secs(30)).await {
            tracing::warn!("{e}");
        }
        self.sql.disconnect();
        self.expect_running = false;
    }

    /// Stops PostgreSQL at once and removes the data directory: the next cycle clones
    /// the leader again (`raftctl reinit`, and a replica that cannot recover).
    pub(super) async fn remove_data_to_reclone(&mut self) -> crate::postgres::PgResult<()> {
        self.pg.stop(StopMode::Immediate, Duration::from_secs(30)).await?;
        self.sql.disconnect();
        self.expect_running = false;
        self.replica_crashes = 0;
        self.crash_rewound = false;
        self.rewound_onto = None;
        self.stall = stuck::Stall::default();
        self.pg.remove_data_dir()
    }

    /// pg_rewind against the leader; on failure the data dir is removed (so the next
    /// cycle re-clones) when `remove_data_directory_on_rewind_failure` is on.
    async fn rewind(&mut self, host: &str, port: u16, leader: &str) -> Option<String> {
        self.publish_state("rewinding");
        let pg_conf = &self.config.postgresql;
        let result = if pg_conf.use_pg_rewind && self.dynamic.postgresql.use_pg_rewind != Some(false) {
            tracing::info!("rewinding my data directory to {leader} with pg_rewind");
            let _ = crate::postgres::conf::set_standby(self.pg.data_dir(), false);
            self.pg.rewind(host, port).await.map_err(|e| e.to_string())
        } else {
            Err("use_pg_rewind is off".into())
        };
        match result {
            Ok(()) => {
                self.needs_rewind = false;
                None
            }
            // The leader did not answer (it may be restarting): that says nothing about
            // our data, so keep it and try again.
            Err(e) if e.contains("connection to server") => Some(format!("cannot rewind yet, {leader} did not answer: {e}")),
            Err(e) if self.config.postgresql.remove_data_directory_on_rewind_failure => {
                self.needs_rewind = false;
                match self.pg.remove_data_dir() {
                    Ok(()) => Some(format!("rewind failed ({e}); removed the data directory to clone {leader} again")),
                    Err(e2) => Some(format!("rewind failed ({e}), and {e2}")),
                }
            }
            Err(e) => Some(format!("rewind failed ({e}); not starting PostgreSQL (remove_data_directory_on_rewind_failure is off)")),
        }
    }
}

/// Whether a live postmaster (`alive`) may be serving writes: it answered as a primary,
/// or it does not answer (the status query failed or timed out) and either was a
/// primary when it last answered or was not started as a standby (`standby_configured`:
/// `standby.signal` is there). Such a server must be stopped before anything else: it is
/// never reconfigured to follow, and the fencer is not disarmed under it.
pub(super) fn may_run_as_primary(pg: &PgStatus, alive: bool, standby_configured: bool) -> bool {
    alive && (pg.role == Role::Primary || (!pg.is_running() && !standby_configured))
}

/// Whether PostgreSQL at `host:port` accepts TCP connections from here.
async fn reachable(host: &str, port: u16) -> bool {
    matches!(tokio::time::timeout(REACHABLE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, role: Role) -> PgStatus {
        PgStatus { state: state.into(), role, ..Default::default() }
    }

    /// Issue 16 item 4: the status query failed ("starting", old role kept) while the
    /// role was primary: PostgreSQL may still accept writes, so it is stopped, never
    /// reconfigured as a replica with the fencer disarmed.
    #[test]
    fn an_unanswering_primary_may_still_run_as_primary() {
        assert!(may_run_as_primary(&status("starting", Role::Primary), true, false));
        assert!(
            may_run_as_primary(&status("starting", Role::Primary), true, true),
            "standby.signal written while it ran as primary proves nothing"
        );
        assert!(may_run_as_primary(&status("starting", Role::Uninitialized), true, false), "never answered, not started as a standby");
        assert!(may_run_as_primary(&status("running", Role::Primary), true, false));
    }

    #[test]
    fn replicas_and_dead_postmasters_are_not_primaries() {
        assert!(!may_run_as_primary(&status("running", Role::Replica), true, false));
        assert!(!may_run_as_primary(&status("starting", Role::Uninitialized), true, true), "started as a standby, not answering yet");
        assert!(!may_run_as_primary(&status("starting", Role::Replica), true, true));
        assert!(!may_run_as_primary(&status("crashed", Role::Primary), false, false), "no postmaster");
        assert!(!may_run_as_primary(&status("stopped", Role::Uninitialized), false, false));
    }
}
