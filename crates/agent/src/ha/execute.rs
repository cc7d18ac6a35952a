//! Carrying out the [`Action`] `decide` picked: the one place where a decision becomes
//! pg_ctl, pg_rewind, key writes and fencing. Each arm does what its variant says and
//! returns the cycle's sentence (the action's `Display` on success). What the effects
//! change is written to the node's `Memory` here.

use std::time::Instant;

use super::action::{Action, RecloneCause, StartReplica};
use super::bootstrap::Creation;
use super::decide::may_run_as_primary;
use super::observation::{Observation, StepDown};
use super::stuck::AfterCrash;
use super::Agent;
use crate::callbacks::Event;
use crate::cluster::{ClusterView, Role};

impl Agent {
    pub(super) async fn carry_out(&mut self, action: Action, o: &Observation) -> String {
        let sentence = action.to_string();
        let me = self.config.name.clone();
        if let Ok(view) = &o.view {
            let theirs = view.leader.as_ref().is_some_and(|l| l.name != me);
            if theirs {
                self.promise.unclaim();
            }
            // Not our key, and PostgreSQL cannot be serving writes: no fencer is needed
            // (one that may be serving writes is demoted with the fencer armed).
            let ours = view.leader.as_ref().is_some_and(|l| l.name == me && o.lease.owns_leader_key);
            if !ours && !may_run_as_primary(&o.pg, o.postmaster.is_some(), o.standby_configured) {
                self.lease.fencer().disarm();
            }
        }
        let view = o.view.as_ref().ok();
        match action {
            Action::Wait(_) => sentence,
            Action::FenceWithoutStore { .. } => {
                self.fence_now().await;
                self.state.send_modify(|s| s.holds_leader_key = false);
                sentence
            }
            Action::AskFailsafe { error } => match self.failsafe_confirmed().await {
                Ok(n) => format!("failsafe: the store is unreachable ({error}) but all {n} other members confirmed; still primary"),
                Err(e) => format!("failsafe: the store is unreachable ({error}) and {e}; demoting at the deadline"),
            },
            Action::Bootstrap { adopt: false } => self.bootstrap(Creation::New).await,
            Action::Bootstrap { adopt: true } => self.bootstrap(Creation::Adopt).await,
            Action::BootstrapStandby { standby } => self.bootstrap(Creation::Standby(standby)).await,
            Action::RecordSystemIdentifier { sysid } => match self.dcs.put(&self.dcs.keys.initialize(), &sysid, 0).await {
                Ok(()) => {
                    self.memory.unrecorded_sysid = None;
                    sentence
                }
                Err(e) => format!("cannot record the system identifier {sysid} in /initialize: {e}; retrying"),
            },
            Action::ReleaseInitialize { mod_revision } => {
                match self.dcs.delete_if_unchanged(&self.dcs.keys.initialize(), mod_revision).await {
                    Ok(_) => sentence,
                    Err(e) => format!("cannot release /initialize: {e}; retrying"),
                }
            }
            Action::Clone { from } => self.create_replica(from).await,
            Action::Paused { .. } => {
                self.lease.fencer().disarm();
                sentence
            }
            Action::ClaimKeyPaused { lease, replaces, .. } => {
                self.lease.fencer().disarm();
                let taken = match replaces {
                    Some(mod_revision) => self.dcs.move_leader(&me, mod_revision, lease).await,
                    None => self.dcs.acquire_leader(&me, lease).await,
                };
                match taken {
                    Ok(true) => sentence,
                    Ok(false) => "paused: the leader key changed while I took it back; looking again".into(),
                    Err(e) => format!("paused: cannot take the leader key back: {e}"),
                }
            }
            Action::FenceExpiredLease { .. } => {
                self.fence_now().await;
                sentence
            }
            Action::ReplaceHung { postmaster, failing_for } => self.replace_hung_primary(postmaster, failing_for).await,
            Action::HandOver(to) => {
                // Armed until the clean stop: hand_over disarms it only then.
                self.arm_fencer();
                self.hand_over(&to).await
            }
            Action::CancelSwitchover { .. } => {
                let _ = self.dcs.delete(&self.dcs.keys.failover()).await;
                sentence
            }
            Action::Lead { .. } => {
                self.memory.primary_down_since = None;
                let window = std::time::Duration::from_secs(self.dynamic.primary_start_timeout);
                self.memory.restarts_in_place.retain(|t| o.now.saturating_duration_since(*t) < window);
                self.arm_fencer();
                if let Some(view) = view {
                    self.maintain_primary(view, &o.pg).await;
                }
                sentence
            }
            Action::Promote { reason } => match view {
                Some(view) => self.promote(view, reason).await,
                None => sentence,
            },
            Action::RestartInPlace => {
                self.memory.primary_down_since.get_or_insert(o.now);
                self.restart_in_place().await
            }
            Action::LeadStandby { standby, .. } => match view {
                Some(view) => self.lead_standby(view, &o.pg, &standby, sentence).await,
                None => sentence,
            },
            Action::StartStandbyLeader { standby, rewind } => self.start_standby_leader(&standby, rewind, sentence).await,
            Action::GiveUpKey { .. } => {
                self.lease.fencer().disarm();
                let _ = self.dcs.delete_if_value(&self.dcs.keys.leader(), &me).await;
                if o.postmaster.is_none() && !self.memory.restarts_in_place.is_empty() {
                    self.memory.stepped_down = Some((o.now, StepDown::CrashLoop));
                }
                self.memory.primary_down_since = None;
                self.memory.restarts_in_place.clear();
                sentence
            }
            Action::Demote { why, drop_request, .. } => {
                self.demote(&why).await;
                if drop_request {
                    let _ = self.dcs.delete(&self.dcs.keys.failover()).await;
                }
                sentence
            }
            Action::StopDiverged { ref leader, .. } => {
                tracing::warn!("not streaming from {leader} for {:?} and on an older timeline: rewinding", super::decide::DIVERGED_AFTER);
                self.stop_replica().await;
                self.memory.needs_rewind = true;
                sentence
            }
            Action::RestartStalled { stalled } => {
                tracing::warn!("{stalled}: restarting it (see {})", self.pg.log_file().display());
                self.stop_replica().await;
                sentence
            }
            Action::Reclone { leader, cause } => {
                if let RecloneCause::Stalled { stalled } = &cause {
                    tracing::warn!("{stalled}, even after a restart: its WAL cannot be replayed any more; removing the data directory to clone {leader} again");
                }
                match (self.remove_data_to_reclone().await, cause) {
                    (Ok(()), _) => sentence,
                    (Err(e), RecloneCause::Stalled { stalled }) => {
                        format!("{stalled}, even after a restart, and the data directory could not be removed: {e}")
                    }
                    (Err(e), RecloneCause::KeepsCrashing) => format!("PostgreSQL keeps exiting even after a rewind, and {e}"),
                }
            }
            Action::Configure { me, source, host, port, cascading, nostream } => {
                let sentence = match self.configure_replica(&host, port, cascading).await {
                    Ok(true) => match self.pg.reload().await {
                        Ok(()) => {
                            self.callback(Event::Reloaded(Role::Replica));
                            match nostream {
                                true => format!("I am {me}, a replica tagged nostream: replaying WAL from the archive only"),
                                false => format!("I am {me}, a replica: now following {source} ({host}:{port})"),
                            }
                        }
                        Err(e) => format!("cannot reload PostgreSQL: {e}"),
                    },
                    Ok(false) => sentence,
                    Err(e) => format!("cannot write the configuration: {e}"),
                };
                // Patroni's nostream: no copies of the permanent slots on the node either.
                let copied = match view {
                    Some(view) if self.config.postgresql.use_slots && !nostream => self.sync_replica_slots(view).await,
                    _ => None,
                };
                copied.unwrap_or(sentence)
            }
            Action::StartReplica(start) => self.start_replica(start, sentence).await,
            Action::StandAside { drop_request, needs_rewind, .. } => {
                self.memory.needs_rewind |= needs_rewind;
                if drop_request {
                    let _ = self.dcs.delete(&self.dcs.keys.failover()).await;
                }
                sentence
            }
            Action::StartReadOnly => match self.start_read_only().await {
                Ok(()) => sentence,
                Err(e) => format!("no leader, and PostgreSQL does not start: {e}"),
            },
            Action::Race { lease, promote } => match view {
                Some(view) => self.race(view, o, lease, promote).await,
                None => sentence,
            },
            Action::RaceStandby { lease } => match self.dcs.acquire_leader(&me, lease).await {
                Ok(true) => format!("took the leader key: I am {me}, the standby leader; following the remote primary"),
                Ok(false) => "lost the leader race; will follow the winner".into(),
                Err(e) => format!("cannot race for the leader key: {e}"),
            },
        }
    }

