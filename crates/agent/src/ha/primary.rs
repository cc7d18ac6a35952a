//! Being the primary: keep PostgreSQL running as primary while holding the leader key
//! (restart it in place after a crash, up to `primary_start_timeout`), keep the fencer
//! armed, one replication slot per other member, `/status` with the WAL position; and
//! the race for a free key followed by promotion, recorded in `/history`.

use std::time::{Duration, Instant};

use super::election::{cluster_timeline, eligible, healthier_peer, probe_peers, Ineligible};
use super::hung::Verdict;
use super::step::StepError;
use super::Agent;
use crate::cluster::{ClusterView, HistoryEntry, Role};
use crate::postgres::{conf, PgResult};
use crate::state::PgStatus;

/// How long the processes of a fenced hung PostgreSQL may take to die after SIGKILL.
const CONFIRM_DEAD_WITHIN: Duration = Duration::from_secs(2);

impl Agent {
    /// Arms the fencer on the running postmaster with the lease's write deadline.
    pub(super) fn arm_fencer(&self) {
        if let Some(pid) = self.pg.postmaster_pid() {
            self.lease.arm(pid);
        }
    }

    /// This node holds the leader key on its own lease.
    pub(super) async fn be_primary(&mut self, view: &ClusterView, pg: &PgStatus) -> String {
        let me = self.config.name.clone();
        if !self.lease.get().valid() {
            self.fence_now().await;
            return format!("demoted: I am {me}; my lease was not renewed before its write deadline");
        }
        if let (Verdict::Hung { failing_for }, Some(pid)) = (self.liveness.verdict(), self.pg.postmaster_pid()) {
            return self.replace_hung_primary(pid, failing_for).await;
        }
        match (pg.is_running(), pg.role) {
            (true, Role::Primary) => {
                self.primary_down_since = None;
                self.arm_fencer();
                if let Some(request) = super::switchover::due(view) {
                    if let Some(action) = self.hand_over(view, &request.clone()).await {
                        return action;
                    }
                }
                self.maintain_primary(view, pg).await;
                match view.failover.as_ref().and_then(|f| f.scheduled_at.as_deref()) {
                    Some(at) => format!("no action: I am {me}, the primary; a switchover is scheduled at {at}"),
                    None => format!("no action: I am {me}, the primary, holding the leader key"),
                }
            }
            (true, _) => self.promote(view, "I hold the leader key").await,
            (false, _) if pg.state == "starting" => "waiting for PostgreSQL to accept connections (I hold the leader key)".into(),
            (false, _) => self.restart_in_place().await,
        }
    }

    /// PostgreSQL of this primary is hung (see `hung`): kill it, and release the leader
    /// key only once every process of it is confirmed dead, so it can never write again;
    /// until then the key stays, and the reason is the cycle's sentence.
    async fn replace_hung_primary(&mut self, postmaster: i32, failing_for: Duration) -> String {
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
        self.expect_running = false;
        self.hung_fenced_at = Some(Instant::now());
        // Nobody may see this node as a running primary once the key is free.
        self.state.send_modify(|s| {
            s.holds_leader_key = false;
            s.postgres.state = "hung".into();
        });
        match self.dcs.delete_if_value(&self.dcs.keys.leader(), &self.config.name).await {
            Ok(_) => format!("primary hung for {hung_for:.1} s: fenced and released the leader key ({why})"),
            Err(e) => {
                format!("primary hung for {hung_for:.1} s: fenced, but cannot release the leader key ({e}); it expires with my lease")
            }
        }
    }

    /// Why this node may not race for the key because of liveness: its PostgreSQL is
    /// hung, or it fenced its own hung primary a short while ago.
    fn hung_refusal(&self) -> Option<String> {
        if let Verdict::Hung { failing_for } = self.liveness.verdict() {
            return Some(format!("PostgreSQL is hung: every liveness probe failed for {:.1} s", failing_for.as_secs_f64()));
        }
        let fenced = self.hung_fenced_at?.elapsed();
        (fenced < super::hung::stand_aside_after_fencing(&self.timing()))
            .then(|| format!("I fenced my hung primary {:.0} s ago", fenced.as_secs_f64()))
    }

    /// PostgreSQL of the primary is down: start it again, or give the key up after
    /// `primary_start_timeout`.
    async fn restart_in_place(&mut self) -> String {
        let since = *self.primary_down_since.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(self.dynamic.primary_start_timeout) {
            self.lease.fencer().disarm();
            let _ = self.dcs.delete_if_value(&self.dcs.keys.leader(), &self.config.name).await;
            self.primary_down_since = None;
            return "gave up the leader key: PostgreSQL did not start within primary_start_timeout".into();
        }
        if let Err(e) = self.configure(None) {
            return format!("cannot write the configuration: {e}");
        }
        match self.pg.start().await {
            Ok(()) => {
                self.expect_running = true;
                self.arm_fencer();
                "restarting PostgreSQL in place: it was down while I hold the leader key".into()
            }
            Err(e) => format!("cannot restart PostgreSQL: {e}"),
        }
    }

