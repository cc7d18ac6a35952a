//! The agent's one entry point: [`start`] binds the REST API, spawns the fencer, and runs
//! the HA loop and the REST server on a gRPC channel to an etcd v3 endpoint (in the
//! `raftgres` binary, its own store, in-process). The binary needs nothing else of the
//! agent's modules.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cluster::Keys;
use crate::config::AgentConfig;
use crate::dcs::Dcs;
use crate::ha::{commands, Agent};
use crate::reload::Source;
use crate::rest::control::{shared_auth, Control};
use crate::store_stats::StoreStats;

/// Why the agent could not start; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for the REST API on {addr} (is another node using this port?): {source}")]
    RestListen { addr: String, source: std::io::Error },
    #[error("cannot find the raftgres binary (for the fencer): {0}")]
    Exe(std::io::Error),
    #[error("cannot start the fencer process: {0}")]
    Fencer(std::io::Error),
}

/// A running agent: its HA loop, until [`Running::stop`].
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    commands: commands::CommandSender,
}

impl Running {
    /// SIGHUP: re-reads the node's file, applies what can change live, rewrites
    /// PostgreSQL's configuration and reloads it (as `raftctl reload`). The answer, or
    /// why it was refused (the running configuration then stays).
    pub async fn reload(&self) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.commands.send((commands::Command::Reload, reply)).await.map_err(|_| "the agent has stopped".to_string())?;
        match answer.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the agent has stopped".into()),
        }
    }

    /// Asks the HA loop to stop PostgreSQL and hand the leader key over; waits at most
    /// `timeout`. False when it did not finish in time.
    pub async fn stop(self, timeout: Duration) -> bool {
        let _ = self.stop.send(());
        tokio::time::timeout(timeout, self.task).await.is_ok()
    }
}

/// Starts the REST API and the HA loop. `store_stats`, when given, adds the store's own
/// measurements to `GET /metrics`; `source` re-reads the node's file on a reload.
pub async fn start(
    config: AgentConfig,
    channel: tonic::transport::Channel,
    store_stats: Option<Arc<dyn StoreStats>>,
    source: Option<Source>,
) -> Result<Running, StartError> {
    let addr = config.restapi.listen.clone();
    let rest_listener =
        tokio::net::TcpListener::bind(&addr).await.map_err(|source| StartError::RestListen { addr: addr.clone(), source })?;
    let exe = std::env::current_exe().map_err(StartError::Exe)?;
    let rest_tls = config.rest_tls.clone();
    let https = rest_tls.is_some();
    let scope = config.scope.clone();
    let (commands, command_rx) = commands::channel();
    let dcs = Dcs::new(channel.clone(), Keys::new(&config.namespace, &config.scope), Duration::from_secs(5));
    let auth = shared_auth(config.restapi.authentication.clone());
    let (agent, state) = Agent::new(config, channel, &exe, source, auth.clone()).map_err(StartError::Fencer)?;
    let control = Control { dcs, auth, commands: commands.clone(), promise: agent.promise(), store_metrics: store_stats };
    tokio::spawn(async move {
        if let Err(e) = crate::rest::serve(rest_listener, state, Some(control), rest_tls).await {
            tracing::error!("REST API stopped: {e}");
        }
    });
    tracing::info!(rest = %addr, scope = %scope, https, "PostgreSQL agent and REST API started");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(command_rx, async move {
        let _ = stopped.await;
    }));
    Ok(Running { stop, task, commands })
}
