//! `raftctl topology` (the members as a replication tree, as `patronictl topology`),
//! `raftctl dsn [MEMBER]` (a libpq connection string for the primary or a member) and
//! `raftctl version` (raftctl's version and every member's agent version).

use clap::Args;
use raftgres_agent::cluster::{ClusterView, Role};

use crate::command::cluster::{open, ClusterArgs};
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct TopologyArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct DsnArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The member to connect to (default: the primary).
    pub member: Option<String>,
}

/// The primary first, then every replica indented under the member it streams from
/// (its `replicatefrom` tag, else the primary).
pub fn tree(view: &ClusterView) -> Vec<String> {
    let leader = view.leader_name().unwrap_or("");
    let mut lines = Vec::new();
    let describe = |name: &str| {
        let m = &view.members[name];
        let role = if name == leader { "Leader" } else { "Replica" };
        let state = if m.role == Role::Replica && m.replication_state.is_some() { "streaming" } else { m.state.as_str() };
        let host = m.host_port().map(|(h, p)| format!("{h}:{p}")).unwrap_or_default();
        format!("{name} {host} {role} {state} TL {}", m.timeline.map_or("-".to_string(), |t| t.to_string()))
    };
    fn add(view: &ClusterView, name: &str, depth: usize, lines: &mut Vec<String>, describe: &dyn Fn(&str) -> String, leader: &str) {
        let prefix = if depth == 0 { String::new() } else { format!("{}+ ", "  ".repeat(depth - 1)) };
        lines.push(format!("{prefix}{}", describe(name)));
        for (child, m) in &view.members {
            let upstream = m.tags.replicatefrom.as_deref().filter(|u| view.members.contains_key(*u)).unwrap_or(leader);
            if child != name && child != leader && upstream == name && depth < 8 {
                add(view, child, depth + 1, lines, describe, leader);
            }
        }
    }
    if view.members.contains_key(leader) {
        add(view, leader, 0, &mut lines, &describe, leader);
    }
    for name in view.members.keys().filter(|n| n.as_str() != leader) {
        if !lines.iter().any(|l| l.trim_start_matches([' ', '+']).starts_with(&format!("{name} "))) {
            lines.push(format!("{} (not attached)", describe(name)));
        }
    }
    lines
}

pub async fn topology(api: &Api, args: TopologyArgs) -> anyhow::Result<()> {
    let (_, view) = open(api, &args.cluster).await?;
    for line in tree(&view) {
        println!("{line}");
    }
    Ok(())
}

pub async fn dsn(api: &Api, args: DsnArgs) -> anyhow::Result<()> {
    let (_, view) = open(api, &args.cluster).await?;
    let name = match args.member {
        Some(m) => m,
        None => view.leader_name().ok_or_else(|| anyhow::anyhow!("the cluster has no primary; name a member"))?.to_string(),
    };
    let m = view.members.get(&name).ok_or_else(|| anyhow::anyhow!("no member named {name}"))?;
    let (host, port) = m.host_port().ok_or_else(|| anyhow::anyhow!("{name} has a malformed conn_url {}", m.conn_url))?;
    println!("host={host} port={port}");
    Ok(())
}

pub async fn version(api: &Api, args: TopologyArgs) -> anyhow::Result<()> {
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
    use super::*;
    use raftgres_agent::cluster::{LeaderKey, Member};
    use raftgres_agent::config::Tags;

    #[test]
    fn tree_follows_replicatefrom() {
        let member = |port: u16, role, from: Option<&str>| Member {
            conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
            role,
            state: "running".into(),
            tags: Tags { replicatefrom: from.map(str::to_string), ..Default::default() },
            ..Default::default()
        };
        let mut v = ClusterView { leader: Some(LeaderKey { name: "n1".into(), lease: 1, mod_revision: 1 }), ..Default::default() };
        v.members.insert("n1".into(), member(5432, Role::Primary, None));
        v.members.insert("n2".into(), member(5433, Role::Replica, None));
        v.members.insert("n3".into(), member(5434, Role::Replica, Some("n2")));
        let t = tree(&v);
        assert_eq!(t.len(), 3);
        assert!(t[0].starts_with("n1 127.0.0.1:5432 Leader"));
        assert!(t[1].starts_with("+ n2"));
        assert!(t[2].starts_with("  + n3"), "{t:?}");
    }
}
