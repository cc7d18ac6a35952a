//! The files a lab node reads: its `raftgres.yml`, and the lab's libpq password file
//! (`DIR/pgpass`). Rendering is pure (tested without processes); writing sets modes
//! 0600 because both hold the superuser's password.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::description::{Lab, LabNode, LOOPBACK};

/// The superuser (`postgres`) and replication (`replicator`) passwords, shared by all nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwords {
    pub superuser: String,
    pub replication: String,
}

impl Passwords {
    /// Two random 20-character alphanumeric passwords.
    pub fn random() -> Self {
        let gen = || rand::thread_rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect::<String>();
        Self { superuser: gen(), replication: gen() }
    }

    /// The passwords of the lab in `dir`, from its first node's file.
    pub fn of_lab(dir: &Path) -> anyhow::Result<Self> {
        let lab = Lab::load(dir)?;
        let node = lab.nodes.first().with_context(|| format!("the lab in {} has no nodes", dir.display()))?;
        let file = node.config_path();
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let doc: serde_json::Value = serde_norway::from_str(&text).with_context(|| format!("{} is not YAML", file.display()))?;
        let password = |user: &str| {
            doc.pointer(&format!("/postgresql/authentication/{user}/password"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .with_context(|| format!("{} has no postgresql.authentication.{user}.password", file.display()))
        };
        Ok(Self { superuser: password("superuser")?, replication: password("replication")? })
    }
}

/// A YAML scalar: plain when it is unambiguous, else double-quoted (JSON string syntax
/// is valid YAML).
fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=,:+@".contains(c))
        && !text.contains(": ")
        && text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '.');
    if plain {
        text.to_string()
    } else {
        serde_json::Value::String(text.to_string()).to_string()
    }
}

fn path(p: &Path) -> String {
    scalar(&p.to_string_lossy())
}

/// `node1=127.0.0.1:2380,node2=127.0.0.1:2480,...`
pub fn initial_cluster(lab: &Lab) -> String {
    lab.nodes.iter().map(|n| format!("{}={}", n.name, n.peer_addr())).collect::<Vec<_>>().join(",")
}

/// The `raftgres.yml` of `node`.
pub fn render(lab: &Lab, node: &LabNode, passwords: &Passwords) -> String {
    format!(
        "# raftgres node {name} of the lab in {dir} (written by `raftctl lab up`)\n\
         name: {name}\n\
         data-dir: {raft}                 # the Raft store's data\n\
         listen-peer: {peer}\n\
         listen-client: {client}\n\
         initial-cluster: {initial}\n\
         {raft_timing}\
         {store_tls}\
         scope: {scope}\n\
         restapi:\n  listen: {host}:{rest}\n\
         {rest_tls}\
         postgresql:\n  listen: {host}:{pg}\n  data_dir: {pgdata}\n  bin_dir: {bin_dir}\n\
         \x20 authentication:\n\
         \x20   superuser: {{username: postgres, password: {su}}}\n\
         \x20   replication: {{username: replicator, password: {repl}}}\n\
         {bootstrap}",
        name = scalar(&node.name),
        dir = lab.dir.display(),
        raft = path(&node.raft_dir()),
        peer = node.peer_addr(),
        client = node.client_addr(),
        initial = initial_cluster(lab),
        raft_timing = raft_timing(lab),
        store_tls = store_tls(lab, node),
        rest_tls = rest_tls(lab, node),
        scope = scalar(&lab.scope),
        host = node.host,
        rest = node.ports.rest,
        pg = node.ports.postgres,
        pgdata = path(&node.pgdata()),
        bin_dir = path(&lab.pg_bin_dir),
        su = scalar(&passwords.superuser),
        repl = scalar(&passwords.replication),
        bootstrap = bootstrap_section(lab),
    )
}

/// The profile's Raft timing lines (nothing for the defaults).
fn raft_timing(lab: &Lab) -> String {
    match lab.profile.raft_timing() {
        Some((heartbeat, election)) => format!("heartbeat-interval: {heartbeat}\nelection-timeout: {election}\n"),
        None => String::new(),
    }
}

