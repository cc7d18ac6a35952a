//! `raftctl members [list|add|promote|remove]`: the Raft half of the cluster.
//!
//! The list joins the etcd MemberList with each member's own Maintenance.Status, so a
//! member that does not answer still shows up, marked as such.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use raftgres_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest, StatusRequest, StatusResponse,
};
use serde::Serialize;

use crate::table;
use crate::table::Output;
use raftgres_client::{status_error, Api};

#[derive(Debug, Args)]
pub struct MembersArgs {
    #[command(subcommand)]
    pub action: Option<MembersAction>,
}

#[derive(Debug, Subcommand)]
pub enum MembersAction {
    /// Table of members with their Raft role, term and log positions (the default).
    List,
    /// Add a member as a learner; start it with --initial-cluster-state existing.
    Add { name: String, peer_addr: String },
    /// Promote a learner that caught up to a voting member.
    Promote { name: String },
    /// Remove a member (by name or hex id).
    Remove { name: String },
}

/// One row of `raftctl members`.
#[derive(Debug, Serialize, PartialEq)]
pub struct MemberRow {
    pub name: String,
    pub id: String,
    pub peer_addr: String,
    pub client_addr: String,
    pub role: String,
    pub term: Option<u64>,
    pub last_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub answers: bool,
}

fn strip_scheme(url: &str) -> String {
    url.split_once("://").map_or(url, |(_, rest)| rest).to_string()
}

/// Builds a row from what the cluster says of the member and what it says of itself.
pub fn row(member: &Member, status: Option<&StatusResponse>) -> MemberRow {
    let role = match status {
        None => "unknown".to_string(),
        Some(_) if member.is_learner => "Learner".to_string(),
        Some(s) if s.leader == member.id => "Leader".to_string(),
        Some(_) => "Follower".to_string(),
    };
    MemberRow {
        name: member.name.clone(),
        id: format!("{:x}", member.id),
        peer_addr: member.peer_ur_ls.first().map(|u| strip_scheme(u)).unwrap_or_default(),
        client_addr: member.client_ur_ls.first().map(|u| strip_scheme(u)).unwrap_or_default(),
        role,
        term: status.map(|s| s.raft_term),
        last_index: status.map(|s| s.raft_index),
        applied_index: status.map(|s| s.raft_applied_index),
        answers: status.is_some(),
    }
}

async fn member_status(api: &Api, member: &Member) -> Option<StatusResponse> {
    let url = member.client_ur_ls.first()?;
    let channel = api.connect_member(url).await.ok()?;
    let mut client = raftgres_proto::etcdserverpb::maintenance_client::MaintenanceClient::new(channel);
    client.status(StatusRequest {}).await.ok().map(|r| r.into_inner())
}

async fn list_members(api: &Api) -> anyhow::Result<Vec<Member>> {
    let resp = api.cluster().member_list(MemberListRequest { linearizable: false }).await.map_err(status_error)?;
    Ok(resp.into_inner().members)
}

fn find<'a>(members: &'a [Member], name: &str) -> anyhow::Result<&'a Member> {
    members
        .iter()
        .find(|m| m.name == name || format!("{:x}", m.id) == name)
        .ok_or_else(|| anyhow!("no member named {name:?} (see `raftctl members`)"))
}

pub async fn run(api: &Api, args: MembersArgs, output: Output) -> anyhow::Result<()> {
    match args.action.unwrap_or(MembersAction::List) {
        MembersAction::List => {
            let members = list_members(api).await?;
            let statuses = futures::future::join_all(members.iter().map(|m| member_status(api, m))).await;
            let rows: Vec<MemberRow> = members.iter().zip(&statuses).map(|(m, s)| row(m, s.as_ref())).collect();
            print_rows(&rows, output)?;
        }
        MembersAction::Add { name, peer_addr } => {
            if peer_addr.contains("://") || !peer_addr.contains(':') {
                bail!("PEER_ADDR must be HOST:PORT, not {peer_addr:?}");
            }
            // A bare HOST:PORT: the node knows whether its peers speak http or https.
            let req = MemberAddRequest { peer_ur_ls: vec![peer_addr.clone()], is_learner: true };
            let resp = api.cluster().member_add(req).await.map_err(status_error)?.into_inner();
            let id = resp.member.map_or(0, |m| m.id);
            let initial: Vec<String> = resp
                .members
                .iter()
                .map(|m| {
                    let n = if m.id == id { name.clone() } else { m.name.clone() };
                    format!("{n}={}", m.peer_ur_ls.first().map(|u| strip_scheme(u)).unwrap_or_default())
                })
                .collect();
            println!("Member {name} added as a learner with id {id:x}. Start it with:");
            println!(
                "  raftgres --name {name} --listen-peer {peer_addr} --initial-cluster {} --initial-cluster-state existing ...",
                initial.join(",")
            );
            println!("then promote it once it caught up: raftctl members promote {name}");
        }
        MembersAction::Promote { name } => {
            let members = list_members(api).await?;
            let m = find(&members, &name)?;
            api.cluster().member_promote(MemberPromoteRequest { id: m.id }).await.map_err(status_error)?;
            println!("Member {name} ({:x}) promoted to voter", m.id);
        }
        MembersAction::Remove { name } => {
            let members = list_members(api).await?;
            let m = find(&members, &name)?;
            api.cluster().member_remove(MemberRemoveRequest { id: m.id }).await.map_err(status_error)?;
            println!("Member {name} ({:x}) removed", m.id);
        }
    }
    Ok(())
}

fn print_rows(rows: &[MemberRow], output: Output) -> anyhow::Result<()> {
    if let Some(text) = table::structured(output, &rows)? {
        print!("{text}");
        return Ok(());
    }
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.id.clone(),
                r.peer_addr.clone(),
                r.client_addr.clone(),
                r.role.clone(),
                opt(r.term),
                opt(r.last_index),
                opt(r.applied_index),
                if r.answers { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    let header = ["Name", "ID", "Peer addr", "Client addr", "Raft role", "Term", "Last index", "Applied", "Answers"];
    print!("{}", table::text_table(output, &header, cells)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn parses_subcommands() {
        let cli = crate::Cli::parse_from(["raftctl", "members", "add", "node4", "127.0.0.1:2680"]);
        let crate::Command::Members(args) = cli.command else { panic!("not members") };
        assert!(matches!(args.action, Some(MembersAction::Add { ref name, .. }) if name == "node4"));
    }

    #[test]
    fn roles_come_from_status() {
        let member = Member { id: 7, name: "n".into(), peer_ur_ls: vec!["http://h:1".into()], ..Default::default() };
        let status = StatusResponse { leader: 7, raft_term: 3, ..Default::default() };
        let r = row(&member, Some(&status));
        assert_eq!((r.role.as_str(), r.peer_addr.as_str(), r.term), ("Leader", "h:1", Some(3)));
        assert_eq!(row(&member, None).role, "unknown");
    }
}
