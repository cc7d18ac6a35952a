//! A harness that runs real `raftgres` processes on loopback for the integration tests:
//! free ports, one temporary directory per cluster, logs kept per node and printed when
//! a test fails, every process killed when the cluster is dropped.

pub mod client;
pub mod lab;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Path of a binary built in this workspace (`cargo build --bins` must have run).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(path.exists(), "{} not found: run `cargo build --bins` first", path.display());
    path
}

/// The last 40 lines of `name`'s log `text` under a heading, for failure messages.
pub fn log_tail(name: &str, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    format!("---- {name} ----\n{}\n", lines[lines.len().saturating_sub(40)..].join("\n"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// One node of a test cluster.
pub struct Node {
    pub name: String,
    pub peer_port: u16,
    pub client_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A cluster of `raftgres` processes.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub extra_args: Vec<String>,
}

impl Cluster {
    /// Starts `n` nodes forming a new cluster.
    pub fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, &[])
    }

    pub fn start_with(n: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut cluster = Self::prepare(n, extra_args)?;
        for i in 0..n {
            cluster.spawn(i, "new")?;
        }
        Ok(cluster)
    }

    /// `n` nodes of a new cluster, none started yet.
    pub fn prepare(n: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let nodes = (1..=n).map(|i| Self::new_node(dir.path(), &format!("node{i}"))).collect();
        Ok(Self { dir, nodes, extra_args: extra_args.iter().map(|s| s.to_string()).collect() })
    }

    fn new_node(dir: &Path, name: &str) -> Node {
        Node {
            name: name.to_string(),
            peer_port: free_port(),
            client_port: free_port(),
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    pub fn initial_cluster(&self) -> String {
        self.nodes.iter().map(|n| format!("{}={}", n.name, n.peer_addr())).collect::<Vec<_>>().join(",")
    }

    /// Starts node `i` (again) with `--initial-cluster-state state`.
    pub fn spawn(&mut self, i: usize, state: &str) -> anyhow::Result<()> {
        let initial = self.initial_cluster();
        let node = &mut self.nodes[i];
        let log = File::options().create(true).append(true).open(&node.log)?;
        let child = Command::new(bin("raftgres"))
            .args(["--name", &node.name, "--data-dir"])
            .arg(&node.data_dir)
            .args(["--listen-peer", &node.peer_addr(), "--listen-client", &node.client_addr()])
            .args(["--initial-cluster", &initial, "--initial-cluster-state", state])
            .args(&self.extra_args)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning raftgres")?;
        node.child = Some(child);
        Ok(())
    }

    /// Adds a node entry (not started) and returns its index.
    pub fn add_node(&mut self, name: &str) -> usize {
        let node = Self::new_node(self.dir.path(), name);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i, "new")
    }

    /// SIGKILL of node `i`, and waits for it to be gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (up to 10 s), returning the exit status code.
    pub fn stop(&mut self, i: usize) -> Option<i32> {
        let mut child = self.nodes[i].child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok().and_then(|s| s.code())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(Node::client_addr).collect()
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(|n| log_tail(&n.name, &std::fs::read_to_string(&n.log).unwrap_or_default())).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() || std::env::var_os("RAFTGRES_TEST_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Retries `f` every 100 ms until it succeeds or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => bail!("{what}: still failing after {timeout:?}: {e:#}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
