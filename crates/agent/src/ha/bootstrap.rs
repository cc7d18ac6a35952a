//! Creating the cluster: the race for `/initialize`, then on the winner initdb or the
//! custom bootstrap method (a restore, its recovery, the promotion), `post_bootstrap`
//! and the replication user; or the adoption of a data dir already here; or, for a
//! standby cluster, a copy of the remote primary (`standby`). The other members make
//! their replicas in `clone`.

use std::time::{Duration, Instant};

use super::step::StepError;
use super::Agent;
use crate::bootstrap_method::CustomBootstrap;
use crate::callbacks::Event;
use crate::cluster::Role;
use crate::postgres::{conf, PgError, COPY_TIMEOUT};
use crate::standby::StandbyCluster;
use crate::state::{PgState, Step};

/// How long a new primary or a fresh clone may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How the cluster is created.
pub(super) enum Creation {
    /// initdb, or the custom bootstrap method.
    New,
    /// The data dir already here (the store was recreated).
    Adopt,
    /// A copy of a standby cluster's remote primary, run as its standby leader.
    Standby(StandbyCluster),
}

impl Agent {
    /// The cluster has no `/initialize`: take it (on our lease, so a crash mid-way frees
    /// it) and create the cluster as `how` says.
    pub(super) async fn bootstrap(&mut self, how: Creation) -> String {
        let Some(lease) = self.lease.get().id else { return "waiting for a lease before initializing".into() };
        let key = self.dcs.keys.initialize();
        match self.dcs.create(&key, "", lease).await {
            Ok(true) => {}
            Ok(false) => return "waiting: another member is initializing the cluster".into(),
            Err(e) => return format!("cannot race for initialization: {e}"),
        }
        let (result, role) = match &how {
            Creation::New => (self.initialize_new().await, "the primary"),
            Creation::Adopt => (self.adopt_data_dir().await, "the primary"),
            Creation::Standby(standby) => (self.initialize_standby(standby).await, "the standby leader"),
        };
        let started_as = if matches!(how, Creation::Standby(_)) { Role::Replica } else { Role::Primary };
        match result {
            Ok(sysid) => {
                self.callback(Event::Started(started_as));
                // Left on this node's lease, "" would vanish with it and let another
                // member initialize a second cluster: the next cycles write it again.
                if let Err(e) = self.dcs.put(&key, &sysid, 0).await {
                    tracing::warn!("cannot record the system identifier {sysid} in /initialize: {e}; retrying in the next cycle");
                    self.memory.unrecorded_sysid = Some(sysid.clone());
                }
                let config = serde_json::to_string(&self.config.bootstrap_dcs).unwrap_or_else(|_| "{}".into());
                let _ = self.dcs.create(&self.dcs.keys.config(), &config, 0).await;
                let _ = self.dcs.create(&self.dcs.keys.history(), "[]", 0).await;
                format!("initialized a new cluster (system identifier {sysid}); I am {}, {role}", self.config.name)
            }
            Err(e) => {
                // The key was taken before PostgreSQL started: it goes only with a
                // stopped PostgreSQL (else the fencer stops it at the lease's deadline).
                let running = self.pg.postmaster_pid().is_some();
                match self.pg.stop(crate::postgres::StopMode::Fast, Duration::from_secs(30)).await {
                    Ok(()) => {
                        if running {
                            self.callback(Event::Stopped(started_as));
                        }
                        self.sql.disconnect();
                        self.memory.expect_running = false;
                        self.lease.fencer().disarm();
                        let _ = self.dcs.delete_if_value(&self.dcs.keys.leader(), &self.config.name).await;
                    }
                    Err(stop) => tracing::error!("{stop}; keeping the leader key until my lease expires"),
                }
                // A half-made cluster is not adopted by the next try (Patroni removes it too).
                if !matches!(how, Creation::Adopt) && self.pg.postmaster_pid().is_none() {
                    if let Err(remove) = self.pg.remove_data_dir() {
                        tracing::error!("{remove}");
                    }
                }
                let _ = self.dcs.delete_if_value(&key, "").await;
                format!("initialization failed: {e}; another member may try")
            }
        }
    }

