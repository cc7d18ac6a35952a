//! What the agents keep in the store, as Patroni keeps it: the keys under
//! `/<namespace>/<scope>/` and their JSON values. Everything here is plain data with
//! serde shapes matching Patroni's, so `etcdctl get --prefix /service/<scope>/` reads
//! like a Patroni cluster and tools written for Patroni's values keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Tags;

/// The key names of one cluster (`/service/demo/leader`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `/<namespace>/<scope>/`, always with both slashes.
    pub prefix: String,
}

impl Keys {
    pub fn new(namespace: &str, scope: &str) -> Self {
        let namespace = namespace.trim_matches('/');
        let prefix = if namespace.is_empty() { format!("/{scope}/") } else { format!("/{namespace}/{scope}/") };
        Self { prefix }
    }
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }
    pub fn members_prefix(&self) -> String {
        format!("{}members/", self.prefix)
    }
    pub fn member(&self, name: &str) -> String {
        format!("{}members/{name}", self.prefix)
    }
    pub fn config(&self) -> String {
        format!("{}config", self.prefix)
    }
    pub fn initialize(&self) -> String {
        format!("{}initialize", self.prefix)
    }
    pub fn history(&self) -> String {
        format!("{}history", self.prefix)
    }
    pub fn status(&self) -> String {
        format!("{}status", self.prefix)
    }
    pub fn failover(&self) -> String {
        format!("{}failover", self.prefix)
    }
    pub fn sync(&self) -> String {
        format!("{}sync", self.prefix)
    }
    /// `events/`: the HA timeline, one key per event, `<unix ms>-<member>` (time-ordered).
    pub fn events_prefix(&self) -> String {
        format!("{}events/", self.prefix)
    }
    pub fn event(&self, unix_ms: u128, member: &str) -> String {
        format!("{}events/{unix_ms:013}-{member}", self.prefix)
    }
}

/// PostgreSQL's role as a member reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Replica,
    /// The leader of a standby cluster: a replica of another cluster's primary that the
    /// other members follow (published for the node holding the key; PostgreSQL itself
    /// answers `replica`).
    StandbyLeader,
    /// Role not known (PostgreSQL stopped and never seen running).
    #[default]
    Uninitialized,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::StandbyLeader => "standby_leader",
            Role::Uninitialized => "uninitialized",
        }
    }

    /// The role of a leader the other members follow: a primary or a standby leader.
    pub fn leads(self) -> bool {
        matches!(self, Role::Primary | Role::StandbyLeader)
    }
}

/// The value of `members/<name>`: what a member says about itself (Patroni's member data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Member {
    /// `postgres://host:port/postgres`
    pub conn_url: String,
    /// `http://host:port/patroni`
    pub api_url: String,
    /// running, starting, stopped, stopping, crashed, creating replica, ...
    pub state: String,
    pub role: Role,
    /// The agent's version.
    pub version: String,
    /// Primary: its current WAL write position. Replica: the higher of received and replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlog_location: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<u64>,
    /// `streaming` while the WAL receiver streams, `in archive recovery` for another
    /// server in recovery (Patroni's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// raftgres's own: why the member stays out of leader races for a while (it gave up
    /// being primary on its own; see `ha::decide::standing_aside`). No switchover may
    /// name it meanwhile. Patroni ignores the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stands_aside: Option<String>,
}

impl Member {
    /// The member without its WAL positions, which change while the primary writes
    /// anything: what is left changes only when the member does.
    pub fn without_positions(&self) -> Self {
        Self { xlog_location: None, receive_lsn: None, replay_lsn: None, ..self.clone() }
    }

    /// Why the member would refuse the leader key if a switchover named it: tagged
    /// nofailover, or standing aside a while after giving its key up (`stands_aside`).
    pub fn unwilling(&self) -> Option<String> {
        if self.tags.nofailover {
            return Some("is tagged nofailover".into());
        }
        self.stands_aside.as_ref().map(|why| format!("stands aside for now ({why})"))
    }

    /// The member's WAL receiver streams.
    pub fn streaming(&self) -> bool {
        self.replication_state.as_deref() == Some(crate::postgres::sql::STREAMING)
    }

    /// (host, port) of `conn_url`.
    pub fn host_port(&self) -> Option<(String, u16)> {
        let rest = self.conn_url.strip_prefix("postgres://")?;
        let hostport = rest.split('/').next()?;
        let hostport = hostport.rsplit('@').next()?;
        let (host, port) = hostport.rsplit_once(':')?;
        Some((host.trim_matches(['[', ']']).to_string(), port.parse().ok()?))
    }
}

/// One promotion in `/history`: `[timeline, lsn, reason, timestamp, new_leader]`, as
/// Patroni writes it (timeline and LSN of the switch point of the timeline that ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry(pub u32, pub u64, pub String, pub String, pub String);

/// The value of `/status`: the primary's WAL position and its slots' positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterStatus {
    pub optime: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slots: BTreeMap<String, u64>,
}

/// A planned switchover or a manual failover (`/failover`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FailoverRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
}

