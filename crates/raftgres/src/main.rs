//! `raftgres`: one node of a raftgres cluster. Startup reads as its steps: settings,
//! logging, client port, store, etcd API, the PostgreSQL agent and its REST API (when
//! the config has a `postgresql` section), then wait for a signal or removal. SIGHUP
//! makes the agent re-read the node's file. On SIGTERM/SIGINT the agent stops first (it
//! releases the leader key through the store, or in a paused cluster leaves PostgreSQL
//! running), then the store.
//!
//! The same binary started as `raftgres __fencer` is the agent's fencer process, and
//! `raftgres snapshot restore|status` restores or checks a backup (`snapshot`).

mod settings;
mod snapshot;
mod store_stats;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use raftgres_etcd_api::ApiLimits;
use raftgres_store::Store;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(raftgres_agent::fence::FENCER_ARG) {
        raftgres_agent::fence::run_fencer();
        return ExitCode::SUCCESS;
    }
    if std::env::args().nth(1).as_deref() == Some(snapshot::ARG) {
        return match snapshot::run(std::env::args().skip(1)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("raftgres snapshot: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match settings::Flags::parse().validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("raftgres: {e}");
            return ExitCode::from(2);
        }
    };
    if settings.agent.is_some() && running_as_root() {
        eprintln!(
            "raftgres: PostgreSQL refuses to run as root: start raftgres as an unprivileged user (`raftctl lab up` does this for you)"
        );
        return ExitCode::from(2);
    }
    init_logging();
    for warning in &settings.warnings {
        tracing::warn!("config file: {warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftgres: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(settings));
    // A task stuck in a blocking call must not keep the process from exiting, or no
    // supervisor restarts it: after a disk error sled's drop waits for good for a flush
    // thread that is gone (seen on a full disk: the node hung here, alive and idle).
    runtime.shutdown_timeout(RUNTIME_STOP_TIMEOUT);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: it panics when stderr cannot be written (a full disk).
            let _ = writeln!(std::io::stderr(), "raftgres: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long the runtime's tasks may take to stop once `run` returned.
const RUNTIME_STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTGRES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off,sled=warn,h2=warn,tower=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        // A line that cannot be written (a full disk) is lost. Reporting that failure
        // would use eprintln!, which panics when stderr (the same file) cannot be
        // written either: the task that logged would die, the HA loop with it.
        .log_internal_errors(false)
        .init();
}

async fn run(settings: settings::Settings) -> anyhow::Result<()> {
    // Before anything slow: a SIGHUP during startup must not end the process (its
    // default action), and a SIGTERM then stops it in order.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let client_listener = tokio::net::TcpListener::bind(&settings.listen_client)
        .await
        .with_context(|| format!("cannot listen for clients on {} (is another node using this port?)", settings.listen_client))?;
    if settings.force_new_cluster {
        force_new_cluster(&settings.store)?;
    }
    let store = Store::start(settings.store.clone()).await?;
    let limits = ApiLimits { max_request_bytes: settings.max_request_bytes, max_txn_ops: settings.max_txn_ops };
    let tls = settings.client_tls.is_some();
    let api = raftgres_etcd_api::EtcdApi::new(store.clone(), limits).with_tls(settings.client_tls.clone());
    let api = tokio::spawn(api.serve_with_shutdown(client_listener, std::future::pending()));
    tracing::info!(client = %settings.listen_client, tls, "etcd v3 API listening");

    let agent = match settings.agent.clone() {
        Some(config) => {
            let channel = raftgres_etcd_api::EtcdApi::new(store.clone(), limits).in_process_channel();
            let measured = std::sync::Arc::new(store_stats::Measured(store.store_metrics().clone()));
            Some(raftgres_agent::start(config, channel, Some(measured), Some(std::sync::Arc::new(reread_agent_config))).await?)
        }
        None => None,
    };

    let removed = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if store.is_stopped() {
                return;
            }
        }
    };
    tokio::pin!(removed, api);
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: shutting down"); break Ok(()) }
            _ = term.recv() => { tracing::info!("terminated: shutting down"); break Ok(()) }
            _ = hangup.recv() => reload(agent.as_ref()).await,
            _ = &mut removed => break Err(anyhow::anyhow!("raft stopped (this member was removed from the cluster, or its storage failed)")),
            result = &mut api => break result.map_err(anyhow::Error::from).and_then(|r| r.map_err(|e| anyhow::anyhow!("etcd API server stopped: {e}"))),
        }
    };
    if let Some(agent) = agent {
        if !agent.stop(AGENT_STOP_TIMEOUT).await {
            tracing::warn!("the agent did not stop within {AGENT_STOP_TIMEOUT:?}");
        }
    }
    if tokio::time::timeout(STORE_STOP_TIMEOUT, store.shutdown()).await.is_err() {
        // Raft may be stuck on a failed disk: exit anyway, so a supervisor restarts us.
        tracing::warn!("the store did not stop within {STORE_STOP_TIMEOUT:?}: exiting without it");
    }
    outcome
}

/// SIGHUP: the agent re-reads the node's file and applies what can change live (the
/// store's settings are read only at start).
async fn reload(agent: Option<&raftgres_agent::Running>) {
    match agent {
        Some(agent) => match agent.reload().await {
            Ok(done) => tracing::info!("SIGHUP: {done}"),
            Err(e) => tracing::error!("SIGHUP: {e}"),
        },
        None => tracing::info!("SIGHUP: no postgresql section, nothing to reload (the store's settings are read only at start)"),
    }
}

/// The agent's configuration read again from the same flags and file, its warnings logged.
fn reread_agent_config() -> Result<raftgres_agent::config::AgentConfig, String> {
    let settings = settings::Flags::try_parse().map_err(|e| e.to_string())?.validate()?;
    for warning in &settings.warnings {
        tracing::warn!("config file: {warning}");
    }
    settings.agent.ok_or_else(|| "the file has no postgresql section any more".to_string())
}

/// `--force-new-cluster`: the data dir becomes a one-member cluster's, with all its data.
fn force_new_cluster(store: &raftgres_store::StoreConfig) -> anyhow::Result<()> {
    let own_peer = store.own_peer_addr().unwrap_or(&store.listen_peer);
    let done = raftgres_store::force_new_cluster::rewrite(&store.data_dir, &store.name, own_peer)?;
    tracing::warn!(
        member = %format!("{:x}", done.restored.member_id),
        cluster = %format!("{:x}", done.restored.cluster_id),
        revision = done.restored.revision,
        keys = done.restored.keys,
        replayed = done.replayed,
        old_state = %done.moved_to.display(),
        "--force-new-cluster: this member is now a one-member cluster with all its data; add members with `etcdctl member add` and start them with --initial-cluster-state existing"
    );
    Ok(())
}

/// How long the store may take to stop.
const STORE_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the agent may take to stop PostgreSQL and release the leader key.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// True when this process runs as root (the owner of /proc/self is the effective uid).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}
