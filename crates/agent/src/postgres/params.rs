//! The PostgreSQL parameters the agent writes, and which of them it owns (Patroni's
//! rules). Three sources: the agent's own settings, `/config`'s
//! `postgresql.parameters` (cluster-wide) and the node file's (this node's). Who wins:
//!
//! - **The agent's own** (always last, so nothing overrides them): `listen_addresses` and
//!   `port` from the node's `postgresql.listen`, the socket directory the agent connects
//!   through, `cluster_name`, `hba_file`, `hot_standby = on`, `wal_level` at least
//!   `replica`, and the replication settings (`primary_conninfo`, `primary_slot_name`,
//!   `recovery_target_timeline`).
//! - **Cluster-wide** ([`CLUSTER_WIDE`]: the settings a replica must not have lower than
//!   its primary): from `/config` only; a node file's value is warned about and dropped.
//! - Everything else: `/config`, then the node file's value wins.
//!
//! [`verdict`] says what becomes of one parameter set in one place; the configuration
//! walk (`config_keys`) uses it so a refused one is refused with one error when it is
//! written (`raftctl edit-config -p port=...` is refused, not applied on every node),
//! and a warned one gets one startup warning. [`parameters`] merges them, and keeps the
//! agent's own even over a `/config` written without that check.
//! `unix_socket_directories` is this node's: its first directory is where the agent
//! connects (`PostgresConfig::socket_dir`).
//!
//! **A replica never runs with less than its primary** ([`raise_to_primary`], Patroni's
//! `effective_configuration`): PostgreSQL stops a hot standby whose `max_connections`,
//! `max_worker_processes`, `max_wal_senders`, `max_prepared_transactions` or
//! `max_locks_per_transaction` is below the primary's ("insufficient parameter
//! settings"). A standby's control file records the primary's values (from the WAL
//! record a primary writes when it starts with new ones), so a replica writes the
//! larger of `/config`'s value and the recorded one. Any restart order then works: a
//! value raised is safe once the replica restarts, and a value lowered on a replica
//! restarted before its primary keeps the primary's until the primary has restarted
//! (the replica then shows a pending restart, and the next one lowers it).

use std::collections::BTreeMap;

use serde_json::Value;

use super::conf::{quote, render_value, Upstream};
use crate::config::PostgresConfig;

/// Where a parameter is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/config` or `bootstrap.dcs` (`postgresql.parameters`): every node.
    Cluster,
    /// The node file's `postgresql.parameters`.
    Node,
}

/// What becomes of a parameter set in a scope (when not simply applied), and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Dropped, with a warning giving this reason.
    Warned(&'static str),
    /// Refused, the error giving this reason.
    Refused(&'static str),
}

/// Values `/config` sets for every node; a replica must not have fewer than its
/// primary (Patroni keeps them in the DCS for that reason).
pub const CLUSTER_WIDE: [&str; 8] = [
    "max_connections",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_prepared_transactions",
    "wal_log_hints",
    "track_commit_timestamp",
    "max_wal_senders",
    "max_replication_slots",
];

/// The settings a standby needs at least as high as its primary's: (parameter, its
/// line in `pg_controldata`'s output, PostgreSQL's default when it is not set).
pub const RECORDED: [(&str, &str, i64); 5] = [
    ("max_connections", "max_connections setting", 100),
    ("max_worker_processes", "max_worker_processes setting", 8),
    ("max_wal_senders", "max_wal_senders setting", 10),
    ("max_prepared_transactions", "max_prepared_xacts setting", 0),
    ("max_locks_per_transaction", "max_locks_per_xact setting", 64),
];

/// Set by the agent from the node's own settings, whatever a parameter says.
const NODE_OWNED: [(&str, &str); 2] = [
    ("listen_addresses", "the agent sets it from each node's postgresql.listen"),
    ("port", "the agent sets it from each node's postgresql.listen (one port per node, not cluster-wide)"),
];

/// Set by the agent for replication and failover.
const AGENT_OWNED: [&str; 5] = ["cluster_name", "hba_file", "primary_conninfo", "primary_slot_name", "recovery_target_timeline"];

/// What becomes of parameter `name = value` set in `scope`; None when it is applied.
pub fn verdict(scope: Scope, name: &str, value: &Value) -> Option<Fate> {
    let refuse = |why: &'static str| Some(Fate::Refused(why));
    if let Some((_, why)) = NODE_OWNED.iter().find(|(n, _)| *n == name) {
        return refuse(why);
    }
    if AGENT_OWNED.contains(&name) {
        return refuse("the agent sets it (replication and failover depend on it)");
    }
    match name {
        "hot_standby" if !is_on(value) => return refuse("replicas must accept read-only queries (the agent sets hot_standby = on)"),
        "wal_level" if !matches!(value.as_str(), Some("replica" | "logical")) => {
            return refuse("replication needs wal_level replica or logical")
        }
        "unix_socket_directories" if scope == Scope::Cluster => {
            return refuse("set it in each node's file under postgresql.parameters (the agent connects through its first directory)")
        }
        "unix_socket_directories" if first_directory(value).is_none() => {
            return refuse("it names no directory (the agent connects through the first one)")
        }
        _ => {}
    }
    if scope == Scope::Node && CLUSTER_WIDE.contains(&name) {
        return Some(Fate::Warned(
            "not used: it is cluster-wide (a replica must not have less than its primary); set it in /config (`raftctl edit-config -p NAME=VALUE`)",
        ));
    }
    None
}

/// One line per `/config` parameter [`parameters`] leaves out: a `/config` written
/// without the check (by an older version, or with etcdctl) is applied without them.
pub fn unused_in_config(dynamic: &BTreeMap<String, Value>) -> Vec<String> {
    dynamic
        .iter()
        .filter_map(|(name, value)| match verdict(Scope::Cluster, name, value)? {
            Fate::Warned(why) | Fate::Refused(why) => Some(format!("/config postgresql.parameters.{name} is not used: {why}")),
        })
        .collect()
}

fn is_on(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "on" | "true" | "yes" | "1"),
        _ => false,
    }
}

