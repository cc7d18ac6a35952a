//! Which PostgreSQL cluster a command acts on: `[SCOPE]` and `--namespace`, the scope
//! found automatically when the namespace holds only one (as `raftctl list` does).

use anyhow::Context;
use clap::Args;
use raftgres_agent::cluster::{ClusterView, Keys};
use raftgres_agent::dcs::Dcs;

use crate::command::list::{list_scopes, namespace_prefix, pick_scope};
use raftgres_client::{Api, COMMAND_TIMEOUT};

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// The cluster (Patroni's scope); may be omitted when the namespace holds just one.
    #[arg(long)]
    pub scope: Option<String>,
    /// The key prefix the clusters live under (Patroni's namespace).
    #[arg(long, default_value = "/service/")]
    pub namespace: String,
}

/// The cluster's keys through `api`, and a first read of them.
pub async fn open(api: &Api, args: &ClusterArgs) -> anyhow::Result<(Dcs, ClusterView)> {
    let prefix = namespace_prefix(&args.namespace);
    let scope = match &args.scope {
        Some(s) => s.clone(),
        None => pick_scope(None, &list_scopes(api, &prefix).await?, &prefix)?,
    };
    let dcs = Dcs::new(api.channel.clone(), Keys::new(&args.namespace, &scope), COMMAND_TIMEOUT);
    let view = dcs.read_cluster().await.with_context(|| format!("reading {prefix}{scope}/"))?;
    if view.members.is_empty() {
        anyhow::bail!("no cluster {scope} under {prefix}");
    }
    Ok((dcs, view))
}

/// Asks "question [y/N]" on a terminal; without one (scripts), answers yes.
pub fn confirm(question: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return true;
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}
