//! `raftctl restart|reload|reinit [CLUSTER] [MEMBER]...`: asks each member's agent
//! through its REST API (`POST /restart`, `POST /reload`, `POST /reinit`,
//! `DELETE /restart`), as patronictl does, with Basic auth from `--rest-auth
//! USER:PASSWORD` or `RAFTCTL_REST_AUTH` when the REST API requires it.
//!
//! The members are patronictl's: the ones named (the first word is the cluster when it
//! names one, so `raftctl restart node2` still works), else every member with
//! `-r/--role`; `--any` picks one of them. `--pg-version` and `--timeout` are checked
//! here, not by the agent: the version when the command runs (also for a
//! `--scheduled` restart), and the timeout as how long raftctl waits for the answer.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use raftgres_agent::cluster::{ClusterView, Member};

use crate::command::cluster::{confirm, members_with_role, open, ClusterArgs, RoleFilter};
use crate::command::list::{list_scopes, namespace_prefix};
use crate::when::scheduled_for_agents;
use raftgres_client::Api;

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The members (e.g. node2); `CLUSTER` may be left out.
    #[arg(value_name = "MEMBER")]
    pub members: Vec<String>,
    /// REST API credentials, USER:PASSWORD (or the RAFTCTL_REST_AUTH variable).
    #[arg(long, env = "RAFTCTL_REST_AUTH", hide_env_values = true)]
    pub rest_auth: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Only members with this role (without MEMBER: every member with it).
    #[arg(short = 'r', long, value_enum)]
    pub role: Option<RoleFilter>,
}

#[derive(Debug, Args)]
pub struct ReinitArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Wait until each member has cloned the primary and runs again.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Only members with this role (without MEMBER: every member with it).
    #[arg(short = 'r', long, value_enum)]
    pub role: Option<RoleFilter>,
    /// Restart a single one of the members (picked at random).
    #[arg(long)]
    pub any: bool,
    /// Only if a parameter change waits for a restart.
    #[arg(long)]
    pub pending: bool,
    /// Only members whose PostgreSQL is older than this version (e.g. 15.8).
    #[arg(long = "pg-version", value_name = "VERSION")]
    pub pg_version: Option<String>,
    /// Fail when a member's restart takes longer than this (e.g. 60, 90s, 2m).
    #[arg(long, value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// Restart later: RFC 3339 with an offset (2026-12-01T03:00+01:00), or without one as
    /// this machine's local time (2026-12-01T03:00).
    #[arg(long)]
    pub scheduled: Option<String>,
    /// Cancel the scheduled restart instead.
    #[arg(long, conflicts_with_all = ["pending", "scheduled", "pg_version", "timeout", "any"])]
    pub cancel: bool,
}

/// `--timeout`: seconds (`60`) or a duration (`90s`, `2m`).
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("give a positive duration".into()),
        Err(e) => Err(format!("{text:?} is not a duration (60, 90s, 2m): {e}")),
    }
}

/// PostgreSQL's numeric version of `9.6.2`, `15.4` or `16.0.1`, as Patroni reads
/// `--pg-version` (two parts from 10 on, three before; `server_version_num` form).
pub fn pg_version_number(text: &str) -> anyhow::Result<u64> {
    let parts: Vec<u64> = text.split('.').map(str::parse).collect::<Result<_, _>>().map_err(|_| bad_version(text))?;
    let (major, minor) = match parts.as_slice() {
        [major, minor] if *major >= 10 => (major * 10_000, *minor),
        [major, minor, patch] if *major < 10 => (major * 10_000 + minor * 100, *patch),
        [major, _, patch] => (major * 10_000, *patch),
        _ => return Err(bad_version(text)),
    };
    Ok(major + minor)
}

fn bad_version(text: &str) -> anyhow::Error {
    anyhow::anyhow!("--pg-version {text:?}: give X.Y (from PostgreSQL 10 on) or X.Y.Z, e.g. 15.8 or 9.6.24")
}