    /// Replication slots, `/status`, configuration reloads.
    async fn maintain_primary(&mut self, view: &ClusterView, pg: &PgStatus) {
        self.reload_primary_conf().await;
        if self.config.postgresql.use_slots {
            self.sync_slots(view).await;
        }
        self.manage_sync(view, pg).await;
        if let Some(optime) = pg.wal_lsn {
            let due = self.last_status_write.is_none_or(|(old, at)| old != optime && at.elapsed() >= self.timing().loop_wait);
            if due {
                let value = serde_json::json!({ "optime": optime }).to_string();
                if self.dcs.put(&self.dcs.keys.status(), &value, 0).await.is_ok() {
                    self.last_status_write = Some((optime, Instant::now()));
                }
            }
        }
    }

    /// Writes a primary's configuration files and reloads PostgreSQL when one changed.
    pub(super) async fn reload_primary_conf(&mut self) {
        if matches!(self.configure(None), Ok(true)) {
            if let Err(e) = self.pg.reload().await {
                tracing::warn!("{e}");
            }
        }
    }

    /// One physical slot per other member; slots of members that left are dropped.
    async fn sync_slots(&mut self, view: &ClusterView) {
        let wanted: Vec<String> = view.members.keys().filter(|n| **n != self.config.name).map(|n| conf::slot_name(n)).collect();
        let existing = match self.sql.physical_slots().await {
            Ok(s) => s,
            Err(e) => return tracing::warn!("cannot list replication slots: {e}"),
        };
        for slot in wanted.iter().filter(|w| !existing.iter().any(|(e, _)| e == *w)) {
            match self.sql.create_slot(slot).await {
                Ok(()) => tracing::info!("created replication slot {slot}"),
                Err(e) => tracing::warn!("cannot create replication slot {slot}: {e}"),
            }
        }
        for (slot, active) in &existing {
            if !active && !wanted.contains(slot) {
                match self.sql.drop_slot(slot).await {
                    Ok(()) => tracing::info!("dropped replication slot {slot} (no such member any more)"),
                    Err(e) => tracing::warn!("cannot drop replication slot {slot}: {e}"),
                }
            }
        }
    }

    /// Nobody holds the leader key: race for it if this node may. A node still running
    /// PostgreSQL as primary that does not take the key now stops being primary (Patroni
    /// demotes here too): the key is free, so another node may take it and promote, and
    /// the fencer, re-armed by this node's live lease, would not stop it.
    pub(super) async fn race(&mut self, view: &ClusterView, pg: &PgStatus) -> String {
        let (action, won) = self.race_for_free_key(view, pg).await;
        if !won
            && pg.role == Role::Primary
            && self.demote_if_primary(pg, &format!("the leader key is free and I did not take it: {action}")).await
        {
            let me = &self.config.name;
            return format!("demoted: I am {me}; the leader key is free and I did not take it ({action})");
        }
        action
    }

