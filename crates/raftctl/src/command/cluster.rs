//! Which PostgreSQL cluster a command acts on: patronictl's CLUSTER argument (checked
//! against `--scope` or the `-c` file's scope), `--namespace`, the scope found
//! automatically when the namespace holds only one; which members a `-r/--role` names;
//! and the confirmations and prompts destructive commands ask on a terminal (refused
//! without one).

use std::collections::BTreeSet;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use raftgres_agent::cluster::{ClusterView, Keys};
use raftgres_agent::dcs::Dcs;
use raftgres_client::AuthChannel;

use crate::command::list::{list_scopes, namespace_prefix, pick_scope};
use raftgres_client::{Api, COMMAND_TIMEOUT};

#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// The cluster (Patroni's scope), as patronictl's CLUSTER_NAME; checked against
    /// --scope or the -c file's scope; may be omitted when the namespace holds just one.
    #[arg(value_name = "CLUSTER")]
    pub cluster: Option<String>,
    /// The cluster (Patroni's scope), the flag form of CLUSTER.
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

/// The scope to act on: `--scope` (or the `-c` file's) with the CLUSTER argument checked
/// against it, else CLUSTER, else the only cluster in the namespace (`found`, listed
/// only when needed).
pub fn pick_cluster(args: &ClusterArgs, found: impl FnOnce() -> anyhow::Result<BTreeSet<String>>) -> anyhow::Result<String> {
    let prefix = namespace_prefix(args.namespace());
    match (&args.scope, &args.cluster) {
        (Some(scope), Some(named)) if scope != named => {
            bail!("cluster {named} is not this configuration's cluster {scope} (the scope from --scope or the -c file)")
        }
        (Some(scope), _) | (None, Some(scope)) => Ok(scope.clone()),
        (None, None) => pick_scope(None, &found()?, &prefix),
    }
}

/// The scope `open` uses (one keys-only Range when the namespace must be searched).
pub async fn resolve(api: &Api, args: &ClusterArgs) -> anyhow::Result<String> {
    let prefix = namespace_prefix(args.namespace());
    let found = if args.scope.is_none() && args.cluster.is_none() { Some(list_scopes(api, &prefix).await?) } else { None };
    pick_cluster(args, || Ok(found.unwrap_or_default()))
}

/// The cluster's keys through `api`, and a first read of them.
pub async fn open(api: &Api, args: &ClusterArgs) -> anyhow::Result<(Dcs<AuthChannel>, ClusterView)> {
    let (dcs, view) = read(api, args).await?;
    if view.members.is_empty() {
        let prefix = namespace_prefix(args.namespace());
        let scope = scope_name(&dcs);
        let others = list_scopes(api, &prefix).await.unwrap_or_default();
        let others: Vec<&str> = others.iter().map(String::as_str).filter(|s| *s != scope).collect();
        let hint = if others.is_empty() { String::new() } else { format!(" (clusters there: {})", others.join(", ")) };
        bail!("no cluster {scope} under {prefix}{hint}");
    }
    Ok((dcs, view))
}

/// The cluster's keys and what they hold, members or not (`remove` wipes what is left
/// of a cluster whose members are gone).
pub async fn read(api: &Api, args: &ClusterArgs) -> anyhow::Result<(Dcs<AuthChannel>, ClusterView)> {
    let scope = resolve(api, args).await?;
    let dcs = Dcs::new(api.channel.clone(), Keys::new(args.namespace(), &scope), COMMAND_TIMEOUT);
    let view = dcs.read_cluster().await.with_context(|| format!("reading {}{scope}/", namespace_prefix(args.namespace())))?;
    Ok((dcs, view))
}

/// The scope `dcs` is opened on (`/service/demo/` → `demo`).
pub fn scope_name(dcs: &Dcs<AuthChannel>) -> &str {
    dcs.keys.prefix.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// `-r/--role` as patronictl takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleFilter {
    /// The member holding the leader key.
    #[value(alias = "primary", alias = "master")]
    Leader,
    /// Every other member.
    #[value(alias = "standby")]
    Replica,
    Any,
}

impl RoleFilter {
    pub fn name(self) -> &'static str {
        match self {
            Self::Leader => "leader",
            Self::Replica => "replica",
            Self::Any => "any",
        }
    }
}

