//! `v3electionpb.Election`: etcd's election recipe run in the server (see `recipe`).
//!
//! Campaign(name, lease, value) puts `name/<lease hex>` = value on the lease and waits
//! until every candidate key created before it is deleted: then the caller leads, as
//! long as its key exists. Proclaim changes the leader's value (only if the key is still
//! the one elected), Resign deletes it, Leader reads the oldest key under `name/`, and
//! Observe streams the leader's value: the current leader, then each new value, then
//! the next leader once it is deleted. Errors of the recipe have etcd's text
//! ("election: not leader", "election: no leader") and code Unknown, as in etcd.
//!
//! With auth enabled, Campaign needs read and write permission on `name/`, Leader and
//! Observe read permission on it, Proclaim and Resign write permission on the key.

use raftgres_mvcc::Command;
use raftgres_proto::etcdserverpb::{ResponseHeader, TxnRequest};
use raftgres_proto::mvccpb::event::EventType;
use raftgres_proto::mvccpb::KeyValue;
use raftgres_proto::v3electionpb::election_server::Election;
use raftgres_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse, ResignRequest,
    ResignResponse,
};
use raftgres_store::auth::Need;
use raftgres_store::WatchBatch;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::{recipe_error, store_status, unexpected_response};
use crate::keys::{prefix_end, KeyRange};
use crate::recipe::{create_revision_is, first_created, op_delete, op_get, op_put, range_at, session_key, with_slash, Cleanup};
use crate::EtcdApi;

const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

type LeaderStream = mpsc::Sender<Result<LeaderResponse, Status>>;

/// The Election service.
pub struct ElectionService {
    api: EtcdApi,
}

impl ElectionService {
    pub fn new(api: EtcdApi) -> Self {
        Self { api }
    }
}

/// The key prefix of the election Leader or Observe reads, once the caller may read it.
fn observed_prefix(api: &EtcdApi, req: Request<LeaderRequest>) -> Result<Vec<u8>, Status> {
    let prefix = with_slash(&req.get_ref().name);
    api.authorize(&req, &[Need::Read(&prefix, &prefix_end(&prefix))])?;
    Ok(prefix)
}

/// "If our key is still the one elected at `rev`, then ...".
fn if_still_elected(key: &[u8], rev: i64, then: raftgres_proto::etcdserverpb::RequestOp) -> TxnRequest {
    TxnRequest { compare: vec![create_revision_is(key, rev)], success: vec![then], failure: Vec::new() }
}

impl EtcdApi {
    async fn proclaim(&self, leader: &LeaderKey, value: &[u8]) -> Result<Option<ResponseHeader>, Status> {
        let resp = self.txn(if_still_elected(&leader.key, leader.rev, op_put(&leader.key, value, leader.lease))).await?;
        if !resp.succeeded {
            return Err(recipe_error(NOT_LEADER));
        }
        Ok(resp.header)
    }

    async fn resign(&self, leader: &LeaderKey) -> Result<Option<ResponseHeader>, Status> {
        Ok(self.txn(if_still_elected(&leader.key, leader.rev, op_delete(&leader.key))).await?.header)
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, req: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let prefix = with_slash(&req.get_ref().name);
        let end = prefix_end(&prefix);
        self.api.authorize(&req, &[Need::Read(&prefix, &end), Need::Write(&prefix, &end)])?;
        let req = req.into_inner();
        let api = &self.api;
        let lease = api.session_lease(req.lease).await?;
        let key = session_key(&prefix, lease);
        let txn = TxnRequest {
            compare: vec![create_revision_is(&key, 0)],
            success: vec![op_put(&key, &req.value, lease)],
            failure: vec![op_get(&key)],
        };
        let resp = api.txn(txn).await?;
        let mut leader = LeaderKey { name: req.name.clone(), key: key.clone(), rev: 0, lease };
        if resp.succeeded {
            leader.rev = resp.header.map_or(0, |h| h.revision);
        } else {
            // Campaigning again with the same lease: keep our place, update the value.
            let mine = range_at(&resp.responses, 0).and_then(|r| r.kvs.first()).ok_or_else(|| unexpected_response("Txn"))?;
            leader.rev = mine.create_revision;
            if mine.value != req.value {
                if let Err(e) = api.proclaim(&leader, &req.value).await {
                    let _ = api.resign(&leader).await;
                    return Err(e);
                }
            }
        }
        // Resign if the caller gives up while waiting (etcd: on context cancel only).
        let resign = Cleanup::new(api, Command::Txn(if_still_elected(&key, leader.rev, op_delete(&key))));
        let waited = api.wait_deletes(&prefix, leader.rev - 1).await;
        resign.disarm();
        waited?;
        Ok(Response::new(CampaignResponse { header: resp.header, leader: Some(leader) }))
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let key = req.get_ref().leader.as_ref().map(|l| l.key.as_slice()).unwrap_or_default();
        self.api.authorize(&req, &[Need::Write(key, &[])])?;
        let req = req.into_inner();
        let leader = req.leader.ok_or_else(|| recipe_error(MISSING_LEADER_KEY))?;
        let header = self.api.proclaim(&leader, &req.value).await?;
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let prefix = observed_prefix(&self.api, req)?;
        let resp = self.api.read_range(&first_created(&prefix)).await?;
        let kv = resp.kvs.into_iter().next().ok_or_else(|| recipe_error(NO_LEADER))?;
        Ok(Response::new(LeaderResponse { header: resp.header, kv: Some(kv) }))
    }