/// patronictl's `CLUSTER [MEMBER]...` where raftctl also takes `MEMBER...`: the first
/// word is the cluster when it is the scope given by `--scope`/`-c` or one of the
/// namespace's clusters (`scopes`), else a member.
pub fn split_words(node: &NodeArgs, scopes: &BTreeSet<String>) -> (ClusterArgs, Vec<String>) {
    let mut cluster = node.cluster.clone();
    let mut members = node.members.clone();
    if let Some(first) = cluster.cluster.take() {
        if node.cluster.scope.as_deref() == Some(first.as_str()) || (node.cluster.scope.is_none() && scopes.contains(&first)) {
            cluster.cluster = Some(first);
        } else {
            members.insert(0, first);
        }
    }
    (cluster, members)
}

/// The members to act on: the ones named, with `role` (one error naming what does not
/// fit), or without names every member with `role` (None: no names is an error).
pub fn pick_members(view: &ClusterView, named: &[String], role: Option<RoleFilter>) -> anyhow::Result<Vec<String>> {
    let with_role = members_with_role(view, role.unwrap_or(RoleFilter::Any));
    if named.is_empty() {
        if role.is_none() {
            bail!("name the member(s)");
        }
        if with_role.is_empty() {
            bail!("no member has the role {}", role_name(role));
        }
        return Ok(with_role);
    }
    let all: Vec<&str> = view.members.keys().map(String::as_str).collect();
    for name in named {
        if !view.members.contains_key(name) {
            bail!("{name} is neither a cluster here nor a member of this one (members: {})", all.join(", "));
        }
    }
    let picked: Vec<String> = named.iter().filter(|n| with_role.contains(n)).cloned().collect();
    if picked.is_empty() {
        bail!("no {} among {}", role_name(role), named.join(", "));
    }
    Ok(picked)
}

fn role_name(role: Option<RoleFilter>) -> &'static str {
    role.map_or("member", RoleFilter::name)
}

/// [`split_words`], listing the namespace's clusters only when the first word may be one.
pub(crate) async fn cluster_and_members(api: &Api, node: &NodeArgs) -> anyhow::Result<(ClusterArgs, Vec<String>)> {
    let first_is_unknown = node.cluster.cluster.is_some() && node.cluster.scope.is_none();
    let scopes = if first_is_unknown { list_scopes(api, &namespace_prefix(node.cluster.namespace())).await? } else { BTreeSet::new() };
    Ok(split_words(node, &scopes))
}

/// The cluster and the members a node command names.
pub(crate) async fn targets(api: &Api, node: &NodeArgs, role: Option<RoleFilter>) -> anyhow::Result<(ClusterView, Vec<String>)> {
    let (cluster, named) = cluster_and_members(api, node).await?;
    let (_, view) = open(api, &cluster).await?;
    let picked = pick_members(&view, &named, role)?;
    Ok((view, picked))
}

/// A member's REST answer to `method path`: its HTTP status and trimmed body, or why
/// it did not answer ([`success`] turns it into the answer or one error).
pub(crate) async fn request(
    api: &Api,
    node: &NodeArgs,
    name: &str,
    member: &Member,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let base = member.api_url.trim_end_matches("/patroni");
    let url = format!("{base}{path}");
    let (code, answer) = api
        .rest()
        .request(method, &url, body, node.rest_auth.as_deref())
        .await
        .with_context(|| format!("cannot reach {name}'s REST API at {base}"))?;
    Ok((code, answer.trim().to_string()))
}

/// A 2xx answer, or one error saying what the member refused and how to get through.
pub(crate) fn success(name: &str, (code, answer): (u16, String)) -> anyhow::Result<String> {
    match code {
        200..=299 => Ok(answer),
        401 => bail!("{name}'s REST API needs credentials: --rest-auth USER:PASSWORD"),
        403 => bail!("{name}: {answer} (HTTP 403: give a client certificate with --cert/--key)"),
        _ => bail!("{name}: {answer} (HTTP {code})"),
    }
}

