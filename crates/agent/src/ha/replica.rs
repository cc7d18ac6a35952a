//! Following the primary: demote if this node still runs as primary, rewind a data dir
//! that was a primary (or that diverged), point `primary_conninfo` and the slot at the
//! leader (or at the member named by the `replicatefrom` tag), and start or reload.

use std::time::{Duration, Instant};

use super::Agent;
use crate::cluster::{ClusterView, Role};
use crate::state::PgStatus;

/// A replica on an older timeline than the leader that has not streamed for this long
/// has diverged (its WAL went past the promotion point) and is rewound.
const DIVERGED_AFTER: Duration = Duration::from_secs(5);

impl Agent {
    /// PostgreSQL must not run as a primary: stop it at once.
    pub(super) async fn demote_if_primary(&mut self, pg: &PgStatus, why: &str) -> bool {
        if pg.is_running() && pg.role == Role::Primary {
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
            if pg.replication_state.is_some() || !on_old_timeline {
                self.last_in_sync = Instant::now();
                self.replica_crashes = 0;
            } else if self.last_in_sync.elapsed() > DIVERGED_AFTER {
                tracing::warn!("not streaming from {leader} for {:?} and on an older timeline: rewinding", DIVERGED_AFTER);
                let _ = self.pg.stop(crate::postgres::StopMode::Fast, Duration::from_secs(30)).await;
                self.sql.disconnect();
                self.expect_running = false;
                self.needs_rewind = true;
                return format!("stopped: I am {me}, a replica that diverged from {leader}; will rewind");
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
            self.replica_crashes += 1;
            if self.replica_crashes >= 6 && self.config.postgresql.remove_data_directory_on_rewind_failure {
                self.replica_crashes = 0;
                return match self.pg.remove_data_dir() {
                    Ok(()) => format!("PostgreSQL keeps exiting even after a rewind: removed the data directory to clone {leader} again"),
                    Err(e) => format!("PostgreSQL keeps exiting, and {e}"),
                };
            }
            if self.replica_crashes >= 3 && !self.needs_rewind {
                tracing::warn!("PostgreSQL exited {} times in a row as a replica of {leader}: rewinding", self.replica_crashes);
                self.needs_rewind = true;
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
