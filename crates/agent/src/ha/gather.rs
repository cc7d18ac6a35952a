//! Gathering one cycle's [`Observation`]: the store, PostgreSQL, the data dir, the
//! lease, and the other members when the leader key is free. All the I/O a decision
//! needs happens here, before `decide`; what is asked depends only on cheap facts (the
//! peers are probed only while the key is free).

use std::time::{Instant, SystemTime};

use super::decide::{follow_source, may_run_as_primary};
use super::election::probe_peers;
use super::observation::{ControlFacts, DataDir, LeaseFacts, Observation};
use super::stuck::{self, StallRemedy};
use super::{switchover, Agent};
use crate::cluster::{ClusterView, Role};
use crate::config::DynamicConfig;
use crate::state::{PgState, PgStatus};

/// How long the check that the upstream's PostgreSQL port accepts connections may take.
const REACHABLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl Agent {
    pub(super) async fn gather(&mut self) -> Observation {
        let reading = Instant::now();
        let view = self.dcs.read_cluster().await.map_err(|e| e.to_string());
        tracing::debug!("gather: the cluster's keys read in {} ms", reading.elapsed().as_millis());
        if let Ok(view) = &view {
            self.adopt_dynamic_config(view);
        }
        let pg = self.observe().await;
        // Valid first: two stats, where telling an empty dir reads it.
        let data_dir = if self.pg.data_dir_valid() {
            DataDir::Valid
        } else if self.pg.data_dir_empty() {
            DataDir::Empty
        } else {
            DataDir::Invalid
        };
        let control = if pg.system_identifier.is_none() && data_dir != DataDir::Empty {
            Some(self.pg.controldata().await.map_err(|e| e.to_string()).map(|c| ControlFacts {
                was_primary: c.was_primary(),
                timeline: c.latest_timeline(),
                system_identifier: c.system_identifier,
            }))
        } else {
            None
        };
        let lease = self.lease.get();
        let owns_leader_key = view.as_ref().ok().and_then(|v| v.leader.as_ref()).is_some_and(|l| self.lease.owns(l.lease));
        let now = Instant::now();
        let wall = SystemTime::now();
        let peers = match &view {
            Ok(v) if self.races(v, wall) => probe_peers(v, &self.config.name, &self.config.rest_client()).await,
            _ => Vec::new(),
        };
        let postmaster = self.pg.postmaster_pid();
        let standby_configured = self.pg.is_standby_configured();
        let stall = match &view {
            Ok(v) if !may_run_as_primary(&pg, postmaster.is_some(), standby_configured) => self.watch_stall(v, &pg, now).await,
            _ => StallRemedy::Wait,
        };
        Observation {
            now,
            wall,
            view,
            postmaster,
            standby_configured,
            data_dir,
            control,
            fresh_clone: self.pg.data_dir().join("backup_label").exists(),
            lease: LeaseFacts { id: lease.id, valid_until: lease.valid_until, owns_leader_key },
            published_holder: self.state.borrow().holds_leader_key,
            liveness: self.liveness.verdict(),
            promised: self.promise.active(),
            peers,
            stall,
            pg,
        }
    }

    /// A `/config` that changed and passes the checks becomes the dynamic configuration.
    fn adopt_dynamic_config(&mut self, view: &ClusterView) {
        let Some((value, _)) = &view.config else { return };
        let checked = DynamicConfig::from_json(value).and_then(|d| match self.watchdog_timeout {
            Some(t) => d.timing().check_with_watchdog(t).map(|()| d),
            None => Ok(d),
        });
        match checked {
            Ok(d) if d != self.dynamic => {
                tracing::info!("dynamic configuration changed: {}", value);
                for line in crate::postgres::params::unused_in_config(&d.postgresql.parameters) {
                    tracing::warn!("{line}");
                }
                self.dynamic = d;
                if let Ok(mut t) = self.timing.lock() {
                    *t = self.dynamic.timing();
                }
                self.dcs.set_timeout(self.dynamic.timing().retry_timeout);
                self.liveness.configure(self.dynamic.liveness.clone());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("ignoring /config: {e}"),
        }
    }

    /// The key is free in an initialized, unpaused cluster and no operator chose this
    /// node: the race compares it with the other members, so ask them.
    fn races(&self, view: &ClusterView, wall: SystemTime) -> bool {
        let chosen = switchover::due(view, wall).and_then(|f| f.member.as_deref()) == Some(self.config.name.as_str());
        view.leader.is_none() && view.initialize.as_deref().is_some_and(|i| !i.is_empty()) && !view.paused() && !chosen
    }

    /// One look at a running replica of another leader for `stuck::Stall` (the upstream's
    /// port is tried only when nothing else explains why it does not stream).
    async fn watch_stall(&mut self, view: &ClusterView, pg: &PgStatus, now: Instant) -> StallRemedy {
        let Some(leader) = view.leader_name().filter(|l| *l != self.config.name) else { return StallRemedy::Wait };
        let Some(leader_member) = view.members.get(leader) else { return StallRemedy::Wait };
        if pg.state != PgState::Running || pg.role != Role::Replica || view.paused() {
            return StallRemedy::Wait;
        }
        let Some((host, port)) = follow_source(view, &self.policy, leader).and_then(|(_, m)| m.host_port()) else {
            return StallRemedy::Wait;
        };
        let mut seen = stuck::Seen {
            nostream: self.config.tags.nostream,
            streaming: pg.streaming(),
            replay_lsn: pg.replay_lsn,
            on_leader_timeline: stuck::on_leader_timeline(pg.timeline, leader_member.timeline, self.memory.rewound_onto),
            leader_healthy: leader_member.role.leads() && leader_member.state == "running",
            upstream_reachable: false,
        };
        if seen.could_stream() {
            seen.upstream_reachable = reachable(&host, port).await;
        }
        self.stall.observe(&seen, now, stuck::patience(&self.timing()))
    }
}

/// Whether PostgreSQL at `host:port` accepts TCP connections from here.
async fn reachable(host: &str, port: u16) -> bool {
    matches!(tokio::time::timeout(REACHABLE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await, Ok(Ok(_)))
}
