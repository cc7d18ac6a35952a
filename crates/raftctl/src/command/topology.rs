//! `raftctl topology` (the `list` table in `patronictl topology`'s tree order),
//! `raftctl dsn` (a libpq connection string for the leader, a `-r/--role` or a
//! `-m/--member`, as `patronictl dsn`) and `raftctl version` (raftctl's version and
//! every member's agent and PostgreSQL versions).

use anyhow::Context;
use clap::Args;

use crate::command::cluster::{check_member, members_with_role, open, ClusterArgs, RoleFilter};
use crate::command::list::{self, ListArgs, Shape};
use crate::refresh::Refresh;
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct TopologyArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub refresh: Refresh,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct DsnArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// A member with this role (default: the leader).
    #[arg(short = 'r', long, value_enum, conflicts_with = "member")]
    pub role: Option<RoleFilter>,
    /// This member.
    #[arg(short = 'm', long)]
    pub member: Option<String>,
}

pub async fn topology(api: &Api, args: TopologyArgs) -> anyhow::Result<()> {
    let list = ListArgs { cluster: args.cluster, extended: false, timestamp: false, format: None, refresh: args.refresh };
    list::run(api, list, Shape::Topology).await
}

pub async fn dsn(api: &Api, args: DsnArgs) -> anyhow::Result<()> {
    let (_, view) = open(api, &args.cluster).await?;
    let name = match args.member {
        Some(m) => m,
        None => {
            let role = args.role.unwrap_or(RoleFilter::Leader);
            members_with_role(&view, role).into_iter().next().with_context(|| format!("no member with role {}", role.name()))?
        }
    };
    check_member(&view, &name)?;
    let m = &view.members[&name];
    let (host, port) = m.host_port().with_context(|| format!("{name} has a malformed conn_url {}", m.conn_url))?;
    println!("host={host} port={port}");
    Ok(())
}

pub async fn version(api: &Api, args: VersionArgs) -> anyhow::Result<()> {
    println!("raftctl version {}", env!("CARGO_PKG_VERSION"));
    let (_, view) = open(api, &args.cluster).await?;
    for (name, m) in &view.members {
        let body = api.rest().get(&m.api_url).await.unwrap_or_default();
        let pg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("server_version").and_then(serde_json::Value::as_u64))
            .map_or("unknown".to_string(), |v| format!("{}.{}", v / 10000, v % 10000));
        println!("{name}: raftgres {}, PostgreSQL {pg}", m.version);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn dsn_takes_a_role_or_a_member() {
        let cli = crate::Cli::parse_from(["raftctl", "dsn", "demo", "-r", "replica"]);
        let crate::Command::Dsn(a) = cli.command else { panic!("not dsn") };
        assert_eq!((a.cluster.cluster.as_deref(), a.role), (Some("demo"), Some(super::RoleFilter::Replica)));
        assert!(crate::Cli::try_parse_from(["raftctl", "dsn", "-r", "primary", "-m", "node1"]).is_err(), "exclusive");
        assert!(crate::Cli::try_parse_from(["raftctl", "dsn", "--role", "standby-leader"]).is_err(), "no standby clusters");
        let cli = crate::Cli::parse_from(["raftctl", "topology", "-W"]);
        let crate::Command::Topology(a) = cli.command else { panic!("not topology") };
        assert!(a.refresh.every_two_seconds);
    }
}
