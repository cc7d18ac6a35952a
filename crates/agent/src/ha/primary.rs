//! The primary's effects: keep the fencer armed, restart PostgreSQL in place after a
//! crash, fence a hung PostgreSQL and release the key, the replication slots (`slots`),
//! `/status` with the WAL position and the permanent slots' positions; start read-only for an election; promote
//! and record the promotion in `/history`. `decide` says which, and when.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::observation::StepDown;
use super::step::StepError;
use super::Agent;
use crate::callbacks::Event;
use crate::cluster::{ClusterStatus, ClusterView, HistoryEntry, Role};
use crate::postgres::{conf, PgResult};
use crate::state::{PgState, PgStatus};

/// How long the processes of a fenced hung PostgreSQL may take to die after SIGKILL.
const CONFIRM_DEAD_WITHIN: Duration = Duration::from_secs(2);

impl Agent {
    /// Arms the fencer on the running postmaster with the lease's write deadline.
    pub(super) fn arm_fencer(&self) {
        if let Some(pid) = self.pg.postmaster_pid() {
            self.lease.arm(pid);
        }
    }

    /// PostgreSQL of this primary is hung (see `hung`): kill it, and release the leader
    /// key only once every process of it is confirmed dead, so it can never write again;
    /// until then the key stays, and the reason is the cycle's sentence.
    pub(super) async fn replace_hung_primary(&mut self, postmaster: i32, failing_for: Duration) -> String {
        let history = self.liveness.history();
        let why = format!("{} liveness probes failed in a row, the last: {}", history.failures, history.last_error.unwrap_or_default());
        self.lease.fencer().disarm();
        self.sql.disconnect();
        let hung_for = failing_for.as_secs_f64();
        if let Err(e) = crate::fence::kill_and_confirm(postmaster, CONFIRM_DEAD_WITHIN).await {
            return format!(
                "primary hung for {hung_for:.1} s ({why}): fenced, but {e}; keeping the leader key while PostgreSQL might still write"
            );
        }
        self.memory.expect_running = false;
        self.memory.stepped_down = Some((Instant::now(), StepDown::Hung));
        self.callback(Event::Stopped(Role::Primary));
        // Nobody may see this node as a running primary once the key is free.
        self.state.send_modify(|s| {
            s.holds_leader_key = false;
            s.postgres.state = PgState::Hung;
        });
        match self.dcs.delete_if_value(&self.dcs.keys.leader(), &self.config.name).await {
            Ok(_) => format!("primary hung for {hung_for:.1} s: fenced and released the leader key ({why})"),
            Err(e) => {
                format!("primary hung for {hung_for:.1} s: fenced, but cannot release the leader key ({e}); it expires with my lease")
            }
        }
    }

    /// PostgreSQL of the primary is down: start it again.
    pub(super) async fn restart_in_place(&mut self) -> String {
        if let Err(e) = self.configure(None).await {
            return format!("cannot write the configuration: {e}");
        }
        match self.pg.start().await {
            Ok(()) => {
                self.memory.expect_running = true;
                self.memory.restarts_in_place.push(Instant::now());
                self.arm_fencer();
                self.callback(Event::Started(Role::Primary));
                "restarting PostgreSQL in place: it was down while I hold the leader key".into()
            }
            Err(e) => format!("cannot restart PostgreSQL: {e}"),
        }
    }

    /// Replication slots, `/sync`, `/status`, configuration reloads.
    pub(super) async fn maintain_primary(&mut self, view: &ClusterView, pg: &PgStatus) {
        if self.reload_primary_conf().await {
            self.callback(Event::Reloaded(Role::Primary));
        }
        let slots = if self.config.postgresql.use_slots { self.sync_primary_slots(view).await } else { Default::default() };
        self.manage_sync(view, pg).await;
        self.write_status(pg.wal_lsn, slots).await;
    }

    /// `/status` with the leader's WAL position (the lag rule's reference) and the
    /// permanent slots' positions, as [`super::refresh`] says.
    pub(super) async fn write_status(&mut self, position: Option<u64>, slots: BTreeMap<String, u64>) {
        let Some(optime) = position else { return };
        let status = ClusterStatus { optime, slots };
        let due = self.last_status_write.as_ref().is_none_or(|(old, at)| {
            let slots_moved = if old.slots.keys().ne(status.slots.keys()) {
                u64::MAX
            } else {
                old.slots.values().zip(status.slots.values()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0)
            };
            let moved = old.optime.abs_diff(status.optime).max(slots_moved);
            super::refresh::due(moved, at.elapsed(), self.timing().loop_wait)
        });
        if due {
            let value = serde_json::to_string(&status).unwrap_or_default();
            if self.dcs.put(&self.dcs.keys.status(), &value, 0).await.is_ok() {
                self.last_status_write = Some((status, Instant::now()));
            }
        }
    }