/// The first directory of a `unix_socket_directories` value (a comma-separated list).
pub fn first_directory(value: &Value) -> Option<String> {
    let text = value.as_str()?;
    text.split(',').map(|d| d.trim().trim_matches('"').trim()).find(|d| !d.is_empty()).map(str::to_string)
}

/// Every parameter the agent writes for node `name`: its defaults, then `/config`'s
/// (`dynamic`), then the node file's (except cluster-wide ones), then its own.
pub fn parameters(
    config: &PostgresConfig,
    name: &str,
    dynamic: &BTreeMap<String, Value>,
    upstream: Option<&Upstream>,
) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        p.insert(k.to_string(), v);
    };
    set("unix_socket_permissions", "0700".into());
    set("max_wal_senders", "10".into());
    set("max_replication_slots", "10".into());
    set("wal_keep_size", quote("128MB"));
    set("wal_log_hints", "on".into());
    // Reconnect to a new primary within half a second (the default waits 5 s).
    set("wal_retrieve_retry_interval", quote("500ms"));
    set("password_encryption", quote("scram-sha-256"));
    for (k, v) in dynamic {
        if verdict(Scope::Cluster, k, v).is_none() {
            p.insert(k.clone(), render_value(v));
        }
    }
    for (k, v) in &config.parameters {
        let json = serde_json::to_value(v).unwrap_or(Value::Null);
        if verdict(Scope::Node, k, &json).is_none() {
            p.insert(k.clone(), render_value(&json));
        }
    }
    // `recovery_conf` (Patroni's place for a replica's restore_command): unused on a primary.
    for (k, v) in &config.recovery_conf {
        p.insert(k.clone(), render_value(v));
    }
    let wal_level = if p.get("wal_level").is_some_and(|v| v == "'logical'") { "logical" } else { "replica" };
    p.insert("wal_level".into(), wal_level.into());
    p.insert("hot_standby".into(), "on".into());
    p.insert("listen_addresses".into(), quote(config.listen_host()));
    p.insert("port".into(), config.port().to_string());
    p.insert("cluster_name".into(), quote(name));
    p.insert("hba_file".into(), quote(&config.data_dir.join("pg_hba.conf").to_string_lossy()));
    if !p.contains_key("unix_socket_directories") {
        p.insert("unix_socket_directories".into(), quote(&config.socket_dir().to_string_lossy()));
    }
    if let Some(up) = upstream {
        let repl = &config.authentication.replication;
        let conninfo = format!(
            "host={} port={} user={} passfile={} application_name={} sslmode=prefer connect_timeout=3",
            up.host,
            up.port,
            repl.username,
            config.pgpass_path().to_string_lossy(),
            name
        );
        p.insert("primary_conninfo".into(), quote(&conninfo));
        if let Some(slot) = &up.slot {
            p.insert("primary_slot_name".into(), quote(slot));
        }
        p.insert("recovery_target_timeline".into(), quote("latest"));
    }
    p
}

