//! Incoming peer traffic: the tonic `RaftPeer` service feeding openraft and serving
//! forwarded requests (one at a time, or a follower's writes together). It runs on the Raft runtime (`raft_runtime`); a forwarded
//! request is client work, served on the client runtime, and a big message (log
//! entries carrying thousands of client writes) is decoded on the blocking pool, so
//! the Raft runtime's thread answers heartbeats meanwhile.

use std::sync::Arc;

use raftgres_proto::peer::raft_peer_server::RaftPeer;
use raftgres_proto::peer::Payload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::error::StoreError;
use crate::forward::ForwardRequest;
use crate::network::{decode, encode, SnapshotMessage};
use crate::types::{Snapshot, TypeConfig};
use crate::Store;
use openraft::error::RaftError;

pub struct PeerService {
    pub store: Arc<Store>,
}

fn parse<T: DeserializeOwned>(req: &Request<Payload>) -> Result<T, Status> {
    decode(req.get_ref()).map_err(|e| Status::invalid_argument(format!("malformed peer message: {e}")))
}

/// [`parse`], on the blocking pool when the message is big.
async fn parse_big<T: DeserializeOwned + Send + 'static>(req: Request<Payload>) -> Result<T, Status> {
    if req.get_ref().data.len() <= crate::raft_runtime::IN_PLACE_MAX_BYTES {
        return parse(&req);
    }
    tokio::task::spawn_blocking(move || parse(&req)).await.map_err(|e| Status::unavailable(format!("the node is stopping: {e}")))?
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    encode(value).map(Response::new).map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = parse_big(req).await?;
        let answer = self.store.raft.append_entries(rpc).await;
        if matches!(answer, Ok(ref r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_))) {
            if let Ok(mut heard) = self.store.heard_from_leader.lock() {
                *heard = std::time::Instant::now();
            }
        }
        reply(&answer)
    }

    async fn vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = parse(&req)?;
        reply(&self.store.raft.vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = parse(&req)?;
        reply(&self.store.raft.pre_vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let message: SnapshotMessage = parse_big(req).await?;
        let snapshot = Snapshot { meta: message.meta, snapshot: std::io::Cursor::new(message.data) };
        let answer = self.store.raft.install_full_snapshot(message.vote, snapshot).await;
        reply(&answer.map_err(RaftError::<TypeConfig>::Fatal))
    }

    async fn transfer_leader(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = parse(&req)?;
        let answer = self.store.raft.handle_transfer_leader(rpc).await;
        reply(&answer.map_err(RaftError::<TypeConfig>::Fatal))
    }

    async fn forward(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let store = self.store.clone();
        let served = self.store.client_runtime.spawn(async move {
            let request: ForwardRequest = parse(&req)?;
            let result: Result<_, StoreError> = store.serve_forwarded(request).await;
            reply(&result)
        });
        served.await.map_err(|e| Status::unavailable(format!("the node is stopping: {e}")))?
    }

    async fn forward_writes(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let store = self.store.clone();
        let served = self.store.client_runtime.spawn(async move {
            let requests: Vec<crate::types::Request> = parse(&req)?;
            reply(&store.serve_forwarded_writes(requests).await)
        });
        served.await.map_err(|e| Status::unavailable(format!("the node is stopping: {e}")))?
    }
}