    /// Writes a primary's configuration files and reloads PostgreSQL when one changed;
    /// says whether it reloaded.
    pub(super) async fn reload_primary_conf(&mut self) -> bool {
        if !matches!(self.configure(None).await, Ok(true)) {
            return false;
        }
        match self.pg.reload().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("{e}");
                false
            }
        }
    }

    /// Starts PostgreSQL read-only so this node can take part in an election.
    pub(super) async fn start_read_only(&mut self) -> PgResult<()> {
        // standby.signal first: `configure` raises a standby's values to its primary's.
        conf::set_standby(self.pg.data_dir(), true)?;
        self.configure(None).await?;
        self.pg.start().await?;
        self.memory.expect_running = true;
        self.callback(Event::Started(Role::Replica));
        Ok(())
    }

    /// Promotes the local replica (the leader key is ours) and records it in `/history`.
    pub(super) async fn promote(&mut self, view: &ClusterView, reason: &str) -> String {
        let me = self.config.name.clone();
        let started = Instant::now();
        self.arm_fencer();
        // In synchronous mode, commits on the new primary wait for a standby from the
        // start ('*': any); the next cycles name the standbys and fill /sync.
        // The configuration of a primary (no primary_conninfo) goes in before the
        // promotion, so the first commit already waits as it should.
        self.sync_names = if self.dynamic.synchronous_mode { "*".into() } else { String::new() };
        // Positions remembered in an earlier term as primary mean nothing on this one.
        self.sync_joining.clear();
        // `/sync` names this node before it accepts writes (Patroni does the same), so the
        // old primary and its standbys, which may miss what this one acknowledges, stop
        // being eligible by it. Someone else changed it meanwhile: not now.
        if self.dynamic.synchronous_mode && !self.write_sync(view, &[]).await {
            return format!("postponing the promotion: /sync could not be written (I am {me}, holding the leader key)");
        }
        let sync_written = started.elapsed();
        self.reload_primary_conf().await;
        let reloaded = started.elapsed();
        if let Err(e) = self.promote_and_wait().await {
            return format!("promotion failed: {e}");
        }
        let promoted_in = started.elapsed();
        self.arm_fencer();
        // The REST API says "primary" now, not at the end of the cycle (after /history and
        // the checkpoint below): health checks that follow `/primary` (HAProxy) send
        // writes here as soon as PostgreSQL takes them.
        let pg = self.observe().await;
        self.publish(view, &pg).await;
        tracing::debug!(
            "promotion: /sync at {} ms, configuration reloaded at {} ms, out of recovery at {} ms, published at {} ms",
            sync_written.as_millis(),
            reloaded.as_millis(),
            promoted_in.as_millis(),
            started.elapsed().as_millis()
        );
        self.callback(Event::Promoted);
        if view.failover.is_some() {
            let _ = self.dcs.delete(&self.dcs.keys.failover()).await;
        }
        self.record_history(view).await;
        // pg_rewind reads the new timeline from the control file, which a promoted server
        // updates only at its next checkpoint: without one, a rewind against this node right
        // after the promotion would rewind to the old timeline.
        if let Err(e) = self.sql.checkpoint().await {
            tracing::warn!("checkpoint after promotion failed: {e}");
        }
        format!("promoted: I am {me}, the new primary ({reason}; promotion took {} ms)", promoted_in.as_millis())
    }

    /// `pg_promote` without PostgreSQL's own 100 ms polling: ask, then check every 10 ms.
    pub(super) async fn promote_and_wait(&mut self) -> Result<(), StepError> {
        self.sql.request_promotion().await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if !self.sql.in_recovery().await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(StepError::PromotionTimedOut)
    }

    /// Appends the timeline switch PostgreSQL just made to `/history`.
    async fn record_history(&mut self, view: &ClusterView) {
        let Ok(status) = self.sql.status().await else { return };
        let Some(timeline) = status.timeline else { return };
        let file = self.pg.data_dir().join(format!("pg_wal/{timeline:08X}.history"));
        let Some(entry) = std::fs::read_to_string(&file).ok().and_then(|t| last_switch(&t)) else { return };
        let mut history = view.history.clone();
        let (old_tli, lsn, why) = entry;
        history.push(HistoryEntry(
            old_tli,
            lsn,
            why,
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            self.config.name.clone(),
        ));
        if let Ok(value) = serde_json::to_string(&history) {
            let _ = self.dcs.put(&self.dcs.keys.history(), &value, 0).await;
        }
    }
}

/// The last line of a timeline history file: (parent timeline, switch LSN, reason).
fn last_switch(text: &str) -> Option<(u32, u64, String)> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty() && !l.starts_with('#'))?;
    let mut parts = line.splitn(3, '\t');
    let tli = parts.next()?.trim().parse().ok()?;
    let lsn = crate::cluster::parse_lsn(parts.next()?)?;
    Some((tli, lsn, parts.next().unwrap_or("").trim().to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_history_files() {
        let text = "1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tno recovery target specified\n";
        assert_eq!(super::last_switch(text), Some((2, 0x5000000, "no recovery target specified".into())));
        assert_eq!(super::last_switch(""), None);
    }
}