/// The value of `/sync` (Patroni's): which members PostgreSQL's
/// `synchronous_standby_names` waits for. Only they (and the primary) may be promoted
/// automatically in synchronous mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncState {
    #[serde(default)]
    pub leader: Option<String>,
    /// Comma-separated member names, or null when nobody is synchronous.
    #[serde(default)]
    pub sync_standby: Option<String>,
}

impl SyncState {
    pub fn members(&self) -> Vec<String> {
        self.sync_standby
            .as_deref()
            .map(|s| s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// The first words of the event an agent records when it stops while the cluster is
/// paused (`ha::shutdown::plan`): until that member records another one, its agent is away
/// and its PostgreSQL runs unmanaged (`raftctl resume` refuses then).
pub const AWAY_WHILE_PAUSED: &str = "shutting down (cluster paused)";

/// One HA event in `events/` (what a node decided, and when).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub member: String,
    pub event: String,
}

/// The leader key's holder and the key's revision (for compare-and-swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    pub name: String,
    pub lease: i64,
    pub mod_revision: i64,
}

/// One consistent read of the whole cluster prefix.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterView {
    /// The store revision of this read.
    pub revision: i64,
    /// The system identifier in `/initialize`; `Some("")` while a node is bootstrapping.
    pub initialize: Option<String>,
    /// The lease and mod revision of `/initialize` (0 when absent or on no lease).
    pub initialize_lease: i64,
    pub initialize_mod_revision: i64,
    pub leader: Option<LeaderKey>,
    /// Members by name. A member whose value does not parse is left out (and logged).
    pub members: BTreeMap<String, Member>,
    /// `/config` as stored (JSON object), with its mod revision.
    pub config: Option<(serde_json::Value, i64)>,
    pub history: Vec<HistoryEntry>,
    pub status: Option<ClusterStatus>,
    pub failover: Option<FailoverRequest>,
    /// `/sync` with its mod revision.
    pub sync: Option<(SyncState, i64)>,
}

impl ClusterView {
    pub fn leader_name(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.name.as_str())
    }

    pub fn leader_member(&self) -> Option<&Member> {
        self.leader_name().and_then(|n| self.members.get(n))
    }

    /// The synchronous standbys `/sync` names for the current leader (empty if `/sync`
    /// belongs to an earlier leader or is missing).
    pub fn sync_standbys(&self) -> Vec<String> {
        match (&self.sync, self.leader_name()) {
            (Some((s, _)), Some(l)) if s.leader.as_deref() == Some(l) => s.members(),
            _ => Vec::new(),
        }
    }

    /// The members the primary `me` keeps a physical slot for: every other one but those
    /// tagged `nostream` (they never stream; Patroni's rule).
    pub fn slot_members(&self, me: &str) -> Vec<&str> {
        self.members.iter().filter(|(n, m)| *n != me && !m.tags.nostream).map(|(n, _)| n.as_str()).collect()
    }

    /// `pause: true` in `/config`.
    pub fn paused(&self) -> bool {
        self.config.as_ref().and_then(|(c, _)| c.get("pause")).and_then(serde_json::Value::as_bool).unwrap_or(false)
    }
}

/// Formats an LSN as PostgreSQL prints it (`0/3000060`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses PostgreSQL's `X/Y` LSN text.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_patronis_layout() {
        let k = Keys::new("/service/", "demo");
        assert_eq!(k.leader(), "/service/demo/leader");
        assert_eq!(k.member("node1"), "/service/demo/members/node1");
        assert_eq!(Keys::new("", "x").config(), "/x/config");
    }

    #[test]
    fn lsn_round_trips() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x3000060));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(format_lsn(0x1_0000_0A00), "1/A00");
        assert_eq!(parse_lsn("nope"), None);
    }

    #[test]
    fn the_primary_keeps_no_slot_for_itself_nor_a_nostream_member() {
        let mut v = ClusterView::default();
        for (name, nostream) in [("n1", false), ("n2", false), ("n3", true)] {
            v.members.insert(name.into(), Member { tags: Tags { nostream, ..Default::default() }, ..Default::default() });
        }
        assert_eq!(v.slot_members("n1"), ["n2"]);
    }

    #[test]
    fn member_json_is_patronis() {
        let m = Member {
            conn_url: "postgres://127.0.0.1:5432/postgres".into(),
            api_url: "http://127.0.0.1:8008/patroni".into(),
            state: "running".into(),
            role: Role::Primary,
            version: "0.1.0".into(),
            xlog_location: Some(100),
            timeline: Some(1),
            ..Default::default()
        };
        let json = serde_json::to_value(&m).expect("json");
        assert_eq!(json["role"], "primary");
        assert_eq!(json["xlog_location"], 100);
        assert!(json.get("tags").is_none());
        assert_eq!(m.host_port(), Some(("127.0.0.1".to_string(), 5432)));
        let h = HistoryEntry(1, 0x3000060, "no recovery target specified".into(), "2026-01-01T00:00:00+00:00".into(), "node2".into());
        assert_eq!(
            serde_json::to_string(&h).expect("json"),
            r#"[1,50331744,"no recovery target specified","2026-01-01T00:00:00+00:00","node2"]"#
        );
    }
}
