//! `raftctl list [CLUSTER]` and `raftctl topology`: the PostgreSQL cluster as
//! `patronictl list` and `patronictl topology` show it (`-e`, `-t`, `-W`/`-w`,
//! `-f pretty|tsv|json|yaml`), plus each member's Raft role.
//!
//! One Range reads the whole `/<namespace>/<scope>/` prefix (through the agent's own
//! [`Dcs::read_cluster`], so the keys are parsed exactly as the agents parse them);
//! the Raft column joins the etcd MemberList by name and asks each member's client URL
//! for its Maintenance.Status. Everything after the fetch is pure and unit tested.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use raftgres_agent::cluster::{format_lsn, ClusterView, Member, Role};
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftgres_proto::etcdserverpb::{Member as RaftMember, MemberListRequest, RangeRequest, StatusRequest, StatusResponse};

use crate::command::cluster::{open, scope_name, ClusterArgs};
use crate::refresh::Refresh;
use crate::table::{Output, Table};
use raftgres_client::{status_error, Api, COMMAND_TIMEOUT};

/// How long one member may take to answer Maintenance.Status.
pub const RAFT_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// Patroni reports lag in MB: bytes / 1 MiB, rounded to an integer.
const MIB: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Show the Pending restart and Tags columns even when no member has a value.
    #[arg(short = 'e', long)]
    pub extended: bool,
    /// Print a timestamp before the table.
    #[arg(short = 't', long)]
    pub timestamp: bool,
    /// Output format (pretty, tsv, json, yaml); overrides -o.
    #[arg(short = 'f', long, value_enum)]
    pub format: Option<Output>,
    #[command(flatten)]
    pub refresh: Refresh,
}

/// One row of `raftctl list`.
#[derive(Debug, Clone, PartialEq)]
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
    /// The member's tags as YAML flow (`{nofailover: true}`), empty without tags.
    pub tags: serde_json::Value,
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
            // A running replica shows its replication state, as patronictl does
            // (`streaming`, or `in archive recovery`).
            let state = match &m.replication_state {
                Some(rs) if !is_leader && m.state == "running" && !rs.is_empty() => rs.clone(),
                _ => m.state.clone(),
            };
            let (receive, replay) = if is_leader { (None, None) } else { (m.receive_lsn, m.replay_lsn) };
            ListRow {
                member: name.clone(),
                host: host_of(m),
                role: if is_leader && m.role == Role::StandbyLeader {
                    "Standby Leader"
                } else if is_leader {
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
                tags: tags_value(&m.tags),
            }
        })
        .collect()
}

/// The tags as an object of their values, custom ones included with their types (`""`
/// without tags, so the cell is empty).
fn tags_value(tags: &raftgres_agent::config::Tags) -> serde_json::Value {
    if tags.is_empty() {
        return "".into();
    }
    serde_json::to_value(tags).unwrap_or_else(|e| format!("(tags not shown: {e})").into())
}

/// patronictl's `topology` order: the leader, then each member under the one it
/// replicates from (`replicatefrom` naming another replica, else the leader), its
/// name indented by depth as `+ name`. Members a loop of `replicatefrom` leaves
/// unreached come last, under the leader.
pub fn topology_sort(view: &ClusterView, rows: Vec<ListRow>) -> Vec<ListRow> {
    let leader = view.leader_name().filter(|l| view.members.contains_key(*l));
    let parent = |name: &str| -> Option<&str> {
        let from = view.members.get(name)?.tags.replicatefrom.as_deref();
        from.filter(|p| *p != name && Some(*p) != leader && view.members.contains_key(*p)).or(leader)
    };
    let mut order: Vec<(String, usize)> = Vec::new();
    let mut stack: Vec<(Option<String>, usize)> = vec![(leader.map(str::to_string), 0)];
    while let Some((name, depth)) = stack.pop() {
        if let Some(n) = &name {
            order.push((n.clone(), depth));
        }
        let children = rows.iter().map(|r| r.member.as_str()).filter(|c| Some(*c) != leader && parent(c) == name.as_deref());
        let children: Vec<&str> = children.filter(|c| !order.iter().any(|(o, _)| o == c)).collect();
        stack.extend(children.into_iter().rev().map(|c| (Some(c.to_string()), depth + 1)));
    }
    for row in &rows {
        if !order.iter().any(|(o, _)| *o == row.member) {
            order.push((row.member.clone(), 1));
        }
    }
    order
        .into_iter()
        .filter_map(|(name, depth)| {
            let row = rows.iter().find(|r| r.member == name)?;
            let member = if depth == 0 { name } else { format!("{}+ {name}", " ".repeat((depth - 1) * 2)) };
            Some(ListRow { member, ..row.clone() })
        })
        .collect()
}

