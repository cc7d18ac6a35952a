//! The HA loop. One cycle = gather the facts (`gather`: the cluster's keys read
//! linearizably, PostgreSQL, the lease), decide one action (`decide`, a pure function),
//! carry it out (`execute`), publish the node's state (a promotion publishes it too, the
//! moment PostgreSQL leaves recovery, so `/primary` checks need not wait for the cycle).
//! Cycles run when a key under the cluster prefix changes (a watch wakes the loop: a
//! deleted or expired leader key reaches every replica at once), when the lease changes,
//! when the postmaster exits (`postmaster`), and every `loop_wait` otherwise.
//!
//! Each cycle ends with one sentence saying what this node did and why ("no action: I
//! am node2, a replica, following node1"), logged when it changes.
//!
//! The effects live by topic: `bootstrap` (initdb, clone), `primary` (promotion, the
//! primary's upkeep), `replica` (rewind, stop, re-clone), `slots`, `switchover`, `sync`,
//! `failsafe`, `standby` (a standby cluster's leader); none of them decides what to do
//! next.

pub mod action;
mod bootstrap;
mod clone;
pub mod commands;
pub mod decide;
pub mod election;
mod execute;
pub mod failsafe;
mod gather;
pub mod hung;
pub mod lease;
pub mod observation;
mod postmaster;
mod primary;
pub mod raft_placement;
pub mod refresh;
mod replica;
pub mod shutdown;
mod slots;
mod standby;
mod step;
pub mod stuck;
mod switchover;
mod sync;
pub mod timeline;
mod unanswered;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use crate::callbacks::Event;
use crate::cluster::{ClusterView, Keys, Member, Role};
use crate::config::{AgentConfig, DynamicConfig};
use crate::dcs::Dcs;
use crate::fence::Fencer;
use crate::postgres::liveness::Liveness;
use crate::postgres::sql::Sql;
use crate::postgres::{ControlData, Postgres};
use crate::state::{NodeState, PgState, PgStatus, StateReceiver, StateSender};
use crate::timing::Timing;
use lease::Lease;
use observation::{Memory, Policy};

/// Shortest pause between two cycles, so a burst of key changes costs one cycle.
const MIN_CYCLE_GAP: Duration = Duration::from_millis(30);

/// The lease of the leader key `me` holds: the key in `view` when it names `me`, else the
/// one this cycle's race took (`won_on`), which `view`, read before the race, cannot show.
fn own_key_lease(view: &ClusterView, me: &str, won_on: Option<i64>) -> Option<i64> {
    match &view.leader {
        Some(key) if key.name == me => Some(key.lease),
        Some(_) => None,
        None => won_on,
    }
}

/// The watchdog device to hand the fencer, and why a `required` one cannot be used.
fn watchdog_for(config: &crate::config::WatchdogConfig) -> (Option<(std::path::PathBuf, u64)>, Option<String>) {
    use crate::config::WatchdogMode;
    if config.mode == WatchdogMode::Off {
        return (None, None);
    }
    match crate::watchdog::probe(&config.device) {
        Ok(()) => {
            tracing::info!("watchdog {} in use ({} s)", config.device.display(), config.timeout);
            (Some((config.device.clone(), config.timeout)), None)
        }
        Err(e) if config.mode == WatchdogMode::Required => {
            tracing::error!("watchdog required but unusable: {e}; this node will not become primary");
            (None, Some(e.to_string()))
        }
        Err(e) => {
            tracing::warn!("watchdog not usable ({e}); running without it (mode automatic)");
            (None, None)
        }
    }
}