    /// Rewind (when due), configure and start a replica; what a crash run calls for first.
    async fn start_replica(&mut self, start: StartReplica, sentence: String) -> String {
        if let Some((crashes, verdict)) = start.after_crash {
            self.memory.replica_crashes = crashes;
            let leader = start.rewind.as_ref().map_or(start.source.as_str(), |r| r.leader.as_str());
            match verdict {
                AfterCrash::Restart if crashes >= 3 => tracing::warn!(
                    "PostgreSQL exited {crashes} times in a row as a replica of {leader}, on its timeline: starting it again (a rewind cannot repair that); see {}",
                    self.pg.log_file().display()
                ),
                AfterCrash::Restart => {}
                AfterCrash::Rewind => {
                    tracing::warn!("PostgreSQL exited {crashes} times in a row as a replica of {leader}, on an older timeline: rewinding");
                    self.memory.needs_rewind = true;
                    self.memory.crash_rewound = true;
                }
                AfterCrash::Reclone => tracing::warn!(
                    "PostgreSQL keeps exiting even after a rewind; not removing the data directory (remove_data_directory_on_rewind_failure is off)"
                ),
            }
        }
        if let Some(from) = &start.rewind {
            if let Some(failure) = self.rewind(&from.host, from.port, &from.leader).await {
                return failure;
            }
            self.memory.rewound_onto = from.timeline;
        }
        if let Err(e) = self.configure_replica(&start.host, start.port, start.cascading).await {
            return format!("cannot write the configuration: {e}");
        }
        self.memory.last_start = Some(Instant::now());
        match self.pg.start().await {
            Ok(()) => {
                self.memory.expect_running = true;
                self.memory.last_in_sync = Some(Instant::now());
                self.callback(Event::Started(Role::Replica));
                sentence
            }
            Err(e) => format!("cannot start PostgreSQL: {e}"),
        }
    }

