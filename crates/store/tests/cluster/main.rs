//! In-process clusters of store nodes on loopback, each behind a [`proxy::Proxy`] that
//! the test uses to cut, mute or slow what reaches a node. One module per topic:
//! elections (terms and failover speed), leases (expiry, keep-alive on a new leader),
//! leadership (moves of the Raft leader) and applies (work off the Raft thread under
//! snapshots and leader moves).

mod applies;
mod elections;
mod leadership;
mod leases;
mod proxy;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_store::{ClusterState, RaftTiming, Store, StoreConfig};

use proxy::{Link, Proxy};

/// Anything a test waits for happens within this, or the test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// One member: its configuration, its proxy, and its store once started.
pub struct Member {
    pub config: StoreConfig,
    pub proxy: Proxy,
    pub store: Option<Arc<Store>>,
}

impl Member {
    pub fn store(&self) -> &Arc<Store> {
        self.store.as_ref().expect("the member was started")
    }

    pub fn term(&self) -> u64 {
        self.store().metrics().current_term
    }

    pub fn id(&self) -> u64 {
        self.store().id()
    }

    fn is_up(&self) -> bool {
        self.store.as_ref().is_some_and(|s| !s.is_stopped())
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` members of a new cluster, none started.
    pub async fn prepare(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut listen = Vec::new();
        let mut proxies = Vec::new();
        for _ in 0..n {
            let port = format!("127.0.0.1:{}", free_port());
            proxies.push(Proxy::start(port.clone()).await);
            listen.push(port);
        }
        let initial: Vec<(String, String)> = proxies.iter().enumerate().map(|(i, p)| (format!("n{}", i + 1), p.addr.clone())).collect();
        let members = proxies
            .into_iter()
            .zip(listen)
            .enumerate()
            .map(|(i, (proxy, listen_peer))| {
                let name = format!("n{}", i + 1);
                let config = StoreConfig {
                    data_dir: dir.path().join(&name),
                    name,
                    listen_peer,
                    client_addr: format!("127.0.0.1:{}", free_port()),
                    initial_cluster: initial.clone(),
                    cluster_state: ClusterState::New,
                    timing: RaftTiming::default(),
                    peer_tls: None,
                    auto_compaction: raftgres_store::AutoCompaction::default(),
                    quota_bytes: raftgres_store::DEFAULT_QUOTA_BYTES,
                };
                Member { config, proxy, store: None }
            })
            .collect();
        Cluster { members, _dir: dir }
    }

    /// `n` members, all started, with a leader.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, RaftTiming::default()).await
    }

    /// [`Cluster::start`] with Raft timings (and snapshot interval) of the test's own.
    pub async fn start_with(n: usize, timing: RaftTiming) -> Cluster {
        let mut cluster = Self::prepare(n).await;
        for i in 0..n {
            cluster.members[i].config.timing = timing;
            cluster.start_member(i).await;
        }
        // The first elections of a new cluster may still move leadership once.
        let mut leader = cluster.leader().await;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = cluster.leader().await;
            if now == leader {
                return cluster;
            }
            leader = now;
        }
    }

    pub async fn start_member(&mut self, i: usize) {
        let store = Store::start(self.members[i].config.clone()).await.expect("the store starts");
        self.members[i].store = Some(store);
    }

    /// Stops member `i` as a crash would look to the others: Raft stops, nothing reaches it.
    pub async fn kill(&self, i: usize) {
        self.members[i].proxy.set(Link::Down);
        self.members[i].store().shutdown().await;
    }

    /// The running members' indexes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| self.members[i].is_up()).collect()
    }

    /// The member every running member follows (waits for it).
    pub async fn leader(&self) -> usize {
        eventually("a leader every running member agrees on", || async {
            let running = self.running();
            let leaders: Vec<Option<u64>> = running.iter().map(|&i| self.members[i].store().metrics().current_leader).collect();
            let first = leaders.first().copied().flatten()?;
            if leaders.iter().any(|l| *l != Some(first)) {
                return None;
            }
            running.into_iter().find(|&i| self.members[i].id() == first)
        })
        .await
    }

    /// The highest term any running member is in.
    pub fn max_term(&self) -> u64 {
        self.running().into_iter().map(|i| self.members[i].term()).max().unwrap_or(0)
    }
}

/// Polls `check` every 10 ms until it returns a value; panics after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