/// Runs `each` on every member in turn, printing `name: answer`; all are tried, and
/// the command fails if one did.
pub(crate) async fn for_each<F, Fut>(names: &[String], mut each: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<String>>>,
{
    let mut failed = Vec::new();
    for name in names {
        match each(name.clone()).await {
            Ok(Some(answer)) => println!("{name}: {answer}"),
            Ok(None) => {}
            Err(e) => {
                eprintln!("raftctl: {e:#}");
                failed.push(name.as_str());
            }
        }
    }
    if !failed.is_empty() {
        bail!("failed on {}", failed.join(", "));
    }
    Ok(())
}

/// The member's PostgreSQL version number from its `GET /patroni`.
async fn server_version(api: &Api, member: &Member) -> Option<u64> {
    let body = api.rest().get(&member.api_url).await.ok()?;
    serde_json::from_str::<serde_json::Value>(&body).ok()?.get("server_version")?.as_u64()
}

pub async fn restart(api: &Api, args: RestartArgs) -> anyhow::Result<()> {
    let node = &args.node;
    let wanted_version = args.pg_version.as_deref().map(pg_version_number).transpose()?;
    let scheduled = args.scheduled.as_deref().map(scheduled_for_agents).transpose()?;
    let (view, mut names) = targets(api, node, args.role.or(node.members.is_empty().then_some(RoleFilter::Any))).await?;
    let view = &view;
    if args.cancel {
        return for_each(&names, |name| async move {
            request(api, node, &name, &view.members[&name], "DELETE", "/restart", None)
                .await
                .and_then(|answer| success(&name, answer))
                .map(Some)
        })
        .await;
    }
    if args.any {
        use rand::seq::SliceRandom;
        names.shuffle(&mut rand::thread_rng());
        names.truncate(1);
    }
    if scheduled.is_some() && view.paused() {
        bail!("cannot schedule a restart while the cluster is paused (as patronictl)");
    }
    let when = scheduled.as_ref().map_or_else(String::new, |at| format!(" at {at}"));
    confirm(&format!("Restart PostgreSQL on {}{when}?", names.join(", ")), node.force)?;
    let mut body = serde_json::Map::new();
    if args.pending {
        body.insert("restart_pending".into(), true.into());
    }
    if let Some(at) = &scheduled {
        body.insert("schedule".into(), at.clone().into());
    }
    let body = serde_json::Value::Object(body).to_string();
    let body = &body;
    for_each(&names, |name| async move {
        let member = &view.members[&name];
        if let Some(wanted) = wanted_version {
            match server_version(api, member).await {
                Some(v) if v >= wanted => return Ok(Some(format!("PostgreSQL {v} is not older than --pg-version: not restarted"))),
                Some(_) => {}
                None => bail!("{name}: its PostgreSQL version is unknown (GET /patroni): not restarted"),
            }
        }
        let restart =
            async { request(api, node, &name, member, "POST", "/restart", Some(body)).await.and_then(|answer| success(&name, answer)) };
        match args.timeout {
            None => restart.await.map(Some),
            Some(limit) => tokio::time::timeout(limit, restart)
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{name}: the restart took longer than --timeout {limit:?} (it goes on; raftgres does not fail over for it)"
                    )
                })?
                .map(Some),
        }
    })
    .await
}

pub async fn reload(api: &Api, args: ReloadArgs) -> anyhow::Result<()> {
    let node = &args.node;
    let (view, names) = targets(api, node, args.role.or(node.members.is_empty().then_some(RoleFilter::Any))).await?;
    let view = &view;
    for_each(&names, |name| async move {
        request(api, node, &name, &view.members[&name], "POST", "/reload", None).await.and_then(|answer| success(&name, answer)).map(Some)
    })
    .await
}

pub async fn reinit(api: &Api, args: ReinitArgs) -> anyhow::Result<()> {
    let node = &args.node;
    let (view, names) = targets(api, node, None).await?;
    confirm(&format!("Wipe the data directory of {} and clone the primary again?", names.join(", ")), node.force)?;
    let view = &view;
    for_each(&names, |name| async move {
        request(api, node, &name, &view.members[&name], "POST", "/reinit", Some("{}"))
            .await
            .and_then(|answer| success(&name, answer))
            .map(Some)
    })
    .await?;
    if !args.wait {
        return Ok(());
    }
    println!("Waiting for reinitialize to complete on: {}", names.join(", "));
    let mut waiting = names;
    while !waiting.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut still = Vec::new();
        for name in waiting {
            match member_state(api, &view.members[&name]).await.as_deref() {
                Some("running") => println!("Reinitialize is completed on: {name}"),
                Some("crashed") => bail!("{name}: PostgreSQL crashed after the reinitialize (see its log)"),
                _ => still.push(name),
            }
        }
        waiting = still;
    }
    Ok(())
}

