//! `etcdserverpb.Maintenance`: Status (what `etcdctl endpoint status` prints; DB SIZE is
//! the state's size, what the space quota measures, and raised alarms appear in its
//! errors as etcd shows them), Alarm (the replicated alarms, `raftgres_store::alarms`:
//! list, raise NOSPACE, disarm), Hash and HashKV (a CRC-32C of the live key
//! space, see `hash`), Defragment (nothing to do; answered OK), MoveLeader (Raft
//! leadership transfer, forwarded to the leader from any member), Snapshot (this
//! member's applied state as a raftgres backup file, `raftgres_store::backup`, in
//! chunks). Downgrade answers Unimplemented saying why.
//!
//! With auth enabled everything but Status and listing alarms needs root, as etcd's
//! `authMaintenanceServer` asks.
//!
//! `etcdctl endpoint health` is not served here: it is a linearizable Get of the key
//! `health` (KV service).

use raftgres_proto::etcdserverpb::alarm_request::AlarmAction;
use raftgres_proto::etcdserverpb::maintenance_server::Maintenance;
use raftgres_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse, HashKvRequest,
    HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, RangeRequest, SnapshotRequest, SnapshotResponse,
    StatusRequest, StatusResponse,
};
use raftgres_store::auth::Need;
use raftgres_store::backup;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::{store_status, unsupported, OrStatus};
use crate::hash::hash_kvs;
use crate::EtcdApi;

/// The etcd version raftgres answers Status with (etcdctl prints it; clients may check
/// it for features): the etcd API raftgres implements.
pub const ETCD_VERSION: &str = "3.5.0";

/// Bytes per Snapshot message.
const SNAPSHOT_CHUNK: usize = 64 * 1024;

/// The Maintenance service.
pub struct MaintenanceService {
    api: EtcdApi,
}

impl MaintenanceService {
    pub fn new(api: EtcdApi) -> Self {
        Self { api }
    }

    /// (hash, compact revision, hashed revision) of the live key space at `revision`
    /// (0 = now). A compacted or future revision is refused as etcd does.
    fn hash_at(&self, revision: i64) -> Result<(u32, i64, i64), Status> {
        let all = RangeRequest { key: vec![0], range_end: vec![0], revision, ..Default::default() };
        let (kvs, compact_revision, current) = {
            let data = self.api.store.applied().read();
            let resp = data.mvcc.range(&all).or_status()?;
            (resp.kvs, data.mvcc.compact_revision(), data.mvcc.revision())
        };
        let hashed = if revision > 0 { revision } else { current };
        Ok((hash_kvs(&kvs), compact_revision, hashed))
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// GET lists the alarms after a read barrier; ACTIVATE (NOSPACE only: the one alarm
    /// raftgres acts on) and DEACTIVATE (`etcdctl alarm disarm`) go through the Raft log
    /// and answer the alarms they changed, as etcd does.
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        if req.get_ref().action != AlarmAction::Get as i32 {
            self.api.authorize(&req, &[Need::Admin])?;
        }
        let req = req.into_inner();
        let alarms = if req.action == AlarmAction::Get as i32 {
            self.api.store.read_barrier().await.or_status()?;
            self.api.store.alarms()
        } else {
            if req.action == AlarmAction::Activate as i32 && req.alarm != AlarmType::Nospace as i32 {
                return Err(unsupported("only the NOSPACE alarm can be raised"));
            }
            self.api.store.alarm(req).await.or_status()?
        };
        Ok(Response::new(AlarmResponse { header: self.api.header_now(), alarms }))
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let s = self.api.store.status();
        // An openraft leader cut off from its quorum still calls itself leader; etcd's
        // would have stepped down. Show no leader, and say why.
        let mut errors = Vec::new();
        let mut leader = s.leader.unwrap_or(0);
        if leader == s.id && !self.api.store.has_leader() {
            leader = 0;
            errors.push("raftgres: this member leads but no quorum acknowledged it lately".to_string());
        }
        // etcd lists the raised alarms among the errors, in protobuf text form.
        for a in self.api.store.alarms() {
            errors.push(format!("memberID:{} alarm:{} ", a.member_id, a.alarm().as_str_name()));
        }
        let db_size = i64::try_from(self.api.store.state_size()).unwrap_or(i64::MAX);
        Ok(Response::new(StatusResponse {
            header: self.api.header(s.revision),
            version: ETCD_VERSION.to_string(),
            db_size,
            db_size_in_use: db_size,
            leader,
            raft_index: s.last_log_index,
            raft_term: s.term,
            raft_applied_index: s.applied_index,
            errors,
            is_learner: s.is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        // Nothing to defragment: the state is in memory, the log compacts itself.
        Ok(Response::new(DefragmentResponse { header: self.api.header_now() }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let (hash, _, revision) = self.hash_at(0)?;
        Ok(Response::new(HashResponse { header: self.api.header(revision), hash }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let (hash, compact_revision, hash_revision) = self.hash_at(req.into_inner().revision)?;
        Ok(Response::new(HashKvResponse { header: self.api.header_now(), hash, compact_revision, hash_revision }))
    }

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    /// The applied state of this member (as etcd's, not a linearizable read), copied
    /// under one read lock so the file is one revision's state, then streamed.
    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let (mvcc, auth) = {
            let data = self.api.store.applied().read();
            (data.mvcc.clone(), data.auth.clone())
        };
        let header = self.api.header(mvcc.revision());
        let encoded = tokio::task::spawn_blocking(move || backup::encode(&mvcc, &auth)).await;
        let bytes = encoded.map_err(|e| Status::internal(format!("snapshot: {e}")))?.map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut remaining = bytes.len();
            for chunk in bytes.chunks(SNAPSHOT_CHUNK) {
                remaining -= chunk.len();
                let response =
                    SnapshotResponse { header, remaining_bytes: remaining as u64, blob: chunk.to_vec(), version: ETCD_VERSION.into() };
                if tx.send(Ok(response)).await.is_err() {
                    return; // The client went away.
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// Hands Raft leadership to a voter. etcd answers "not leader" on a follower;
    /// here any member forwards it to the leader, as it does writes.
    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        self.api.store.move_leader(req.into_inner().target_id).await.map_err(|e| store_status(&e))?;
        Ok(Response::new(MoveLeaderResponse { header: self.api.header_now() }))
    }

    async fn downgrade(&self, req: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        Err(unsupported("Downgrade is not supported: raftgres has no etcd storage versions to downgrade"))
    }
}
