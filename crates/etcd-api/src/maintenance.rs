//! `etcdserverpb.Maintenance`: Status (what `etcdctl endpoint status` shows), Alarm
//! (none are raised), Defragment (nothing to do: sled compacts by itself). Hash,
//! Snapshot, MoveLeader and Downgrade answer Unimplemented with a clear message.

use std::pin::Pin;

use futures::Stream;
use raftgres_proto::etcdserverpb::maintenance_server::Maintenance;
use raftgres_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use crate::Ctx;

/// The etcd API version raftgres speaks (what etcdctl prints as the server version).
pub const ETCD_VERSION: &str = "3.5.0";

pub struct MaintenanceService(pub Ctx);

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("raftgres: {what} is not supported"))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, _req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(AlarmResponse { header: self.0.header(self.0.revision()), alarms: Vec::new() }))
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let s = self.0.store.status();
        Ok(Response::new(StatusResponse {
            header: self.0.header(s.revision),
            version: ETCD_VERSION.to_string(),
            db_size: s.db_size,
            db_size_in_use: s.db_size,
            leader: s.leader.unwrap_or(0),
            raft_index: s.last_log_index,
            raft_term: s.term,
            raft_applied_index: s.applied_index,
            errors: Vec::new(),
            is_learner: s.is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(&self, _req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        Ok(Response::new(DefragmentResponse { header: self.0.header(self.0.revision()) }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(unimplemented("Hash"))
    }

    async fn hash_kv(&self, _req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(unimplemented("HashKV"))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(&self, _req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(unimplemented("Snapshot (use the data dir of a stopped node as a backup)"))
    }

    async fn move_leader(&self, _req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(unimplemented("MoveLeader"))
    }

    async fn downgrade(&self, _req: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(unimplemented("Downgrade"))
    }
}
