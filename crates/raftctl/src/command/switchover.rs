//! `raftctl switchover` and `raftctl failover`: write the request (validated by the
//! agent's own rules in `raftgres_agent::ops`), then wait until another member holds
//! the leader key and say who, and how long it took.

use anyhow::bail;
use clap::Args;
use raftgres_agent::dcs::Dcs;
use raftgres_agent::ops::{self, Handover, SwitchoverRequest};
use raftgres_client::AuthChannel;

use crate::command::cluster::{confirm, open, ClusterArgs};
use crate::when::scheduled_for_agents;
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The current primary (checked; a safety net against switching the wrong cluster);
    /// patronictl's --leader/--primary (and the old --master).
    #[arg(long, visible_alias = "primary", alias = "master")]
    pub leader: Option<String>,
    /// The replica to promote (default: the healthiest).
    #[arg(long)]
    pub candidate: Option<String>,
    /// When to switch over: RFC 3339 with an offset (2026-12-01T03:00+01:00, 2026-12-01T02:00Z),
    /// or without one as this machine's local time (2026-12-01T03:00).
    #[arg(long)]
    pub scheduled: Option<String>,
    /// Cancel a scheduled switchover instead.
    #[arg(long, conflicts_with_all = ["candidate", "scheduled", "leader"])]
    pub cancel: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The member to promote.
    #[arg(long)]
    pub candidate: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
}

pub async fn switchover(api: &Api, args: SwitchoverArgs) -> anyhow::Result<()> {
    let (dcs, view) = open(api, &args.cluster).await?;
    if args.cancel {
        println!("{}", ops::cancel_switchover(&dcs).await?);
        return Ok(());
    }
    let old = view.leader_name().unwrap_or("").to_string();
    let req = SwitchoverRequest {
        leader: args.leader,
        candidate: args.candidate,
        scheduled_at: args.scheduled.as_deref().map(scheduled_for_agents).transpose()?,
    };
    let max_lag = ops::dynamic(&view).maximum_lag_on_failover;
    ops::check_switchover(&view, &req, max_lag)?;
    let to = req.candidate.as_deref().unwrap_or("the healthiest replica");
    confirm(&format!("Switch over from {old} to {to}?"), args.force)?;
    println!("{}", ops::switchover(&dcs, &req).await?);
    if req.scheduled_at.is_some() {
        return Ok(());
    }
    wait_new_primary(&dcs, &old).await
}

pub async fn failover(api: &Api, args: FailoverArgs) -> anyhow::Result<()> {
    let (dcs, view) = open(api, &args.cluster).await?;
    let old = view.leader_name().unwrap_or("").to_string();
    if let (Some(primary), Some(candidate)) = (view.leader_member(), view.members.get(&args.candidate)) {
        if let (Some(p), Some(c)) = (primary.xlog_location, candidate.xlog_location) {
            if p > c {
                println!(
                    "warning: {} is {} bytes behind the primary {old}: writes not yet on it are lost if {old} is not reachable",
                    args.candidate,
                    p - c
                );
            }
        }
    } else if view.leader.is_none() {
        println!("warning: the cluster has no primary; {} will be promoted with what it has", args.candidate);
    }
    confirm(&format!("Fail over to {}?", args.candidate), args.force)?;
    println!("{}", ops::failover(&dcs, &args.candidate).await?);
    wait_new_primary(&dcs, &old).await
}

/// Until a member other than `old` holds the leader key (and `/failover` is gone).
async fn wait_new_primary(dcs: &Dcs<AuthChannel>, old: &str) -> anyhow::Result<()> {
    match ops::await_handover(dcs, Some(old)).await {
        Handover::NewLeader(new, took) => {
            println!("{new} is the new primary ({:.1} s)", took.as_secs_f64());
            Ok(())
        }
        Handover::Refused => bail!("the switchover was refused or aborted; {old} is still the primary (see its log)"),
        Handover::TimedOut => bail!("no new primary within {:?}; check `raftctl list` and the logs", ops::HANDOVER_WAIT),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn parses() {
        let cli = crate::Cli::parse_from(["raftctl", "switchover", "--candidate", "node2", "--force"]);
        let crate::Command::Switchover(a) = cli.command else { panic!("not switchover") };
        assert_eq!(a.candidate.as_deref(), Some("node2"));
        assert!(a.force && !a.cancel);
        assert!(crate::Cli::try_parse_from(["raftctl", "switchover", "--cancel", "--candidate", "x"]).is_err());
        assert!(crate::Cli::try_parse_from(["raftctl", "failover"]).is_err(), "failover needs --candidate");
        for flag in ["--leader", "--primary", "--master"] {
            let cli = crate::Cli::parse_from(["raftctl", "switchover", "demo", flag, "node1"]);
            let crate::Command::Switchover(a) = cli.command else { panic!("not switchover") };
            assert_eq!((a.leader.as_deref(), a.cluster.cluster.as_deref()), (Some("node1"), Some("demo")), "{flag}");
        }
    }
}