/// How `list` shows the cluster: patronictl's formats, or its `topology` tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Formatted(Output),
    Topology,
}

/// `patronictl list`'s table: the Cluster column (left out of a pretty table, whose
/// title names the cluster), the two lag columns both titled "Lag" when pretty, the
/// Raft column raftgres adds, and Pending restart and Tags when `extended` or when
/// some member has one.
pub fn table(scope: &str, view: &ClusterView, rows: &[ListRow], extended: bool, output: Output) -> Table {
    use serde_json::Value;
    let pretty = output == Output::Pretty;
    let text = |v: &Option<String>| Value::from(v.clone().unwrap_or_default());
    let num = |v: Option<u64>| v.map_or_else(|| Value::from(""), Value::from);
    let mut columns =
        vec!["Cluster", "Member", "Host", "Role", "State", "TL", "Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag", "Raft"];
    let pending = extended || rows.iter().any(|r| r.pending_restart);
    let tags = extended || rows.iter().any(|r| r.tags != "");
    let cells = rows.iter().map(|r| {
        let mut cells = vec![
            scope.into(),
            r.member.clone().into(),
            r.host.clone().into(),
            r.role.clone().into(),
            r.state.clone().into(),
            r.tl.map_or_else(|| Value::from(""), Value::from),
            text(&r.receive_lsn),
            num(r.receive_lag_mb),
            text(&r.replay_lsn),
            num(r.replay_lag_mb),
            r.raft.clone().into(),
        ];
        if pending {
            cells.push(if r.pending_restart { "*" } else { "" }.into());
        }
        if tags {
            cells.push(r.tags.clone());
        }
        cells
    });
    let mut cells: Vec<Vec<Value>> = cells.collect();
    if pending {
        columns.push("Pending restart");
    }
    if tags {
        columns.push("Tags");
    }
    if tags && matches!(output, Output::Pretty | Output::Tsv) {
        for row in &mut cells {
            if let Some(cell) = row.last_mut() {
                *cell = flow_yaml(cell).into();
            }
        }
    }
    if pretty {
        columns.remove(0);
        columns = columns.into_iter().map(|c| if c.ends_with(" Lag") { "Lag" } else { c }).collect();
        for row in &mut cells {
            row.remove(0);
        }
    }
    let sysid = match view.initialize.as_deref() {
        None => "uninitialized",
        Some("") => "initializing",
        Some(id) => id,
    };
    Table {
        title: Some(format!("Cluster: {scope} ({sysid})")),
        columns: columns.into_iter().map(str::to_string).collect(),
        rows: cells,
        omit_empty: true,
    }
}

/// `{"nofailover": true}` → `{nofailover: true}`; an empty cell stays empty.
fn flow_yaml(value: &serde_json::Value) -> String {
    match value.as_object() {
        Some(map) => {
            let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}: {}", crate::table::text(v))).collect();
            format!("{{{}}}", pairs.join(", "))
        }
        None => crate::table::text(value),
    }
}

/// What a pretty table adds under itself: maintenance mode and a scheduled switchover.
pub fn service_info(view: &ClusterView) -> String {
    let mut lines = Vec::new();
    if view.paused() {
        lines.push("Maintenance mode: on".to_string());
    }
    if let Some(at) = view.failover.as_ref().and_then(|f| f.scheduled_at.as_deref()) {
        let mut info = format!("Switchover scheduled at: {at}");
        let failover = view.failover.as_ref();
        for (label, who) in [("from", failover.and_then(|f| f.leader.as_deref())), ("to", failover.and_then(|f| f.member.as_deref()))] {
            if let Some(who) = who {
                info.push_str(&format!("\n{label:>24}: {who}"));
            }
        }
        lines.push(info);
    }
    lines.iter().map(|l| format!(" {l}\n")).collect()
}

