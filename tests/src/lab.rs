//! A harness over `raftctl lab`: a whole raftgres cluster (agents and PostgreSQL) in a
//! temporary directory, on a random block of free ports, driven through the same
//! subcommands a learner types (`up`, `kill`, `stop`, `start`, `pause`, `resume`, `down`).
//! Nodes are numbered from 0 here (`node1` is index 0), as in [`crate::Cluster`].
//!
//! [`Lab::up_netns`] runs each node in its own network namespace (`raftctl lab up
//! --netns`, node i at 10.250.0.i with the classic ports) for real partitions and netem.
//! Those labs share the subnet 10.250.0.0/24, so they are serialized across test
//! processes by a lock file, and each gets a namespace prefix of its own.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use raftgres_lab::netns_host;
use raftgres_lab::ports::{self, NodePorts, DEFAULT_BASE_PORT};

/// Ports handed out in this process, so two labs of parallel tests never share a port.
static RESERVED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
/// Network-namespace labs made by this process (for unique prefixes).
static NETNS_LABS: AtomicU32 = AtomicU32::new(0);
/// Held (flock) for the whole life of a netns lab: they all use 10.250.0.0/24.
const NETNS_LOCK: &str = "/tmp/raftgres-netns-tests.lock";
/// `n` in base 36 (lower case).
fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// A namespace prefix no other lab uses: `rg-<pid>-<counter>-` (base 36, at most 12
/// characters, as `netns.sh` requires).
fn netns_prefix() -> String {
    let n = NETNS_LABS.fetch_add(1, Ordering::Relaxed);
    format!("rg-{}-{}-", base36(std::process::id()), base36(n % 1296))
}

/// Whether a bridge name is one of this harness's (`rg-<pid>-<n>-br0`); returns the prefix.
fn test_prefix_of_bridge(name: &str) -> Option<&str> {
    let prefix = name.strip_suffix("br0")?;
    let mut parts = prefix.strip_prefix("rg-")?.strip_suffix('-')?.split('-');
    let ok = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
    (ok(parts.next()) && ok(parts.next()) && parts.next().is_none()).then_some(prefix)
}

/// Whether this process runs with effective uid 0.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).map(|u| u == "0"))
        .unwrap_or(false)
}

/// `deploy/netns/netns.sh` of this workspace.
fn netns_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/netns/netns.sh")
}

/// Removes the namespaces, bridge and rules of `prefix` (best effort).
fn destroy_netns(prefix: &str) {
    let _ = Command::new("bash").arg(netns_script()).args(["--prefix", prefix, "destroy"]).output();
}

/// Removes the namespaces of test labs whose process died without cleaning up (while
/// we hold [`NETNS_LOCK`], no live test owns one).
fn destroy_stale_netns() -> anyhow::Result<()> {
    let out = Command::new("ip").args(["-o", "link", "show", "type", "bridge"]).output().context("running ip link")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for name in text.lines().filter_map(|l| l.split(':').nth(1)).map(str::trim) {
        if let Some(prefix) = test_prefix_of_bridge(name) {
            eprintln!("removing the network namespaces of a dead test lab ({prefix})");
            let out =
                Command::new("bash").arg(netns_script()).args(["--prefix", prefix, "destroy"]).output().context("running netns.sh")?;
            if !out.status.success() {
                bail!("netns.sh --prefix {prefix} destroy failed:\n{}", describe(&out));
            }
        }
    }
    Ok(())
}

/// Every port of an `nodes`-node lab with this base port, by `raftctl lab`'s own layout.
fn all_ports(base_port: u16, nodes: usize) -> anyhow::Result<Vec<u16>> {
    Ok(ports::layout(nodes, base_port)?.iter().flat_map(|p| p.named().map(|(_, port)| port)).collect())
}

/// A base port in 20000..50000 whose ports are all free now and not used by another lab
/// of this process; reserved until the process ends.
fn pick_base_port(nodes: usize) -> anyhow::Result<u16> {
    let mut seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id());
    let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..200 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // Every port of the block stays below Linux's ephemeral range (32768 up), where an
        // outgoing connection could take one between this probe and the node's bind.
        let base = 8000 + ((seed >> 33) % 22000) as u16;
        let ports = all_ports(base, nodes)?;
        let taken = ports.iter().any(|p| reserved.contains(p));
        if !taken && ports.iter().all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok()) {
            reserved.extend(ports);
            return Ok(base);
        }
    }
    bail!("no free block of lab ports found for base ports 8000..30000")
}

