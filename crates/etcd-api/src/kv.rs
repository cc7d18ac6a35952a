//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.
//!
//! Reads: a Range is linearizable by default — a read barrier through the leader, then
//! the local applied state answers — and served from the local state at once when
//! `serializable` is set. Writes: size limit, the data model's stateless checks
//! (`raftgres_mvcc::validate`), then one replicated command; the answer is what applying
//! it gave. A txn whose ops all read is served as etcd serves it: like a Range (a read
//! barrier unless every range is serializable, then the local state), off the log.
//!
//! Each call is authorized first (`access`): read permission on ranges, write on puts
//! and deletes (plus read when they return previous values), both for a txn's ops.
//!
//! The helpers [`EtcdApi::propose`] and [`EtcdApi::read_range`] are what the lease,
//! lock and election services build on too.

use prost::Message;
use raftgres_mvcc::{validate, Command, CommandResponse, Limits};
use raftgres_proto::etcdserverpb::kv_server::Kv;
use raftgres_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use raftgres_store::auth::Need;

use crate::access::txn_needs;
use crate::error::{request_too_large, unexpected_response, OrStatus};
use crate::EtcdApi;

/// The encoded size of what a command carries from the client.
fn request_size(cmd: &Command) -> usize {
    match cmd {
        Command::Put(r) => r.encoded_len(),
        Command::DeleteRange(r) => r.encoded_len(),
        Command::Txn(r) => r.encoded_len(),
        Command::Compact(r) => r.encoded_len(),
        Command::LeaseGrant { .. } | Command::LeaseRevoke { .. } => 16,
    }
}

impl EtcdApi {
    /// Checks and replicates one write; the data model's answer with a full header.
    pub(crate) async fn propose(&self, cmd: Command) -> Result<CommandResponse, Status> {
        self.check(&cmd)?;
        let resp = self.store.kv(cmd).await.or_status()?.or_status()?;
        Ok(match resp {
            CommandResponse::Put(r) => CommandResponse::Put(PutResponse { header: self.stamp(r.header), ..r }),
            CommandResponse::DeleteRange(r) => CommandResponse::DeleteRange(DeleteRangeResponse { header: self.stamp(r.header), ..r }),
            CommandResponse::Txn(r) => CommandResponse::Txn(TxnResponse { header: self.stamp(r.header), ..r }),
            CommandResponse::Compact(r) => CommandResponse::Compact(CompactionResponse { header: self.stamp(r.header) }),
            CommandResponse::LeaseGrant(mut r) => {
                r.header = self.stamp(r.header);
                CommandResponse::LeaseGrant(r)
            }
            CommandResponse::LeaseRevoke(mut r) => {
                r.header = self.stamp(r.header);
                CommandResponse::LeaseRevoke(r)
            }
        })
    }

    /// The size limit and the data model's stateless checks.
    fn check(&self, cmd: &Command) -> Result<(), Status> {
        if request_size(cmd) > self.limits.max_request_bytes {
            return Err(request_too_large());
        }
        validate(cmd, &Limits { max_txn_ops: self.limits.max_txn_ops }).or_status()
    }

    /// A txn that only reads, answered from the local state after a read barrier
    /// (none when every range is serializable).
    async fn read_txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        let cmd = Command::Txn(req);
        self.check(&cmd)?;
        let Command::Txn(req) = cmd else { return Err(unexpected_response("Txn")) };
        if !raftgres_mvcc::is_serializable(&req) {
            self.store.read_barrier().await.or_status()?;
        }
        let answer = self.store.applied().read().mvcc.read_txn(&req);
        let resp = answer.ok_or_else(|| unexpected_response("Txn"))?.or_status()?;
        Ok(TxnResponse { header: self.stamp(resp.header), ..resp })
    }

    /// A Range: linearizable unless `serializable`, answered from the local state.
    pub(crate) async fn read_range(&self, req: &RangeRequest) -> Result<RangeResponse, Status> {
        if !req.serializable {
            self.store.read_barrier().await.or_status()?;
        }
        let mut resp = self.store.applied().read().mvcc.range(req).or_status()?;
        resp.header = self.stamp(resp.header);
        Ok(resp)
    }

    pub(crate) async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        if raftgres_mvcc::is_read_only(&req) {
            return self.read_txn(req).await;
        }
        match self.propose(Command::Txn(req)).await? {
            CommandResponse::Txn(r) => Ok(r),
            _ => Err(unexpected_response("Txn")),
        }
    }

    pub(crate) async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse, Status> {
        match self.propose(Command::DeleteRange(req)).await? {
            CommandResponse::DeleteRange(r) => Ok(r),
            _ => Err(unexpected_response("DeleteRange")),
        }
    }
}

/// The KV service.
pub struct KvService {
    api: EtcdApi,
}

impl KvService {
    pub fn new(api: EtcdApi) -> Self {
        Self { api }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let r = req.get_ref();
        self.api.authorize(&req, &[Need::Read(&r.key, &r.range_end)])?;
        self.api.read_range(&req.into_inner()).await.map(Response::new)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let p = req.get_ref();
        let read = if p.prev_kv { Need::Read(&p.key, &[]) } else { Need::User };
        self.api.authorize(&req, &[Need::Write(&p.key, &[]), read])?;
        match self.api.propose(Command::Put(req.into_inner())).await? {
            CommandResponse::Put(r) => Ok(Response::new(r)),
            _ => Err(unexpected_response("Put")),
        }
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let d = req.get_ref();
        let read = if d.prev_kv { Need::Read(&d.key, &d.range_end) } else { Need::User };
        self.api.authorize(&req, &[Need::Write(&d.key, &d.range_end), read])?;
        self.api.delete_range(req.into_inner()).await.map(Response::new)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.api.authorize(&req, &txn_needs(req.get_ref()))?;
        self.api.txn(req.into_inner()).await.map(Response::new)
    }

    /// Any authenticated user may compact (etcd checks nothing; raftgres asks for a user).
    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        self.api.authorize(&req, &[Need::User])?;
        match self.api.propose(Command::Compact(req.into_inner())).await? {
            CommandResponse::Compact(r) => Ok(Response::new(r)),
            _ => Err(unexpected_response("Compact")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_size_counts_the_client_payload() {
        let put = PutRequest { key: b"k".to_vec(), value: vec![7; 1000], ..Default::default() };
        assert!(request_size(&Command::Put(put)) > 1000);
        assert!(request_size(&Command::LeaseRevoke { id: 1 }) < 100);
    }
}
