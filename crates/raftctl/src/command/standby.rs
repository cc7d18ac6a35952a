//! `raftctl demote-cluster` / `raftctl promote-cluster` (Patroni 4's patronictl
//! commands): a running cluster becomes a standby cluster of another cluster's primary,
//! or a standby cluster becomes a normal one. Each is one change of `standby_cluster` in
//! `/config` (checked by the agents' own rules, written with compare-and-swap), as
//! `raftctl edit-config` would make it; the agents carry it out in their next cycle.

use anyhow::bail;
use clap::Args;
use raftgres_agent::ops;
use serde_json::{json, Map, Value};

use crate::command::cluster::{confirm, open, ClusterArgs};
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct DemoteClusterArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The remote primary to follow.
    #[arg(long)]
    pub host: Option<String>,
    /// Its port (5432 when not given).
    #[arg(long)]
    pub port: Option<u16>,
    /// A physical slot on the remote to stream through.
    #[arg(long)]
    pub primary_slot_name: Option<String>,
    /// Fetches WAL from an archive (alone, without --host: archive recovery only).
    #[arg(long)]
    pub restore_command: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PromoteClusterArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
}

/// The `standby_cluster` section `demote-cluster` writes.
pub fn section(args: &DemoteClusterArgs) -> anyhow::Result<Value> {
    if args.host.is_none() && args.restore_command.is_none() {
        bail!("demote-cluster needs --host (the remote primary, with --port) or --restore-command");
    }
    let mut s = Map::new();
    let fields = [
        ("host", args.host.clone().map(Value::from)),
        ("port", args.port.map(Value::from)),
        ("primary_slot_name", args.primary_slot_name.clone().map(Value::from)),
        ("restore_command", args.restore_command.clone().map(Value::from)),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            s.insert(key.into(), v);
        }
    }
    Ok(Value::Object(s))
}

pub async fn demote(api: &Api, args: DemoteClusterArgs) -> anyhow::Result<()> {
    let standby = section(&args)?;
    let (dcs, view) = open(api, &args.cluster).await?;
    if view.config.as_ref().and_then(|(c, _)| c.get("standby_cluster")).is_some_and(|s| !s.is_null()) {
        bail!("the cluster is a standby cluster already (`raftctl edit-config -s standby_cluster.host=...` changes its remote)");
    }
    confirm("Demote the cluster: its primary stops and follows the remote as the standby leader?", args.force)?;
    ops::patch_config(&dcs, &json!({ "standby_cluster": standby })).await?;
    println!("the cluster is a standby cluster now: its leader stops, rewinds if needed and follows the remote as the standby leader");
    Ok(())
}

pub async fn promote(api: &Api, args: PromoteClusterArgs) -> anyhow::Result<()> {
    let (dcs, view) = open(api, &args.cluster).await?;
    if view.config.as_ref().and_then(|(c, _)| c.get("standby_cluster")).is_none_or(Value::is_null) {
        bail!("the cluster is not a standby cluster (no standby_cluster in /config): nothing to promote");
    }
    confirm("Promote the standby cluster: its standby leader becomes a primary accepting writes?", args.force)?;
    ops::patch_config(&dcs, &json!({ "standby_cluster": null })).await?;
    println!("standby_cluster removed: the standby leader promotes in its next cycle");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn demote_cluster_writes_patronis_section() {
        let cli = crate::Cli::parse_from([
            "raftctl",
            "demote-cluster",
            "--host",
            "10.0.0.1",
            "--port",
            "5433",
            "--primary-slot-name",
            "dr",
            "--force",
        ]);
        let crate::Command::DemoteCluster(args) = cli.command else { panic!("not demote-cluster") };
        assert!(args.force);
        assert_eq!(section(&args).expect("section"), json!({"host": "10.0.0.1", "port": 5433, "primary_slot_name": "dr"}));
        let cli = crate::Cli::parse_from(["raftctl", "demote-cluster", "--restore-command", "cp /a/%f %p"]);
        let crate::Command::DemoteCluster(args) = cli.command else { panic!("not demote-cluster") };
        assert_eq!(section(&args).expect("section"), json!({"restore_command": "cp /a/%f %p"}));
        let cli = crate::Cli::parse_from(["raftctl", "demote-cluster", "--port", "5433"]);
        let crate::Command::DemoteCluster(args) = cli.command else { panic!("not demote-cluster") };
        let e = section(&args).expect_err("no remote").to_string();
        assert_eq!(e, "demote-cluster needs --host (the remote primary, with --port) or --restore-command");
        let cli = crate::Cli::parse_from(["raftctl", "promote-cluster", "demo", "--force"]);
        let crate::Command::PromoteCluster(args) = cli.command else { panic!("not promote-cluster") };
        assert_eq!((args.cluster.cluster.as_deref(), args.force), (Some("demo"), true));
    }
}