/// A running lab; `lab down` when dropped.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub base_port: u16,
    pub nodes: usize,
    /// Every node's ports (`raftctl lab`'s layout for `base_port`).
    ports: Vec<NodePorts>,
    /// The namespace prefix of a [`Lab::up_netns`] lab (node1 in `<prefix>1`).
    pub netns: Option<String>,
    /// The lock that keeps other netns labs away until this one is down.
    _netns_lock: Option<std::fs::File>,
}

/// A temporary directory for a lab: under /tmp and 0755, because when the tests run as
/// root the nodes run as `raftgres`, which must traverse it.
fn lab_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("raftgres-lab-").tempdir_in("/tmp").context("creating the lab's directory")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// The right to make one network-namespace lab on this machine: holds [`NETNS_LOCK`]
/// (every such lab uses 10.250.0.0/24) and names a namespace prefix no other lab uses.
/// For tests whose lab `raftctl` makes itself (`raftctl chaos`); [`Lab::up_netns`] takes
/// one too.
pub struct NetnsClaim {
    pub lock: std::fs::File,
    pub prefix: String,
}

impl NetnsClaim {
    /// Waits for the lock, removes what dead test labs left behind, picks a prefix.
    pub fn take() -> anyhow::Result<Self> {
        if !is_root() {
            bail!(
                "network-namespace tests need root (ip netns, iptables, tc): run them as root, as CI does \
                 (e.g. `sudo -E cargo nextest run -p raftgres-tests partition`)"
            );
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(NETNS_LOCK)
            .with_context(|| format!("opening {NETNS_LOCK}"))?;
        lock.lock().with_context(|| format!("locking {NETNS_LOCK}"))?;
        destroy_stale_netns()?;
        Ok(Self { lock, prefix: netns_prefix() })
    }

    /// Removes this claim's namespaces, whatever state they are in.
    pub fn destroy(&self) {
        destroy_netns(&self.prefix);
    }
}

impl Lab {
    /// `raftctl lab up` with `nodes` nodes, waiting (up to raftctl's 120 s) for a primary
    /// and streaming replicas.
    pub fn up(nodes: usize) -> anyhow::Result<Self> {
        Self::up_with(nodes, &[])
    }

    /// [`Lab::up`] with more `raftctl lab up` arguments (e.g. `--haproxy`).
    pub fn up_with(nodes: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..3 {
            let base_port = pick_base_port(nodes)?;
            let ports = ports::layout(nodes, base_port)?;
            let lab = Self { dir: lab_dir()?, base_port, nodes, ports, netns: None, _netns_lock: None };
            let (n, base) = (nodes.to_string(), lab.base_port.to_string());
            let mut args = vec!["up", "--nodes", &n, "--base-port", &base];
            args.extend_from_slice(extra_args);
            let out = lab.raftctl(&args)?;
            if out.status.success() {
                return Ok(lab);
            }
            let text = describe(&out);
            // Another process took a port between our probe and raftctl's, or before a node
            // bound it: try another block.
            if !text.contains("is not free") && !text.contains("Address already in use") {
                bail!("raftctl lab up failed:\n{text}");
            }
            last_error = Some(text);
        }
        bail!("raftctl lab up failed three times on busy ports:\n{}", last_error.unwrap_or_default())
    }

    /// `raftctl lab up --netns` with `nodes` nodes, each in its own network namespace
    /// (node i at 10.250.0.i, classic ports), waiting for a primary and streaming
    /// replicas. Needs root; waits for any other netns lab of this machine's tests to be
    /// down first (they share 10.250.0.0/24). The namespaces go when the lab is dropped.
    pub fn up_netns(nodes: usize) -> anyhow::Result<Self> {
        let NetnsClaim { lock, prefix } = NetnsClaim::take()?;
        let (base_port, netns, _netns_lock) = (DEFAULT_BASE_PORT, Some(prefix.clone()), Some(lock));
        let lab = Self { dir: lab_dir()?, base_port, nodes, ports: ports::layout(nodes, base_port)?, netns, _netns_lock };
        let out = lab.raftctl(&["up", "--netns", "--netns-prefix", &prefix, "--nodes", &nodes.to_string()])?;
        if !out.status.success() {
            bail!("raftctl lab up --netns failed:\n{}", describe(&out));
        }
        Ok(lab)
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
        self.checked(&[action, &self.name(i)])
    }

    /// `raftctl lab ARGS`, failing with raftctl's output when it fails.
    fn checked(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = self.raftctl(args)?;
        if !out.status.success() {
            bail!("raftctl lab {} failed:\n{}", args.join(" "), describe(&out));
        }
        Ok(())
    }

