//! The node's settings, read in two steps: raw values from flags and an optional
//! YAML file (flags win), then validated into [`Settings`] with one clear error per
//! problem.

use std::path::PathBuf;

use clap::Parser;
use raftgres_agent::config::{AgentConfig, RawAgentConfig};
use raftgres_agent::config_keys;
use raftgres_store::{AutoCompaction, ClusterState, RaftTiming, StoreConfig, DEFAULT_QUOTA_BYTES};
use raftgres_tls::{ServerTls, TransportSecurity};
use serde::Deserialize;

/// Command-line flags; every one can also be given in the `--config` file under the
/// same name with dashes (`data-dir: /var/lib/raftgres`).
#[derive(Debug, Default, Parser)]
#[command(name = "raftgres", version, about = "PostgreSQL high availability with an embedded etcd-compatible Raft store")]
pub struct Flags {
    /// YAML config file; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Member name, unique in the cluster (e.g. node1).
    #[arg(long)]
    pub name: Option<String>,
    /// Directory for the Raft log, snapshots and (later) PostgreSQL.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// host:port the Raft peer listener binds to.
    #[arg(long)]
    pub listen_peer: Option<String>,
    /// host:port the etcd v3 API binds to.
    #[arg(long)]
    pub listen_client: Option<String>,
    /// host:port other members and clients use to reach the etcd API (default: listen-client).
    #[arg(long)]
    pub advertise_client: Option<String>,
    /// Every initial member: name=host:port,name=host:port,... (peer addresses).
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// `new` to form a cluster, `existing` to join one this member was added to.
    #[arg(long)]
    pub initial_cluster_state: Option<String>,
    /// Raft heartbeat interval in ms (default 100).
    #[arg(long)]
    pub heartbeat_interval: Option<u64>,
    /// Minimum Raft election timeout in ms (default 300; the maximum is 1.6 x this).
    #[arg(long)]
    pub election_timeout: Option<u64>,
    /// Snapshot (and purge the log) every this many entries (default 10000).
    #[arg(long)]
    pub snapshot_count: Option<u64>,
    /// Largest accepted client request in bytes (default 1572864, as etcd).
    #[arg(long)]
    pub max_request_bytes: Option<usize>,
    /// Most operations in one txn branch (default 128, as etcd).
    #[arg(long)]
    pub max_txn_ops: Option<usize>,
    /// `revision` (keep the last N revisions) or `periodic` (keep the history of the
    /// last duration). Default: revision, 10000 (etcd's default is off).
    #[arg(long)]
    pub auto_compaction_mode: Option<String>,
    /// Periodic mode: a duration (5m, 1h) or a number of hours; revision mode: a count.
    /// 0 turns auto-compaction off.
    #[arg(long)]
    pub auto_compaction_retention: Option<String>,
    /// Raise the NOSPACE alarm when the state would exceed this many bytes (default
    /// 536870912, 512 MiB; etcd's is 2 GiB of disk; 0 = the default).
    #[arg(long)]
    pub quota_backend_bytes: Option<u64>,
    /// Recovery after losing a quorum for good (etcd's flag): rewrite this surviving
    /// member's data dir into a one-member cluster with all its data, then start.
    #[arg(long)]
    pub force_new_cluster: bool,
    /// The Patroni-shaped sections of the config file (only from `--config`).
    #[arg(skip)]
    pub agent: Option<RawAgentConfig>,
    /// etcd's `client-transport-security` (only from `--config`).
    #[arg(skip)]
    pub client_transport_security: Option<TransportSecurity>,
    /// etcd's `peer-transport-security` (only from `--config`).
    #[arg(skip)]
    pub peer_transport_security: Option<TransportSecurity>,
    /// Keys of the config file accepted but not used, one sentence each.
    #[arg(skip)]
    pub warnings: Vec<String>,
}

