//! The etcd v3 gRPC API of a raftgres node, wire-compatible with etcd 3.4/3.5 so
//! `etcdctl` and etcd client libraries work unchanged. Every answer comes from the
//! replicated store (`raftgres_store::Store`).
//!
//! One tonic service per module, all served on the node's client port (h2c, or TLS with
//! [`EtcdApi::with_tls`]: etcd's `client-transport-security`, client certificates
//! required with `client-cert-auth`) by one router ([`EtcdApi::router`], [`serve`]),
//! beside etcd's plain-HTTP endpoints (`/health`, `/metrics`, ...) and its grpc-gateway
//! JSON API (`/v3/kv/range`, ...) in `client_port`, which also accepts etcdctl's
//! scheme-prefixed `:authority`; the in-process channel
//! the agent and the JSON gateway use stays plaintext (it never touches the network):
//!
//! | module        | gRPC service               |
//! |---------------|----------------------------|
//! | `kv`          | `etcdserverpb.KV`          |
//! | `watch`       | `etcdserverpb.Watch`       |
//! | `lease`       | `etcdserverpb.Lease`       |
//! | `cluster`     | `etcdserverpb.Cluster`     |
//! | `maintenance` | `etcdserverpb.Maintenance` |
//! | `auth`        | `etcdserverpb.Auth`        |
//! | `lock`        | `v3lockpb.Lock`            |
//! | `election`    | `v3electionpb.Election`    |
//!
//! Shared pieces: `error` (the one mapping to gRPC statuses), `access` (the one
//! authorization check every service calls, with etcd's simple `tokens`), `header`
//! (response headers), `keys` (key ranges), `leader` (etcd's `hasleader` stream check),
//! `recipe` (the lock/election recipe run server-side), `watcher` (one watch),
//! `peer_url` (member URLs), `hash` (HashKV).
//!
//! Owns: request validation and limits, response headers, the error mapping, watch and
//! keep-alive streams. Must not touch: Raft internals or the data model's rules — it
//! only calls `Store` and `raftgres_mvcc`.

// Every gRPC handler returns `tonic::Status` as its error; boxing it would only add
// conversions at each call.
#![allow(clippy::result_large_err)]

mod access;
mod auth;
mod client_port;
mod cluster;
mod election;
mod error;
mod hash;
mod header;
mod in_process;
mod keys;
mod kv;
mod leader;
mod lease;
mod lock;
mod maintenance;
mod peer_url;
mod recipe;
mod tokens;
mod watch;
mod watcher;

pub use keys::{prefix_end, KeyRange};
pub use maintenance::ETCD_VERSION;
pub use peer_url::peer_addr_from_url;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use raftgres_proto::etcdserverpb::auth_server::AuthServer;
use raftgres_proto::etcdserverpb::cluster_server::ClusterServer;
use raftgres_proto::etcdserverpb::kv_server::KvServer;
use raftgres_proto::etcdserverpb::lease_server::LeaseServer;
use raftgres_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use raftgres_proto::etcdserverpb::watch_server::WatchServer;
use raftgres_proto::v3electionpb::election_server::ElectionServer;
use raftgres_proto::v3lockpb::lock_server::LockServer;
use raftgres_store::Store;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;

use crate::leader::RequireLeader;

/// etcd lets a gRPC message exceed the request limit by this much (framing, headers).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// How often watches created with `progress_notify` get an empty progress response
/// when they saw no event (etcd's default: 10 minutes).
pub const DEFAULT_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

/// Client request limits (etcd's `--max-request-bytes` and `--max-txn-ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// The largest write a client may send (encoded request), default 1.5 MiB. gRPC
    /// messages up to this plus [`GRPC_OVERHEAD_BYTES`] are decoded; writes above it are
    /// refused with "etcdserver: request is too large".
    pub max_request_bytes: usize,
    /// The most compares, success ops or failure ops in one txn level, default 128.
    pub max_txn_ops: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self { max_request_bytes: 1024 * 1024 * 3 / 2, max_txn_ops: 128 }
    }
}

impl ApiLimits {
    /// The largest gRPC message the server decodes.
    pub fn max_decoding_bytes(&self) -> usize {
        self.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES)
    }
}

/// What every service shares: the store, the limits and the stream timings. Cheap to
/// clone (one `Arc`).
#[derive(Clone)]
pub struct EtcdApi {
    store: Arc<Store>,
    limits: ApiLimits,
    progress_notify_interval: Duration,
    /// TLS of the client port (`client-transport-security`).
    tls: Option<raftgres_tls::ServerTls>,
    /// The simple tokens this member issued (`tokens`).
    tokens: Arc<tokens::Tokens>,
    /// True for the in-process channel only: its callers act as root (`access`).
    trusted: bool,
}

