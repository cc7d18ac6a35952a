//! Starting a store node, as a list of named steps: check the config (peer TLS
//! included), bind the peer port, open the disk state, start Raft on its own runtime
//! (`raft_runtime`), serve peers there, form the cluster on first start, start the
//! background duties.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::async_runtime::watch::WatchReceiver;
use raftgres_proto::peer::raft_peer_server::RaftPeerServer;
use tokio::runtime::Handle;

use crate::backend::{BackendError, LogBackend, SledBackend};
use crate::config::{ClusterState, StoreConfig};
use crate::log_store::LogStore;
use crate::metrics::StoreMetrics;
use crate::network::{PeerNetwork, MAX_PEER_MESSAGE};
use crate::peer_service::PeerService;
use crate::raft_runtime::RaftRuntime;
use crate::state_machine::Raft;
use crate::state_machine::{Applied, StateMachine};
use crate::tasks;
use crate::types::{member_id, NodeId, PeerNode};
use crate::wal::WalBackend;

/// Why a node could not start. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid timing: {0}")]
    Timing(String),
    #[error("--name {0} does not appear in --initial-cluster (expected NAME=HOST:PORT,...)")]
    NotInInitialCluster(String),
    #[error("cannot listen for peers on {addr}: {source} (is another node using this port?)")]
    PeerPort { addr: String, source: std::io::Error },
    #[error("data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("cannot read the state machine: {0}")]
    StateMachine(String),
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("peer-transport-security: {0}")]
    PeerTls(String),
    #[error("cannot start the Raft runtime: {0}")]
    Runtime(std::io::Error),
}

/// A running store node: the Raft instance, its applied state and the peer network.
pub struct Store {
    pub(crate) raft: Raft,
    pub(crate) applied: Arc<Applied>,
    pub(crate) net: PeerNetwork,
    pub(crate) id: NodeId,
    pub(crate) config: StoreConfig,
    pub(crate) batcher: crate::batcher::Batcher,
    /// Writes this node forwards to the leader, gathered.
    pub(crate) forwarder: crate::forward_writes::WriteForwarder,
    pub(crate) metrics: Arc<StoreMetrics>,
    stopped: std::sync::atomic::AtomicBool,
    /// When this node last accepted an AppendEntries (a heartbeat) from a leader.
    pub(crate) heard_from_leader: std::sync::Mutex<std::time::Instant>,
    /// Where Raft runs, and where client work (forwarded requests) runs.
    raft_runtime: RaftRuntime,
    pub(crate) client_runtime: Handle,
}

const NODE_ID: &str = "node_id";

