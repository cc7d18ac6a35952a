//! A harness over `raftctl lab`: a whole raftgres cluster (agents and PostgreSQL) in a
//! temporary directory, on a random block of free ports, driven through the same
//! subcommands a learner types (`up`, `kill`, `start`, `pause`, `resume`, `down`).
//! Nodes are numbered from 0 here (`node1` is index 0), as in [`crate::Cluster`].

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

/// The classic layout's node1 PostgreSQL port; `--base-port` shifts every port by
/// `base - CLASSIC_BASE` (the same rule as `raftctl lab`).
const CLASSIC_BASE: u16 = 5432;
/// Base ports handed out in this process, so two labs of parallel tests never share a port.
static RESERVED: Mutex<Vec<(u16, usize)>> = Mutex::new(Vec::new());

/// Every port of node `i` (PostgreSQL, REST, etcd API, Raft peer) for a base port.
pub fn node_ports(base_port: u16, i: usize) -> [u16; 4] {
    let shift =
        |classic: usize| (classic + usize::from(base_port) - usize::from(CLASSIC_BASE)) as u16;
    [
        shift(5432 + i),
        shift(8008 + i),
        shift(2379 + 100 * i),
        shift(2380 + 100 * i),
    ]
}

fn all_ports(base_port: u16, nodes: usize) -> Vec<u16> {
    (0..nodes).flat_map(|i| node_ports(base_port, i)).collect()
}

/// A base port in 20000..50000 whose ports are all free now and not used by another lab
/// of this process; reserved until the process ends.
fn pick_base_port(nodes: usize) -> anyhow::Result<u16> {
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = 20000 + ((seed >> 33) % 30000) as u16;
        let ports = all_ports(base, nodes);
        let taken = reserved
            .iter()
            .flat_map(|(b, n)| all_ports(*b, *n))
            .any(|p| ports.contains(&p));
        if !taken
            && ports
                .iter()
                .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            reserved.push((base, nodes));
            return Ok(base);
        }
    }
    bail!("no free block of lab ports found in 20000..50000")
}

/// A running lab; `lab down` when dropped.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub base_port: u16,
    pub nodes: usize,
}