/// The cluster as `shape` prints it (a pretty table or the tree with its service info).
pub fn render(scope: &str, view: &ClusterView, rows: Vec<ListRow>, extended: bool, shape: Shape) -> anyhow::Result<String> {
    let (rows, output) = match shape {
        Shape::Topology => (topology_sort(view, rows), Output::Pretty),
        Shape::Formatted(output) => (rows, output),
    };
    let mut out = crate::table::format(output, &table(scope, view, &rows, extended, output), "\t")?;
    if output == Output::Pretty {
        out.push_str(&service_info(view));
    }
    Ok(out)
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

/// One screen of `list`/`topology`: the optional timestamp line and the cluster.
async fn screen(api: &Api, args: &ListArgs, shape: Shape) -> anyhow::Result<String> {
    let (dcs, view) = open(api, &args.cluster).await?;
    let names: Vec<String> = view.members.keys().cloned().collect();
    let raft = raft_roles(api, &names).await;
    let body = render(scope_name(&dcs), &view, rows(&view, &raft), args.extended, shape)?;
    Ok(if args.timestamp { format!("{}\n{body}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S")) } else { body })
}

pub async fn run(api: &Api, args: ListArgs, shape: Shape) -> anyhow::Result<()> {
    args.refresh.repeat(|| screen(api, &args, shape)).await
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
        let cli =
            crate::Cli::parse_from(["raftctl", "list", "demo", "--namespace", "/x/", "-o", "json", "-e", "-t", "-f", "yaml", "-w", "1.5"]);
        assert_eq!(cli.output, Some(Output::Json));
        let crate::Command::List(args) = cli.command else { panic!("not list") };
        assert_eq!((args.cluster.cluster.as_deref(), args.cluster.namespace.as_deref()), (Some("demo"), Some("/x/")));
        assert!(args.extended && args.timestamp && args.format == Some(Output::Yaml));
        assert_eq!(args.refresh.interval().expect("interval"), Some(Duration::from_millis(1500)));
        let cli = crate::Cli::parse_from(["raftctl", "list", "-W"]);
        let crate::Command::List(args) = cli.command else { panic!("not list") };
        assert_eq!((args.cluster.cluster, args.cluster.namespace), (None, None));
        assert_eq!(args.refresh.interval().expect("interval"), Some(Duration::from_secs(2)));
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

        let mut standby = view.clone();
        standby.members.get_mut("node1").expect("node1").role = Role::StandbyLeader;
        assert_eq!(super::rows(&standby, &raft())[0].role, "Standby Leader", "a standby cluster's leader, as patronictl shows it");

        let out = render("demo", &view, rows.clone(), false, Shape::Formatted(Output::Pretty)).expect("pretty");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("+ Cluster: demo (7301234567890123456) --"), "{out}");
        assert!(lines[0].ends_with("-+"), "{out}");
        assert_eq!(lines[0].len(), lines[2].len(), "{out}");
        assert!(lines[1].starts_with("| Member | Host"), "{out}");
        assert!(lines[3].contains("| node1  | 127.0.0.1:5432 | Leader  | running   | 1  |"), "{out}");
        assert!(lines[4].contains("| 0/6000000   | 0   | 0/5000000  | 16  | follower "), "{out}");
        assert!(!out.contains("Maintenance"), "{out}");

        let json = render("demo", &view, rows.clone(), false, Shape::Formatted(Output::Json)).expect("json");
        let json: serde_json::Value = serde_json::from_str(&json).expect("valid json");
        assert_eq!(json[1]["Replay Lag"], 16);
        assert_eq!(json[1]["TL"], 1);
        assert_eq!(json[1]["Cluster"], "demo");
        assert!(json[0].get("Receive Lag").is_none(), "empty cells left out: {json}");
        let tsv = render("demo", &view, rows, false, Shape::Formatted(Output::Tsv)).expect("tsv");
        assert_eq!(tsv.lines().nth(2), Some("demo\tnode2\t127.0.0.1:5433\tReplica\tstreaming\t1\t0/6000000\t0\t0/5000000\t16\tfollower"));
        assert!(!tsv.contains("Maintenance"), "service info only under pretty tables");
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
        view.failover = Some(raftgres_agent::cluster::FailoverRequest {
            leader: Some("node1".into()),
            member: Some("node2".into()),
            scheduled_at: Some("2026-12-07T03:00:00+00:00".into()),
        });
        let out = render("demo", &view, rows(&view, &raft()), false, Shape::Formatted(Output::Pretty)).expect("pretty");
        let footer = " Maintenance mode: on\n Switchover scheduled at: 2026-12-07T03:00:00+00:00\n                    from: node1\n                      to: node2\n";
        assert!(out.ends_with(&format!("+\n{footer}")), "{out}");
    }

    #[test]
    fn list_shows_pending_restart_only_when_needed() {
        let mut view = three_nodes();
        let pretty = |view: &ClusterView, extended| {
            render("demo", view, rows(view, &raft()), extended, Shape::Formatted(Output::Pretty)).expect("pretty")
        };
        assert!(!pretty(&view, false).contains("Pending restart"));
        assert!(pretty(&view, true).contains("| Pending restart | Tags |"), "-e shows them always");
        if let Some(m) = view.members.values_mut().next() {
            m.pending_restart = true;
        }
        let out = pretty(&view, false);
        assert!(out.contains("Pending restart") && out.contains("| *") && !out.contains("Tags"), "{out}");
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
        let out = render("demo", &view, rows, false, Shape::Formatted(Output::Pretty)).expect("pretty");
        assert!(out.starts_with("+ Cluster: demo (uninitialized) -"), "{out}");
        view.initialize = Some(String::new());
        let out = render("demo", &view, super::rows(&view, &BTreeMap::new()), false, Shape::Formatted(Output::Pretty)).expect("pretty");
        assert!(out.starts_with("+ Cluster: demo (initializing) -"), "{out}");
    }

    #[test]
    fn topology_nests_replicas_under_their_upstream_and_shows_tags() {
        let mut view = three_nodes();
        if let Some(m) = view.members.get_mut("node2") {
            m.tags.replicatefrom = Some("node3".into());
            m.tags.nofailover = true;
        }
        if let Some(m) = view.members.get_mut("node1") {
            m.tags.custom = [("dc", serde_json::json!("east")), ("rack", serde_json::json!("3"))].map(|(k, v)| (k.to_string(), v)).into();
        }
        let out = render("demo", &view, rows(&view, &raft()), false, Shape::Topology).expect("topology");
        assert!(out.contains("| {dc: east, rack: 3} "), "custom tags: {out}");
        let names: Vec<&str> = out.lines().skip(3).take(3).map(|l| l.split('|').nth(1).unwrap_or("")[1..].trim_end()).collect();
        assert_eq!(names, ["node1", "+ node3", "  + node2"], "{out}");
        assert!(out.contains("| {nofailover: true, replicatefrom: node3} |"), "tags as YAML flow: {out}");
        let json = render("demo", &view, rows(&view, &raft()), false, Shape::Formatted(Output::Json)).expect("json");
        assert!(json.contains("\"Tags\": {\"nofailover\": true, \"replicatefrom\": \"node3\"}"), "{json}");
        assert!(json.contains("\"Tags\": {\"dc\": \"east\", \"rack\": \"3\"}"), "custom tags keep their types: {json}");
        // A replicatefrom loop leaves both unreached from the leader: they still show.
        if let Some(m) = view.members.get_mut("node3") {
            m.tags.replicatefrom = Some("node2".into());
        }
        let sorted: Vec<String> = topology_sort(&view, rows(&view, &raft())).into_iter().map(|r| r.member).collect();
        assert_eq!(sorted, ["node1", "+ node2", "+ node3"]);
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
