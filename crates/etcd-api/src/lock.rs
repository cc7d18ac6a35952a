//! `v3lockpb.Lock`: etcd's mutex recipe run in the server (see `recipe`).
//!
//! Lock(name, lease) puts `name/<lease hex>` on the lease (or finds it there), then waits
//! until every key under `name/` created before it is deleted, and answers with the
//! key: the caller owns the lock as long as that key exists — i.e. while its lease
//! lives. Its create revision is the fencing token (guard writes with
//! `Compare(CreateRevision(key) == token)`). A caller that gives up while waiting has
//! its key deleted. Unlock(key) deletes the key.
//!
//! With auth enabled, Lock needs read and write permission on `name/` (etcd's lock
//! server runs its recipe as the caller), Unlock write permission on the key.
//!
//! As in etcd, lease 0 makes the server grant a 60 s lease that nobody keeps alive.

use raftgres_mvcc::Command;
use raftgres_proto::etcdserverpb::{DeleteRangeRequest, RangeRequest, TxnRequest};
use raftgres_proto::v3lockpb::lock_server::Lock;
use raftgres_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use raftgres_store::auth::Need;
use tonic::{Request, Response, Status};

use crate::error::unexpected_response;
use crate::keys::prefix_end;
use crate::recipe::{
    create_revision_is, first_created, op_get, op_put, op_range, range_at, session_expired, session_key, with_slash, Cleanup,
};
use crate::EtcdApi;

/// The Lock service.
pub struct LockService {
    api: EtcdApi,
}

impl LockService {
    pub fn new(api: EtcdApi) -> Self {
        Self { api }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let prefix = with_slash(&req.get_ref().name);
        let end = prefix_end(&prefix);
        self.api.authorize(&req, &[Need::Read(&prefix, &end), Need::Write(&prefix, &end)])?;
        let req = req.into_inner();
        let api = &self.api;
        let lease = api.session_lease(req.lease).await?;
        let key = session_key(&prefix, lease);

        // Enter the queue (or find our key already in it) and see who is first.
        let txn = TxnRequest {
            compare: vec![create_revision_is(&key, 0)],
            success: vec![op_put(&key, b"", lease), op_range(first_created(&prefix))],
            failure: vec![op_get(&key), op_range(first_created(&prefix))],
        };
        let resp = api.txn(txn).await?;
        let my_rev = if resp.succeeded {
            resp.header.map_or(0, |h| h.revision)
        } else {
            let mine = range_at(&resp.responses, 0).and_then(|r| r.kvs.first()).ok_or_else(|| unexpected_response("Txn"))?;
            mine.create_revision
        };
        let owner = range_at(&resp.responses, 1).and_then(|r| r.kvs.first());
        if !matches!(owner, Some(kv) if kv.create_revision != my_rev) {
            return Ok(Response::new(LockResponse { header: resp.header, key }));
        }

        // Wait for every earlier waiter; give our place up if the caller goes away.
        let release = Cleanup::new(api, Command::DeleteRange(DeleteRangeRequest { key: key.clone(), ..Default::default() }));
        if let Err(e) = api.wait_deletes(&prefix, my_rev - 1).await {
            release.run().await;
            return Err(e);
        }
        release.disarm();

        // Our key must still be there: a lease that expired while we waited lost it.
        let get = api.read_range(&RangeRequest { key: key.clone(), ..Default::default() }).await?;
        if get.kvs.is_empty() {
            return Err(session_expired());
        }
        Ok(Response::new(LockResponse { header: get.header, key }))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        self.api.authorize(&req, &[Need::Write(&req.get_ref().key, &[])])?;
        let key = req.into_inner().key;
        let resp = self.api.delete_range(DeleteRangeRequest { key, ..Default::default() }).await?;
        Ok(Response::new(UnlockResponse { header: resp.header }))
    }
}