impl Lab {
    /// `raftctl lab up` with `nodes` nodes, waiting (up to raftctl's 120 s) for a primary
    /// and streaming replicas.
    pub fn up(nodes: usize) -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..3 {
            // Under /tmp and 0755: when the tests run as root the nodes run as `raftgres`,
            // which must traverse it.
            let dir = tempfile::Builder::new()
                .prefix("raftgres-lab-")
                .tempdir_in("/tmp")
                .context("creating the lab's directory")?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            let lab = Self {
                dir,
                base_port: pick_base_port(nodes)?,
                nodes,
            };
            let out = lab.raftctl(&[
                "up",
                "--nodes",
                &nodes.to_string(),
                "--base-port",
                &lab.base_port.to_string(),
            ])?;
            if out.status.success() {
                return Ok(lab);
            }
            let text = describe(&out);
            // Another process took a port between our probe and raftctl's: try another block.
            if !text.contains("is not free") {
                bail!("raftctl lab up failed:\n{text}");
            }
            last_error = Some(text);
        }
        bail!(
            "raftctl lab up failed three times on busy ports:\n{}",
            last_error.unwrap_or_default()
        )
    }

    /// Runs `raftctl lab ARGS --dir DIR` and returns its output whatever the exit status.
    pub fn raftctl(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(crate::bin("raftctl"))
            .arg("lab")
            .args(args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .context("running raftctl")
    }

    /// `raftctl lab ACTION nodeN`, failing with raftctl's output when it fails.
    fn node_command(&self, action: &str, i: usize) -> anyhow::Result<()> {
        let out = self.raftctl(&[action, &self.name(i)])?;
        if !out.status.success() {
            bail!(
                "raftctl lab {action} {} failed:\n{}",
                self.name(i),
                describe(&out)
            );
        }
        Ok(())
    }

    /// `node1` for index 0.
    pub fn name(&self, i: usize) -> String {
        format!("node{}", i + 1)
    }
    pub fn pg_port(&self, i: usize) -> u16 {
        node_ports(self.base_port, i)[0]
    }
    pub fn rest_port(&self, i: usize) -> u16 {
        node_ports(self.base_port, i)[1]
    }
    pub fn client_port(&self, i: usize) -> u16 {
        node_ports(self.base_port, i)[2]
    }
    pub fn peer_port(&self, i: usize) -> u16 {
        node_ports(self.base_port, i)[3]
    }
    /// Every node's etcd API address.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.nodes)
            .map(|i| format!("127.0.0.1:{}", self.client_port(i)))
            .collect()
    }
    pub fn pgpass(&self) -> PathBuf {
        self.dir.path().join("pgpass")
    }

    /// Crash the whole node (agent, helpers, PostgreSQL) with SIGKILL.
    pub fn kill(&self, i: usize) -> anyhow::Result<()> {
        self.node_command("kill", i)
    }
    /// Start a stopped node again.
    pub fn start(&self, i: usize) -> anyhow::Result<()> {
        self.node_command("start", i)
    }
    /// SIGSTOP to the node's agent only.
    pub fn pause(&self, i: usize) -> anyhow::Result<()> {
        self.node_command("pause", i)
    }
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        self.node_command("resume", i)
    }

    /// `psql -Atc SQL` as `postgres` on node `i`; trimmed stdout, or an error with stderr.
    pub fn psql(&self, i: usize, sql: &str) -> anyhow::Result<String> {
        let port = self.pg_port(i).to_string();
        let out = Command::new("/usr/bin/psql")
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ])
            .env("PGPASSFILE", self.pgpass())
            .env("PGCONNECT_TIMEOUT", "2")
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .output()
            .context("running /usr/bin/psql")?;
        if !out.status.success() {
            bail!(
                "psql on {} (port {port}) failed: {}",
                self.name(i),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The index of the node whose PostgreSQL accepts writes now, if exactly one does.
    pub fn primary(&self) -> anyhow::Result<usize> {
        let primaries: Vec<usize> = (0..self.nodes)
            .filter(|&i| {
                self.psql(i, "select pg_is_in_recovery()")
                    .is_ok_and(|r| r == "f")
            })
            .collect();
        match primaries.as_slice() {
            [one] => Ok(*one),
            [] => bail!("no node's PostgreSQL is a primary"),
            many => bail!("several primaries: {many:?}"),
        }
    }

    /// Node `i`'s whole log.
    pub fn log(&self, i: usize) -> String {
        let path = self.dir.path().join(self.name(i)).join("raftgres.log");
        std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last 40 lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.nodes {
            let text = self.log(i);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out.push_str(&format!(
                "---- {} ----\n{}\n",
                self.name(i),
                tail.join("\n")
            ));
        }
        out
    }
}

fn describe(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("RAFTGRES_TEST_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
        match self.raftctl(&["down"]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("raftctl lab down failed:\n{}", describe(&out)),
            Err(e) => eprintln!("raftctl lab down: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_raftctl_lab() {
        assert_eq!(node_ports(5432, 0), [5432, 8008, 2379, 2380]);
        assert_eq!(node_ports(15432, 2), [15434, 18010, 12579, 12580]);
        let a = pick_base_port(3).expect("base");
        let b = pick_base_port(3).expect("base");
        assert!((20000..50000).contains(&a));
        assert!(all_ports(a, 3).iter().all(|p| !all_ports(b, 3).contains(p)));
    }

    /// Needs `cargo build --bins` and PostgreSQL; a replica sees the primary's writes.
    #[test]
    #[ignore = "starts a whole PostgreSQL cluster; run with --ignored"]
    fn lab_replicates_writes() -> anyhow::Result<()> {
        let lab = Lab::up(3)?;
        let p = lab.primary()?;
        lab.psql(p, "create table t (x int); insert into t values (42)")?;
        let r = (p + 1) % 3;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match lab.psql(r, "select x from t") {
                Ok(v) if v == "42" => return Ok(()),
                other if std::time::Instant::now() > deadline => bail!("replica {r}: {other:?}"),
                _ => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }
}

/// Retries `f` every 100 ms until it succeeds or `timeout` passes (synchronous twin of
/// [`crate::eventually`], for tests that drive processes).
pub fn wait_for<T>(timeout: std::time::Duration, what: &str, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if std::time::Instant::now() >= deadline => bail!("{what}: still failing after {timeout:?}: {e:#}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// The status code of `METHOD path` on the REST API at `127.0.0.1:port` (what HAProxy's
/// `option httpchk` sees).
pub fn http_status(port: u16, method: &str, path: &str) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let code = answer.split_whitespace().nth(1).context("empty HTTP answer")?;
    Ok(code.parse()?)
}

impl Lab {
    /// The postmaster pid of node `i` (from its postmaster.pid).
    pub fn postmaster_pid(&self, i: usize) -> anyhow::Result<i32> {
        let path = self.dir.path().join(self.name(i)).join("pgdata/postmaster.pid");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text.lines().next().context("empty postmaster.pid")?.trim().parse()?)
    }

    /// Waits until exactly one node is primary and every other one is a streaming
    /// replica that has replayed `marker` (a row in table `t`); returns the primary.
    pub fn wait_healthy(&self, timeout: std::time::Duration, marker: &str) -> anyhow::Result<usize> {
        wait_for(timeout, "one primary and every replica streaming", || {
            let primary = self.primary()?;
            for i in (0..self.nodes).filter(|&i| i != primary) {
                let state = self.psql(i, "select status from pg_stat_wal_receiver")?;
                anyhow::ensure!(state == "streaming", "{} is not streaming ({state:?})", self.name(i));
                let found = self.psql(i, &format!("select count(*) from t where v = '{marker}'"))?;
                anyhow::ensure!(found == "1", "{} has not replayed {marker}", self.name(i));
            }
            Ok(primary)
        })
    }
}
