//! etcd's client-side `concurrency` recipes (session, mutex, election), run inside the
//! server for the `v3lockpb.Lock` and `v3electionpb.Election` services, on the same KV,
//! lease and watch primitives any client uses:
//!
//! - a session is a lease; its key under a prefix is `prefix/<lease hex>`, created by a
//!   txn "if CreateRevision(key) == 0 then put else get";
//! - the oldest key (lowest create revision) under the prefix holds the lock or leads;
//! - waiting = until every key under the prefix created before ours is deleted
//!   (`wait_deletes`), one predecessor at a time, each watched until its DELETE.
//!
//! Reads here are linearizable (read barrier), as the client recipes' Gets are; waits
//! use the store's applied-event channel, subscribed before the read they follow.

use raftgres_mvcc::Command;
use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use raftgres_proto::etcdserverpb::request_op::Request as Op;
use raftgres_proto::etcdserverpb::response_op::Response as OpResponse;
use raftgres_proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseOp};
use raftgres_proto::mvccpb::event::EventType;
use raftgres_store::WatchBatch;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tonic::Status;

use crate::error::{recipe_error, store_status};
use crate::keys::{lease_hex, prefix_end};
use crate::EtcdApi;

/// The TTL of a session lease the server grants itself (etcd's default session TTL).
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// `prefix` + `/`, as etcd's NewMutex and NewElection make their prefixes.
pub fn with_slash(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// The key of a session under `prefix`: `prefix` + lease id in hex.
pub fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(lease_hex(lease).as_bytes());
    key
}

/// `CreateRevision(key) == rev`.
pub fn create_revision_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

pub fn op_put(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    let put = PutRequest { key: key.to_vec(), value: value.to_vec(), lease, ..Default::default() };
    RequestOp { request: Some(Op::RequestPut(put)) }
}

pub fn op_get(key: &[u8]) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(RangeRequest { key: key.to_vec(), ..Default::default() })) }
}

pub fn op_delete(key: &[u8]) -> RequestOp {
    RequestOp { request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: key.to_vec(), ..Default::default() })) }
}

/// The oldest key under `prefix` (etcd's `WithFirstCreate`).
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// The youngest key under `prefix` created at or before `max_create_rev` (etcd's
/// `WithLastCreate` + `WithMaxCreateRev`).
pub fn last_created_before(prefix: &[u8], max_create_rev: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create_rev,
        ..Default::default()
    }
}

pub fn op_range(req: RangeRequest) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(req)) }
}

/// The range answer at position `i` of a txn's responses.
pub fn range_at(responses: &[ResponseOp], i: usize) -> Option<&RangeResponse> {
    match responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(OpResponse::ResponseRange(r)) => Some(r),
        _ => None,
    }
}

impl EtcdApi {
    /// The lease of a session (etcd's `NewSession(WithLease(lease))` as its lock and
    /// election servers use it): a given lease is used as is — the client keeps it
    /// alive; 0 grants a fresh lease of [`DEFAULT_SESSION_TTL`] that nobody keeps alive,
    /// so what it holds is released within a minute (etcd orphans it the same way).
    pub(crate) async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        Ok(self.grant_lease(0, DEFAULT_SESSION_TTL).await?.id)
    }

    /// Returns once no key under `prefix` created at or before `max_create_rev` is left
    /// (etcd's `waitDeletes`).
    pub(crate) async fn wait_deletes(&self, prefix: &[u8], max_create_rev: i64) -> Result<(), Status> {
        let mut live = self.store.applied().subscribe();
        loop {
            let resp = self.read_range(&last_created_before(prefix, max_create_rev)).await?;
            let Some(kv) = resp.kvs.first() else { return Ok(()) };
            let read_rev = resp.header.map_or(0, |h| h.revision);
            self.wait_deleted(&mut live, &kv.key, kv.create_revision, read_rev).await?;
        }
    }

    /// Returns once `key` (as created at `create_rev`) is deleted by a revision above
    /// `after`, which the caller read after subscribing `live`.
    pub(crate) async fn wait_deleted(
        &self,
        live: &mut Receiver<WatchBatch>,
        key: &[u8],
        create_rev: i64,
        after: i64,
    ) -> Result<(), Status> {
        loop {
            match live.recv().await {
                Ok(batch) => {
                    let deleted = batch.revision > after
                        && batch
                            .events
                            .iter()
                            .any(|e| e.r#type == EventType::Delete as i32 && e.kv.as_ref().is_some_and(|kv| kv.key == key));
                    if deleted {
                        return Ok(());
                    }
                }
                // Missed events: look at the key itself. Gone, or created anew, means
                // the one we waited for was deleted.
                Err(RecvError::Lagged(_)) => {
                    let get = RangeRequest { key: key.to_vec(), serializable: true, ..Default::default() };
                    let resp = self.read_range(&get).await?;
                    if !matches!(resp.kvs.first(), Some(kv) if kv.create_revision == create_rev) {
                        return Ok(());
                    }
                }
                Err(RecvError::Closed) => return Err(store_status(&raftgres_store::StoreError::Stopped)),
            }
        }
    }
}

/// Runs a write when dropped unless disarmed: releases what a recipe took when the
/// client gives up (cancels the call or disconnects) while it waits, as etcd's lock and
/// election servers do when their context is cancelled.
pub struct Cleanup {
    armed: Option<(EtcdApi, Command)>,
}

impl Cleanup {
    pub fn new(api: &EtcdApi, cmd: Command) -> Self {
        Self { armed: Some((api.clone(), cmd)) }
    }

    pub fn disarm(mut self) {
        self.armed = None;
    }

    /// Runs the cleanup now and waits for it.
    pub async fn run(mut self) {
        if let Some((api, cmd)) = self.armed.take() {
            if let Err(e) = api.propose(cmd).await {
                tracing::warn!("cleanup after a failed lock/election wait: {}", e.message());
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some((api, cmd)) = self.armed.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            if let Err(e) = api.propose(cmd).await {
                tracing::warn!("cleanup after an abandoned lock/election wait: {}", e.message());
            }
        });
    }
}

/// etcd's `concurrency.ErrSessionExpired`.
pub fn session_expired() -> Status {
    recipe_error("mutex: session is expired")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_etcds_recipes_make_them() {
        assert_eq!(with_slash(b"job"), b"job/".to_vec());
        assert_eq!(session_key(b"job/", 0x1f), b"job/1f".to_vec());
        let r = first_created(b"job/");
        assert_eq!((r.range_end.as_slice(), r.limit, r.sort_target), (&b"job0"[..], 1, SortTarget::Create as i32));
        let r = last_created_before(b"job/", 7);
        assert_eq!((r.sort_order, r.max_create_revision), (SortOrder::Descend as i32, 7));
    }

    #[test]
    fn range_at_finds_range_answers_only() {
        let responses = vec![
            ResponseOp { response: Some(OpResponse::ResponseRange(RangeResponse { count: 2, ..Default::default() })) },
            ResponseOp { response: None },
        ];
        assert_eq!(range_at(&responses, 0).map(|r| r.count), Some(2));
        assert!(range_at(&responses, 1).is_none());
        assert!(range_at(&responses, 2).is_none());
    }
}
