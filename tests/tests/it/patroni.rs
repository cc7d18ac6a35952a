//! The migration path for Patroni users, step one: a real Patroni 4 (from PyPI, in the
//! venv `deploy/setup.sh --tests` installs) keeps its DCS in three store-only raftgres
//! nodes through its `etcd3` driver, which speaks etcd's JSON gateway. Patroni bootstraps
//! a 3-node PostgreSQL 15 cluster there, and after a `kill -9` of its primary (the
//! patroni process and the postmaster) another member takes the leader key and accepts
//! writes. The Patroni configuration is benches/peers.sh's template.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use raftgres_tests::client::Client;
use raftgres_tests::{eventually, free_port, log_tail, Cluster};
use serde_json::Value;

use crate::client_http::curl_with;
use crate::wait_leader;

/// Where `deploy/setup.sh --tests` (and benches/peers.sh) install Patroni.
const PATRONI: &str = "/opt/raftgres-peers/venv/bin/patroni";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const SUPERUSER_PASSWORD: &str = "patroni-test-su";

/// One Patroni node: its ports, directory and process.
struct PatroniNode {
    name: String,
    rest: u16,
    pg: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PatroniNode {
    /// The postmaster's pid (first line of `postmaster.pid`), while it has one.
    fn postmaster(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.join("pgdata/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// SIGKILL to the patroni process and the postmaster (its backends follow it), once.
    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        if let Some(pid) = self.postmaster() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// Three Patroni nodes on the DCS at `hosts`; everything killed when dropped.
struct Patroni {
    _dir: tempfile::TempDir,
    nodes: Vec<PatroniNode>,
}

impl Drop for Patroni {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

impl Patroni {
    fn start(hosts: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            Path::new(PATRONI).exists(),
            "{PATRONI} is missing: run `deploy/setup.sh --tests` (it installs Patroni 4 from PyPI)"
        );
        // Under /tmp and 0755: when the tests run as root, Patroni and PostgreSQL run as
        // the `raftgres` user, which must reach it.
        let dir = tempfile::Builder::new().prefix("raftgres-patroni-").tempdir_in("/tmp")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let user = if raftgres_lab::is_root() { Some(raftgres_lab::ensure_user()?) } else { None };
        let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/peers/patroni.yml.in"))?;
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir(&node_dir)?;
            std::fs::set_permissions(&node_dir, std::fs::Permissions::from_mode(0o700))?;
            let (name, rest, pg) = (format!("node{i}"), free_port(), free_port());
            let config = template
                .replace("@NAME@", &name)
                .replace("@REST@", &rest.to_string())
                .replace("@PG@", &pg.to_string())
                .replace("@ETCD_HOSTS@", hosts)
                .replace("@DIR@", &node_dir.to_string_lossy())
                .replace("@PG_BIN@", PG_BIN)
                // Patroni's smallest timings: a failover within about 20 s.
                .replace("@TTL@", "20")
                .replace("@LOOP_WAIT@", "1")
                .replace("@RETRY_TIMEOUT@", "3")
                .replace("@SU_PW@", SUPERUSER_PASSWORD)
                .replace("@REPL_PW@", "patroni-test-repl");
            let config_path = node_dir.join("patroni.yml");
            std::fs::write(&config_path, config)?;
            let log = File::create(node_dir.join("patroni.log"))?;
            if let Some(u) = &user {
                raftgres_lab::chown_tree(&node_dir, u.uid, u.gid)?;
            }
            let mut cmd = Command::new(PATRONI);
            cmd.arg(&config_path).current_dir(&node_dir).stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
            if let Some(u) = &user {
                cmd.uid(u.uid).gid(u.gid).env("HOME", &u.home);
            }
            let child = cmd.spawn().context("starting patroni")?;
            nodes.push(PatroniNode { name, rest, pg, dir: node_dir, child: Some(child) });
        }
        Ok(Self { _dir: dir, nodes })
    }

    /// Patroni's `GET /cluster` from node `i`.
    fn cluster_view(&self, i: usize) -> anyhow::Result<Value> {
        let (text, code) = curl_with(&[], &format!("http://127.0.0.1:{}/cluster", self.nodes[i].rest))?;
        anyhow::ensure!(code == 200, "GET /cluster on {}: {code} {text}", self.nodes[i].name);
        Ok(serde_json::from_str(&text)?)
    }

    /// The leader's index when node `i` sees one leader and every other member of
    /// `among` streaming from it.
    fn settled_leader(&self, i: usize, among: &[usize]) -> anyhow::Result<usize> {
        let view = self.cluster_view(i)?;
        let members = view["members"].as_array().ok_or_else(|| anyhow::anyhow!("no members: {view}"))?;
        let role_of = |name: &str| members.iter().find(|m| m["name"] == name).map(|m| (m["role"].clone(), m["state"].clone()));
        let mut leader = None;
        for &j in among {
            match role_of(&self.nodes[j].name) {
                Some((role, _)) if role == "leader" => leader = Some(j),
                Some((_, state)) if state == "streaming" => {}
                other => anyhow::bail!("{} is {other:?}: {view}", self.nodes[j].name),
            }
        }
        leader.ok_or_else(|| anyhow::anyhow!("no leader: {view}"))
    }

    /// The last lines of every Patroni log, for failure messages.
    fn logs(&self) -> String {
        self.nodes.iter().map(|n| log_tail(&n.name, &std::fs::read_to_string(n.dir.join("patroni.log")).unwrap_or_default())).collect()
    }

    /// `sql` on node `i`'s PostgreSQL as the superuser, over TCP.
    fn psql(&self, i: usize, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(Path::new(PG_BIN).join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.nodes[i].pg.to_string(), "-U", "postgres", "-d", "postgres", "-XAtc", sql])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()?;
        anyhow::ensure!(out.status.success(), "psql on {}: {}", self.nodes[i].name, String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// The value of the leader key Patroni keeps in the store (scope `peers`).
async fn dcs_leader(store: &Client) -> anyhow::Result<Option<String>> {
    store.get("/service/peers/leader").await
}

#[tokio::test]
async fn patroni_uses_the_raftgres_store_as_its_etcd_and_fails_over() -> anyhow::Result<()> {
    let store = Cluster::start(3)?;
    wait_leader(&store, &[]).await?;
    let hosts = store.nodes.iter().map(|n| n.client_addr()).collect::<Vec<_>>().join(",");
    let mut patroni = Patroni::start(&hosts)?;
    let client = Client::connect(&store.nodes[0].client_addr()).await?;

    let all = [0, 1, 2];
    let started = Instant::now();
    let bootstrapped = eventually(Duration::from_secs(180), "Patroni bootstraps a leader and two streaming replicas", || {
        let settled = patroni.settled_leader(0, &all);
        async move { settled }
    })
    .await;
    let primary = bootstrapped.with_context(|| patroni.logs())?;
    eprintln!("Patroni bootstrapped on raftgres in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(dcs_leader(&client).await?.as_deref(), Some(patroni.nodes[primary].name.as_str()), "the leader key is in raftgres");
    patroni.psql(primary, "CREATE TABLE failover (id int); INSERT INTO failover VALUES (1)")?;

    let killed = Instant::now();
    patroni.nodes[primary].kill();
    let rest: Vec<usize> = all.into_iter().filter(|&i| i != primary).collect();
    let promoted = eventually(Duration::from_secs(90), "a surviving member becomes the leader", || {
        let settled = patroni.settled_leader(rest[0], &rest);
        async move { settled }
    })
    .await;
    let new_primary = promoted.with_context(|| patroni.logs())?;
    eprintln!("a new Patroni leader settled {:.1} s after the kill -9", killed.elapsed().as_secs_f64());
    assert_ne!(new_primary, primary);
    assert_eq!(dcs_leader(&client).await?.as_deref(), Some(patroni.nodes[new_primary].name.as_str()));
    assert_eq!(patroni.psql(new_primary, "SELECT pg_is_in_recovery()")?, "f");
    patroni.psql(new_primary, "INSERT INTO failover VALUES (2)")?;
    assert_eq!(patroni.psql(new_primary, "SELECT string_agg(id::text, ',' ORDER BY id) FROM failover")?, "1,2");
    Ok(())
}