/// `bootstrap.dcs`: the profile's timing and, for a lab made with `--standby-cluster`,
/// `standby_cluster` (nothing when neither applies).
fn bootstrap_section(lab: &Lab) -> String {
    let mut dcs = String::new();
    if let Some(t) = lab.profile.timing() {
        dcs += &format!(
            "    ttl: {}\n    loop_wait: {}\n    retry_timeout: {}\n    safety_margin: {}\n",
            t.ttl.as_secs(),
            t.loop_wait.as_secs_f64(),
            t.retry_timeout.as_secs_f64(),
            t.safety_margin.as_secs_f64()
        );
    }
    if let Some((host, port)) = &lab.standby_cluster {
        dcs += &format!("    standby_cluster: {{host: {}, port: {port}}}\n", scalar(host));
    }
    if dcs.is_empty() {
        return dcs;
    }
    format!("bootstrap:\n  dcs:\n{dcs}")
}

/// etcd's TLS sections for a `--tls` lab: mutual TLS on both ports.
fn store_tls(lab: &Lab, node: &LabNode) -> String {
    let Some(tls) = &lab.tls else { return String::new() };
    let (cert, key) = tls.node_files(&node.name);
    let files = format!("cert-file: {}, key-file: {}, trusted-ca-file: {}", path(&cert), path(&key), path(&tls.ca));
    format!(
        "client-transport-security: {{{files}, client-cert-auth: true}}\n\
         peer-transport-security: {{{files}}}\n"
    )
}

/// Patroni's HTTPS keys for a `--tls` lab: health checks without a client certificate
/// (HAProxy, curl), the mutating endpoints with one.
fn rest_tls(lab: &Lab, node: &LabNode) -> String {
    let Some(tls) = &lab.tls else { return String::new() };
    let (cert, key) = tls.node_files(&node.name);
    format!("  certfile: {}\n  keyfile: {}\n  cafile: {}\n  verify_client: optional\n", path(&cert), path(&key), path(&tls.ca))
}

/// `DIR/pgpass` in libpq's passfile format (`host:port:db:user:password`): loopback,
/// and every node's own address in a `--netns` lab.
pub fn render_pgpass(lab: &Lab, passwords: &Passwords) -> String {
    let pw = &passwords.superuser;
    let mut text = format!("127.0.0.1:*:*:postgres:{pw}\nlocalhost:*:*:postgres:{pw}\n");
    for node in lab.nodes.iter().filter(|n| n.host != LOOPBACK) {
        text.push_str(&format!("{}:*:*:postgres:{pw}\n", node.host));
    }
    text
}

