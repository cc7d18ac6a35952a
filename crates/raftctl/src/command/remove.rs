//! `raftctl remove CLUSTER`: wipes a cluster's keys (`/<namespace>/<scope>/...`) from
//! the store, as `patronictl remove`: it shows the members, then asks for the cluster
//! name typed back and for "Yes I am aware". There is no `--force` (patronictl has
//! none): without a terminal it refuses. Where patronictl asks for the leader's name
//! when a leader holds the key, raftgres refuses: running agents would find their
//! cluster gone under them; stop its nodes first (the leader key then expires).

use anyhow::{bail, Context};
use clap::Args;
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::{DeleteRangeRequest, RangeRequest};

use crate::command::cluster::{prompt, read, scope_name, ClusterArgs, Echo};
use crate::command::list::{raft_roles, render, rows, Shape};
use crate::table::Output;
use raftgres_client::{status_error, Api, COMMAND_TIMEOUT};

/// What patronictl asks to have typed before it wipes a cluster.
pub const AWARE: &str = "Yes I am aware";

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How to show the members first (pretty, tsv, json, yaml); overrides -o.
    #[arg(short = 'f', long, value_enum)]
    pub format: Option<Output>,
}

/// The answers must be exactly the cluster's name, then [`AWARE`].
pub fn check_answers(scope: &str, name: &str, aware: Option<&str>) -> anyhow::Result<()> {
    if name != scope {
        bail!("cluster names specified do not match: {name:?} is not {scope:?}; nothing removed");
    }
    match aware {
        Some(AWARE) | None => Ok(()),
        Some(other) => bail!("you did not exactly type \"{AWARE}\" ({other:?}); nothing removed"),
    }
}

/// How many keys are under `prefix`.
async fn count(api: &Api, prefix: &str) -> anyhow::Result<i64> {
    let key = prefix.as_bytes().to_vec();
    let req = RangeRequest { range_end: raftgres_agent::dcs::prefix_end(&key), key, count_only: true, ..Default::default() };
    let resp = tokio::time::timeout(COMMAND_TIMEOUT, KvClient::new(api.channel.clone()).range(req))
        .await
        .with_context(|| format!("reading {prefix}: no answer within {COMMAND_TIMEOUT:?}"))?
        .map_err(status_error)?;
    Ok(resp.into_inner().count)
}

pub async fn run(api: &Api, args: RemoveArgs, global: Option<Output>) -> anyhow::Result<()> {
    if args.cluster.cluster.is_none() {
        bail!("name the cluster to remove: raftctl remove CLUSTER");
    }
    let (dcs, view) = read(api, &args.cluster).await?;
    let scope = scope_name(&dcs).to_string();
    let prefix = dcs.keys.prefix.clone();
    let keys = count(api, &prefix).await?;
    if keys == 0 {
        bail!("no cluster {scope}: nothing under {prefix}");
    }
    let names: Vec<String> = view.members.keys().cloned().collect();
    let raft = raft_roles(api, &names).await;
    let output = Output::pick(args.format, global, Output::Pretty);
    print!("{}", render(&scope, &view, rows(&view, &raft), false, Shape::Formatted(output))?);
    if let Some(leader) = view.leader_name() {
        bail!("{leader} holds the leader key of {scope}: its agents are running; stop every node of {scope} first (the key expires)");
    }
    let no_terminal = ": `raftctl remove` asks on a terminal only (as patronictl, it has no --force)";
    let name = prompt("Please confirm the cluster name to remove", Echo::On, no_terminal)?;
    check_answers(&scope, &name, None)?;
    let question = format!("You are about to remove all information in DCS for {scope}, please type: \"{AWARE}\"");
    let aware = prompt(&question, Echo::On, no_terminal)?;
    check_answers(&scope, &name, Some(&aware))?;
    let key = prefix.as_bytes().to_vec();
    let req = DeleteRangeRequest { range_end: raftgres_agent::dcs::prefix_end(&key), key, ..Default::default() };
    let deleted = tokio::time::timeout(COMMAND_TIMEOUT, KvClient::new(api.channel.clone()).delete_range(req))
        .await
        .with_context(|| format!("deleting {prefix}: no answer within {COMMAND_TIMEOUT:?}"))?
        .map_err(status_error)?
        .into_inner()
        .deleted;
    println!("removed cluster {scope}: {deleted} keys under {prefix}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_answers_must_be_exact() {
        assert!(check_answers("demo", "demo", Some(AWARE)).is_ok());
        assert!(check_answers("demo", "demo", None).is_ok(), "the name alone, before the second question");
        let e = check_answers("demo", "Demo", None).expect_err("name").to_string();
        assert!(e.starts_with("cluster names specified do not match"), "{e}");
        let e = check_answers("demo", "demo", Some("yes")).expect_err("aware").to_string();
        assert!(e.starts_with("you did not exactly type \"Yes I am aware\""), "{e}");
    }
}