/// A replica's parameters raised to the primary's values its control file records
/// (`recorded`: parameter name to value, see [`RECORDED`]); one line per raised value.
/// A configured value that is not a whole number is left for PostgreSQL to refuse.
pub fn raise_to_primary(params: &mut BTreeMap<String, String>, recorded: &BTreeMap<String, i64>) -> Vec<String> {
    let mut raised = Vec::new();
    for (name, _, default) in RECORDED {
        let Some(&primary) = recorded.get(name) else { continue };
        let configured = match params.get(name) {
            Some(text) => match text.trim_matches('\'').trim().parse::<i64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
            None => default,
        };
        if primary > configured {
            params.insert(name.to_string(), primary.to_string());
            raised.push(format!("{name} = {primary}, the primary's (pg_controldata), not the configured {configured}"));
        }
    }
    raised
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::postgres::conf::slot_name;

    fn config(parameters: &str) -> PostgresConfig {
        serde_norway::from_str(&format!(
            "listen: 127.0.0.1:5433\ndata_dir: /x/node2/pgdata\nparameters: {parameters}\n\
             authentication: {{superuser: {{username: postgres, password: a}}, replication: {{username: rep, password: 'p:w'}}}}\n"
        ))
        .expect("yaml")
    }

    #[test]
    fn who_wins_table() {
        // (case, node file's parameters, /config's parameters, parameter, value written)
        let rows: [(&str, &str, Value, &str, &str); 14] = [
            ("agent default", "{}", json!({}), "max_wal_senders", "10"),
            ("/config over the agent's default", "{}", json!({"max_wal_senders": 20}), "max_wal_senders", "'20'"),
            (
                "/config's cluster-wide value over the node's",
                "{max_connections: 50}",
                json!({"max_connections": 200}),
                "max_connections",
                "'200'",
            ),
            ("a node's cluster-wide value alone is not used", "{max_connections: 50}", json!({}), "max_connections", "<unset>"),
            ("a node's ordinary value over /config's", "{work_mem: 8MB}", json!({"work_mem": "4MB"}), "work_mem", "'8MB'"),
            ("port from listen, not /config", "{}", json!({"port": 6000}), "port", "5433"),
            ("listen_addresses from listen", "{}", json!({"listen_addresses": "*"}), "listen_addresses", "'127.0.0.1'"),
            ("hot_standby forced on", "{}", json!({"hot_standby": "off"}), "hot_standby", "on"),
            ("wal_level at least replica", "{wal_level: minimal}", json!({}), "wal_level", "replica"),
            ("wal_level logical kept", "{}", json!({"wal_level": "logical"}), "wal_level", "logical"),
            ("cluster_name is the member's name", "{cluster_name: x}", json!({}), "cluster_name", "'node2'"),
            ("default socket directory", "{}", json!({}), "unix_socket_directories", "'/x/node2/run'"),
            ("the node's socket directories", "{unix_socket_directories: '/s1, /s2'}", json!({}), "unix_socket_directories", "'/s1, /s2'"),
            (
                "/config cannot move the socket",
                "{}",
                json!({"unix_socket_directories": "/elsewhere"}),
                "unix_socket_directories",
                "'/x/node2/run'",
            ),
        ];
        for (case, node, cluster, name, expected) in rows {
            let dynamic: BTreeMap<String, Value> = serde_json::from_value(cluster).expect("map");
            let p = parameters(&config(node), "node2", &dynamic, None);
            assert_eq!(p.get(name).map_or("<unset>", String::as_str), expected, "{case}");
        }
    }

    #[test]
    fn verdict_table() {
        use Scope::{Cluster, Node};
        // (scope, parameter, value, None = applied / "warn: words" / "refuse: words")
        let rows: [(Scope, &str, Value, &str); 13] = [
            (Cluster, "work_mem", json!("8MB"), "applied"),
            (Node, "work_mem", json!("8MB"), "applied"),
            (Cluster, "max_connections", json!(200), "applied"),
            (Node, "max_connections", json!(50), "warn: it is cluster-wide"),
            (Cluster, "port", json!(6000), "refuse: one port per node"),
            (Node, "port", json!(6000), "refuse: postgresql.listen"),
            (Cluster, "listen_addresses", json!("*"), "refuse: postgresql.listen"),
            (Cluster, "primary_conninfo", json!("host=x"), "refuse: the agent sets it"),
            (Cluster, "hot_standby", json!("off"), "refuse: read-only queries"),
            (Cluster, "hot_standby", json!(true), "applied"),
            (Node, "wal_level", json!("minimal"), "refuse: wal_level replica or logical"),
            (Cluster, "unix_socket_directories", json!("/s"), "refuse: each node's file"),
            (Node, "unix_socket_directories", json!(" , "), "refuse: names no directory"),
        ];
        for (scope, name, value, expected) in rows {
            let got = match verdict(scope, name, &value) {
                None => "applied".to_string(),
                Some(Fate::Warned(w)) => format!("warn: {w}"),
                Some(Fate::Refused(e)) => format!("refuse: {e}"),
            };
            let (kind, words) = expected.split_once(": ").unwrap_or((expected, ""));
            assert!(got.starts_with(kind) && got.contains(words), "{scope:?} {name}: {got:?}, expected {expected:?}");
        }
        assert_eq!(first_directory(&json!("\"/a b\", /c")), Some("/a b".into()));
        let stored: BTreeMap<String, Value> = serde_json::from_value(json!({"port": 6000, "work_mem": "8MB"})).expect("map");
        let unused = unused_in_config(&stored);
        assert_eq!(unused.len(), 1, "{unused:?}");
        assert!(unused[0].starts_with("/config postgresql.parameters.port is not used: the agent sets it"), "{unused:?}");
    }

    #[test]
    fn a_replica_takes_the_primarys_larger_values() {
        let mc = "max_connections";
        // (case, /config's parameters, recorded in pg_controldata, parameter, value written, raised)
        let rows = [
            ("lowered before the primary restarted", json!({mc: 50}), Some((mc, 100)), mc, "100", true),
            ("raised: the configured value", json!({mc: 200}), Some((mc, 100)), mc, "'200'", false),
            ("equal: the configured value", json!({mc: 100}), Some((mc, 100)), mc, "'100'", false),
            (
                "unset: PostgreSQL's default counts",
                json!({}),
                Some(("max_locks_per_transaction", 128)),
                "max_locks_per_transaction",
                "128",
                true,
            ),
            (
                "unset, not above the default",
                json!({}),
                Some(("max_prepared_transactions", 0)),
                "max_prepared_transactions",
                "<unset>",
                false,
            ),
            ("nothing recorded", json!({"max_wal_senders": 5}), None, "max_wal_senders", "'5'", false),
            ("not a number: left to PostgreSQL", json!({mc: "many"}), Some((mc, 100)), mc, "'many'", false),
        ];
        for (case, cluster, recorded, name, expected, was_raised) in rows {
            let dynamic: BTreeMap<String, Value> = serde_json::from_value(cluster).expect("map");
            let mut p = parameters(&config("{}"), "node2", &dynamic, None);
            let recorded: BTreeMap<String, i64> = recorded.map(|(k, v)| (k.to_string(), v)).into_iter().collect();
            let raised = raise_to_primary(&mut p, &recorded);
            assert_eq!(p.get(name).map_or("<unset>", String::as_str), expected, "{case}");
            assert_eq!(raised.len(), usize::from(was_raised), "{case}: {raised:?}");
        }
        let mut p = parameters(&config("{}"), "node2", &serde_json::from_value(json!({mc: 50})).expect("map"), None);
        let recorded = BTreeMap::from([(mc.to_string(), 100), ("max_worker_processes".to_string(), 8)]);
        let lines = raise_to_primary(&mut p, &recorded);
        assert_eq!(lines, ["max_connections = 100, the primary's (pg_controldata), not the configured 50"]);
    }

    #[test]
    fn the_agent_connects_through_the_first_socket_directory() {
        use std::path::PathBuf;
        assert_eq!(config("{}").socket_dir(), PathBuf::from("/x/node2/run"));
        assert_eq!(config("{unix_socket_directories: '/s1, /s2'}").socket_dir(), PathBuf::from("/s1"));
        assert_eq!(config("{unix_socket_directories: '..'}").socket_dir(), PathBuf::from("/x/node2/pgdata/.."), "relative to the data dir");
    }

    #[test]
    fn a_replica_streams_from_its_upstream() {
        let up = Upstream { host: "127.0.0.1".into(), port: 5432, slot: Some(slot_name("node-2")) };
        let p = parameters(&config("{}"), "node2", &BTreeMap::new(), Some(&up));
        assert_eq!(p["primary_slot_name"], "'node_2'");
        assert!(p["primary_conninfo"].contains("host=127.0.0.1 port=5432 user=rep passfile=/x/node2/.pgpass application_name=node2"));
        assert!(!parameters(&config("{}"), "node2", &BTreeMap::new(), None).contains_key("primary_conninfo"));
    }

    #[test]
    fn recovery_conf_is_written_with_the_parameters() {
        let mut c = config("{restore_command: 'cp /old/%f %p'}");
        assert_eq!(parameters(&c, "node2", &BTreeMap::new(), None)["restore_command"], "'cp /old/%f %p'");
        c.recovery_conf = BTreeMap::from([
            ("restore_command".to_string(), json!("cp /archive/%f \"%p\"")),
            ("recovery_min_apply_delay".into(), json!("5s")),
        ]);
        let p = parameters(&c, "node2", &BTreeMap::new(), None);
        assert_eq!(p["restore_command"], "'cp /archive/%f \"%p\"'", "recovery_conf wins over the parameter, as in Patroni");
        assert_eq!(p["recovery_min_apply_delay"], "'5s'");
    }
}
