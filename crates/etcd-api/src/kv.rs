//! `etcdserverpb.KV`: Range (linearizable by default, serializable on request), Put,
//! DeleteRange, Txn, Compact. Writes are validated, then replicated through Raft.

use raftgres_mvcc::{validate, Command, CommandResponse, Limits};
use raftgres_proto::etcdserverpb::kv_server::Kv;
use raftgres_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use crate::error::{from_mvcc, from_store};
use crate::Ctx;

pub struct KvService(pub Ctx);

impl KvService {
    async fn write(&self, cmd: Command) -> Result<CommandResponse, Status> {
        validate(&cmd, &Limits { max_txn_ops: self.0.limits.max_txn_ops }).map_err(from_mvcc)?;
        self.0.store.kv(cmd).await.map_err(from_store)?.map_err(from_mvcc)
    }

    fn unexpected() -> Status {
        Status::internal("raftgres: unexpected response kind")
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = req.into_inner();
        if !req.serializable {
            self.0.store.read_barrier().await.map_err(from_store)?;
        }
        let mut resp = self.0.store.applied().read().mvcc.range(&req).map_err(from_mvcc)?;
        resp.header = self.0.header(resp.header.map_or(0, |h| h.revision));
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = req.into_inner();
        self.0.check_size(&req)?;
        let CommandResponse::Put(mut resp) = self.write(Command::Put(req)).await? else { return Err(Self::unexpected()) };
        resp.header = self.0.header(resp.header.map_or(0, |h| h.revision));
        Ok(Response::new(resp))
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = req.into_inner();
        let CommandResponse::DeleteRange(mut resp) = self.write(Command::DeleteRange(req)).await? else {
            return Err(Self::unexpected());
        };
        resp.header = self.0.header(resp.header.map_or(0, |h| h.revision));
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = req.into_inner();
        self.0.check_size(&req)?;
        let CommandResponse::Txn(mut resp) = self.write(Command::Txn(req)).await? else { return Err(Self::unexpected()) };
        resp.header = self.0.header(resp.header.map_or(0, |h| h.revision));
        Ok(Response::new(resp))
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let CommandResponse::Compact(mut resp) = self.write(Command::Compact(req.into_inner())).await? else {
            return Err(Self::unexpected());
        };
        resp.header = self.0.header(resp.header.map_or(0, |h| h.revision));
        Ok(Response::new(resp))
    }
}