    /// The race: take the key with a compare-and-swap, then promote (or arm the fencer
    /// over a PostgreSQL already primary). A running primary that loses stops being one.
    async fn race(&mut self, view: &ClusterView, o: &Observation, lease: i64, promote: bool) -> String {
        let me = self.config.name.clone();
        if let Err(promised) = self.promise.claim() {
            return promised.to_string();
        }
        let racing = Instant::now();
        let acquired = self.dcs.acquire_leader(&me, lease).await;
        tracing::debug!("leader key race answered in {} ms: {acquired:?}", racing.elapsed().as_millis());
        if matches!(acquired, Ok(true)) {
            self.key_won_on = Some(lease);
        } else {
            self.promise.unclaim();
        }
        let lost = match acquired {
            Ok(true) if !promote => {
                self.arm_fencer();
                return format!("took the leader key: I am {me}, the primary");
            }
            Ok(true) => return self.promote(view, "won the leader race").await,
            Ok(false) => "lost the leader race; will follow the winner".to_string(),
            Err(e) => format!("cannot race for the leader key: {e}"),
        };
        if may_run_as_primary(&o.pg, o.postmaster.is_some(), o.standby_configured) {
            self.demote(&format!("the leader key is free and I did not take it: {lost}")).await;
            return format!("demoted: I am {me}; the leader key is free and I did not take it ({lost})");
        }
        lost
    }

    /// PostgreSQL must not run as a primary any more: stop it at once; it rewinds before
    /// it follows anyone.
    async fn demote(&mut self, why: &str) {
        tracing::warn!("demoting: {why}");
        self.fence_now().await;
        self.memory.needs_rewind = true;
    }
}
