//! `DIR/lab.json`, what a lab is: its nodes (names, directories, ports, addresses,
//! namespaces), the user they run as, its certificates, and how a client reaches it.
//! Every other module reads or writes a lab through these types.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use raftgres_client::{Security, TlsFiles};
use serde::{Deserialize, Serialize};

use crate::args::DEFAULT_DIR;
use crate::ports::NodePorts;

/// The Patroni scope of the lab's cluster.
pub const SCOPE: &str = "demo";

/// The TLS files of a lab made with `raftctl lab up --tls`, for commands given no
/// `--cacert`: the lab in `dir` (`--lab`), or the default lab when it serves one of
/// `endpoints` (an unreadable default `lab.json` is no reason to fail a command meant
/// for another cluster).
pub fn tls_files_for(dir: Option<&Path>, endpoints: &[String]) -> anyhow::Result<Option<TlsFiles>> {
    if let Some(dir) = dir {
        return Ok(Lab::load(dir)?.tls_files());
    }
    let Ok(lab) = Lab::load(Path::new(DEFAULT_DIR)) else { return Ok(None) };
    let address = |endpoint: &str| endpoint.rsplit("://").next().unwrap_or(endpoint).trim_end_matches('/').to_string();
    let serves = lab.endpoints().iter().any(|e| endpoints.iter().any(|asked| address(asked) == *e));
    Ok(if serves { lab.tls_files() } else { None })
}

/// The user the nodes run as when the lab was made by root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The address every node listens on in a lab without `--netns`.
pub const LOOPBACK: &str = "127.0.0.1";

fn loopback() -> String {
    LOOPBACK.to_string()
}

/// The address of node `index` (0 for node1) in a `--netns` lab.
pub fn netns_host(index: usize) -> String {
    format!("10.250.0.{}", index + 1)
}

/// The network namespace of node `index` (0 for node1) in a `--netns` lab.
pub fn netns_namespace(prefix: &str, index: usize) -> String {
    format!("{prefix}{}", index + 1)
}

/// One node of the lab as `lab.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabNode {
    pub name: String,
    /// `DIR/nodeN`
    pub dir: PathBuf,
    pub ports: NodePorts,
    /// The address the node listens on and is reached at: 127.0.0.1, or 10.250.0.i in
    /// its own network namespace.
    #[serde(default = "loopback")]
    pub host: String,
    /// The network namespace the node runs in (`--netns` labs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

impl LabNode {
    /// `node1`..`nodeN` under `dir` with these ports, on loopback or, with a namespace
    /// prefix, each in its own namespace.
    pub fn all(dir: &Path, layout: Vec<NodePorts>, netns_prefix: Option<&str>) -> Vec<LabNode> {
        layout
            .into_iter()
            .enumerate()
            .map(|(i, ports)| LabNode {
                name: format!("node{}", i + 1),
                dir: dir.join(format!("node{}", i + 1)),
                ports,
                host: match netns_prefix {
                    Some(_) => netns_host(i),
                    None => LOOPBACK.to_string(),
                },
                netns: netns_prefix.map(|p| netns_namespace(p, i)),
            })
            .collect()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("raftgres.yml")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("raftgres.log")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("raftgres.pid")
    }
    pub fn raft_dir(&self) -> PathBuf {
        self.dir.join("raft")
    }
    pub fn pgdata(&self) -> PathBuf {
        self.dir.join("pgdata")
    }
    pub fn client_addr(&self) -> String {
        format!("{}:{}", self.host, self.ports.client)
    }
    pub fn peer_addr(&self) -> String {
        format!("{}:{}", self.host, self.ports.peer)
    }
    /// "PostgreSQL 5432, REST 8008, etcd 2379", with the address and namespace in
    /// `--netns` labs.
    pub fn ports_line(&self) -> String {
        let ports = format!("PostgreSQL {}, REST {}, etcd {}", self.ports.postgres, self.ports.rest, self.ports.client);
        match &self.netns {
            Some(ns) => format!("{} in netns {ns}: {ports}", self.host),
            None => ports,
        }
    }
}

/// Where a lab's certificates live, as `lab.json` records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabTls {
    /// `DIR/tls/ca.crt`: the CA every certificate of the lab chains to.
    pub ca: PathBuf,
    /// `DIR/tls/client.crt` and `.key`: what raftctl, etcdctl and curl present.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl LabTls {
    pub fn dir(lab_dir: &Path) -> PathBuf {
        lab_dir.join("tls")
    }

    /// Node `name`'s certificate and key.
    pub fn node_files(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.ca.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")))
    }
}

/// `DIR/lab.json`: everything the subcommands after `up` need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lab {
    pub dir: PathBuf,
    pub scope: String,
    pub base_port: u16,
    /// The node binary every node runs.
    pub raftgres_bin: PathBuf,
    /// PostgreSQL's bin directory (initdb, pg_ctl, postgres).
    pub pg_bin_dir: PathBuf,
    /// `Some` when the nodes run as a dedicated user (the lab was made by root).
    pub user: Option<LabUser>,
    /// The network namespace prefix when each node runs in its own namespace
    /// (`raftctl lab up --netns`): node i in `<prefix>i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_prefix: Option<String>,
    /// The lab's certificates when made with `raftctl lab up --tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<LabTls>,
    /// `HOST:PORT` of the PostgreSQL this lab is a standby cluster of (`raftctl lab up
    /// --standby-cluster`): `bootstrap.dcs.standby_cluster` of every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_cluster: Option<(String, u16)>,
    /// The timing profile of `bootstrap.dcs` (`raftctl lab up --profile`).
    #[serde(default, skip_serializing_if = "Profile::is_default")]
    pub profile: Profile,
    pub nodes: Vec<LabNode>,
}

