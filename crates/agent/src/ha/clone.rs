//! Creating a replica in the empty data dir: the attempts `create_replica_methods`
//! plans (`replica_methods::CreateReplica::plan`), run in order until one leaves a
//! PostgreSQL cluster there, the data dir emptied before each (unless the method keeps
//! it) and after a failure of all of them, as Patroni does. Then the replica is
//! configured to stream from the primary and started, or, cloned without a primary,
//! started read-only.

use std::time::Instant;

use super::action::CloneFrom;
use super::Agent;
use crate::callbacks::Event;
use crate::cluster::Role;
use crate::postgres::{PgError, COPY_TIMEOUT};
use crate::replica_methods::{Attempt, CloneSource, BASEBACKUP};
use crate::state::{PgState, Step};

impl Agent {
    /// Fills the empty data dir from `from` (None: no primary runs) and starts it.
    pub(super) async fn create_replica(&mut self, from: Option<CloneFrom>) -> String {
        let plan = self.config.create_replica.plan(from.is_some());
        if plan.is_empty() {
            return "waiting: no replica method works without a running primary".into();
        }
        let whence = from.as_ref().map_or_else(|| "without a running primary".to_string(), |f| format!("from {}", f.source));
        tracing::info!("I am {}: creating a replica {whence}", self.config.name);
        let started = Instant::now();
        let used = match self.fill_data_dir(plan, from.as_ref()).await {
            Ok(used) => used,
            Err(failures) => return format!("could not create a replica {whence} ({failures}); will retry"),
        };
        let took = started.elapsed().as_secs_f64();
        let Some(from) = from else {
            return match self.start_read_only().await {
                Ok(()) => format!("created a replica with {used} in {took:.1}s without a running primary; starting it read-only"),
                Err(e) => format!("created a replica with {used}, but it does not start: {e}"),
            };
        };
        // Stream from the primary whatever the clone came from; the next cycle applies
        // `replicatefrom` if the member has it.
        if let Err(e) = self.configure_replica(&from.upstream.0, from.upstream.1, false).await {
            return format!("cannot configure the clone: {e}");
        }
        if let Err(e) = self.pg.start().await {
            return format!("cannot start the clone: {e}");
        }
        self.memory.expect_running = true;
        self.callback(Event::Started(Role::Replica));
        format!("cloned {} with {used} in {took:.1}s; starting as a replica", from.source)
    }

    /// Runs the attempts of `plan` in order until one leaves a PostgreSQL cluster in the
    /// data dir: the name of the method that did, or every failure (the data dir emptied).
    pub(super) async fn fill_data_dir(&self, plan: Vec<Attempt>, from: Option<&CloneFrom>) -> Result<String, String> {
        self.publish_state(PgState::InStep(Step::CreatingReplica));
        let mut failures = Vec::new();
        for attempt in plan {
            let name = match &attempt {
                Attempt::Basebackup(_) => BASEBACKUP.to_string(),
                Attempt::Command { name, .. } => name.clone(),
            };
            match self.run_attempt(attempt, from).await {
                Ok(()) => return Ok(name),
                Err(e) => {
                    tracing::warn!("{e}");
                    failures.push(e.to_string());
                }
            }
        }
        let _ = self.pg.remove_data_dir();
        Err(failures.join("; "))
    }

    /// One attempt: an emptied data dir (unless the method keeps it), then pg_basebackup
    /// or the method's command, which must leave a PostgreSQL cluster behind.
    async fn run_attempt(&self, attempt: Attempt, from: Option<&CloneFrom>) -> Result<(), PgError> {
        match attempt {
            Attempt::Basebackup(extra) => {
                let missing = || PgError::Program { program: "pg_basebackup".into(), detail: "it needs a running primary".into() };
                let from = from.ok_or_else(missing)?;
                self.pg.remove_data_dir()?;
                self.pg.basebackup(&from.host, from.port, &extra).await
            }
            Attempt::Command { name, method } => {
                if method.keep_data {
                    // A restore into the data directory (`pgbackrest --delta restore`)
                    // needs it to exist: a failed attempt, or a `reinit`, removed it.
                    self.pg.ensure_data_dir()?;
                } else {
                    self.pg.remove_data_dir()?;
                }
                let user = self.config.postgresql.authentication.replication.username.clone();
                let source = from.map(|f| CloneSource { host: f.host.clone(), port: f.port, user });
                let data_dir = self.pg.data_dir().to_string_lossy().to_string();
                let args = method.arguments(&self.config.scope, &data_dir, source.as_ref());
                let what = format!("replica method {name}");
                self.pg.run_script(&what, &method.command, &args, &[], COPY_TIMEOUT).await?;
                if !self.pg.data_dir_valid() {
                    return Err(PgError::Program {
                        program: what,
                        detail: format!("it exited 0 but left no PostgreSQL cluster in {data_dir}"),
                    });
                }
                Ok(())
            }
        }
    }
}