/// The running agent of one node.
pub struct Agent {
    config: AgentConfig,
    dcs: Dcs,
    pg: Postgres,
    sql: Sql,
    lease: Lease,
    dynamic: DynamicConfig,
    timing: Arc<Mutex<Timing>>,
    state: StateSender,
    /// What the node remembers across cycles (read by `decide`).
    memory: Memory,
    /// What stays the same for the run (read by `decide`).
    policy: Policy,
    /// What the running postmaster (pid) last answered: its role and the newest timeline.
    last_answer: Option<(i32, Role, Option<u32>)>,
    /// The lease this cycle's race took the leader key on: the cycle's view, read before
    /// the race, does not show that key yet (see [`own_key_lease`]).
    key_won_on: Option<i64>,
    /// How long the status query has kept failing (warned about when it lasts).
    unanswered: unanswered::Unanswered,
    /// How long this replica has run without streaming (see `stuck`).
    stall: stuck::Stall,
    /// A restart an operator scheduled on this node: (when, only if pending).
    scheduled_restart: Option<(SystemTime, bool)>,
    /// `synchronous_standby_names` this primary sets (see `sync`); empty = asynchronous.
    sync_names: String,
    /// Standbys PostgreSQL reports synchronous that `/sync` does not name yet, with the
    /// WAL position they must flush first (see `sync::admit`).
    sync_joining: std::collections::BTreeMap<String, u64>,
    /// The hardware watchdog's timeout, when one is used (it shortens the write budget).
    watchdog_timeout: Option<Duration>,
    /// The failsafe promise this member gave a primary (shared with the REST API).
    promise: failsafe::Promise,
    /// Every other member seen in this run: whom a primary in failsafe mode asks.
    failsafe_members: failsafe::Members,
    /// This node's HA timeline events not yet in the store.
    timeline: timeline::Timeline,
    /// What `members/<me>` last got, on which lease, and when.
    last_member_write: Option<(Member, i64, Instant)>,
    last_status_write: Option<(crate::cluster::ClusterStatus, Instant)>,
    /// What went wrong with the slots last cycle (logged when it changes).
    slot_problems: Vec<String>,
    last_action: String,
    last_logged: Instant,
    /// The liveness probe of PostgreSQL (see `hung`).
    liveness: Liveness,
    /// The postmaster the last look found, for the task that waits for it to exit
    /// (see `postmaster`).
    postmaster_seen: tokio::sync::watch::Sender<Option<i32>>,
    /// Re-reads the node's file on a reload (None: nothing to re-read).
    source: Option<crate::reload::Source>,
    /// The REST API's credentials, replaced when a reload changes them.
    rest_auth: crate::rest::control::SharedAuth,
    /// Which callback comes next (see `callbacks`).
    callback_tracker: crate::callbacks::Tracker,
    callback_runner: crate::callbacks::runner::Runner,
}

impl Agent {
    /// Prepares the agent; `fencer_exe` is the binary that serves `__fencer`.
    pub fn new(
        config: AgentConfig,
        channel: tonic::transport::Channel,
        fencer_exe: &Path,
        source: Option<crate::reload::Source>,
        rest_auth: crate::rest::control::SharedAuth,
    ) -> std::io::Result<(Self, StateReceiver)> {
        let dynamic = config.bootstrap_dcs.clone();
        let timing = dynamic.timing();
        let dcs = Dcs::new(channel, Keys::new(&config.namespace, &config.scope), timing.retry_timeout);
        let (watchdog, watchdog_missing) = watchdog_for(&config.watchdog);
        let fencer = Arc::new(Mutex::new(Fencer::spawn(fencer_exe, watchdog.as_ref().map(|(d, t)| (d.as_path(), *t)))?));
        let watchdog_timeout = watchdog.map(|(_, t)| Duration::from_secs(t));
        let (state, rx) = tokio::sync::watch::channel(NodeState::new(&config.name, &config.scope, config.tags.clone()));
        let pg = Postgres::new(config.postgresql.clone());
        let sql = Sql::new(&config.postgresql);
        let policy = Policy {
            me: config.name.clone(),
            scope: config.scope.clone(),
            tags: config.tags.clone(),
            data_dir: config.postgresql.data_dir.clone(),
            remove_data_on_rewind_failure: config.postgresql.remove_data_directory_on_rewind_failure,
            clone_without_leader: config.create_replica.works_without_leader(),
            watchdog_missing,
        };
        Ok((
            Self {
                config,
                dcs,
                pg,
                sql,
                lease: Lease::new(fencer),
                dynamic: dynamic.clone(),
                timing: Arc::new(Mutex::new(timing)),
                state,
                memory: Memory { last_in_sync: Some(Instant::now()), ..Memory::default() },
                policy,
                last_answer: None,
                key_won_on: None,
                unanswered: Default::default(),
                stall: stuck::Stall::default(),
                scheduled_restart: None,
                sync_names: String::new(),
                sync_joining: std::collections::BTreeMap::new(),
                watchdog_timeout,
                promise: failsafe::Promise::default(),
                failsafe_members: failsafe::Members::default(),
                timeline: timeline::Timeline::default(),
                last_member_write: None,
                last_status_write: None,
                slot_problems: Vec::new(),
                last_action: String::new(),
                last_logged: Instant::now(),
                liveness: Liveness::new(dynamic.liveness.clone()),
                postmaster_seen: tokio::sync::watch::Sender::new(None),
                source,
                rest_auth,
                callback_tracker: crate::callbacks::Tracker::default(),
                callback_runner: crate::callbacks::runner::Runner::default(),
            },
            rx,
        ))
    }

