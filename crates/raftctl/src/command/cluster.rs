//! Which PostgreSQL cluster a command acts on: `[SCOPE]` and `--namespace`, the scope
//! found automatically when the namespace holds only one (as `raftctl list` does), and
//! the confirmation destructive commands ask for.

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
    /// The key prefix the clusters live under (Patroni's namespace; default /service/).
    #[arg(long)]
    pub namespace: Option<String>,
}

/// Patroni's default namespace.
pub const DEFAULT_NAMESPACE: &str = "/service/";

impl ClusterArgs {
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// The cluster's keys through `api`, and a first read of them.
pub async fn open(api: &Api, args: &ClusterArgs) -> anyhow::Result<(Dcs, ClusterView)> {
    let prefix = namespace_prefix(args.namespace());
    let scope = match &args.scope {
        Some(s) => s.clone(),
        None => pick_scope(None, &list_scopes(api, &prefix).await?, &prefix)?,
    };
    let dcs = Dcs::new(api.channel.clone(), Keys::new(args.namespace(), &scope), COMMAND_TIMEOUT);
    let view = dcs.read_cluster().await.with_context(|| format!("reading {prefix}{scope}/"))?;
    if view.members.is_empty() {
        anyhow::bail!("no cluster {scope} under {prefix}");
    }
    Ok((dcs, view))
}

/// How a destructive command gets its go-ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// `--force`: go on without asking.
    Forced,
    /// Ask on the terminal.
    Ask,
    /// No terminal to ask on (a script, cron, ssh without -t) and no `--force`: refuse.
    Refuse,
}

impl Confirmation {
    pub fn new(force: bool, terminal: bool) -> Self {
        match (force, terminal) {
            (true, _) => Self::Forced,
            (false, true) => Self::Ask,
            (false, false) => Self::Refuse,
        }
    }
}

/// Goes on with `--force`; otherwise asks "question [y/N]" on a terminal. Without a
/// terminal it refuses (one error line, non-zero exit), as patronictl does: a script
/// that wipes or moves a database must say `--force`.
pub fn confirm(question: &str, force: bool) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    match Confirmation::new(force, std::io::stdin().is_terminal()) {
        Confirmation::Forced => Ok(()),
        Confirmation::Refuse => anyhow::bail!("{question} needs a confirmation and there is no terminal to ask on: add --force"),
        Confirmation::Ask => {
            print!("{question} [y/N] ");
            let _ = std::io::stdout().flush();
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            match answer.trim() {
                "y" | "Y" | "yes" => Ok(()),
                _ => anyhow::bail!("aborted"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_terminal_only_force_goes_on() {
        assert_eq!(Confirmation::new(false, false), Confirmation::Refuse);
        assert_eq!(Confirmation::new(true, false), Confirmation::Forced);
        assert_eq!(Confirmation::new(false, true), Confirmation::Ask);
        assert_eq!(Confirmation::new(true, true), Confirmation::Forced);
    }
}