/// A lab's HA timing (`raftctl lab up --profile`): the defaults, or the fast profile
/// (`raftgres_agent::timing::Timing::fast`, ttl 1 s) written to every node's
/// `bootstrap.dcs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// ttl 2 s, loop_wait 1 s, retry_timeout 0.5 s, safety_margin 0.5 s.
    #[default]
    Default,
    /// ttl 1 s, loop_wait 1 s, retry_timeout 0.3 s, safety_margin 0.2 s: ~1 s faster
    /// failover; every node's Raft heartbeat 50 ms and election timeout 250 ms.
    Fast,
}

impl Profile {
    pub fn is_default(&self) -> bool {
        *self == Profile::Default
    }

    /// The `bootstrap.dcs` timing keys this profile sets (none for the defaults).
    pub fn timing(self) -> Option<raftgres_agent::timing::Timing> {
        match self {
            Profile::Default => None,
            Profile::Fast => Some(raftgres_agent::timing::Timing::fast()),
        }
    }

    /// The node settings `heartbeat-interval` and `election-timeout` (ms) this profile
    /// sets (none for the defaults, 100 / 300 ms). The fast profile's write budget is
    /// 0.8 s; a dead Raft leader must be replaced, and the primary's next keep-alive
    /// (every 125 ms) answered, inside it: 250–400 ms leaves room, the default 300–480 ms
    /// (with the vote and a failed keep-alive's timeout) does not.
    pub fn raft_timing(self) -> Option<(u64, u64)> {
        match self {
            Profile::Default => None,
            Profile::Fast => Some((50, 250)),
        }
    }
}

impl Lab {
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn exists(dir: &Path) -> bool {
        Self::file(dir).exists()
    }

    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let file = Self::file(dir);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "no lab in {}: {} does not exist (start one with `raftctl lab up --dir {}`)",
                    dir.display(),
                    file.display(),
                    dir.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        serde_json::from_str(&text).with_context(|| format!("{} is not a lab description", file.display()))
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let file = Self::file(&self.dir);
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&file, text + "\n").with_context(|| format!("cannot write {}", file.display()))
    }

    /// The node called `name`, or an error listing the valid names.
    pub fn node(&self, name: &str) -> anyhow::Result<&LabNode> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            anyhow::anyhow!("no node named {name:?} in the lab in {}: choose one of {}", self.dir.display(), names.join(", "))
        })
    }

    pub fn pgpass_path(&self) -> PathBuf {
        self.dir.join("pgpass")
    }

    /// `psql` from the lab's PostgreSQL, else the one on the PATH.
    pub fn psql_bin(&self) -> PathBuf {
        let bundled = self.pg_bin_dir.join("psql");
        if bundled.is_file() {
            bundled
        } else {
            PathBuf::from("psql")
        }
    }

    /// Every node's etcd API address.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(LabNode::client_addr).collect()
    }

    /// The CA and client certificate of a TLS lab.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        self.tls.as_ref().map(|t| TlsFiles { cacert: t.ca.clone(), identity: Some((t.client_cert.clone(), t.client_key.clone())) })
    }

    /// How to connect to this lab's nodes (TLS with the lab's certificates, if any).
    pub fn security(&self) -> anyhow::Result<Security> {
        Security::load(self.tls_files().as_ref())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(dir: &Path) -> Lab {
        let nodes = LabNode::all(dir, crate::ports::layout(3, 5432).expect("layout"), None);
        Lab {
            dir: dir.to_path_buf(),
            scope: SCOPE.into(),
            base_port: 5432,
            raftgres_bin: "/bin/raftgres".into(),
            pg_bin_dir: "/usr/lib/postgresql/15/bin".into(),
            user: None,
            netns_prefix: None,
            tls: None,
            standby_cluster: None,
            profile: Profile::Default,
            nodes,
        }
    }

    #[test]
    fn unknown_node_lists_the_valid_ones() {
        let lab = sample(Path::new("/tmp/l"));
        let err = lab.node("node7").expect_err("unknown").to_string();
        assert!(err.contains("node1, node2, node3"), "{err}");
        assert_eq!(lab.node("node2").expect("node2").ports.rest, 8009);
    }

    #[test]
    fn lab_json_round_trips() {
        let dir = std::env::temp_dir().join(format!("raftctl-labjson-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let lab = sample(&dir);
        lab.save().expect("save");
        assert_eq!(Lab::load(&dir).expect("load"), lab);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(Lab::load(&dir).expect_err("gone").to_string().contains("raftctl lab up"));
    }

    #[test]
    fn a_named_lab_gives_its_client_certificates_and_a_missing_one_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lab = sample(dir.path());
        lab.save().expect("save");
        assert_eq!(tls_files_for(Some(dir.path()), &[]).expect("plaintext lab"), None);
        let tls = LabTls { ca: "/l/tls/ca.crt".into(), client_cert: "/l/tls/client.crt".into(), client_key: "/l/tls/client.key".into() };
        lab.tls = Some(tls);
        lab.save().expect("save");
        let files = tls_files_for(Some(dir.path()), &[]).expect("tls lab").expect("its files");
        assert_eq!(
            files,
            TlsFiles { cacert: "/l/tls/ca.crt".into(), identity: Some(("/l/tls/client.crt".into(), "/l/tls/client.key".into())) }
        );
        let gone = dir.path().join("none");
        assert!(tls_files_for(Some(&gone), &[]).expect_err("no lab").to_string().contains("no lab in"));
    }
}