    /// The failsafe promise, for the REST API's `POST /failsafe`.
    pub fn promise(&self) -> failsafe::Promise {
        self.promise.clone()
    }

    fn timing(&self) -> Timing {
        self.dynamic.timing()
    }

    /// Runs until `shutdown` completes, then stops PostgreSQL and hands the leader key
    /// over. Operator commands arrive on `commands` and run between cycles.
    pub async fn run(mut self, mut commands: commands::CommandReceiver, shutdown: impl std::future::Future<Output = ()>) {
        if let Err(e) = crate::postgres::conf::write_pgpass(&self.config.postgresql) {
            tracing::error!("{e}");
        }
        let (wake_tx, mut wake) = mpsc::channel::<()>(16);
        tokio::spawn(self.dcs.clone().watch_prefix(wake_tx.clone()));
        tokio::spawn(self.lease.clone().keep(self.dcs.clone(), self.config.name.clone(), self.timing.clone(), wake_tx.clone()));
        self.liveness.spawn(self.pg.clone(), wake_tx.clone());
        tokio::spawn(postmaster::watch(self.pg.clone(), self.postmaster_seen.subscribe(), wake_tx));
        self.timeline.spawn_publisher(self.dcs.clone(), self.config.name.clone());
        tokio::spawn(raft_placement::keep_off_primary(self.dcs.clone(), self.state.subscribe()));
        tokio::pin!(shutdown);
        loop {
            let started = Instant::now();
            let action = self.cycle().await;
            if started.elapsed() > self.timing().ttl {
                tracing::warn!("this HA cycle took {:.1} s, longer than ttl: {action}", started.elapsed().as_secs_f64());
            }
            self.report(action);
            self.run_due_restart().await;
            let wait = self.next_wait();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Some(()) = wake.recv() => {
                    tracing::debug!("woken {} ms after the last cycle started", started.elapsed().as_millis());
                    tokio::time::sleep(MIN_CYCLE_GAP.saturating_sub(started.elapsed())).await;
                    while wake.try_recv().is_ok() {}
                }
                Some((command, reply)) = commands.recv() => {
                    let answer = self.execute(command).await;
                    tracing::info!("{command:?} on request: {}", commands::summary(&answer));
                    let _ = reply.send(answer);
                }
                () = &mut shutdown => break,
            }
        }
        self.shutdown().await;
    }

    /// Until the next cycle: `loop_wait`, or sooner when a primary's write deadline nears.
    fn next_wait(&self) -> Duration {
        let mut wait = self.timing().loop_wait;
        if let Some(until) = self.lease.get().valid_until {
            if self.state.borrow().holds_leader_key {
                // Near the deadline, look again at half the remaining time: a failsafe
                // confirmation (or a demotion) must come before it.
                wait = wait.min(until.saturating_duration_since(Instant::now()) / 2 + Duration::from_millis(10));
            }
        }
        wait
    }

    fn report(&mut self, action: String) {
        if action != self.last_action {
            // Every change of decision goes on the timeline (`raftctl events`), in the
            // background: a store that cannot take it must not slow the loop.
            self.timeline.record(&action);
        }
        if action != self.last_action || self.last_logged.elapsed() >= Duration::from_secs(10) {
            tracing::info!("{action}");
            self.last_logged = Instant::now();
        }
        self.last_action = action.clone();
        self.state.send_modify(|s| s.last_action = action);
    }

    async fn cycle(&mut self) -> String {
        let started = Instant::now();
        self.key_won_on = None;
        let observed = self.gather().await;
        let gathered = started.elapsed();
        decide::remember(&mut self.memory, &observed, &self.policy);
        let action = decide::decide(&observed, &self.memory, &self.dynamic, &self.policy);
        let sentence = self.carry_out(action, &observed).await;
        let carried_out = started.elapsed();
        if let Ok(view) = &observed.view {
            let pg = self.observe().await;
            if pg.is_running() {
                self.callback(Event::Running(pg.role));
            }
            self.publish(view, &pg).await;
        }
        tracing::debug!(
            "cycle: gathered in {} ms, carried out at {} ms, published at {} ms",
            gathered.as_millis(),
            carried_out.as_millis(),
            started.elapsed().as_millis()
        );
        sentence
    }

    /// What PostgreSQL is doing right now.
    async fn observe(&mut self) -> PgStatus {
        let postmaster = self.pg.postmaster_pid();
        self.postmaster_seen.send_if_modified(|seen| std::mem::replace(seen, postmaster) != postmaster);
        match postmaster {
            // A hung PostgreSQL would hold the loop for the query's whole timeout.
            Some(pid) => match self.liveness.unless_hung(self.sql.status()).await {
                Ok(mut s) => {
                    // The timeline of one postmaster never goes back, whatever a
                    // replica between two WAL receivers reports (`standby_timeline`).
                    if let Some((seen_pid, _, Some(seen))) = self.last_answer {
                        if seen_pid == pid && s.timeline.is_some_and(|t| t < seen) {
                            s.timeline = Some(seen);
                        }
                    }
                    self.last_answer = Some((pid, s.role, s.timeline));
                    if let unanswered::Log::Recovered(lasted) = self.unanswered.answered(Instant::now()) {
                        tracing::info!("PostgreSQL answers the status query again, after {:.1}s", lasted.as_secs_f64());
                    }
                    s
                }
                Err(e) => {
                    match self.unanswered.failed(Instant::now()) {
                        unanswered::Log::Warn(lasted) => tracing::warn!(
                            "PostgreSQL (postmaster {pid}) has not answered the status query for {:.0}s, so this member is published as starting: {e}",
                            lasted.as_secs_f64()
                        ),
                        _ => tracing::debug!("PostgreSQL not answering: {e}"),
                    }
                    self.sql.disconnect();
                    // The role this postmaster last answered with; a new one has none yet.
                    let role = self.last_answer.filter(|(p, _, _)| *p == pid).map_or(Role::Uninitialized, |(_, r, _)| r);
                    PgStatus { state: PgState::Starting, role, ..Default::default() }
                }
            },
            None => {
                self.sql.disconnect();
                self.unanswered = Default::default();
                let state = if self.memory.expect_running { PgState::Crashed } else { PgState::Stopped };
                PgStatus { state, ..Default::default() }
            }
        }
    }

    async fn controldata(&self) -> Option<ControlData> {
        match self.pg.controldata().await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }

    /// Stops PostgreSQL immediately (it must not accept writes any more).
    async fn fence_now(&mut self) {
        self.lease.fencer().disarm();
        if let Some(pid) = self.pg.postmaster_pid() {
            crate::fence::fence(pid);
            self.callback(Event::Stopped(Role::Primary));
        }
        self.sql.disconnect();
        self.memory.expect_running = false;
    }

    /// Runs the callback `event` calls for, if one is configured (see `callbacks`), in
    /// the background.
    fn callback(&mut self, event: Event) {
        let Some(call) = self.callback_tracker.on(event) else { return };
        if let Some(argv) = self.config.postgresql.callbacks.argv(call, &self.config.scope) {
            self.callback_runner.start(call.action, argv);
        }
    }

    async fn publish(&mut self, view: &ClusterView, pg: &PgStatus) {
        let verdict = self.liveness.verdict();
        let mut pg = hung::published(pg.clone(), verdict);
        self.promise.saw(view);
        self.failsafe_members.saw(view, &self.config.name);
        let lease = self.lease.get();
        let key_is_mine = own_key_lease(view, &self.config.name, self.key_won_on).is_some_and(|id| self.lease.owns(id)) && lease.valid();
        // A standby cluster's key holder is its standby leader (Patroni's role name).
        if key_is_mine && self.dynamic.standby_cluster.is_some() && pg.role == Role::Replica {
            pg.role = Role::StandbyLeader;
        }
        let pg = &pg;
        let holds = key_is_mine && pg.role == Role::Primary && pg.is_running();
        let stands_aside = decide::standing_aside(&self.memory, Instant::now(), &self.dynamic).map(|(_, why)| why.published());
        self.state.send_modify(|s| {
            s.postgres = pg.clone();
            s.holds_leader_key = holds;
            s.cluster = view.clone();
            s.dcs_last_seen = Some(SystemTime::now());
            s.liveness = verdict;
            s.liveness_failures_total = self.liveness.history().failures_total;
            s.stands_aside = stands_aside;
        });
        self.write_member(pg, lease.id, stands_aside).await;
    }

    /// Writes `members/<me>` on the agent's lease when it changed (WAL positions alone as
    /// [`refresh`] says), and again whenever the lease is new.
    async fn write_member(&mut self, pg: &PgStatus, lease: Option<i64>, stands_aside: Option<&str>) {
        let Some(lease) = lease else { return };
        let member = Member {
            conn_url: self.config.postgresql.conn_url(),
            api_url: self.config.restapi.api_url(),
            state: pg.state.to_string(),
            role: pg.role,
            version: crate::VERSION.into(),
            xlog_location: pg.wal_position(),
            receive_lsn: pg.receive_lsn,
            replay_lsn: pg.replay_lsn,
            replication_state: pg.replication_state.clone(),
            timeline: pg.timeline,
            pending_restart: pg.pending_restart,
            tags: self.config.tags.clone(),
            stands_aside: stands_aside.map(str::to_string),
        };
        let due = match &self.last_member_write {
            None => true,
            // A new lease: the key went away with the old one.
            Some((_, written_on, _)) if *written_on != lease => true,
            Some((old, _, at)) => {
                let shape_changed = old.without_positions() != member.without_positions();
                let moved = [
                    refresh::moved(old.xlog_location, member.xlog_location),
                    refresh::moved(old.receive_lsn, member.receive_lsn),
                    refresh::moved(old.replay_lsn, member.replay_lsn),
                ]
                .into_iter()
                .max()
                .unwrap_or(0);
                shape_changed || refresh::due(moved, at.elapsed(), self.timing().loop_wait)
            }
        };
        if !due {
            return;
        }
        let Ok(value) = serde_json::to_string(&member) else { return };
        match self.dcs.put(&self.dcs.keys.member(&self.config.name), &value, lease).await {
            Ok(()) => self.last_member_write = Some((member, lease, Instant::now())),
            Err(e) => tracing::debug!("cannot write my member key: {e}"),
        }
    }

    /// On shutdown, as [`shutdown::plan`] says: not paused, a primary stops PostgreSQL
    /// cleanly and releases the leader key so a replica takes over at once, and every
    /// node stops PostgreSQL and revokes its lease; paused, PostgreSQL keeps running.
    async fn shutdown(&mut self) {
        let view = self.dcs.read_cluster().await.map_err(|e| e.to_string());
        let plan = shutdown::plan(view.as_ref().map_err(String::as_str), &self.config.name, self.pg.postmaster_pid().is_some());
        tracing::info!("{}", plan.why);
        if !plan.stop_postgres {
            // Paused: nothing is promoted automatically, so the running primary needs no
            // fencer (SAFETY.md, "Pause across an agent restart").
            self.lease.fencer().disarm();
            // On the timeline before the lease (and the member key) goes: `raftctl
            // resume` refuses while this is the member's last word.
            if !self.timeline.record_now(&self.dcs, &self.config.name, &plan.why).await {
                tracing::warn!("cannot record my shutdown on the HA timeline: `raftctl resume` will not see that this agent is away");
            }
            if plan.release {
                if let Some(id) = self.lease.get().id {
                    let _ = self.dcs.revoke(id).await;
                }
            }
            return;
        }
        // The role last published: PostgreSQL may not answer any more.
        let role = self.pg.postmaster_pid().map(|_| self.state.borrow().postgres.role);
        if let Err(e) = self.pg.stop(crate::postgres::StopMode::Fast, Duration::from_secs(30)).await {
            tracing::error!("{e}; killing it");
            if let Some(pid) = self.pg.postmaster_pid() {
                crate::fence::fence(pid);
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.pg.postmaster_pid().is_some() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some(pid) = self.pg.postmaster_pid() {
            // The key goes only with a stopped PostgreSQL: a replica promoted while this
            // one still accepts writes would make two primaries. The armed fencer stops
            // it when the agent exits; the key expires with the lease.
            tracing::error!("PostgreSQL (pid {pid}) did not stop: keeping the leader key until my lease expires");
            return;
        }
        if let Some(role) = role {
            self.callback(Event::Stopped(role));
        }
        self.lease.fencer().disarm();
        if let Err(e) = self.dcs.delete_if_value(&self.dcs.keys.leader(), &self.config.name).await {
            tracing::warn!("cannot release the leader key: {e}");
        }
        if let Some(id) = self.lease.get().id {
            let _ = self.dcs.revoke(id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::own_key_lease;
    use crate::cluster::{ClusterView, LeaderKey};

    fn led_by(name: &str, lease: i64) -> ClusterView {
        ClusterView { leader: Some(LeaderKey { name: name.into(), lease, mod_revision: 7 }), ..Default::default() }
    }

    #[test]
    fn a_key_won_in_this_cycle_is_held_though_the_view_read_before_the_race_lacks_it() {
        assert_eq!(own_key_lease(&ClusterView::default(), "node1", Some(42)), Some(42), "won the race");
        assert_eq!(own_key_lease(&ClusterView::default(), "node1", None), None, "no key anywhere");
        assert_eq!(own_key_lease(&led_by("node1", 41), "node1", None), Some(41), "the view shows my key");
        assert_eq!(own_key_lease(&led_by("node2", 43), "node1", Some(42)), None, "the view shows another holder");
    }
}
