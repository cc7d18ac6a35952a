//! `raftctl flush [CLUSTER] [MEMBER]... restart|switchover`, as patronictl's: drops
//! the scheduled restarts of the members (`DELETE /restart` on each: the schedule lives
//! in each agent) or the cluster's scheduled switchover (the `/failover` key, as
//! `switchover --cancel`). A member with nothing scheduled, or a cluster with no
//! scheduled switchover, is said so and is not a failure (patronictl exits 0 too).
//! The last word is what to flush; the words before it are patronictl's `CLUSTER
//! [MEMBER]...` (`split_words`). Without members: every member (`-r` narrows them).

use anyhow::bail;
use clap::Args;
use raftgres_agent::ops::{self, OpsError};

use crate::command::cluster::{open, RoleFilter};
use crate::command::node_ops::{cluster_and_members, for_each, request, success, targets, NodeArgs};
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct FlushArgs {
    /// `[CLUSTER] [MEMBER]... restart|switchover`; `--force` is taken, as patronictl's
    /// (flush asks nothing).
    #[command(flatten)]
    pub node: NodeArgs,
    /// Only members with this role (restart).
    #[arg(short = 'r', long, value_enum)]
    pub role: Option<RoleFilter>,
}

/// What `flush` drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Restart,
    Switchover,
}

/// The target (the last word) and the node arguments without it.
pub fn parse(node: &NodeArgs) -> anyhow::Result<(Target, NodeArgs)> {
    let mut words: Vec<String> = node.cluster.cluster.iter().chain(&node.members).cloned().collect();
    let target = match words.pop().as_deref() {
        Some("restart") => Target::Restart,
        Some("switchover") => Target::Switchover,
        Some(other) => bail!("flush: the last word says what to flush, restart or switchover, not {other:?}"),
        None => bail!("flush: say what to flush: restart or switchover"),
    };
    let mut rest = node.clone();
    rest.cluster.cluster = (!words.is_empty()).then(|| words.remove(0));
    rest.members = words;
    Ok((target, rest))
}

pub async fn run(api: &Api, args: FlushArgs) -> anyhow::Result<()> {
    let (target, node) = parse(&args.node)?;
    match target {
        Target::Restart => {
            let (view, names) = targets(api, &node, args.role.or(node.members.is_empty().then_some(RoleFilter::Any))).await?;
            let (view, node) = (&view, &node);
            for_each(&names, |name| async move {
                match request(api, node, &name, &view.members[&name], "DELETE", "/restart", None).await? {
                    (404, _) => Ok(Some("no scheduled restart".into())),
                    answer => success(&name, answer).map(Some),
                }
            })
            .await
        }
        Target::Switchover => {
            if args.role.is_some() {
                bail!("flush switchover: --role is for restart (the switchover is the cluster's)");
            }
            let (cluster, members) = cluster_and_members(api, &node).await?;
            if !members.is_empty() {
                bail!("flush switchover takes no member ({}): the scheduled switchover is the cluster's", members.join(", "));
            }
            let (dcs, _) = open(api, &cluster).await?;
            match ops::cancel_switchover(&dcs).await {
                Ok(done) => println!("{done}"),
                Err(OpsError::Refused(_)) => println!("no scheduled switchover"),
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flush(words: &[&str]) -> anyhow::Result<(Target, NodeArgs)> {
        let cli = crate::Cli::try_parse_from(["raftctl", "flush"].iter().chain(words))?;
        let crate::Command::Flush(args) = cli.command else { panic!("not flush") };
        parse(&args.node)
    }

    #[test]
    fn the_last_word_is_what_to_flush() {
        let (target, node) = flush(&["demo", "node2", "node3", "restart", "--force"]).expect("restart");
        assert_eq!((target, node.cluster.cluster.as_deref()), (Target::Restart, Some("demo")));
        assert_eq!(node.members, ["node2", "node3"]);
        assert!(node.force);
        let (target, node) = flush(&["switchover"]).expect("switchover");
        assert_eq!((target, node.cluster.cluster, node.members.len()), (Target::Switchover, None, 0));
        let e = flush(&["demo", "restrat"]).expect_err("typo").to_string();
        assert_eq!(e, "flush: the last word says what to flush, restart or switchover, not \"restrat\"");
        assert!(flush(&[]).expect_err("nothing").to_string().contains("restart or switchover"));
    }
}