    /// The address node `i` is reached at: 127.0.0.1, or 10.250.0.(i+1) in a netns lab.
    pub fn host(&self, i: usize) -> String {
        match self.netns {
            Some(_) => netns_host(i),
            None => "127.0.0.1".to_string(),
        }
    }
    pub fn pg_host(&self, i: usize) -> String {
        self.host(i)
    }
    pub fn rest_host(&self, i: usize) -> String {
        self.host(i)
    }
    /// `METHOD path` with a JSON `body` on node `i`'s REST API: (status, body).
    pub fn rest(&self, i: usize, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect((self.rest_host(i).as_str(), self.rest_port(i)))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let code = answer.split_whitespace().nth(1).context("empty HTTP answer")?.parse()?;
        let text = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        Ok((code, text))
    }

    /// The status code of `METHOD path` on node `i`'s REST API.
    pub fn rest_status(&self, i: usize, method: &str, path: &str) -> anyhow::Result<u16> {
        http_status_at(&self.rest_host(i), self.rest_port(i), method, path)
    }

    /// Cuts node `i` off from every other node (netns labs; clients still reach it).
    pub fn partition(&self, i: usize) -> anyhow::Result<()> {
        self.node_command("partition", i)
    }
    /// Cuts only the link between node `i` and node `from`; `oneway`: only what `i` sends.
    pub fn partition_from(&self, i: usize, from: usize, oneway: bool) -> anyhow::Result<()> {
        let (node, other) = (self.name(i), self.name(from));
        let mut args = vec!["partition", node.as_str(), "--from", other.as_str()];
        if oneway {
            args.push("--oneway");
        }
        self.checked(&args)
    }
    /// Removes every partition.
    pub fn heal(&self) -> anyhow::Result<()> {
        self.checked(&["heal"])
    }
    /// tc netem on node `i`'s link, e.g. `"delay 100ms 20ms loss 2%"`.
    pub fn netem(&self, i: usize, spec: &str) -> anyhow::Result<()> {
        let node = self.name(i);
        self.checked(&["netem", &node, spec])
    }
    /// Removes node `i`'s netem settings.
    pub fn clear(&self, i: usize) -> anyhow::Result<()> {
        self.node_command("clear", i)
    }