    type ObserveStream = ReceiverStream<Result<LeaderResponse, Status>>;

    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let prefix = observed_prefix(&self.api, req)?;
        let (tx, rx) = mpsc::channel(16);
        let api = self.api.clone();
        tokio::spawn(async move {
            let closed = tx.clone();
            tokio::select! {
                result = observe(&api, &prefix, &tx) => {
                    if let Err(status) = result {
                        let _ = tx.send(Err(status)).await;
                    }
                }
                () = closed.closed() => {}
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let key = req.get_ref().leader.as_ref().map(|l| l.key.as_slice()).unwrap_or_default();
        self.api.authorize(&req, &[Need::Write(key, &[])])?;
        let leader = req.into_inner().leader.ok_or_else(|| recipe_error(MISSING_LEADER_KEY))?;
        let header = self.api.resign(&leader).await?;
        Ok(Response::new(ResignResponse { header }))
    }
}

/// What waiting on the event channel ended with.
enum Next {
    Found(i64, KeyValue),
    /// The key being followed was deleted, or events were missed: read again.
    Reread,
}

/// etcd's `Election.observe`: the leader now (or the first one to come), each value it
/// proclaims, and on its deletion the next leader. Ends when the client goes away.
async fn observe(api: &EtcdApi, prefix: &[u8], tx: &LeaderStream) -> Result<(), Status> {
    let mut live = api.store.applied().subscribe();
    let range = KeyRange::prefix(prefix);
    loop {
        let resp = api.read_range(&first_created(prefix)).await?;
        let read_rev = resp.header.map_or(0, |h| h.revision);
        let (rev, kv) = match resp.kvs.into_iter().next() {
            Some(kv) => (read_rev, kv),
            None => match next_event(&mut live, read_rev, |e| e == EventType::Put, |k| range.contains(k)).await? {
                Next::Found(rev, kv) => (rev, kv),
                Next::Reread => continue,
            },
        };
        let key = kv.key.clone();
        if !send(api, tx, rev, kv).await {
            return Ok(());
        }
        // Follow this leader's key until it is deleted.
        let mut after = rev;
        while let Next::Found(rev, kv) = next_event(&mut live, after, |_| true, |k| k == key.as_slice()).await? {
            after = rev;
            if !send(api, tx, rev, kv).await {
                return Ok(());
            }
        }
    }
}

async fn send(api: &EtcdApi, tx: &LeaderStream, rev: i64, kv: KeyValue) -> bool {
    tx.send(Ok(LeaderResponse { header: api.header(rev), kv: Some(kv) })).await.is_ok()
}

/// The first event above revision `after` whose type and key match. A DELETE of a
/// matching key ends the wait as `Reread` (the followed key is gone), as does a lag.
async fn next_event(
    live: &mut broadcast::Receiver<WatchBatch>,
    after: i64,
    wanted: impl Fn(EventType) -> bool,
    key_matches: impl Fn(&[u8]) -> bool,
) -> Result<Next, Status> {
    loop {
        let batch = match live.recv().await {
            Ok(batch) => batch,
            Err(RecvError::Lagged(_)) => return Ok(Next::Reread),
            Err(RecvError::Closed) => return Err(store_status(&raftgres_store::StoreError::Stopped)),
        };
        if batch.revision <= after {
            continue;
        }
        for e in batch.events.iter() {
            let Some(kv) = e.kv.as_ref().filter(|kv| key_matches(&kv.key)) else { continue };
            let kind = EventType::try_from(e.r#type).unwrap_or(EventType::Put);
            if !wanted(kind) {
                continue;
            }
            if kind == EventType::Delete {
                return Ok(Next::Reread);
            }
            return Ok(Next::Found(batch.revision, kv.clone()));
        }
    }
}
