//! The etcd v3 gRPC API of a raftgres node, wire-compatible with etcd 3.4/3.5 so
//! `etcdctl` and etcd clients work unchanged. One tonic service per module, all
//! served on the node's client port; every answer comes from the replicated store.
//!
//! Owns: request validation and limits, response headers, the error mapping, watch
//! streams. Must not touch: Raft internals (it only calls `raftgres_store::Store`).

mod cluster;
mod error;
mod kv;
mod lease;
mod maintenance;
mod watch;

use std::sync::Arc;

use raftgres_proto::etcdserverpb::cluster_server::ClusterServer;
use raftgres_proto::etcdserverpb::kv_server::KvServer;
use raftgres_proto::etcdserverpb::lease_server::LeaseServer;
use raftgres_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use raftgres_proto::etcdserverpb::watch_server::WatchServer;
use raftgres_proto::etcdserverpb::ResponseHeader;
use raftgres_store::Store;
use tokio::net::TcpListener;

/// Client request limits (etcd's `--max-request-bytes`, `--max-txn-ops`).
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self { max_request_bytes: 1024 * 1024 * 3 / 2, max_txn_ops: 128 }
    }
}

/// What every service shares.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub store: Arc<Store>,
    pub limits: ApiLimits,
}

impl Ctx {
    /// The header etcd puts on every response.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.store.cluster_id(),
            member_id: self.store.id(),
            revision,
            raft_term: self.store.metrics().current_term,
        })
    }

    pub fn revision(&self) -> i64 {
        self.store.applied().read().mvcc.revision()
    }

    /// Refuses requests over the size limit with etcd's message.
    pub fn check_size(&self, msg: &impl prost::Message) -> Result<(), tonic::Status> {
        if msg.encoded_len() > self.limits.max_request_bytes {
            return Err(tonic::Status::invalid_argument(error::REQUEST_TOO_LARGE));
        }
        Ok(())
    }
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(
    store: Arc<Store>,
    listener: TcpListener,
    limits: ApiLimits,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let ctx = Ctx { store, limits };
    // gRPC framing overhead on top of the request limit, as etcd allows.
    let max = limits.max_request_bytes + 512 * 1024;
    // Without TCP_NODELAY on accepted sockets, small replies wait ~40 ms for Nagle.
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)?;
    tonic::transport::Server::builder()
        .add_service(KvServer::new(kv::KvService(ctx.clone())).max_decoding_message_size(max))
        .add_service(WatchServer::new(watch::WatchService(ctx.clone())).max_decoding_message_size(max))
        .add_service(LeaseServer::new(lease::LeaseService(ctx.clone())).max_decoding_message_size(max))
        .add_service(ClusterServer::new(cluster::ClusterService(ctx.clone())).max_decoding_message_size(max))
        .add_service(MaintenanceServer::new(maintenance::MaintenanceService(ctx)).max_decoding_message_size(max))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