    /// `node1` for index 0.
    pub fn name(&self, i: usize) -> String {
        format!("node{}", i + 1)
    }
    pub fn pg_port(&self, i: usize) -> u16 {
        self.ports[i].postgres
    }
    pub fn rest_port(&self, i: usize) -> u16 {
        self.ports[i].rest
    }
    pub fn client_port(&self, i: usize) -> u16 {
        self.ports[i].client
    }
    pub fn peer_port(&self, i: usize) -> u16 {
        self.ports[i].peer
    }
    /// Every node's etcd API address.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.nodes).map(|i| format!("{}:{}", self.host(i), self.client_port(i))).collect()
    }
    pub fn pgpass(&self) -> PathBuf {
        self.dir.path().join("pgpass")
    }
    /// A `--tls` lab's CA certificate, and the client certificate and key (`DIR/tls/`).
    pub fn tls_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("tls").join(name)
    }

    /// `raftctl --endpoints <this lab> --lab DIR ARGS` (not a `lab` subcommand; `--lab`
    /// makes it use a `--tls` lab's certificates); stdout on success, an error with
    /// stderr otherwise.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.ctl_with(args, &[], None)
    }

    /// [`Lab::ctl`] with environment variables `env` and `stdin` as its standard input
    /// (None: an empty one).
    pub fn ctl_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> anyhow::Result<String> {
        use std::io::Write;
        let mut child = Command::new(crate::bin("raftctl"))
            .arg("--endpoints")
            .arg(self.endpoints().join(","))
            .arg("--lab")
            .arg(self.dir.path())
            .args(args)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running raftctl")?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).context("writing raftctl's standard input")?;
        }
        let out = child.wait_with_output().context("running raftctl")?;
        if !out.status.success() {
            bail!("raftctl {} failed: {}", args.join(" "), describe(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Crash the whole node (agent, helpers, PostgreSQL) with SIGKILL.
    pub fn kill(&self, i: usize) -> anyhow::Result<()> {
        self.node_command("kill", i)
    }
    /// Stop the node's agent gracefully (SIGTERM to raftgres only) and wait for it to exit.
    pub fn stop(&self, i: usize) -> anyhow::Result<()> {
        self.node_command("stop", i)
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
    /// In a netns lab a statement may run at most 10 s (a fenced node must not hang the
    /// test) and connecting may take 5 s (netem).
    pub fn psql(&self, i: usize, sql: &str) -> anyhow::Result<String> {
        self.psql_at(&self.pg_host(i), self.pg_port(i), &self.name(i), sql)
    }

    /// `psql -Atc SQL` as `postgres` through `host:port` (a node, or HAProxy in front of
    /// them; `label` names it in errors), with the lab's password file and timeouts.
    pub fn psql_at(&self, host: &str, port: u16, label: &str, sql: &str) -> anyhow::Result<String> {
        let port = port.to_string();
        let mut cmd = Command::new("/usr/bin/psql");
        if self.netns.is_some() {
            cmd.env("PGOPTIONS", "-c statement_timeout=10s");
        }
        let out = cmd
            .args(["-X", "-h", host, "-p", &port, "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .env("PGPASSFILE", self.pgpass())
            .env("PGCONNECT_TIMEOUT", if self.netns.is_some() { "5" } else { "2" })
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .output()
            .context("running /usr/bin/psql")?;
        if !out.status.success() {
            bail!("psql on {label} ({host}:{port}) failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits (up to `timeout`) until a node other than `old` runs as a primary.
    pub fn wait_new_primary(&self, old: usize, timeout: std::time::Duration) -> anyhow::Result<usize> {
        wait_for(timeout, "a new primary", || {
            (0..self.nodes)
                .filter(|&i| i != old)
                .find(|&i| self.psql(i, "select pg_is_in_recovery()").is_ok_and(|r| r == "f"))
                .ok_or_else(|| anyhow::anyhow!("no node but {} is a primary yet", self.name(old)))
        })
    }

    /// The index of the node whose PostgreSQL accepts writes now, if exactly one does.
    pub fn primary(&self) -> anyhow::Result<usize> {
        let primaries: Vec<usize> =
            (0..self.nodes).filter(|&i| self.psql(i, "select pg_is_in_recovery()").is_ok_and(|r| r == "f")).collect();
        match primaries.as_slice() {
            [one] => Ok(*one),
            [] => bail!("no node's PostgreSQL is a primary"),
            many => bail!("several primaries: {many:?}"),
        }
    }

    /// Node `i`'s whole log.
    pub fn log(&self, i: usize) -> String {
        let path = self.dir.path().join(self.name(i)).join("raftgres.log");
        std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The last 40 lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.nodes).map(|i| crate::log_tail(&self.name(i), &self.log(i))).collect()
    }
}

fn describe(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
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
        if let Some(prefix) = &self.netns {
            // `lab down` destroyed them unless it failed; destroying again is harmless.
            destroy_netns(prefix);
        }
        // The lock (if any) is released when `_netns_lock` is dropped, after this.
    }
}

/// Retries `f` every 100 ms until it succeeds or `timeout` passes (synchronous twin of
/// [`crate::eventually`], for tests that drive processes).
pub fn wait_for<T>(timeout: std::time::Duration, what: &str, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if std::time::Instant::now() >= deadline => {
                bail!("{what}: still failing after {timeout:?}: {e:#}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// The status code of `METHOD path` on the REST API at `127.0.0.1:port` (what HAProxy's
/// `option httpchk` sees).
pub fn http_status(port: u16, method: &str, path: &str) -> anyhow::Result<u16> {
    http_status_at("127.0.0.1", port, method, path)
}

/// [`http_status`] on the REST API at `host:port` (see [`Lab::rest_status`]).
pub fn http_status_at(host: &str, port: u16, method: &str, path: &str) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{host}:{port}").parse().with_context(|| format!("bad address {host}:{port}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))?;
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

    /// Waits until node `i`'s agent answers `GET /health` with 200 (after a start).
    pub fn wait_agent(&self, i: usize, timeout: std::time::Duration) -> anyhow::Result<()> {
        wait_for(timeout, "the agent's REST API answering /health", || {
            anyhow::ensure!(self.rest_status(i, "GET", "/health")? == 200, "not yet");
            Ok(())
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_prefixes_and_port_blocks_stay_apart() {
        assert_eq!(test_prefix_of_bridge("rg-2ht4w-a-br0"), Some("rg-2ht4w-a-"));
        assert_eq!(test_prefix_of_bridge("rgbr0"), None);
        assert_eq!(test_prefix_of_bridge("rg-x-br0"), None);
        let p = netns_prefix();
        assert!(p.len() <= 12 && test_prefix_of_bridge(&format!("{p}br0")).is_some(), "{p}");
        assert_eq!((base36(0), base36(35), base36(36)), ("0".into(), "z".into(), "10".into()));
        let a = pick_base_port(3).expect("base");
        let b = pick_base_port(3).expect("base");
        assert!((8000..30000).contains(&a));
        let (a, b) = (all_ports(a, 3).expect("ports"), all_ports(b, 3).expect("ports"));
        assert!(a.iter().all(|p| (1024..32768).contains(p)), "below the ephemeral range");
        assert!(a.iter().all(|p| !b.contains(p)));
    }
}