    /// Creates the cluster: initdb, or the custom bootstrap method (a restore and its
    /// recovery); the leader key is taken before PostgreSQL may accept writes. Then
    /// `post_bootstrap` and the replication user, before the cluster counts as
    /// initialized.
    async fn initialize_new(&mut self) -> Result<String, StepError> {
        self.pg.remove_data_dir()?;
        match self.config.bootstrap.method.clone() {
            None => {
                tracing::info!("I am {}: initializing a new cluster with initdb", self.config.name);
                self.publish_state(PgState::InStep(Step::InitializingNewCluster));
                self.pg.initdb().await?;
                self.configure(None).await?;
                self.take_leader_key_after_bootstrap().await?;
                self.start_and_wait().await?;
                self.arm_fencer();
            }
            Some(method) => self.restore_new(&method).await?,
        }
        self.post_bootstrap().await?;
        let repl = self.config.postgresql.authentication.replication.clone();
        self.sql.ensure_role(&repl.username, &repl.password, "REPLICATION").await?;
        let status = self.sql.status().await?;
        status.system_identifier.ok_or(StepError::NoSystemIdentifier)
    }

    /// The custom bootstrap: the method's command fills the data dir; PostgreSQL starts
    /// with its `recovery_conf` (and `recovery.signal`), or without recovery settings
    /// (unless `keep_existing_recovery_conf`), recovers to the end or to its target,
    /// and is promoted; the agent's superuser gets its configured password.
    async fn restore_new(&mut self, method: &CustomBootstrap) -> Result<(), StepError> {
        tracing::info!("I am {}: creating a new cluster with the bootstrap method {}", self.config.name, method.name);
        self.publish_state(PgState::InStep(Step::RunningCustomBootstrap));
        let data_dir = self.pg.data_dir().to_string_lossy().to_string();
        let args = method.arguments(&self.config.scope, &data_dir);
        self.pg.run_script(&format!("bootstrap method {}", method.name), &method.command, &args, &[], COPY_TIMEOUT).await?;
        if !self.pg.data_dir_valid() {
            return Err(StepError::Postgres(PgError::Io(format!(
                "bootstrap method {} exited 0 but left no PostgreSQL cluster in {data_dir}",
                method.name
            ))));
        }
        let recovering = !method.recovery_conf.is_empty();
        self.configure_with(None, &method.recovery_conf).await?;
        if recovering || !method.keep_existing_recovery_conf {
            conf::set_standby(self.pg.data_dir(), false)?;
            conf::set_recovery(self.pg.data_dir(), recovering)?;
        }
        self.take_leader_key_after_bootstrap().await?;
        self.pg.start().await?;
        self.memory.expect_running = true;
        self.arm_fencer();
        self.wait_for_end_of_recovery().await?;
        // The recovery settings go (a later role change writes its own).
        if self.configure(None).await? {
            self.pg.reload().await?;
        }
        let su = self.config.postgresql.authentication.superuser.clone();
        self.sql.ensure_role(&su.username, &su.password, "SUPERUSER").await?;
        Ok(())
    }

