//! Creating the cluster and joining it: the race for `/initialize`, initdb on the
//! winner, and pg_basebackup on the others.

use std::time::{Duration, Instant};

use super::step::StepError;
use super::Agent;
use crate::callbacks::Event;
use crate::cluster::Role;
use crate::postgres::conf;
use crate::state::{PgState, Step};

/// How long a new primary or a fresh clone may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(120);

impl Agent {
    /// The cluster has no `/initialize`: take it (on our lease, so a crash mid-way frees
    /// it) and create the cluster, or adopt the data dir we already have.
    pub(super) async fn bootstrap(&mut self, adopt: bool) -> String {
        let Some(lease) = self.lease.get().id else { return "waiting for a lease before initializing".into() };
        let key = self.dcs.keys.initialize();
        match self.dcs.create(&key, "", lease).await {
            Ok(true) => {}
            Ok(false) => return "waiting: another member is initializing the cluster".into(),
            Err(e) => return format!("cannot race for initialization: {e}"),
        }
        let result = if adopt { self.adopt_data_dir().await } else { self.initialize_new().await };
        match result {
            Ok(sysid) => {
                self.callback(Event::Started(Role::Primary));
                // Left on this node's lease, "" would vanish with it and let another
                // member initialize a second cluster: the next cycles write it again.
                if let Err(e) = self.dcs.put(&key, &sysid, 0).await {
                    tracing::warn!("cannot record the system identifier {sysid} in /initialize: {e}; retrying in the next cycle");
                    self.memory.unrecorded_sysid = Some(sysid.clone());
                }
                let config = serde_json::to_string(&self.config.bootstrap_dcs).unwrap_or_else(|_| "{}".into());
                let _ = self.dcs.create(&self.dcs.keys.config(), &config, 0).await;
                let _ = self.dcs.create(&self.dcs.keys.history(), "[]", 0).await;
                format!("initialized a new cluster (system identifier {sysid}); I am {}, the primary", self.config.name)
            }
            Err(e) => {
                // The key was taken before PostgreSQL started: it goes only with a
                // stopped PostgreSQL (else the fencer stops it at the lease's deadline).
                let running = self.pg.postmaster_pid().is_some();
                match self.pg.stop(crate::postgres::StopMode::Fast, Duration::from_secs(30)).await {
                    Ok(()) => {
                        if running {
                            self.callback(Event::Stopped(Role::Primary));
                        }
                        self.sql.disconnect();
                        self.memory.expect_running = false;
                        self.lease.fencer().disarm();
                        let _ = self.dcs.delete_if_value(&self.dcs.keys.leader(), &self.config.name).await;
                    }
                    Err(stop) => tracing::error!("{stop}; keeping the leader key until my lease expires"),
                }
                let _ = self.dcs.delete_if_value(&key, "").await;
                format!("initialization failed: {e}; another member may try")
            }
        }
    }

    /// initdb, configure, start, create the replication user, take the leader key.
    async fn initialize_new(&mut self) -> Result<String, StepError> {
        tracing::info!("I am {}: initializing a new cluster with initdb", self.config.name);
        self.publish_state(PgState::InStep(Step::InitializingNewCluster));
        self.pg.remove_data_dir()?;
        self.pg.initdb().await?;
        self.configure(None)?;
        self.take_leader_key_after_bootstrap().await?;
        self.start_and_wait().await?;
        self.arm_fencer();
        let repl = self.config.postgresql.authentication.replication.clone();
        self.sql.ensure_replication_user(&repl.username, &repl.password).await?;
        let status = self.sql.status().await?;
        status.system_identifier.ok_or(StepError::NoSystemIdentifier)
    }

    /// A data dir exists but the cluster has no `/initialize` (the store was recreated):
    /// take the leader key, then start it as a primary (or promote it) and claim the
    /// cluster with its system identifier. The key comes first: PostgreSQL never
    /// accepts writes here without it.
    async fn adopt_data_dir(&mut self) -> Result<String, StepError> {
        let control = self.pg.controldata().await?;
        tracing::info!("adopting the existing data directory (system identifier {})", control.system_identifier);
        self.take_leader_key_after_bootstrap().await?;
        if self.pg.postmaster_pid().is_none() {
            self.configure(None)?;
            conf::set_standby(self.pg.data_dir(), false)?;
            self.start_and_wait().await?;
        }
        let status = self.sql.status().await?;
        if status.role == Role::Replica {
            self.promote_and_wait().await?;
        }
        self.arm_fencer();
        Ok(control.system_identifier)
    }

