//! Commands an operator sends to one node's agent (through its REST API): restart
//! PostgreSQL, reload its configuration, re-initialize a replica from the primary.
//! They run inside the HA loop, between cycles, so they never race its decisions.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Agent;
use crate::cluster::Role;
use crate::postgres::StopMode;

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
}

/// The answer: what was done, or why not.
pub type Reply = Result<String, String>;

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
            return Err("the cluster is paused: resume it first".into());
        }
        match command {
            Command::Reload => {
                self.configure(self.current_upstream().as_ref()).map_err(|e| e.to_string())?;
                self.pg.reload().await.map_err(|e| e.to_string())?;
                Ok("reloaded PostgreSQL's configuration".into())
            }
            Command::Restart { only_pending } => {
                if only_pending && !pg.pending_restart {
                    return Ok("no restart pending: nothing done".into());
                }
                if !pg.is_running() {
                    return Err(format!("PostgreSQL is {}, not running", pg.state));
                }
                tracing::info!("restarting PostgreSQL on request");
                let primary = pg.role == Role::Primary;
                self.lease.fencer().disarm();
                self.pg.stop(StopMode::Fast, Duration::from_secs(60)).await.map_err(|e| e.to_string())?;
                self.sql.disconnect();
                self.configure(self.current_upstream().as_ref()).map_err(|e| e.to_string())?;
                let started = self.start_and_wait().await;
                if primary {
                    self.arm_fencer();
                }
                started.map(|()| "restarted PostgreSQL".to_string())
            }
            Command::Reinit => {
                if pg.role == Role::Primary || self.state.borrow().holds_leader_key {
                    return Err("this node is the primary: reinit only re-clones replicas".into());
                }
                tracing::info!("re-initializing: stopping PostgreSQL and removing the data directory to clone the primary again");
                self.pg.stop(StopMode::Immediate, Duration::from_secs(30)).await.map_err(|e| e.to_string())?;
                self.sql.disconnect();
                self.expect_running = false;
                self.pg.remove_data_dir().map_err(|e| e.to_string())?;
                Ok("data directory removed; cloning the primary in the next cycle".into())
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