impl Store {
    pub async fn start(config: StoreConfig) -> Result<Arc<Store>, StartError> {
        config.timing.validate().map_err(StartError::Timing)?;
        let own_peer = config.own_peer_addr().ok_or_else(|| StartError::NotInInitialCluster(config.name.clone()))?.to_string();

        // Checked before anything binds or opens, so a bad certificate is the one error.
        let peer_server = tonic::transport::Server::builder();
        let peer_server = match &config.peer_tls {
            Some(tls) => peer_server.tls_config(tls.server.tonic()).map_err(|e| StartError::PeerTls(raftgres_tls::describe(&e)))?,
            None => peer_server,
        };
        // A std listener: it joins the Raft runtime's reactor when served there.
        let listener = std::net::TcpListener::bind(&config.listen_peer)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| StartError::PeerPort { addr: config.listen_peer.clone(), source })?;
        let raft_runtime = RaftRuntime::start().map_err(StartError::Runtime)?;

        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir { path: data_dir.display().to_string(), source })?;
        let state_machine =
            StateMachine::open(&data_dir.join(crate::state_machine::SNAPSHOT_DIR)).map_err(|e| StartError::StateMachine(e.to_string()))?;
        let applied = state_machine.applied();
        let peer_client_tls = config.peer_tls.as_ref().map(|tls| tls.client.tonic());
        let backoff_cap = std::time::Duration::from_millis(config.timing.election_min_ms / 2);
        let net = PeerNetwork::new(backoff_cap, peer_client_tls, raft_runtime.handle().clone());
        let raft_config = Arc::new(config.timing.openraft_config().validate().map_err(|e| StartError::Raft(e.to_string()))?);
        let metrics = Arc::new(StoreMetrics::default());
        let log_dir = data_dir.join(crate::force_new_cluster::RAFT_DIR);
        let opened = OpenRaft {
            own_peer: own_peer.clone(),
            data_dir: data_dir.clone(),
            config: raft_config,
            net: net.clone(),
            state_machine,
            metrics: metrics.clone(),
        };
        // Data dirs made before the write-ahead log keep their sled log.
        let (raft, id, fresh) = if SledBackend::exists(&log_dir) {
            opened.start(SledBackend::open(&log_dir)?, raft_runtime.handle()).await?
        } else {
            opened.start(WalBackend::open(&log_dir)?, raft_runtime.handle()).await?
        };

        let batcher = crate::batcher::Batcher::new(raft.clone(), metrics.clone());
        let forwarder = crate::forward_writes::WriteForwarder::new(net.clone());
        let heard_from_leader = std::sync::Mutex::new(std::time::Instant::now());
        let client_runtime = Handle::current();
        let store = Arc::new(Store {
            raft,
            applied,
            net,
            id,
            config,
            batcher,
            forwarder,
            metrics,
            stopped: Default::default(),
            heard_from_leader,
            raft_runtime,
            client_runtime,
        });
        store.serve_peers(peer_server, listener);
        if fresh && store.config.cluster_state == ClusterState::New {
            store.form_cluster().await?;
        }
        tasks::spawn_all(&store);
        let peer_tls = store.config.peer_tls.is_some();
        tracing::info!(name = %store.config.name, id = %format!("{id:x}"), peer = %own_peer, peer_tls, "store node started");
        Ok(store)
    }

    /// Serves the peer port on the Raft runtime.
    fn serve_peers(self: &Arc<Self>, mut server: tonic::transport::Server, listener: std::net::TcpListener) {
        let service = RaftPeerServer::new(PeerService { store: self.clone() })
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        self.raft_runtime.handle().spawn(async move {
            // Nagle would hold small Raft messages back ~40 ms: disable it on accepted sockets.
            let incoming = match tokio::net::TcpListener::from_std(listener).and_then(|listener| {
                tonic::transport::server::TcpIncoming::from_listener(listener, true, None).map_err(std::io::Error::other)
            }) {
                Ok(incoming) => incoming,
                Err(e) => {
                    tracing::error!("peer listener: {e}");
                    return;
                }
            };
            let result = server.add_service(service).serve_with_incoming(incoming).await;
            if let Err(e) = result {
                tracing::error!("peer server stopped: {e}");
            }
        });
    }

    /// First start of a new cluster: every initial member calls `initialize` with the
    /// same membership, which is safe; all but one get `NotAllowed`.
    async fn form_cluster(&self) -> Result<(), StartError> {
        let members: BTreeMap<NodeId, PeerNode> = self
            .config
            .initial_cluster
            .iter()
            .map(|(name, addr)| (member_id(addr), PeerNode { name: name.clone(), peer_addr: addr.clone() }))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(StartError::Raft(e.to_string())),
        }
    }

    /// Stops Raft and its runtime (used on shutdown and when this member was removed).
    pub async fn shutdown(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        self.raft_runtime.stop();
    }
}

impl Store {
    /// True once Raft was stopped (shutdown, removal from the cluster, storage failure).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst) || self.raft.metrics().borrow_watched().running_state.is_err()
    }
}

/// What starting Raft on a log backend needs besides the backend.
struct OpenRaft {
    own_peer: String,
    data_dir: std::path::PathBuf,
    config: Arc<openraft::Config>,
    net: PeerNetwork,
    state_machine: StateMachine,
    metrics: Arc<StoreMetrics>,
}

impl OpenRaft {
    /// Starts Raft on `backend` inside `runtime` (where openraft spawns its tasks):
    /// this node's id and whether the store is brand new.
    async fn start<B: LogBackend>(self, backend: B, runtime: &Handle) -> Result<(Raft, NodeId, bool), StartError> {
        let (id, fresh) = identity(&backend, &self.own_peer)?;
        let started = runtime.spawn(async move {
            let log_store = LogStore::new(backend, self.metrics)
                .map_err(|source| StartError::DataDir { path: self.data_dir.display().to_string(), source })?;
            Raft::new(id, self.config, self.net, log_store, self.state_machine).await.map_err(|e| StartError::Raft(e.to_string()))
        });
        let raft = started.await.map_err(|e| StartError::Raft(e.to_string()))??;
        Ok((raft, id, fresh))
    }
}

/// This node's id (persisted at first start) and whether the store is brand new.
fn identity(backend: &impl LogBackend, own_peer: &str) -> Result<(NodeId, bool), StartError> {
    let fresh = backend.last()?.is_none() && backend.get_meta("vote")?.is_none();
    if let Some(bytes) = backend.get_meta(NODE_ID)? {
        let mut buf = [0u8; 8];
        if bytes.len() == 8 {
            buf.copy_from_slice(&bytes);
            return Ok((u64::from_be_bytes(buf), fresh));
        }
    }
    let id = member_id(own_peer);
    backend.put_meta(NODE_ID, id.to_be_bytes().to_vec())?;
    backend.sync()?;
    Ok((id, fresh))
}