/// Writes `text` to `file` with mode 0600 (replacing it).
pub fn write_private(file: &Path, text: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(file);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::tests::sample;

    #[test]
    fn config_matches_the_node_format() {
        let mut lab = sample(Path::new("/tmp/raftgres-lab"));
        lab.base_port = 15432;
        lab.nodes =
            crate::ports::layout(3, 15432).expect("layout").into_iter().zip(lab.nodes).map(|(ports, n)| LabNode { ports, ..n }).collect();
        let pw = Passwords { superuser: "S".repeat(20), replication: "R".repeat(20) };
        let yml = render(&lab, &lab.nodes[1], &pw);
        for line in [
            "name: node2\n",
            "data-dir: /tmp/raftgres-lab/node2/raft ",
            "listen-peer: 127.0.0.1:12480\n",
            "listen-client: 127.0.0.1:12479\n",
            "initial-cluster: node1=127.0.0.1:12380,node2=127.0.0.1:12480,node3=127.0.0.1:12580\n",
            "scope: demo\n",
            "restapi:\n  listen: 127.0.0.1:18009\n",
            "postgresql:\n  listen: 127.0.0.1:15433\n  data_dir: /tmp/raftgres-lab/node2/pgdata\n",
            "  bin_dir: /usr/lib/postgresql/15/bin\n  authentication:\n",
            "    superuser: {username: postgres, password: SSSSSSSSSSSSSSSSSSSS}\n",
            "    replication: {username: replicator, password: RRRRRRRRRRRRRRRRRRRR}\n",
        ] {
            assert!(yml.contains(line), "missing {line:?} in\n{yml}");
        }
        assert_eq!(render_pgpass(&lab, &pw).lines().next(), Some("127.0.0.1:*:*:postgres:SSSSSSSSSSSSSSSSSSSS"));
        assert!(!yml.contains("bootstrap") && !yml.contains("heartbeat-interval"), "{yml}");
        lab.standby_cluster = Some(("127.0.0.1".into(), 5432));
        let yml = render(&lab, &lab.nodes[1], &pw);
        assert!(yml.ends_with("bootstrap:\n  dcs:\n    standby_cluster: {host: 127.0.0.1, port: 5432}\n"), "{yml}");
        lab.profile = crate::description::Profile::Fast;
        let yml = render(&lab, &lab.nodes[1], &pw);
        assert!(
            yml.ends_with(
                "bootstrap:\n  dcs:\n    ttl: 1\n    loop_wait: 1\n    retry_timeout: 0.3\n    safety_margin: 0.2\n    standby_cluster: {host: 127.0.0.1, port: 5432}\n"
            ),
            "{yml}"
        );
        let doc: serde_json::Value = serde_norway::from_str(&yml).expect("YAML");
        let dcs = raftgres_agent::config::DynamicConfig::from_json(&doc["bootstrap"]["dcs"]).expect("bootstrap.dcs reads");
        dcs.check_timing().expect("the fast profile passes the node's own timing checks");
        assert_eq!(dcs.timing(), raftgres_agent::timing::Timing::fast());
        assert!(yml.contains("\nheartbeat-interval: 50\nelection-timeout: 250\n"), "{yml}");
    }

    #[test]
    fn netns_nodes_listen_on_their_own_address() {
        let mut lab = sample(Path::new("/tmp/raftgres-lab"));
        lab.netns_prefix = Some("rg".into());
        for (i, n) in lab.nodes.iter_mut().enumerate() {
            n.host = crate::description::netns_host(i);
            n.netns = Some(crate::description::netns_namespace("rg", i));
        }
        let pw = Passwords::random();
        let yml = render(&lab, &lab.nodes[2], &pw);
        for line in [
            "listen-peer: 10.250.0.3:2580\n",
            "listen-client: 10.250.0.3:2579\n",
            "initial-cluster: node1=10.250.0.1:2380,node2=10.250.0.2:2480,node3=10.250.0.3:2580\n",
            "restapi:\n  listen: 10.250.0.3:8010\n",
            "postgresql:\n  listen: 10.250.0.3:5434\n",
        ] {
            assert!(yml.contains(line), "missing {line:?} in\n{yml}");
        }
        assert!(render_pgpass(&lab, &pw).contains("\n10.250.0.2:*:*:postgres:"));
    }

    #[test]
    fn tls_labs_configure_both_ports_and_the_rest_api() {
        let mut lab = sample(Path::new("/tmp/raftgres-lab"));
        let dir = Path::new("/tmp/raftgres-lab/tls");
        lab.tls = Some(crate::description::LabTls {
            ca: dir.join("ca.crt"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        });
        let yml = render(&lab, &lab.nodes[1], &Passwords::random());
        let files = "cert-file: /tmp/raftgres-lab/tls/node2.crt, key-file: /tmp/raftgres-lab/tls/node2.key, \
                     trusted-ca-file: /tmp/raftgres-lab/tls/ca.crt";
        for line in [
            format!("client-transport-security: {{{files}, client-cert-auth: true}}\n"),
            format!("peer-transport-security: {{{files}}}\n"),
            "  listen: 127.0.0.1:8009\n  certfile: /tmp/raftgres-lab/tls/node2.crt\n  keyfile: /tmp/raftgres-lab/tls/node2.key\n\
             \x20 cafile: /tmp/raftgres-lab/tls/ca.crt\n  verify_client: optional\n"
                .to_string(),
        ] {
            assert!(yml.contains(&line), "missing {line:?} in\n{yml}");
        }
        let plain = render(&sample(Path::new("/tmp/raftgres-lab")), &lab.nodes[1], &Passwords::random());
        assert!(!plain.contains("transport-security") && !plain.contains("certfile"), "{plain}");
    }

    #[test]
    fn odd_paths_are_quoted_and_passwords_random() {
        assert_eq!(scalar("/tmp/my lab"), "\"/tmp/my lab\"");
        assert_eq!(scalar("127.0.0.1:2380"), "127.0.0.1:2380");
        let (a, b) = (Passwords::random(), Passwords::random());
        assert_eq!(a.superuser.len(), 20);
        assert!(a.superuser.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_ne!(a.superuser, a.replication);
    }
}
