//! The deploy kit: the three VM node configs (deploy/examples/vm/) pass the node's own
//! checks (store keys, and the agent sections through `raftgres_agent::config`) and
//! differ only in the member's name and the VM's own addresses; both HAProxy configs
//! pass `haproxy -c`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context};
use raftgres_agent::config::RawAgentConfig;
use serde_norway::Value;

/// The node's store keys (`raftgres --help`, with dashes), as its config file accepts them.
const STORE_KEYS: [&str; 12] = [
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
];
/// The top-level keys that belong to the agent (Patroni's sections).
const AGENT_SECTIONS: [&str; 6] = ["scope", "namespace", "restapi", "postgresql", "bootstrap", "tags"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example(i: usize) -> PathBuf {
    repo().join(format!("deploy/examples/vm/node{i}.yml"))
}

fn load(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_norway::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))
}

fn str_at<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v.get(key).and_then(Value::as_str).with_context(|| format!("no string {key:?}"))
}

/// Checks one node config the way `raftgres --config` reads it.
fn check_node_config(i: usize) -> anyhow::Result<()> {
    let path = example(i);
    let value = load(&path)?;
    let map = value.as_mapping().context("not a mapping")?;
    let mut agent = serde_norway::Mapping::new();
    for (k, v) in map {
        let key = k.as_str().context("a key that is not a string")?;
        if AGENT_SECTIONS.contains(&key) {
            agent.insert(k.clone(), v.clone());
        } else {
            ensure!(STORE_KEYS.contains(&key), "unknown store key {key:?}");
        }
    }
    let name = str_at(&value, "name")?;
    ensure!(name == format!("node{i}"), "name {name}");
    let addr = format!("10.0.0.1{i}");
    ensure!(str_at(&value, "listen-peer")? == format!("{addr}:2380"), "listen-peer");
    ensure!(str_at(&value, "listen-client")?.ends_with(":2379"), "listen-client");
    ensure!(str_at(&value, "advertise-client")? == format!("{addr}:2379"), "advertise-client");
    ensure!(str_at(&value, "initial-cluster")? == "node1=10.0.0.11:2380,node2=10.0.0.12:2380,node3=10.0.0.13:2380", "initial-cluster");
    ensure!(str_at(&value, "data-dir")?.starts_with("/var/lib/raftgres/"), "data-dir");
    let raw: RawAgentConfig = serde_norway::from_value(Value::Mapping(agent)).context("the agent sections do not parse")?;
    let config = raw.validate(name).map_err(|e| anyhow::anyhow!("the agent refuses it: {e}"))?.context("no postgresql section")?;
    ensure!(config.postgresql.port() == 5432, "PostgreSQL port");
    ensure!(config.postgresql.connect_address() == format!("{addr}:5432"), "postgresql.connect_address");
    ensure!(config.restapi.connect_address() == format!("{addr}:8008"), "restapi.connect_address");
    ensure!(config.restapi.listen.ends_with(":8008"), "restapi.listen");
    ensure!(config.postgresql.data_dir.starts_with("/var/lib/raftgres"), "postgresql.data_dir");
    Ok(())
}

#[test]
fn vm_examples_are_valid_node_configs() -> anyhow::Result<()> {
    for i in 1..=3 {
        check_node_config(i).with_context(|| format!("{}", example(i).display()))?;
    }
    Ok(())
}

/// Every leaf where `a` and `b` differ, as (path, a, b); an error when their shapes do.
fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<(String, String, String)>) -> anyhow::Result<()> {
    match (a, b) {
        (Value::Mapping(ma), Value::Mapping(mb)) => {
            ensure!(ma.len() == mb.len(), "{path}: different keys");
            for (k, va) in ma {
                let key = k.as_str().unwrap_or("?");
                let vb = mb.get(k).with_context(|| format!("{path}.{key} missing"))?;
                differences(va, vb, &format!("{path}.{key}"), out)?;
            }
        }
        (Value::Sequence(sa), Value::Sequence(sb)) => {
            ensure!(sa.len() == sb.len(), "{path}: different lengths");
            for (n, (va, vb)) in sa.iter().zip(sb).enumerate() {
                differences(va, vb, &format!("{path}[{n}]"), out)?;
            }
        }
        _ if a == b => {}
        (Value::String(x), Value::String(y)) => out.push((path.to_string(), x.clone(), y.clone())),
        _ => bail!("{path}: {a:?} vs {b:?}"),
    }
    Ok(())
}

#[test]
fn vm_examples_differ_only_in_name_and_addresses() -> anyhow::Result<()> {
    let node1 = load(&example(1))?;
    for i in [2, 3] {
        let other = load(&example(i))?;
        let mut diffs = Vec::new();
        differences(&node1, &other, "", &mut diffs)?;
        let paths: Vec<&str> = diffs.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [".name", ".listen-peer", ".advertise-client", ".restapi.connect_address", ".postgresql.connect_address"],
            "node{i}.yml differs from node1.yml elsewhere"
        );
        for (path, a, b) in &diffs {
            let expected = a.replace("node1", &format!("node{i}")).replace("10.0.0.11", &format!("10.0.0.1{i}"));
            assert_eq!(b, &expected, "{path} in node{i}.yml");
        }
    }
    Ok(())
}

/// The `haproxy` program (installed by deploy/setup.sh; /usr/sbin is not on every PATH).
fn haproxy() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .context("haproxy is not installed: run deploy/setup.sh (or `apt-get install haproxy`)")
}

#[test]
fn haproxy_configs_pass_haproxy_check() -> anyhow::Result<()> {
    let bin = haproxy()?;
    for cfg in ["deploy/haproxy.cfg", "deploy/examples/haproxy-vm.cfg"] {
        let out =
            Command::new(&bin).arg("-c").arg("-f").arg(repo().join(cfg)).stdin(Stdio::null()).output().context("running haproxy -c")?;
        assert!(
            out.status.success(),
            "haproxy -c -f {cfg} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