/// The members with `role`, by name (the leader first for `any`).
pub fn members_with_role(view: &ClusterView, role: RoleFilter) -> Vec<String> {
    let leader = view.leader_name().filter(|l| view.members.contains_key(*l));
    let others = view.members.keys().filter(|n| Some(n.as_str()) != leader).cloned();
    match role {
        RoleFilter::Leader => leader.map(str::to_string).into_iter().collect(),
        RoleFilter::Replica => others.collect(),
        RoleFilter::Any => leader.map(str::to_string).into_iter().chain(others).collect(),
    }
}

/// `name` must be a member: else one error listing the members.
pub fn check_member(view: &ClusterView, name: &str) -> anyhow::Result<()> {
    if view.members.contains_key(name) {
        return Ok(());
    }
    let names: Vec<&str> = view.members.keys().map(String::as_str).collect();
    bail!("no member named {name} (members: {})", names.join(", "))
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
    use std::io::IsTerminal;
    match Confirmation::new(force, std::io::stdin().is_terminal()) {
        Confirmation::Forced => Ok(()),
        Confirmation::Refuse => bail!("{question} needs a confirmation and there is no terminal to ask on: add --force"),
        Confirmation::Ask => match prompt(&format!("{question} [y/N]"), Echo::On, "")?.as_str() {
            "y" | "Y" | "yes" => Ok(()),
            _ => bail!("aborted"),
        },
    }
}

/// Whether a prompt shows what is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    On,
    /// Passwords.
    Off,
}

/// Asks `question` on the terminal and returns the answer (trimmed). Without a terminal
/// it refuses, naming the question; `otherwise` says what a script can do instead.
pub fn prompt(question: &str, echo: Echo, otherwise: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("\"{question}\" needs an answer and there is no terminal to ask on{otherwise}");
    }
    print!("{question}: ");
    std::io::stdout().flush()?;
    let saved = match echo {
        Echo::On => None,
        Echo::Off => Some(echo_off(&stdin)?),
    };
    let mut answer = String::new();
    let read = stdin.lock().read_line(&mut answer);
    if let Some(saved) = saved {
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved)?;
        println!();
    }
    read?;
    Ok(answer.trim_end_matches(['\r', '\n']).to_string())
}

/// Turns the terminal's echo off; returns the settings to restore.
fn echo_off(stdin: &std::io::Stdin) -> anyhow::Result<nix::sys::termios::Termios> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let saved = tcgetattr(stdin)?;
    let mut silent = saved.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(stdin, SetArg::TCSANOW, &silent)?;
    Ok(saved)
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

    #[test]
    fn cluster_argument_is_checked_against_the_scope() {
        let args = |cluster: Option<&str>, scope: Option<&str>| ClusterArgs {
            cluster: cluster.map(str::to_string),
            scope: scope.map(str::to_string),
            namespace: None,
        };
        let none = || -> anyhow::Result<BTreeSet<String>> { panic!("the namespace is listed only when nothing names a cluster") };
        assert_eq!(pick_cluster(&args(Some("demo"), Some("demo")), none).expect("same"), "demo");
        assert_eq!(pick_cluster(&args(Some("demo"), None), none).expect("named"), "demo");
        assert_eq!(pick_cluster(&args(None, Some("pg")), none).expect("scope"), "pg");
        let e = pick_cluster(&args(Some("other"), Some("demo")), none).expect_err("mismatch").to_string();
        assert_eq!(e, "cluster other is not this configuration's cluster demo (the scope from --scope or the -c file)");
        let one = || Ok(["demo".to_string()].into_iter().collect());
        assert_eq!(pick_cluster(&args(None, None), one).expect("the only one"), "demo");
    }

    #[test]
    fn roles_name_members_leader_first() {
        use raftgres_agent::cluster::{LeaderKey, Member};
        let mut view = ClusterView { leader: Some(LeaderKey { name: "n2".into(), lease: 1, mod_revision: 1 }), ..Default::default() };
        for n in ["n1", "n2", "n3"] {
            view.members.insert(n.into(), Member::default());
        }
        assert_eq!(members_with_role(&view, RoleFilter::Leader), ["n2"]);
        assert_eq!(members_with_role(&view, RoleFilter::Replica), ["n1", "n3"]);
        assert_eq!(members_with_role(&view, RoleFilter::Any), ["n2", "n1", "n3"]);
        view.leader = None;
        assert!(members_with_role(&view, RoleFilter::Leader).is_empty());
        assert!(check_member(&view, "n3").is_ok());
        assert_eq!(check_member(&view, "n9").expect_err("unknown").to_string(), "no member named n9 (members: n1, n2, n3)");
    }
}
