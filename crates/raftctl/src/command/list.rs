//! `raftctl list [SCOPE]`: the PostgreSQL cluster as `patronictl list` shows it, plus
//! each member's Raft role.
//!
//! One Range reads the whole `/<namespace>/<scope>/` prefix (through the agent's own
//! [`Dcs::read_cluster`], so the keys are parsed exactly as the agents parse them);
//! the Raft column joins the etcd MemberList by name and asks each member's client URL
//! for its Maintenance.Status. Everything after the fetch is pure and unit tested.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use raftgres_agent::cluster::{format_lsn, ClusterView, Keys, Member};
use raftgres_agent::dcs::Dcs;
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftgres_proto::etcdserverpb::{Member as RaftMember, MemberListRequest, RangeRequest, StatusRequest, StatusResponse};
use serde::Serialize;

use crate::command::cluster::DEFAULT_NAMESPACE;
use crate::table;
use crate::table::Output;
use raftgres_client::{status_error, Api, COMMAND_TIMEOUT};

/// How long one member may take to answer Maintenance.Status.
pub const RAFT_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// Patroni reports lag in MB: bytes / 1 MiB, rounded to an integer.
const MIB: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The cluster (Patroni's scope); may be omitted when the namespace holds just one.
    pub scope: Option<String>,
    /// The key prefix the clusters live under (Patroni's namespace; default /service/).
    #[arg(long)]
    pub namespace: Option<String>,
}

/// One row of `raftctl list`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ListRow {
    pub member: String,
    pub host: String,
    pub role: String,
    pub state: String,
    pub tl: Option<u32>,
    pub receive_lsn: Option<String>,
    pub receive_lag_mb: Option<u64>,
    pub replay_lsn: Option<String>,
    pub replay_lag_mb: Option<u64>,
    pub raft: String,
    /// A parameter change waits for a restart of this member.
    pub pending_restart: bool,
}

/// `/service/` → `/service/`, `service` → `/service/`, `` → `/`.
pub fn namespace_prefix(namespace: &str) -> String {
    let ns = namespace.trim_matches('/');
    if ns.is_empty() {
        "/".to_string()
    } else {
        format!("/{ns}/")
    }
}