/// The same keys as [`Flags`], from the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    listen_peer: Option<String>,
    listen_client: Option<String>,
    advertise_client: Option<String>,
    initial_cluster: Option<String>,
    initial_cluster_state: Option<String>,
    heartbeat_interval: Option<u64>,
    election_timeout: Option<u64>,
    snapshot_count: Option<u64>,
    max_request_bytes: Option<usize>,
    max_txn_ops: Option<usize>,
    auto_compaction_mode: Option<String>,
    auto_compaction_retention: Option<String>,
    quota_backend_bytes: Option<u64>,
    client_transport_security: Option<TransportSecurity>,
    peer_transport_security: Option<TransportSecurity>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store: StoreConfig,
    pub listen_client: String,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// TLS of the etcd API's client port (`client-transport-security`).
    pub client_tls: Option<ServerTls>,
    /// The PostgreSQL supervisor's settings, when the file has a `postgresql` section.
    pub agent: Option<AgentConfig>,
    /// Config file keys accepted but not used: logged once at startup.
    pub warnings: Vec<String>,
    /// `--force-new-cluster`: rewrite the data dir into a one-member cluster first.
    pub force_new_cluster: bool,
}

macro_rules! merge {
    ($flags:ident, $file:ident, $($field:ident),*) => {
        $( if $flags.$field.is_none() { $flags.$field = $file.$field.take(); } )*
    };
}