    /// Waits while PostgreSQL recovers, however long the archive takes, as long as the
    /// postmaster lives (a kept `standby.signal` waits for good, as in Patroni);
    /// promotes it when recovery pauses at its target; returns once it is a primary.
    async fn wait_for_end_of_recovery(&mut self) -> Result<(), StepError> {
        let mut last_report = Instant::now();
        loop {
            if self.pg.postmaster_pid().is_none() {
                return Err(StepError::ExitedAtStart(self.pg.log_file()));
            }
            match self.sql.in_recovery().await {
                Ok(false) => return Ok(()),
                Ok(true) if self.sql.replay_paused().await? => {
                    tracing::info!("recovery of the restored cluster reached its end: promoting it");
                    return self.promote_and_wait().await;
                }
                Ok(true) | Err(_) => {}
            }
            if last_report.elapsed() > Duration::from_secs(30) {
                tracing::info!("waiting for the restored cluster to finish its recovery");
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `bootstrap.post_bootstrap` with the superuser's connection string (its password
    /// from the agent's password file); a failure aborts the bootstrap, as Patroni's.
    async fn post_bootstrap(&mut self) -> Result<(), StepError> {
        let Some(script) = self.config.bootstrap.post_bootstrap.clone() else { return Ok(()) };
        let pg = &self.config.postgresql;
        let url = format!("postgres://{}@{}:{}/postgres", pg.authentication.superuser.username, pg.listen_host(), pg.port());
        let env = [("PGOPTIONS", "-c synchronous_commit=local -c statement_timeout=0")];
        self.pg.run_script("post_bootstrap", &script, &[url], &env, COPY_TIMEOUT).await?;
        Ok(())
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
            self.configure(None).await?;
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
    pub(super) async fn take_leader_key_after_bootstrap(&mut self) -> Result<(), StepError> {
        let lease = self.lease.get().id.ok_or(StepError::LostLease)?;
        if !self.dcs.acquire_leader(&self.config.name, lease).await? {
            return Err(StepError::LeaderKeyTaken);
        }
        Ok(())
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
    /// one changed (the caller reloads). A standby (a replica, or a node started
    /// read-only) takes the primary's larger values from its control file
    /// (`params::raise_to_primary`).
    pub(super) async fn configure(&self, upstream: Option<&conf::Upstream>) -> Result<bool, crate::postgres::PgError> {
        self.configure_with(upstream, &std::collections::BTreeMap::new()).await
    }

    /// [`Self::configure`] with `recovery` settings on top (a custom bootstrap's, a
    /// standby leader's).
    pub(super) async fn configure_with(
        &self,
        upstream: Option<&conf::Upstream>,
        recovery: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool, crate::postgres::PgError> {
        let mut dynamic: std::collections::BTreeMap<String, serde_json::Value> = self.dynamic.postgresql.parameters.clone();
        if upstream.is_none() {
            // Only the primary waits for standbys (see `sync`).
            dynamic.insert("synchronous_standby_names".into(), serde_json::Value::String(self.sync_names.clone()));
        }
        // Tagged nostream, a replica (or standby leader) replays from the archive only
        // (Patroni's `_get_node_to_follow`: nothing to follow): no conninfo, no slot.
        let streamed = upstream.filter(|_| !self.config.tags.nostream);
        let mut params = crate::postgres::params::parameters(&self.config.postgresql, &self.config.name, &dynamic, streamed);
        if upstream.is_some() && streamed.is_none() {
            params.insert("recovery_target_timeline".into(), conf::quote("latest"));
        }
        params.extend(recovery.iter().map(|(k, v)| (k.clone(), v.clone())));
        if self.dynamic.slots.has_logical() {
            // Logical permanent slots: decoding needs them, and a replica's copies need
            // the primary to keep the catalog rows they still read (Patroni enforces it too).
            params.insert("wal_level".into(), "logical".into());
            params.insert("hot_standby_feedback".into(), "on".into());
        }
        let raised = if upstream.is_some() || self.pg.is_standby_configured() {
            let recorded = self.pg.controldata().await?.settings;
            crate::postgres::params::raise_to_primary(&mut params, &recorded)
        } else {
            Vec::new()
        };
        let hba_changed = conf::write_hba(&self.config.postgresql)?;
        let changed = conf::write_server_conf(self.pg.data_dir(), &params)?;
        if changed {
            for line in raised {
                tracing::info!("a standby needs at least its primary's value: {line}");
            }
        }
        Ok(changed || hba_changed)
    }

    /// Configuration + `standby.signal` for streaming from `host:port`.
    /// `cascading`: the upstream is another replica (`replicatefrom`), which keeps no
    /// slot for us (only the primary manages slots), so none is used.
    pub(super) async fn configure_replica(&self, host: &str, port: u16, cascading: bool) -> Result<bool, crate::postgres::PgError> {
        let mut up = self.upstream(host, port);
        if cascading {
            up.slot = None;
        }
        let changed = self.configure(Some(&up)).await?;
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
