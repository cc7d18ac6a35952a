//! In-process tests of the etcd API: one single-member store on temporary ports, the
//! API served on a real TCP port, and the generated tonic clients as etcd clients.
//! One module per topic. (Multi-process tests with etcdctl live in the `tests` crate.)

mod hostile;
mod kv_lease;
mod lock_election;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use raftgres_etcd_api::{ApiLimits, EtcdApi};
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::lease_client::LeaseClient;
use raftgres_proto::etcdserverpb::watch_client::WatchClient;
use raftgres_proto::etcdserverpb::{LeaseGrantRequest, PutRequest};
use raftgres_store::{ClusterState, RaftTiming, Store, StoreConfig};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Everything a test gets wrong fails within this.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One member serving the etcd API.
pub struct Node {
    pub store: Arc<Store>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Node {
    pub async fn start() -> Node {
        Self::start_with(ApiLimits::default()).await
    }

    pub async fn start_with(limits: ApiLimits) -> Node {
        Self::start_api(|store| EtcdApi::new(store, limits)).await
    }

    /// A node serving the API `make` builds on its store.
    pub async fn start_api(make: impl FnOnce(Arc<Store>) -> EtcdApi) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let peer = format!("127.0.0.1:{}", free_port());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("client port");
        let client = listener.local_addr().expect("client addr").to_string();
        let config = StoreConfig {
            name: "n1".into(),
            data_dir: dir.path().to_path_buf(),
            listen_peer: peer.clone(),
            client_addr: client.clone(),
            initial_cluster: vec![("n1".into(), peer)],
            cluster_state: ClusterState::New,
            timing: RaftTiming::default(),
            peer_tls: None,
            auto_compaction: raftgres_store::AutoCompaction::default(),
            quota_bytes: raftgres_store::DEFAULT_QUOTA_BYTES,
        };
        let store = Store::start(config).await.expect("store starts");
        store.wait_leader(PATIENCE).await.expect("a leader");
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(make(store.clone()).serve_with_shutdown(listener, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{client}")).expect("uri").connect_lazy();
        Node { store, channel, stop: Some(stop), _dir: dir }
    }

    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }

    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone())
    }

    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel.clone())
    }

    /// Puts `key` = `value`; the revision it made.
    pub async fn put(&self, key: &str, value: &str) -> i64 {
        let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        let resp = within(self.kv().put(req)).await.expect("put");
        resp.into_inner().header.expect("header").revision
    }

    pub async fn grant(&self, ttl: i64) -> i64 {
        let resp = within(self.lease().lease_grant(LeaseGrantRequest { ttl, id: 0 })).await.expect("grant");
        resp.into_inner().id
    }
}

/// Awaits `f`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f).await.expect("timed out")
}

/// True if `f` is still pending after `wait`.
pub async fn still_pending<T>(f: &mut (impl Future<Output = T> + Unpin), wait: Duration) -> bool {
    tokio::time::timeout(wait, f).await.is_err()
}