/// The scopes that have keys under the namespace prefix (`/service/demo/leader` → `demo`).
pub fn scopes_from_keys<'a>(prefix: &str, keys: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    keys.into_iter()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|rest| rest.split_once('/'))
        .map(|(scope, _)| scope.to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The scope to show: the one asked for, or the only one there is.
pub fn pick_scope(asked: Option<String>, scopes: &BTreeSet<String>, prefix: &str) -> anyhow::Result<String> {
    if let Some(scope) = asked {
        return Ok(scope);
    }
    let mut iter = scopes.iter();
    match (iter.next(), iter.next()) {
        (Some(only), None) => Ok(only.clone()),
        (None, _) => bail!("no cluster under {prefix} (is an agent running? `raftctl list --namespace ...` for another namespace)"),
        (Some(_), Some(_)) => {
            let names: Vec<&str> = scopes.iter().map(String::as_str).collect();
            bail!("several clusters under {prefix}: {}; name one: raftctl list SCOPE", names.join(", "))
        }
    }
}

/// What the Raft column says for a Patroni member: its Raft node (matched by name) and
/// what that node answered (`None`: no answer within the timeout).
pub fn raft_cell(node: Option<&RaftMember>, status: Option<&StatusResponse>) -> String {
    let Some(node) = node else {
        return "not a raft member".to_string();
    };
    match status {
        None => "unreachable".to_string(),
        Some(s) if s.leader == node.id && s.leader != 0 => format!("leader (term {})", s.raft_term),
        Some(s) if s.is_learner || node.is_learner => "learner".to_string(),
        Some(_) => "follower".to_string(),
    }
}

/// `postgres://h:5432/postgres` → `h:5432` (IPv6 hosts in brackets).
fn host_of(member: &Member) -> String {
    match member.host_port() {
        Some((host, port)) if host.contains(':') => format!("[{host}]:{port}"),
        Some((host, port)) => format!("{host}:{port}"),
        None => String::new(),
    }
}

fn lag_mb(primary: Option<u64>, lsn: Option<u64>) -> Option<u64> {
    let bytes = primary?.saturating_sub(lsn?);
    Some((bytes + MIB / 2) / MIB)
}

/// The rows of the table, sorted by member name. `raft` maps member name → Raft column.
pub fn rows(view: &ClusterView, raft: &BTreeMap<String, String>) -> Vec<ListRow> {
    let leader = view.leader_name();
    let primary_pos = view.leader_member().and_then(|m| m.xlog_location).or(view.status.as_ref().map(|s| s.optime));
    let sync = view.sync_standbys();
    // `view.members` is a BTreeMap: already sorted by name.
    view.members
        .iter()
        .map(|(name, m)| {
            let is_leader = leader == Some(name.as_str());
            let streaming = m.replication_state.as_deref() == Some("streaming");
            let state = if !is_leader && m.state == "running" && streaming { "streaming".to_string() } else { m.state.clone() };
            let (receive, replay) = if is_leader { (None, None) } else { (m.receive_lsn, m.replay_lsn) };
            ListRow {
                member: name.clone(),
                host: host_of(m),
                role: if is_leader {
                    "Leader"
                } else if sync.contains(name) {
                    "Sync Standby"
                } else {
                    "Replica"
                }
                .to_string(),
                state,
                tl: m.timeline,
                receive_lsn: receive.map(format_lsn),
                receive_lag_mb: lag_mb(primary_pos, receive),
                replay_lsn: replay.map(format_lsn),
                replay_lag_mb: lag_mb(primary_pos, replay),
                raft: raft.get(name).cloned().unwrap_or_else(|| "unknown".to_string()),
                pending_restart: m.pending_restart,
            }
        })
        .collect()
}

/// The table with `patronictl list`'s title in its top border and the maintenance footer.
pub fn render(scope: &str, view: &ClusterView, rows: &[ListRow]) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.member.clone(),
                r.host.clone(),
                r.role.clone(),
                r.state.clone(),
                r.tl.map(|t| t.to_string()).unwrap_or_default(),
                opt(&r.receive_lsn),
                num(r.receive_lag_mb),
                opt(&r.replay_lsn),
                num(r.replay_lag_mb),
                r.raft.clone(),
            ]
        })
        .collect();
    let header = ["Member", "Host", "Role", "State", "TL", "Receive LSN", "Lag", "Replay LSN", "Lag", "Raft"];
    // As patronictl: a "Pending restart" column only when some member needs one.
    let pending = rows.iter().any(|r| r.pending_restart);
    let mut header = header.to_vec();
    let mut cells = cells;
    if pending {
        header.push("Pending restart");
        for (row, cell) in rows.iter().zip(cells.iter_mut()) {
            cell.push(if row.pending_restart { "*".to_string() } else { String::new() });
        }
    }
    let body = table::render(&header, &cells);
    let sysid = view.initialize.as_deref().filter(|s| !s.is_empty()).unwrap_or("uninitialized");
    let title = format!("+ Cluster: {scope} ({sysid}) ");
    let (border, rest) = body.split_once('\n').unwrap_or((body.as_str(), ""));
    // The border is ASCII, so a char count of the title is a valid byte index into it.
    let title_len = title.chars().count();
    let top = if title_len + 1 < border.len() { format!("{title}{}", &border[title_len..]) } else { format!("{title}-+") };
    let mut out = format!("{top}\n{rest}");
    if view.paused() {
        out.push_str(" Maintenance mode: on\n");
    }
    out
}

/// Raft column for each Patroni member: MemberList, then each node's Status (1 s each,
/// all at once). A failing MemberList leaves the column "unknown" rather than failing.
pub async fn raft_roles(api: &Api, names: &[String]) -> BTreeMap<String, String> {
    let list = tokio::time::timeout(COMMAND_TIMEOUT, api.cluster().member_list(MemberListRequest { linearizable: false })).await;
    let raft_members = match list {
        Ok(Ok(resp)) => resp.into_inner().members,
        _ => return BTreeMap::new(),
    };
    let lookups = names.iter().map(|name| {
        let node = raft_members.iter().find(|m| &m.name == name);
        async move {
            let status = match node {
                Some(n) => node_status(api, n).await,
                None => None,
            };
            (name.clone(), raft_cell(node, status.as_ref()))
        }
    });
    futures::future::join_all(lookups).await.into_iter().collect()
}

async fn node_status(api: &Api, node: &RaftMember) -> Option<StatusResponse> {
    let url = node.client_ur_ls.first()?;
    let ask = async {
        let channel = api.connect_member(url).await.ok()?;
        MaintenanceClient::new(channel).status(StatusRequest {}).await.ok().map(|r| r.into_inner())
    };
    tokio::time::timeout(RAFT_STATUS_TIMEOUT, ask).await.ok().flatten()
}