    /// The race itself: what was done, and whether this node took the key.
    async fn race_for_free_key(&mut self, view: &ClusterView, pg: &PgStatus) -> (String, bool) {
        let me = self.config.name.clone();
        let requested = super::switchover::due(view).and_then(|f| f.member.clone());
        if let Some(candidate) = requested.as_deref().filter(|c| *c != me) {
            if view.members.get(candidate).is_some_and(|m| m.state == "running") {
                return (format!("no leader: a switchover to {candidate} is in progress; standing aside"), false);
            }
        }
        let chosen = requested.as_deref() == Some(me.as_str());
        if let Some(promised) = self.promise.active() {
            return (promised.to_string(), false);
        }
        if let Some(why) = self.watchdog_missing.clone() {
            return (self.refuse(chosen, format!("no leader: I am {me} and may not take over (watchdog required but {why})")).await, false);
        }
        if let Some(why) = self.hung_refusal() {
            return (self.refuse(chosen, format!("no leader: I am {me} and may not take over ({why})")).await, false);
        }
        if !pg.is_running() && pg.state != "starting" && self.pg.data_dir_valid() && !self.config.tags.nofailover {
            if let Some(why) = self.behind_cluster_timeline(view).await {
                // Started read-only, a former primary would lose the control file's
                // "was primary" mark that makes it rewind before following.
                return (format!("no leader: I am {me} and may not take over ({why})"), false);
            }
            // After a restart of every node nobody runs: start read-only so we can compete.
            let started = match self.start_read_only().await {
                Ok(()) => "no leader: starting PostgreSQL read-only to take part in the election".into(),
                Err(e) => format!("no leader, and PostgreSQL does not start: {e}"),
            };
            return (started, false);
        }
        // The chosen candidate of a switchover or manual failover skips the lag and
        // healthier_peer checks: the operator picked it (and the old primary checked it).
        let max_lag = if chosen { u64::MAX } else { self.dynamic.maximum_lag_on_failover };
        let mine = match eligible(pg, &self.config.tags, view, &me, max_lag) {
            Ok(pos) => pos,
            Err(why) => {
                if matches!(why, Ineligible::BehindTimeline { .. }) && pg.role == Role::Primary {
                    self.needs_rewind = true;
                }
                return (self.refuse(chosen, format!("no leader: I am {me} and may not take over ({why})")).await, false);
            }
        };
        if !self.may_promote_in_sync_mode(view, &me) {
            let why =
                format!("no leader: I am {me}, not a synchronous standby (synchronous_mode): only a member listed in /sync may take over");
            return (self.refuse(chosen, why).await, false);
        }
        if !chosen {
            let mut peers = probe_peers(view, &me, &self.config.rest_client()).await;
            peers.retain(|p| self.may_promote_in_sync_mode(view, &p.name));
            if let Some(p) = peers.iter().find(|p| p.primary && p.running) {
                return (format!("no leader, but {} still runs as primary: not racing", p.name), false);
            }
            let priority = self.config.tags.failover_priority.unwrap_or(1);
            if let Some(better) = healthier_peer(pg.timeline, mine, priority, &peers) {
                return (format!("no leader: {} is healthier than me ({me}); letting it take over", better.name), false);
            }
        }
        let Some(lease) = self.lease.get().id.filter(|_| self.lease.get().valid()) else {
            return ("no leader: waiting for my lease to be renewed before racing".into(), false);
        };
        if let Err(promised) = self.promise.claim() {
            return (promised.to_string(), false);
        }
        let acquired = self.dcs.acquire_leader(&me, lease).await;
        if !matches!(acquired, Ok(true)) {
            self.promise.unclaim();
        }
        match acquired {
            Ok(true) if pg.role == Role::Primary => {
                self.arm_fencer();
                (format!("took the leader key: I am {me}, the primary"), true)
            }
            Ok(true) => (self.promote(view, "won the leader race").await, true),
            Ok(false) => ("lost the leader race; will follow the winner".into(), false),
            Err(e) => (format!("cannot race for the leader key: {e}"), false),
        }
    }

    /// This node may not take the key. If an operator chose it, the request is dropped,
    /// so the others (who stand aside for a chosen candidate) race as usual.
    async fn refuse(&self, chosen: bool, why: String) -> String {
        if chosen {
            let _ = self.dcs.delete(&self.dcs.keys.failover()).await;
            return format!("{why}; dropped the switchover/failover request that named me");
        }
        why
    }

    /// In synchronous mode, whether `/sync` lets `name` take over (see `sync::sync_allows`).
    fn may_promote_in_sync_mode(&self, view: &ClusterView, name: &str) -> bool {
        !self.dynamic.synchronous_mode || super::sync::sync_allows(view, name, self.dynamic.synchronous_mode_strict)
    }

    /// A stopped data dir whose control file is on an older timeline than the cluster's
    /// (it needs a rewind or a re-clone from the new primary before it may run).
    async fn behind_cluster_timeline(&mut self, view: &ClusterView) -> Option<Ineligible> {
        let cluster = cluster_timeline(view, &self.config.name)?;
        let mine = self.controldata().await?.latest_timeline();
        (mine < cluster).then(|| {
            self.needs_rewind = true;
            Ineligible::BehindTimeline { mine, cluster }
        })
    }

    async fn start_read_only(&mut self) -> PgResult<()> {
        self.configure(None)?;
        conf::set_standby(self.pg.data_dir(), true)?;
        self.pg.start().await?;
        self.expect_running = true;
        Ok(())
    }

    /// Promotes the local replica (the leader key is ours) and records it in `/history`.
    async fn promote(&mut self, view: &ClusterView, reason: &str) -> String {
        let me = self.config.name.clone();
        let started = Instant::now();
        self.arm_fencer();
        // In synchronous mode, commits on the new primary wait for a standby from the
        // start ('*': any); the next cycles name the standbys and fill /sync.
        // The configuration of a primary (no primary_conninfo) goes in before the
        // promotion, so the first commit already waits as it should.
        self.sync_names = if self.dynamic.synchronous_mode { "*".into() } else { String::new() };
        // `/sync` names this node before it accepts writes (Patroni does the same), so the
        // old primary and its standbys, which may miss what this one acknowledges, stop
        // being eligible by it. Someone else changed it meanwhile: not now.
        if self.dynamic.synchronous_mode && !self.write_sync(view, &[]).await {
            return format!("postponing the promotion: /sync could not be written (I am {me}, holding the leader key)");
        }
        self.reload_primary_conf().await;
        if let Err(e) = self.promote_and_wait().await {
            return format!("promotion failed: {e}");
        }
        let promoted_in = started.elapsed();
        self.arm_fencer();
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