    /// The leader key on this node's lease, before its PostgreSQL may accept writes
    /// (the caller arms the fencer once the postmaster runs as primary).
    async fn take_leader_key_after_bootstrap(&mut self) -> Result<(), StepError> {
        let lease = self.lease.get().id.ok_or(StepError::LostLease)?;
        if !self.dcs.acquire_leader(&self.config.name, lease).await? {
            return Err(StepError::LeaderKeyTaken);
        }
        Ok(())
    }

    /// The data dir is empty: clone `source` (the primary, or a replica tagged
    /// `clonefrom`) with pg_basebackup, then stream from `upstream` (the primary).
    pub(super) async fn clone_from(&mut self, leader_name: &str, host: &str, port: u16, upstream: &(String, u16)) -> String {
        tracing::info!("I am {}: cloning {leader_name} ({host}:{port}) with pg_basebackup", self.config.name);
        self.publish_state(PgState::InStep(Step::CreatingReplica));
        let started = Instant::now();
        if let Err(e) = self.pg.basebackup(host, port).await {
            return format!("clone from {leader_name} failed: {e}; will retry");
        }
        // Stream from the primary whatever the clone came from; the next cycle applies
        // `replicatefrom` if the member has it.
        if let Err(e) = self.configure_replica(&upstream.0, upstream.1, false) {
            return format!("cannot configure the clone: {e}");
        }
        if let Err(e) = self.pg.start().await {
            return format!("cannot start the clone: {e}");
        }
        self.memory.expect_running = true;
        self.callback(Event::Started(Role::Replica));
        format!("cloned {leader_name} in {:.1}s; starting as a replica", started.elapsed().as_secs_f64())
    }

    /// Starts PostgreSQL and waits until it answers SQL.
    pub(super) async fn start_and_wait(&mut self) -> Result<(), StepError> {
        self.pg.start().await?;
        self.memory.expect_running = true;
        let started = Instant::now();
        loop {
            match self.sql.status().await {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() > START_TIMEOUT => return Err(StepError::NotAccepting(e)),
                Err(_) if started.elapsed() > Duration::from_secs(3) && self.pg.postmaster_pid().is_none() => {
                    return Err(StepError::ExitedAtStart(self.pg.log_file()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Writes the config files for a primary (`upstream` None) or a replica; true when
    /// one changed (the caller reloads).
    pub(super) fn configure(&self, upstream: Option<&conf::Upstream>) -> Result<bool, crate::postgres::PgError> {
        let mut dynamic: std::collections::BTreeMap<String, serde_json::Value> = self.dynamic.postgresql.parameters.clone();
        if upstream.is_none() {
            // Only the primary waits for standbys (see `sync`).
            dynamic.insert("synchronous_standby_names".into(), serde_json::Value::String(self.sync_names.clone()));
        }
        let params = crate::postgres::params::parameters(&self.config.postgresql, &self.config.name, &dynamic, upstream);
        let hba_changed = conf::write_hba(&self.config.postgresql)?;
        Ok(conf::write_server_conf(self.pg.data_dir(), &params)? || hba_changed)
    }

    /// Configuration + `standby.signal` for streaming from `host:port`.
    /// `cascading`: the upstream is another replica (`replicatefrom`), which keeps no
    /// slot for us (only the primary manages slots), so none is used.
    pub(super) fn configure_replica(&self, host: &str, port: u16, cascading: bool) -> Result<bool, crate::postgres::PgError> {
        let mut up = self.upstream(host, port);
        if cascading {
            up.slot = None;
        }
        let changed = self.configure(Some(&up))?;
        conf::set_standby(self.pg.data_dir(), true)?;
        Ok(changed)
    }

    pub(super) fn upstream(&self, host: &str, port: u16) -> conf::Upstream {
        conf::Upstream { host: host.to_string(), port, slot: self.config.postgresql.use_slots.then(|| conf::slot_name(&self.config.name)) }
    }

    /// Publishes a transient PostgreSQL state ("creating replica") while a long step runs.
    pub(super) fn publish_state(&self, state: PgState) {
        self.state.send_modify(|s| s.postgres.state = state);
    }
}