impl EtcdApi {
    pub fn new(store: Arc<Store>, limits: ApiLimits) -> Self {
        Self {
            store,
            limits,
            progress_notify_interval: DEFAULT_PROGRESS_NOTIFY_INTERVAL,
            tls: None,
            tokens: Arc::default(),
            trusted: false,
        }
    }

    /// Serves the client port over TLS (client certificates required when the config
    /// has a client CA); member lists then show `https://` client URLs.
    pub fn with_tls(mut self, tls: Option<raftgres_tls::ServerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Changes how often `progress_notify` watches get progress responses (tests).
    pub fn with_progress_notify_interval(mut self, interval: Duration) -> Self {
        self.progress_notify_interval = interval.max(Duration::from_millis(10));
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn limits(&self) -> ApiLimits {
        self.limits
    }

    /// A tonic router serving every etcd service of this node. Each service refuses
    /// requests carrying `hasleader: true` while this node knows no leader, and decodes
    /// messages up to [`ApiLimits::max_decoding_bytes`].
    pub fn router(&self) -> Router {
        self.router_on(tonic::transport::Server::builder())
    }

    fn router_on<L: Clone>(&self, server: tonic::transport::Server<L>) -> Router<L> {
        let max = self.limits.max_decoding_bytes();
        let guard = RequireLeader::new(self.store.clone());
        let kv = KvServer::new(kv::KvService::new(self.clone())).max_decoding_message_size(max);
        let watch = WatchServer::new(watch::WatchService::new(self.clone())).max_decoding_message_size(max);
        let lease = LeaseServer::new(lease::LeaseService::new(self.clone())).max_decoding_message_size(max);
        let cluster = ClusterServer::new(cluster::ClusterService::new(self.clone())).max_decoding_message_size(max);
        let maintenance = MaintenanceServer::new(maintenance::MaintenanceService::new(self.clone())).max_decoding_message_size(max);
        let auth = AuthServer::new(auth::AuthService::new(self.clone())).max_decoding_message_size(max);
        let lock = LockServer::new(lock::LockService::new(self.clone())).max_decoding_message_size(max);
        let election = ElectionServer::new(election::ElectionService::new(self.clone())).max_decoding_message_size(max);
        server
            // Reap connections of vanished clients (their watches hold resources).
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(InterceptedService::new(kv, guard.clone()))
            .add_service(InterceptedService::new(watch, guard.clone()))
            .add_service(InterceptedService::new(lease, guard.clone()))
            .add_service(InterceptedService::new(cluster, guard.clone()))
            .add_service(InterceptedService::new(maintenance, guard.clone()))
            .add_service(InterceptedService::new(auth, guard.clone()))
            .add_service(InterceptedService::new(lock, guard.clone()))
            .add_service(InterceptedService::new(election, guard))
    }
}

/// Why the server stopped (binding the incoming stream, or the server itself).
pub type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// ALPN of the client port over TLS: gRPC, and plain HTTP/1.1 (curl, monitoring).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

impl EtcdApi {
    /// Serves the client port on `listener` (gRPC and etcd's HTTP endpoints, h2c and
    /// HTTP/1.1, or TLS when configured) until `shutdown` completes, then stops
    /// gracefully.
    pub async fn serve_with_shutdown(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let tls = match &self.tls {
            Some(tls) => Some(tls.rustls(&ALPN).map_err(|e| format!("client-transport-security: {e}"))?),
            None => None,
        };
        let server = tonic::transport::Server::builder().accept_http1(true).layer(client_port::HttpLayer::new(self.clone()));
        self.router_on(server).serve_with_incoming_shutdown(client_port::incoming(listener, tls), shutdown).await?;
        Ok(())
    }
}

/// Serves the etcd API on `listener` (h2c, plaintext) until the server fails; a node
/// starts its client port with [`EtcdApi::with_tls`] and [`EtcdApi::serve_with_shutdown`]
/// so that `client-transport-security` applies.
pub async fn serve(store: Arc<Store>, listener: TcpListener, limits: ApiLimits) -> Result<(), ServeError> {
    EtcdApi::new(store, limits).serve_with_shutdown(listener, std::future::pending()).await
}

/// Like [`serve`], stopping gracefully when `shutdown` completes.
pub async fn serve_with_shutdown(
    store: Arc<Store>,
    listener: TcpListener,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    EtcdApi::new(store, limits).serve_with_shutdown(listener, shutdown).await
}