/// The scopes under the namespace, from one keys-only Range.
pub async fn list_scopes(api: &Api, prefix: &str) -> anyhow::Result<BTreeSet<String>> {
    let key = prefix.as_bytes().to_vec();
    let req = RangeRequest { range_end: raftgres_agent::dcs::prefix_end(&key), key, keys_only: true, ..Default::default() };
    let resp = tokio::time::timeout(COMMAND_TIMEOUT, KvClient::new(api.channel.clone()).range(req))
        .await
        .with_context(|| format!("reading {prefix}: no answer within {COMMAND_TIMEOUT:?}"))?
        .map_err(status_error)?
        .into_inner();
    let keys: Vec<String> = resp.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect();
    Ok(scopes_from_keys(prefix, keys.iter().map(String::as_str)))
}

pub async fn run(api: &Api, args: ListArgs, output: Output) -> anyhow::Result<()> {
    let namespace = args.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    let prefix = namespace_prefix(namespace);
    let scope = match args.scope {
        Some(s) => s,
        None => pick_scope(None, &list_scopes(api, &prefix).await?, &prefix)?,
    };
    let dcs = Dcs::new(api.channel.clone(), Keys::new(namespace, &scope), COMMAND_TIMEOUT);
    let view = dcs.read_cluster().await.with_context(|| format!("reading {prefix}{scope}/"))?;
    if view.members.is_empty() {
        bail!("no cluster {scope} under {prefix}");
    }
    let names: Vec<String> = view.members.keys().cloned().collect();
    let raft = raft_roles(api, &names).await;
    let rows = rows(&view, &raft);
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => print!("{}", render(&scope, &view, &rows)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use raftgres_agent::cluster::{ClusterStatus, LeaderKey, Role};

    fn member(port: u16, role: Role, state: &str) -> Member {
        Member {
            conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
            api_url: format!("http://127.0.0.1:{}/patroni", port + 3000),
            state: state.into(),
            role,
            timeline: Some(1),
            ..Default::default()
        }
    }

    /// node1 primary at 0/6000000; node2 streaming, 16 MiB behind on replay; node3 a
    /// running replica not streaming, 32 MiB behind.
    fn three_nodes() -> ClusterView {
        let primary = Member { xlog_location: Some(0x600_0000), ..member(5432, Role::Primary, "running") };
        let r1 = Member {
            receive_lsn: Some(0x600_0000),
            replay_lsn: Some(0x500_0000),
            replication_state: Some("streaming".into()),
            ..member(5433, Role::Replica, "running")
        };
        let r2 = Member { receive_lsn: Some(0x400_0000), replay_lsn: Some(0x400_0000), ..member(5434, Role::Replica, "running") };
        let mut members = BTreeMap::new();
        members.insert("node3".to_string(), r2);
        members.insert("node1".to_string(), primary);
        members.insert("node2".to_string(), r1);
        ClusterView {
            initialize: Some("7301234567890123456".into()),
            leader: Some(LeaderKey { name: "node1".into(), lease: 1, mod_revision: 5 }),
            members,
            status: Some(ClusterStatus { optime: 0x600_0000, ..Default::default() }),
            ..Default::default()
        }
    }

    fn raft() -> BTreeMap<String, String> {
        [("node1", "leader (term 2)"), ("node2", "follower"), ("node3", "unreachable")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_list_args() {
        let cli = crate::Cli::parse_from(["raftctl", "list", "demo", "--namespace", "/x/", "-o", "json"]);
        let crate::Command::List(args) = cli.command else { panic!("not list") };
        assert_eq!((args.scope.as_deref(), args.namespace.as_deref()), (Some("demo"), Some("/x/")));
        let cli = crate::Cli::parse_from(["raftctl", "list"]);
        let crate::Command::List(args) = cli.command else { panic!("not list") };
        assert_eq!((args.scope, args.namespace), (None, None));
    }

    #[test]
    fn list_primary_and_two_replicas_with_lag() {
        let view = three_nodes();
        let rows = rows(&view, &raft());
        let names: Vec<&str> = rows.iter().map(|r| r.member.as_str()).collect();
        assert_eq!(names, ["node1", "node2", "node3"]);

        let p = &rows[0];
        assert_eq!((p.role.as_str(), p.state.as_str(), p.host.as_str()), ("Leader", "running", "127.0.0.1:5432"));
        assert_eq!((p.receive_lsn.as_deref(), p.receive_lag_mb, p.replay_lag_mb), (None, None, None));
        assert_eq!(p.raft, "leader (term 2)");

        let s = &rows[1];
        assert_eq!((s.role.as_str(), s.state.as_str()), ("Replica", "streaming"));
        assert_eq!((s.receive_lsn.as_deref(), s.receive_lag_mb), (Some("0/6000000"), Some(0)));
        assert_eq!((s.replay_lsn.as_deref(), s.replay_lag_mb), (Some("0/5000000"), Some(16)));

        let r = &rows[2];
        assert_eq!((r.role.as_str(), r.state.as_str(), r.raft.as_str()), ("Replica", "running", "unreachable"));
        assert_eq!((r.receive_lag_mb, r.replay_lag_mb), (Some(32), Some(32)));

        let out = render("demo", &view, &rows);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("+ Cluster: demo (7301234567890123456) --"), "{out}");
        assert!(lines[0].ends_with("-+"), "{out}");
        assert_eq!(lines[0].len(), lines[2].len(), "{out}");
        assert!(lines[1].starts_with("| Member | Host"), "{out}");
        assert!(lines[3].contains("| node1  | 127.0.0.1:5432 | Leader  | running   | 1  |"), "{out}");
        assert!(lines[4].contains("| 0/6000000   | 0   | 0/5000000  | 16  | follower "), "{out}");
        assert!(!out.contains("Maintenance"), "{out}");

        let json = serde_json::to_value(&rows).expect("json");
        assert_eq!(json[1]["replay_lag_mb"], 16);
        assert_eq!(json[1]["tl"], 1);
        assert!(json[0]["receive_lag_mb"].is_null());
    }

    #[test]
    fn list_lag_falls_back_to_status_optime() {
        let mut view = three_nodes();
        if let Some(m) = view.members.get_mut("node1") {
            m.xlog_location = None;
        }
        view.status = Some(ClusterStatus { optime: 0x700_0000, ..Default::default() });
        let rows = rows(&view, &raft());
        assert_eq!(rows[1].receive_lag_mb, Some(16));
        view.status = None;
        let rows = super::rows(&view, &raft());
        assert_eq!((rows[1].receive_lag_mb, rows[1].receive_lsn.as_deref()), (None, Some("0/6000000")));
    }

    #[test]
    fn list_paused_cluster_has_footer() {
        let mut view = three_nodes();
        view.config = Some((serde_json::json!({"pause": true, "ttl": 30}), 3));
        let out = render("demo", &view, &rows(&view, &raft()));
        assert!(out.ends_with("+\n Maintenance mode: on\n"), "{out}");
    }

    #[test]
    fn list_shows_pending_restart_only_when_needed() {
        let mut view = three_nodes();
        assert!(!render("demo", &view, &rows(&view, &raft())).contains("Pending restart"));
        if let Some(m) = view.members.values_mut().next() {
            m.pending_restart = true;
        }
        let out = render("demo", &view, &rows(&view, &raft()));
        assert!(out.contains("Pending restart") && out.contains("| *"), "{out}");
    }

    #[test]
    fn list_without_leader_key_is_all_replicas() {
        let mut view = three_nodes();
        view.leader = None;
        view.initialize = None;
        let rows = rows(&view, &BTreeMap::new());
        assert!(rows.iter().all(|r| r.role == "Replica"), "{rows:?}");
        assert!(rows.iter().all(|r| r.raft == "unknown"), "{rows:?}");
        // No leader member: lag is measured from /status.
        assert_eq!(rows[2].receive_lag_mb, Some(32));
        let out = render("demo", &view, &rows);
        assert!(out.starts_with("+ Cluster: demo (uninitialized) -"), "{out}");
    }

    #[test]
    fn list_raft_cell() {
        let node = RaftMember { id: 7, name: "node1".into(), ..Default::default() };
        let lead = StatusResponse { leader: 7, raft_term: 4, ..Default::default() };
        let other = StatusResponse { leader: 8, raft_term: 4, ..Default::default() };
        let learner = RaftMember { is_learner: true, ..node.clone() };
        assert_eq!(raft_cell(Some(&node), Some(&lead)), "leader (term 4)");
        assert_eq!(raft_cell(Some(&node), Some(&other)), "follower");
        assert_eq!(raft_cell(Some(&learner), Some(&other)), "learner");
        assert_eq!(raft_cell(Some(&node), None), "unreachable");
        assert_eq!(raft_cell(None, None), "not a raft member");
    }

    #[test]
    fn list_scope_discovery() {
        let keys = ["/service/demo/leader", "/service/demo/members/n1", "/service/other/config", "/service/stray"];
        let scopes = scopes_from_keys("/service/", keys);
        assert_eq!(scopes.iter().map(String::as_str).collect::<Vec<_>>(), ["demo", "other"]);
        let err = pick_scope(None, &scopes, "/service/").expect_err("ambiguous");
        assert!(format!("{err}").contains("demo, other"), "{err}");
        assert!(pick_scope(None, &BTreeSet::new(), "/service/").is_err());
        let one: BTreeSet<String> = ["demo".to_string()].into_iter().collect();
        assert_eq!(pick_scope(None, &one, "/service/").expect("one"), "demo");
        assert_eq!(namespace_prefix("service"), "/service/");
    }
}
