//! `raftctl restart|reload|reinit NODE`: asks that member's agent through its REST API
//! (`POST /restart`, `POST /reload`, `POST /reinit`, `DELETE /restart`), as patronictl
//! does, with Basic auth from `--rest-auth USER:PASSWORD` or `RAFTCTL_REST_AUTH` when
//! the REST API requires it.

use anyhow::{bail, Context};
use clap::Args;

use crate::command::cluster::{confirm, open, ClusterArgs};
use crate::when::scheduled_for_agents;
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The member (e.g. node2).
    pub member: String,
    /// REST API credentials, USER:PASSWORD (or the RAFTCTL_REST_AUTH variable).
    #[arg(long, env = "RAFTCTL_REST_AUTH", hide_env_values = true)]
    pub rest_auth: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Only if a parameter change waits for a restart.
    #[arg(long)]
    pub pending: bool,
    /// Restart later: RFC 3339 with an offset (2026-12-01T03:00+01:00), or without one as
    /// this machine's local time (2026-12-01T03:00).
    #[arg(long)]
    pub scheduled: Option<String>,
    /// Cancel the scheduled restart instead.
    #[arg(long, conflicts_with_all = ["pending", "scheduled"])]
    pub cancel: bool,
}

/// Sends `method path` with `body` to the member's REST API; prints its answer.
async fn call(api: &Api, node: &NodeArgs, method: &str, path: &str, body: Option<String>) -> anyhow::Result<()> {
    let (_, view) = open(api, &node.cluster).await?;
    let member = view.members.get(&node.member).with_context(|| {
        let names: Vec<&str> = view.members.keys().map(String::as_str).collect();
        format!("no member named {} (members: {})", node.member, names.join(", "))
    })?;
    let base = member.api_url.trim_end_matches("/patroni");
    let url = format!("{base}{path}");
    let (code, answer) = api
        .rest()
        .request(method, &url, body.as_deref(), node.rest_auth.as_deref())
        .await
        .with_context(|| format!("cannot reach {}'s REST API at {base}", node.member))?;
    let answer = answer.trim();
    match code {
        200..=299 => {
            println!("{}: {answer}", node.member);
            Ok(())
        }
        401 => bail!("{}'s REST API needs credentials: --rest-auth USER:PASSWORD", node.member),
        403 => bail!("{}: {answer} (HTTP 403: give a client certificate with --cert/--key)", node.member),
        _ => bail!("{}: {answer} (HTTP {code})", node.member),
    }
}

pub async fn restart(api: &Api, args: RestartArgs) -> anyhow::Result<()> {
    if args.cancel {
        return call(api, &args.node, "DELETE", "/restart", None).await;
    }
    let scheduled = args.scheduled.as_deref().map(scheduled_for_agents).transpose()?;
    let when = scheduled.as_ref().map_or_else(String::new, |at| format!(" at {at}"));
    confirm(&format!("Restart PostgreSQL on {}{when}?", args.node.member), args.node.force)?;
    let mut body = serde_json::Map::new();
    if args.pending {
        body.insert("restart_pending".into(), true.into());
    }
    if let Some(at) = scheduled {
        body.insert("schedule".into(), at.into());
    }
    call(api, &args.node, "POST", "/restart", Some(serde_json::Value::Object(body).to_string())).await
}

pub async fn reload(api: &Api, args: NodeArgs) -> anyhow::Result<()> {
    call(api, &args, "POST", "/reload", None).await
}

pub async fn reinit(api: &Api, args: NodeArgs) -> anyhow::Result<()> {
    confirm(&format!("Wipe {}'s data directory and clone the primary again?", args.member), args.force)?;
    call(api, &args, "POST", "/reinit", Some("{}".into())).await
}