/// The member's PostgreSQL state from its `GET /patroni` (None: no answer).
async fn member_state(api: &Api, member: &Member) -> Option<String> {
    let body = api.rest().get(&member.api_url).await.ok()?;
    Some(serde_json::from_str::<serde_json::Value>(&body).ok()?.get("state")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use raftgres_agent::cluster::LeaderKey;

    fn view() -> ClusterView {
        let mut view = ClusterView { leader: Some(LeaderKey { name: "node1".into(), lease: 1, mod_revision: 1 }), ..Default::default() };
        for n in ["node1", "node2", "node3"] {
            view.members.insert(n.into(), Member::default());
        }
        view
    }

    fn restart_args(words: &[&str]) -> RestartArgs {
        let cli = crate::Cli::parse_from(["raftctl", "restart"].iter().chain(words));
        let crate::Command::Restart(args) = cli.command else { panic!("not restart") };
        args
    }

    #[test]
    fn the_first_word_is_the_cluster_only_when_it_names_one() {
        let scopes: BTreeSet<String> = ["demo".to_string()].into_iter().collect();
        let (cluster, members) = split_words(&restart_args(&["demo", "node2", "node3"]).node, &scopes);
        assert_eq!((cluster.cluster.as_deref(), members.as_slice()), (Some("demo"), ["node2".to_string(), "node3".to_string()].as_slice()));
        let (cluster, members) = split_words(&restart_args(&["node2"]).node, &scopes);
        assert_eq!((cluster.cluster, members), (None, vec!["node2".to_string()]));
        let (cluster, members) = split_words(&restart_args(&["--scope", "pg", "pg", "node2"]).node, &BTreeSet::new());
        assert_eq!((cluster.cluster.as_deref(), members.len()), (Some("pg"), 1));
    }

    #[test]
    fn members_by_name_and_role() {
        let v = view();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(pick_members(&v, &[], Some(RoleFilter::Replica)).expect("replicas"), names(&["node2", "node3"]));
        assert_eq!(pick_members(&v, &names(&["node3", "node1"]), Some(RoleFilter::Replica)).expect("named"), names(&["node3"]));
        assert_eq!(pick_members(&v, &names(&["node2"]), None).expect("named"), names(&["node2"]));
        let e = pick_members(&v, &names(&["node2"]), Some(RoleFilter::Leader)).expect_err("not the leader").to_string();
        assert_eq!(e, "no leader among node2");
        let e = pick_members(&v, &names(&["other", "node2"]), None).expect_err("unknown").to_string();
        assert_eq!(e, "other is neither a cluster here nor a member of this one (members: node1, node2, node3)");
        assert_eq!(pick_members(&v, &[], None).expect_err("reinit names members").to_string(), "name the member(s)");
    }

    #[test]
    fn restart_flags_as_patronictl() {
        let a = restart_args(&["demo", "--role", "replica", "--any", "--pg-version", "15.8", "--timeout", "90s", "--force"]);
        assert_eq!((a.role, a.any, a.pg_version.as_deref()), (Some(RoleFilter::Replica), true, Some("15.8")));
        assert_eq!(a.timeout, Some(Duration::from_secs(90)));
        assert_eq!(restart_args(&["--timeout", "30"]).timeout, Some(Duration::from_secs(30)));
        let e = crate::Cli::try_parse_from(["raftctl", "restart", "--timeout", "soon"]).expect_err("bad timeout").to_string();
        assert!(e.contains("\"soon\" is not a duration"), "{e}");
        assert!(crate::Cli::try_parse_from(["raftctl", "restart", "node2", "--cancel", "--any"]).is_err());
        let cli = crate::Cli::parse_from(["raftctl", "reinit", "demo", "node2", "--wait", "--force"]);
        let crate::Command::Reinit(r) = cli.command else { panic!("not reinit") };
        assert!(r.wait && r.node.force);
    }

    #[test]
    fn pg_versions_read_as_patroni() {
        assert_eq!(pg_version_number("15.8").expect("15.8"), 150_008);
        assert_eq!(pg_version_number("9.6.24").expect("9.6.24"), 90_624);
        assert_eq!(pg_version_number("16.0.1").expect("16.0.1"), 160_001);
        for bad in ["15", "9.6", "x.1", "1.2.3.4", ""] {
            assert!(pg_version_number(bad).expect_err(bad).to_string().starts_with("--pg-version"), "{bad}");
        }
    }
}
