//! `raftgres`: one node of a raftgres cluster. Startup reads as its steps: settings,
//! logging, client port, store, etcd API, then wait for a signal or removal.

mod settings;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use raftgres_etcd_api::ApiLimits;
use raftgres_store::Store;

fn main() -> ExitCode {
    let settings = match settings::Flags::parse().validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("raftgres: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftgres: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftgres: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTGRES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off,sled=warn,h2=warn,tower=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

async fn run(settings: settings::Settings) -> anyhow::Result<()> {
    let client_listener = tokio::net::TcpListener::bind(&settings.listen_client)
        .await
        .with_context(|| format!("cannot listen for clients on {} (is another node using this port?)", settings.listen_client))?;
    let store = Store::start(settings.store.clone()).await?;
    let limits = ApiLimits { max_request_bytes: settings.max_request_bytes, max_txn_ops: settings.max_txn_ops };
    let api = tokio::spawn(raftgres_etcd_api::serve(store.clone(), client_listener, limits));
    tracing::info!(client = %settings.listen_client, "etcd v3 API listening");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let removed = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if store.is_stopped() {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
        _ = term.recv() => tracing::info!("terminated: shutting down"),
        _ = removed => anyhow::bail!("raft stopped (this member was removed from the cluster, or its storage failed)"),
        result = api => { result?.map_err(|e| anyhow::anyhow!("etcd API server stopped: {e}"))?; }
    }
    store.shutdown().await;
    Ok(())
}
