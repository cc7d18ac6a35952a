//! A standby cluster's effects (see `crate::standby` for the section): the first node
//! copies the remote primary instead of running initdb; the standby leader (the key
//! holder) streams from the remote with the section's slot and recovery settings, keeps
//! one slot per member (the others follow it) and publishes its position in `/status`
//! for the lag rule. `decide` says when; nothing here promotes.

use std::time::Instant;

use super::action::CloneFrom;
use super::step::StepError;
use super::Agent;
use crate::callbacks::Event;
use crate::cluster::{ClusterView, Role};
use crate::postgres::conf;
use crate::standby::StandbyCluster;
use crate::state::PgStatus;

impl Agent {
    /// The standby cluster's first node: copy the remote primary with the section's
    /// methods (else this node's, by default pg_basebackup), take the leader key, start
    /// as the standby leader; returns the system identifier (the remote's).
    pub(super) async fn initialize_standby(&mut self, standby: &StandbyCluster) -> Result<String, StepError> {
        let methods = self.config.create_replica.reordered(&standby.create_replica_methods).map_err(|e| StepError::NoCopy(e.0))?;
        let from = standby.upstream().map(|up| CloneFrom {
            source: standby.remote(),
            host: up.host.clone(),
            port: up.port,
            upstream: (up.host, up.port),
        });
        let plan = methods.plan(from.is_some());
        if plan.is_empty() {
            return Err(StepError::NoCopy(
                "without standby_cluster.host only no_leader replica methods can copy it, and none is listed".into(),
            ));
        }
        tracing::info!("I am {}: creating a standby cluster of {}", self.config.name, standby.remote());
        let used = self.fill_data_dir(plan, from.as_ref()).await.map_err(StepError::NoCopy)?;
        tracing::info!("copied {} with {used}", standby.remote());
        self.take_leader_key_after_bootstrap().await?;
        self.configure_standby_leader(standby).await?;
        self.start_and_wait().await?;
        let control = self.pg.controldata().await?;
        Ok(control.system_identifier)
    }

    /// The standby leader's configuration: `standby.signal`, `primary_conninfo` to the
    /// remote (through `primary_slot_name`), the section's recovery settings. True when
    /// a file changed (the caller reloads).
    async fn configure_standby_leader(&self, standby: &StandbyCluster) -> Result<bool, crate::postgres::PgError> {
        // standby.signal first: `configure` raises a standby's values to its primary's.
        conf::set_standby(self.pg.data_dir(), true)?;
        self.configure_with(standby.upstream().as_ref(), &standby.recovery_settings()).await
    }

    /// Keeps the running standby leader following the remote (reloads when the section
    /// changed), one slot per other member, and its position in `/status`.
    pub(super) async fn lead_standby(&mut self, view: &ClusterView, pg: &PgStatus, standby: &StandbyCluster, sentence: String) -> String {
        let sentence = match self.configure_standby_leader(standby).await {
            Ok(false) => sentence,
            Ok(true) => match self.pg.reload().await {
                Ok(()) => {
                    self.callback(Event::Reloaded(Role::Replica));
                    format!("I am {}, the standby leader: now following {}", self.config.name, standby.remote())
                }
                Err(e) => format!("cannot reload PostgreSQL: {e}"),
            },
            Err(e) => format!("cannot write the standby leader's configuration: {e}"),
        };
        // As a primary's: one slot per other member and the permanent slots (a logical
        // one cannot be created on a PostgreSQL 15 in recovery: that is logged, once).
        let slots = if self.config.postgresql.use_slots { self.sync_primary_slots(view).await } else { Default::default() };
        self.restartpoint_on_new_timeline(pg).await;
        self.write_status(pg.wal_position(), slots).await;
        sentence
    }

    /// A replica that diverged rewinds from the standby leader, and pg_rewind takes the
    /// source's timeline from its control file, which a standby updates only at a
    /// restartpoint: after the remote's timeline changed (the remote was promoted, or
    /// this cluster was demoted to follow another), a CHECKPOINT (a restartpoint, once
    /// the remote's checkpoint on the new timeline was replayed) puts it there, as a new
    /// primary's checkpoint does after a promotion. Until then the rewind reads the old
    /// timeline, finds nothing to do, and the replica cannot follow.
    async fn restartpoint_on_new_timeline(&mut self, pg: &PgStatus) {
        let Some(streamed) = pg.timeline else { return };
        match self.sql.control_timeline().await {
            Ok(control) if control < streamed => {
                if let Err(e) = self.sql.checkpoint().await {
                    tracing::warn!("restartpoint on timeline {streamed} failed: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("cannot read the control file's timeline: {e}"),
        }
    }

    /// Starts PostgreSQL as the standby leader, rewound from the remote first when it ran
    /// as a primary (a cluster demoted into a standby cluster).
    pub(super) async fn start_standby_leader(&mut self, standby: &StandbyCluster, rewind: bool, sentence: String) -> String {
        if rewind {
            let Some(up) = standby.upstream() else {
                return "cannot rewind from the remote: standby_cluster has no host; not starting PostgreSQL".into();
            };
            if let Some(failure) = self.rewind(&up.host, up.port, &standby.remote()).await {
                return failure;
            }
        }
        if let Err(e) = self.configure_standby_leader(standby).await {
            return format!("cannot write the standby leader's configuration: {e}");
        }
        self.memory.last_start = Some(Instant::now());
        match self.pg.start().await {
            Ok(()) => {
                self.memory.expect_running = true;
                self.callback(Event::Started(Role::Replica));
                sentence
            }
            Err(e) => format!("cannot start PostgreSQL: {e}"),
        }
    }
}
