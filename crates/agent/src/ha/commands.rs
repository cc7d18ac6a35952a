//! Commands an operator sends to one node's agent (through its REST API): restart
//! PostgreSQL, reload its configuration, re-initialize a replica from the primary.
//! They run inside the HA loop, between cycles, so they never race its decisions.

use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::step::StepError;
use super::Agent;
use crate::callbacks::Event;
use crate::cluster::Role;
use crate::postgres::{PgError, StopMode};

/// One operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop and start PostgreSQL in its current role; with `only_pending`, only when a
    /// parameter change is waiting for a restart.
    Restart { only_pending: bool },
    /// `pg_ctl reload` after rewriting the configuration files.
    Reload,
    /// Replica only: wipe the data directory and clone the primary again.
    Reinit,
    /// A restart at a later time (one at a time per node).
    ScheduleRestart { at: SystemTime, only_pending: bool },
    /// Forget the scheduled restart.
    CancelRestart,
}

/// The answer: what was done, or why not.
pub type Reply = Result<String, CommandError>;

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the cluster is paused: resume it first")]
    Paused,
    #[error("a restart is already scheduled on this node: cancel it first")]
    RestartAlreadyScheduled,
    #[error("no restart is scheduled on this node")]
    NoRestartScheduled,
    /// PostgreSQL's state (`stopped`, `starting`, ...).
    #[error("PostgreSQL is {0}, not running")]
    NotRunning(String),
    #[error("this node is the primary: reinit only re-clones replicas")]
    ReinitOnPrimary,
    /// The node's file could not be read again; the running configuration stays.
    #[error("the node's configuration file was not reloaded (the running configuration stays): {0}")]
    Config(String),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error(transparent)]
    Step(#[from] StepError),
}

/// The reply as one line for the log.
pub(super) fn summary(reply: &Reply) -> String {
    match reply {
        Ok(done) => done.clone(),
        Err(e) => e.to_string(),
    }
}

/// How the REST API reaches the loop.
pub type CommandSender = mpsc::Sender<(Command, oneshot::Sender<Reply>)>;
pub type CommandReceiver = mpsc::Receiver<(Command, oneshot::Sender<Reply>)>;

pub fn channel() -> (CommandSender, CommandReceiver) {
    mpsc::channel(4)
}

impl Agent {
    pub(super) async fn execute(&mut self, command: Command) -> Reply {
        let pg = self.observe().await;
        if self.state.borrow().paused() && command != Command::Reload {
            return Err(CommandError::Paused);
        }
        match command {
            Command::ScheduleRestart { at, only_pending } => {
                if self.scheduled_restart.is_some() {
                    return Err(CommandError::RestartAlreadyScheduled);
                }
                self.scheduled_restart = Some((at, only_pending));
                Ok(format!("restart scheduled at {}", humantime::format_rfc3339_seconds(at)))
            }
            Command::CancelRestart => match self.scheduled_restart.take() {
                Some(_) => Ok("scheduled restart cancelled".into()),
                None => Err(CommandError::NoRestartScheduled),
            },
            Command::Reload => {
                let reread = self.reread_file()?;
                self.configure(self.current_upstream().as_ref()).await?;
                self.pg.reload().await?;
                self.callback(Event::Reloaded(pg.role));
                Ok(format!("{reread}reloaded PostgreSQL's configuration"))
            }
            Command::Restart { only_pending } => {
                if only_pending && !pg.pending_restart {
                    return Ok("no restart pending: nothing done".into());
                }
                if !pg.is_running() {
                    return Err(CommandError::NotRunning(pg.state.to_string()));
                }
                tracing::info!("restarting PostgreSQL on request");
                let primary = pg.role == Role::Primary;
                self.lease.fencer().disarm();
                self.pg.stop(StopMode::Fast, Duration::from_secs(60)).await?;
                self.sql.disconnect();
                self.configure(self.current_upstream().as_ref()).await?;
                let started = self.start_and_wait().await;
                if primary {
                    self.arm_fencer();
                }
                started?;
                self.callback(Event::Restarted(pg.role));
                Ok("restarted PostgreSQL".into())
            }
            Command::Reinit => {
                if pg.role == Role::Primary || self.state.borrow().holds_leader_key {
                    return Err(CommandError::ReinitOnPrimary);
                }
                tracing::info!("re-initializing: stopping PostgreSQL and removing the data directory to clone the primary again");
                self.remove_data_to_reclone().await?;
                Ok("data directory removed; cloning the primary in the next cycle".into())
            }
        }
    }

    /// Reads the node's file again and takes what can change live (see `reload`); logs
    /// one line per changed setting that waits for a restart. Says what was applied.
    fn reread_file(&mut self) -> Result<String, CommandError> {
        let Some(source) = &self.source else { return Ok(String::new()) };
        let merged = crate::reload::merge(&self.config, source().map_err(CommandError::Config)?);
        for line in &merged.need_restart {
            tracing::warn!("reload: {line}");
        }
        self.config = merged.config;
        self.pg.config = self.config.postgresql.clone();
        self.policy.tags = self.config.tags.clone();
        let tags = self.config.tags.clone();
        self.state.send_modify(|s| s.tags = tags);
        *self.rest_auth.write().unwrap_or_else(std::sync::PoisonError::into_inner) = self.config.restapi.authentication.clone();
        Ok(match merged.applied.as_slice() {
            [] => "the node's file re-read (no live setting changed); ".into(),
            applied => format!("the node's file re-read ({} applied); ", applied.join(", ")),
        })
    }

    /// Runs the scheduled restart once its time has come.
    pub(super) async fn run_due_restart(&mut self) {
        if let Some((at, only_pending)) = self.scheduled_restart {
            if at <= SystemTime::now() {
                self.scheduled_restart = None;
                let answer = self.execute(Command::Restart { only_pending }).await;
                tracing::info!("scheduled restart: {}", summary(&answer));
            }
        }
    }

    /// Where this replica streams from now (None on a primary or without a leader).
    fn current_upstream(&self) -> Option<crate::postgres::conf::Upstream> {
        let state = self.state.borrow();
        let leader = state.cluster.leader_name()?;
        if leader == self.config.name {
            return None;
        }
        let (host, port) = state.cluster.members.get(leader)?.host_port()?;
        Some(self.upstream(&host, port))
    }
}