impl Flags {
    /// Fills every flag not given on the command line from the config file.
    fn merge_file(mut self) -> Result<Self, String> {
        let Some(path) = self.config.clone() else { return Ok(self) };
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        let SplitFile { store: mut file, agent, warnings } =
            split_file(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
        self.agent = agent;
        self.warnings = warnings;
        merge!(
            self,
            file,
            name,
            data_dir,
            listen_peer,
            listen_client,
            advertise_client,
            initial_cluster,
            initial_cluster_state,
            heartbeat_interval,
            election_timeout,
            snapshot_count,
            max_request_bytes,
            max_txn_ops,
            auto_compaction_mode,
            auto_compaction_retention,
            quota_backend_bytes,
            client_transport_security,
            peer_transport_security
        );
        Ok(self)
    }

    /// Step two: checks and converts; every error names the setting and what is expected.
    pub fn validate(self) -> Result<Settings, String> {
        let f = self.merge_file()?;
        let name = f.name.ok_or("--name is required (e.g. --name node1)")?;
        let data_dir = f.data_dir.ok_or("--data-dir is required")?;
        let listen_peer = f.listen_peer.ok_or("--listen-peer is required (HOST:PORT)")?;
        let listen_client = f.listen_client.ok_or("--listen-client is required (HOST:PORT)")?;
        check_host_port("--listen-peer", &listen_peer)?;
        check_host_port("--listen-client", &listen_client)?;
        let advertise_client = f.advertise_client.unwrap_or_else(|| listen_client.clone());
        check_host_port("--advertise-client", &advertise_client)?;
        let initial = f.initial_cluster.unwrap_or_else(|| format!("{name}={listen_peer}"));
        let initial_cluster = parse_initial_cluster(&initial)?;
        let cluster_state = match f.initial_cluster_state.as_deref().unwrap_or("new") {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => return Err(format!("--initial-cluster-state must be new or existing, not {other:?}")),
        };
        let defaults = RaftTiming::default();
        let election_min = f.election_timeout.unwrap_or(defaults.election_min_ms);
        let timing = RaftTiming {
            heartbeat_ms: f.heartbeat_interval.unwrap_or(defaults.heartbeat_ms),
            election_min_ms: election_min,
            election_max_ms: election_min.saturating_mul(8) / 5,
            snapshot_every: f.snapshot_count.unwrap_or(defaults.snapshot_every),
        };
        timing.validate()?;
        let peer_tls = match &f.peer_transport_security {
            Some(s) => Some(s.peer("peer-transport-security").map_err(|e| e.to_string())?),
            None => None,
        };
        let client_tls = match &f.client_transport_security {
            Some(s) => Some(s.client_port("client-transport-security").map_err(|e| e.to_string())?),
            None => None,
        };
        let auto_compaction = AutoCompaction::parse(f.auto_compaction_mode.as_deref(), f.auto_compaction_retention.as_deref())?;
        let quota_bytes = f.quota_backend_bytes.filter(|q| *q > 0).unwrap_or(DEFAULT_QUOTA_BYTES);
        let store = StoreConfig {
            name,
            data_dir,
            listen_peer,
            client_addr: advertise_client,
            initial_cluster,
            cluster_state,
            timing,
            peer_tls,
            auto_compaction,
            quota_bytes,
        };
        if store.own_peer_addr().is_none() {
            return Err(format!("--name {} does not appear in --initial-cluster {initial}", store.name));
        }
        let agent = match f.agent {
            Some(raw) => raw.validate(&store.name).map_err(|e| e.to_string())?,
            None => None,
        };
        Ok(Settings {
            agent,
            warnings: f.warnings,
            force_new_cluster: f.force_new_cluster,
            store,
            listen_client,
            client_tls,
            max_request_bytes: f.max_request_bytes.unwrap_or(1024 * 1024 * 3 / 2),
            max_txn_ops: f.max_txn_ops.unwrap_or(128),
        })
    }
}

/// The config file's top-level keys that belong to the agent (Patroni's section names).
const AGENT_SECTIONS: [&str; 7] = ["scope", "namespace", "restapi", "postgresql", "bootstrap", "tags", "watchdog"];

/// The store's keys in the config file (as [`FileSettings`] names them).
const STORE_KEYS: [&str; 17] = [
    "name",
    "data-dir",
    "listen-peer",
    "listen-client",
    "advertise-client",
    "initial-cluster",
    "initial-cluster-state",
    "heartbeat-interval",
    "election-timeout",
    "snapshot-count",
    "max-request-bytes",
    "max-txn-ops",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "quota-backend-bytes",
    "client-transport-security",
    "peer-transport-security",
];

/// The config file, split: the store's keys, the agent's sections, and the warnings
/// about keys accepted but not used (Patroni's external DCS sections, ...).
struct SplitFile {
    store: FileSettings,
    agent: Option<RawAgentConfig>,
    warnings: Vec<String>,
}

/// Splits the config file into the store's keys and the agent's sections, after every
/// key was found applied, warned about, or refused (`config_keys`).
fn split_file(text: &str) -> Result<SplitFile, String> {
    let value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut store = match serde_json::to_value(value).map_err(|e| format!("keys must be plain names: {e}"))? {
        serde_json::Value::Object(m) => m,
        serde_json::Value::Null => serde_json::Map::new(),
        _ => return Err("expected a mapping of settings (key: value)".into()),
    };
    let warnings = config_keys::check_node_file(&mut store, &STORE_KEYS).map_err(|e| e.to_string())?;
    let mut agent = serde_json::Map::new();
    for key in AGENT_SECTIONS {
        if let Some(v) = store.remove(key) {
            agent.insert(key.into(), v);
        }
    }
    let file: FileSettings = serde_json::from_value(serde_json::Value::Object(store)).map_err(|e| e.to_string())?;
    let agent =
        if agent.is_empty() { None } else { Some(serde_json::from_value(serde_json::Value::Object(agent)).map_err(|e| e.to_string())?) };
    Ok(SplitFile { store: file, agent, warnings })
}

fn check_host_port(what: &str, value: &str) -> Result<(), String> {
    let bad = || format!("{what} must be HOST:PORT (e.g. 127.0.0.1:2380), not {value:?}");
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() || value.contains("://") {
        return Err(bad());
    }
    Ok(())
}

/// `n1=127.0.0.1:2380,n2=...` → [(name, addr)]. Accepts `http://` and `https://`
/// prefixes as etcd does.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut members: Vec<(String, String)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, addr) = part.split_once('=').ok_or_else(|| format!("--initial-cluster entry {part:?} must be NAME=HOST:PORT"))?;
        let addr = addr.trim_start_matches("http://").trim_start_matches("https://");
        if name.is_empty() {
            return Err(format!("--initial-cluster entry {part:?} has an empty name"));
        }
        check_host_port("--initial-cluster", addr)?;
        if members.iter().any(|(n, a)| n == name || a == addr) {
            return Err(format!("--initial-cluster names {name} or {addr} twice"));
        }
        members.push((name.to_string(), addr.to_string()));
    }
    if members.is_empty() {
        return Err("--initial-cluster is empty".into());
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["raftgres"];
        all.extend_from_slice(args);
        Flags::parse_from(all)
    }

    #[test]
    fn parses_initial_cluster() {
        let m = parse_initial_cluster("a=127.0.0.1:1,b=http://127.0.0.1:2").expect("valid");
        assert_eq!(m[1], ("b".to_string(), "127.0.0.1:2".to_string()));
        for bad in ["", "a", "a=b", "=1.2.3.4:5", "a=h:1,a=h:2", "a=h:99999"] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn validates_flags() {
        let ok = flags(&["--name", "n1", "--data-dir", "/tmp/x", "--listen-peer", "127.0.0.1:2380", "--listen-client", "127.0.0.1:2379"])
            .validate()
            .expect("valid");
        assert_eq!(ok.store.initial_cluster.len(), 1);
        let err = flags(&[
            "--name",
            "n9",
            "--data-dir",
            "/tmp/x",
            "--listen-peer",
            "127.0.0.1:2380",
            "--listen-client",
            "127.0.0.1:2379",
            "--initial-cluster",
            "n1=127.0.0.1:2380",
        ])
        .validate();
        assert!(err.expect_err("n9 missing").contains("does not appear"));
        let err = flags(&[
            "--name",
            "n1",
            "--data-dir",
            "/tmp/x",
            "--listen-peer",
            "127.0.0.1:2380",
            "--listen-client",
            "127.0.0.1:2379",
            "--heartbeat-interval",
            "500",
        ])
        .validate();
        assert!(err.expect_err("timing").contains("election timeout"));
        let base = ["--name", "n1", "--data-dir", "/tmp/x", "--listen-peer", "127.0.0.1:2380", "--listen-client", "127.0.0.1:2379"];
        let with = |extra: &[&str]| flags(&[&base[..], extra].concat()).validate();
        let ok = with(&[]).expect("defaults");
        assert_eq!((ok.store.auto_compaction, ok.store.quota_bytes), (raftgres_store::retention::DEFAULT, DEFAULT_QUOTA_BYTES));
        let ok = with(&["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m", "--quota-backend-bytes", "4096"])
            .expect("valid");
        assert_eq!(ok.store.auto_compaction, AutoCompaction::Periodic(std::time::Duration::from_secs(300)));
        assert_eq!(ok.store.quota_bytes, 4096);
        let err = with(&["--auto-compaction-mode", "daily"]).expect_err("bad mode");
        assert!(err.starts_with("--auto-compaction-mode"), "{err}");
    }

    #[test]
    fn file_values_are_overridden_by_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yml");
        std::fs::write(&path, "name: n1\ndata-dir: /tmp/a\nlisten-peer: 127.0.0.1:2380\nlisten-client: 127.0.0.1:2379\n").expect("write");
        let s = flags(&["--config", path.to_str().expect("utf8"), "--data-dir", "/tmp/b"]).validate().expect("valid");
        assert_eq!(s.store.data_dir, PathBuf::from("/tmp/b"));
        std::fs::write(&path, "nmae: n1\n").expect("write");
        let err = flags(&["--config", path.to_str().expect("utf8")]).validate().expect_err("typo");
        assert!(err.ends_with("nmae is not a known setting: did you mean name?"), "{err}");
        std::fs::write(
            &path,
            format!(
                "{base}etcd3: {{hosts: 10.0.0.1:2379}}\n",
                base = "name: n1\ndata-dir: /tmp/a\nlisten-peer: 127.0.0.1:2380\nlisten-client: 127.0.0.1:2379\n"
            ),
        )
        .expect("write");
        let s = flags(&["--config", path.to_str().expect("utf8")]).validate().expect("warned, not refused");
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].starts_with("etcd3: the store is embedded"), "{:?}", s.warnings);
    }

    #[test]
    fn tls_sections_report_bad_files_by_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yml");
        let base = "name: n1\ndata-dir: /tmp/a\nlisten-peer: 127.0.0.1:2380\nlisten-client: 127.0.0.1:2379\n";
        let run = |extra: &str| {
            std::fs::write(&path, format!("{base}{extra}")).expect("write");
            flags(&["--config", path.to_str().expect("utf8")]).validate().expect_err("bad TLS")
        };
        let err = run("peer-transport-security: {cert-file: /nonexistent/n.crt, key-file: /nonexistent/n.key, trusted-ca-file: /nonexistent/ca.crt}\n");
        assert!(err.starts_with("peer-transport-security.trusted-ca-file /nonexistent/ca.crt: cannot read it"), "{err}");
        let err = run("peer-transport-security: {cert-file: /a, key-file: /b}\n");
        assert!(err.contains("trusted-ca-file is required"), "{err}");
        std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").expect("write");
        let junk = dir.path().join("junk.pem").display().to_string();
        let err = run(&format!("client-transport-security: {{cert-file: {junk}, key-file: {junk}}}\n"));
        assert!(err.starts_with("client-transport-security.cert-file") && err.contains("holds no certificate"), "{err}");
        let err = run("client-transport-security: {cert-file: /a, key-file: /b, certfile: /c}\n");
        assert!(err.contains("unknown field `certfile`"), "{err}");
    }
}
