//! The agent's DCS: Patroni's etcd3 usage, as etcd v3 requests on a gRPC channel (in a
//! node, an in-process channel to its own etcd API). One lease per agent carries its
//! member key and, on the primary, the leader key; every other key is written with
//! compare-and-swap on its revision or existence. A store out of space (NOSPACE) is
//! reported once, not per refused write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_proto::etcdserverpb::cluster_client::ClusterClient;
use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::lease_client::LeaseClient;
use raftgres_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftgres_proto::etcdserverpb::request_op::Request as Op;
use raftgres_proto::etcdserverpb::watch_client::WatchClient;
use raftgres_proto::etcdserverpb::watch_request::RequestUnion;
use raftgres_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest, MemberListRequest,
    MoveLeaderRequest, PutRequest, RangeRequest, RequestOp, StatusRequest, StatusResponse, TxnRequest, WatchCreateRequest, WatchRequest,
};
pub use raftgres_proto::prefix_end;
use tokio_stream::StreamExt;
use tonic::codegen::{Body, Bytes, StdError};
use tonic::transport::Channel;

use crate::cluster::{ClusterStatus, ClusterView, Event, FailoverRequest, HistoryEntry, Keys, LeaderKey, Member, SyncState};

/// Why a store request failed.
#[derive(Debug, thiserror::Error)]
pub enum DcsError {
    #[error("store did not answer within {0:?}")]
    Timeout(Duration),
    /// The store answered with an error; `code` is its gRPC code (etcd's errors map to
    /// them: `Unavailable` for no leader, `FailedPrecondition` for a bad revision, ...).
    #[error("store error: {message}")]
    Status { code: tonic::Code, message: String },
}

impl DcsError {
    /// The gRPC code of the store's answer; `DeadlineExceeded` when it gave none in time.
    pub fn code(&self) -> tonic::Code {
        match self {
            DcsError::Timeout(_) => tonic::Code::DeadlineExceeded,
            DcsError::Status { code, .. } => *code,
        }
    }
}

impl From<tonic::Status> for DcsError {
    fn from(s: tonic::Status) -> Self {
        DcsError::Status { code: s.code(), message: s.message().to_string() }
    }
}

pub type DcsResult<T> = Result<T, DcsError>;

/// A lease renewal that succeeded: when it was sent and the TTL it was granted.
#[derive(Debug, Clone, Copy)]
pub struct Renewal {
    pub sent: Instant,
    pub ttl: Duration,
}

/// What a [`Dcs`] sends its requests through: a tonic channel (the agent's in-process
/// one), or a wrapper of one (`raftctl`'s, which adds etcd auth tokens).
pub trait Transport:
    tonic::client::GrpcService<
        tonic::body::BoxBody,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Transport for T where
    T: tonic::client::GrpcService<
            tonic::body::BoxBody,
            Error: Into<StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

#[derive(Clone)]
pub struct Dcs<C = Channel> {
    channel: C,
    pub keys: Keys,
    timeout: Duration,
    /// True while the store refuses writes for lack of space (shared by the clones).
    out_of_space: Arc<AtomicBool>,
}

impl<C: Transport> Dcs<C> {
    pub fn new(channel: C, keys: Keys, timeout: Duration) -> Self {
        Self { channel, keys, timeout, out_of_space: Arc::default() }
    }

    /// Logs one line when writes start being refused with the store's NOSPACE alarm
    /// (etcd's "database space exceeded", ResourceExhausted), and one when they pass
    /// again, instead of a line per refused write.
    fn note_write<T>(&self, result: DcsResult<T>) -> DcsResult<T> {
        let refused = matches!(&result, Err(e) if e.code() == tonic::Code::ResourceExhausted);
        if refused && !self.out_of_space.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "the store is out of space (NOSPACE alarm): it refuses the agent's writes (member key, leader key, leases) until an operator compacts the history and runs `etcdctl alarm disarm`; see README, Compaction and quota"
            );
        } else if result.is_ok() && self.out_of_space.swap(false, Ordering::Relaxed) {
            tracing::info!("the store accepts writes again (NOSPACE alarm cleared)");
        }
        result
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    async fn timed<T>(&self, f: impl std::future::Future<Output = Result<T, tonic::Status>>) -> DcsResult<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(DcsError::from),
            Err(_) => Err(DcsError::Timeout(self.timeout)),
        }
    }

    fn kv(&self) -> KvClient<C> {
        KvClient::new(self.channel.clone())
    }

    fn lease(&self) -> LeaseClient<C> {
        LeaseClient::new(self.channel.clone())
    }

    /// One linearizable read of the whole cluster prefix.
    pub async fn read_cluster(&self) -> DcsResult<ClusterView> {
        let prefix = self.keys.prefix.as_bytes().to_vec();
        let req = RangeRequest { key: prefix.clone(), range_end: prefix_end(&prefix), ..Default::default() };
        let resp = self.timed(self.kv().range(req)).await?.into_inner();
        let mut view = ClusterView { revision: resp.header.map_or(0, |h| h.revision), ..Default::default() };
        for kv in resp.kvs {
            let key = String::from_utf8_lossy(&kv.key);
            let Some(rest) = key.strip_prefix(&self.keys.prefix) else { continue };
            let value = String::from_utf8_lossy(&kv.value).to_string();
            match rest {
                "leader" => view.leader = Some(LeaderKey { name: value, lease: kv.lease, mod_revision: kv.mod_revision }),
                "initialize" => {
                    view.initialize = Some(value);
                    (view.initialize_lease, view.initialize_mod_revision) = (kv.lease, kv.mod_revision);
                }
                "config" => match serde_json::from_str(&value) {
                    Ok(v) => view.config = Some((v, kv.mod_revision)),
                    Err(e) => tracing::warn!("ignoring {key}: not JSON ({e})"),
                },
                "history" => view.history = serde_json::from_str::<Vec<HistoryEntry>>(&value).unwrap_or_default(),
                "status" => view.status = serde_json::from_str::<ClusterStatus>(&value).ok(),
                "failover" => view.failover = serde_json::from_str::<FailoverRequest>(&value).ok(),
                "sync" => view.sync = serde_json::from_str::<SyncState>(&value).ok().map(|s| (s, kv.mod_revision)),
                other => {
                    if let Some(name) = other.strip_prefix("members/") {
                        match serde_json::from_str::<Member>(&value) {
                            Ok(m) => {
                                view.members.insert(name.to_string(), m);
                            }
                            Err(e) => tracing::warn!("ignoring member key {key}: {e}"),
                        }
                    }
                }
            }
        }
        Ok(view)
    }

    pub async fn grant(&self, ttl: Duration) -> DcsResult<(i64, Renewal)> {
        let sent = Instant::now();
        let req = LeaseGrantRequest { ttl: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX), id: 0 };
        let resp = self.note_write(self.timed(self.lease().lease_grant(req)).await)?.into_inner();
        if !resp.error.is_empty() {
            // etcd puts a refused grant (e.g. a duplicate id) in the answer, not the status.
            return Err(DcsError::Status { code: tonic::Code::FailedPrecondition, message: resp.error });
        }
        let granted = Duration::from_secs(u64::try_from(resp.ttl).unwrap_or(0));
        if granted > ttl {
            // The store's minimum lease TTL (1.5 x its election timeout) won: the keys
            // outlive the agent's ttl, so a failover waits for the longer one.
            tracing::warn!(
                "the store granted a {} s lease for ttl {} s (its minimum is 1.5 x its Raft election timeout): \
                 failover waits {} s; lower the store's election-timeout or raise ttl",
                granted.as_secs(),
                ttl.as_secs(),
                granted.as_secs()
            );
        }
        Ok((resp.id, Renewal { sent, ttl: granted }))
    }

    /// Renews `lease`. Ok(None): the lease no longer exists.
    pub async fn keep_alive(&self, lease: i64) -> DcsResult<Option<Renewal>> {
        let sent = Instant::now();
        let mut client = self.lease();
        let call = async move {
            let request = tokio_stream::iter([LeaseKeepAliveRequest { id: lease }]);
            let mut answers = client.lease_keep_alive(request).await?.into_inner();
            match answers.next().await {
                Some(answer) => answer,
                None => Err(tonic::Status::unavailable("keep-alive stream closed")),
            }
        };
        let resp = self.timed(call).await?;
        Ok((resp.ttl > 0).then(|| Renewal { sent, ttl: Duration::from_secs(u64::try_from(resp.ttl).unwrap_or(0)) }))
    }

    pub async fn revoke(&self, lease: i64) -> DcsResult<()> {
        self.timed(self.lease().lease_revoke(LeaseRevokeRequest { id: lease })).await?;
        Ok(())
    }

    async fn txn(&self, compare: Vec<Compare>, success: Vec<RequestOp>) -> DcsResult<bool> {
        let req = TxnRequest { compare, success, failure: vec![] };
        Ok(self.note_write(self.timed(self.kv().txn(req)).await)?.into_inner().succeeded)
    }

    pub async fn put(&self, key: &str, value: &str, lease: i64) -> DcsResult<()> {
        let req = PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() };
        self.note_write(self.timed(self.kv().put(req)).await)?;
        Ok(())
    }

    /// Puts `key` only if it does not exist. True when this call created it.
    pub async fn create(&self, key: &str, value: &str, lease: i64) -> DcsResult<bool> {
        self.txn(vec![create_revision_is(key, 0)], vec![op_put(key, value, lease)]).await
    }

    /// Puts `key` only if its mod revision is still `mod_revision`.
    pub async fn put_if_unchanged(&self, key: &str, value: &str, mod_revision: i64) -> DcsResult<bool> {
        self.txn(vec![mod_revision_is(key, mod_revision)], vec![op_put(key, value, 0)]).await
    }

    /// Deletes `key` only if its mod revision is still `mod_revision`.
    pub async fn delete_if_unchanged(&self, key: &str, mod_revision: i64) -> DcsResult<bool> {
        self.txn(vec![mod_revision_is(key, mod_revision)], vec![op_delete(key)]).await
    }

    /// Deletes `key` only if it holds `value`.
    pub async fn delete_if_value(&self, key: &str, value: &str) -> DcsResult<bool> {
        self.txn(vec![value_is(key, value)], vec![op_delete(key)]).await
    }

    pub async fn delete(&self, key: &str) -> DcsResult<()> {
        self.timed(self.kv().delete_range(DeleteRangeRequest { key: key.into(), ..Default::default() })).await?;
        Ok(())
    }

    /// The leader key race: creates `leader = name` on `lease` if nobody holds it.
    pub async fn acquire_leader(&self, name: &str, lease: i64) -> DcsResult<bool> {
        self.create(&self.keys.leader(), name, lease).await
    }

    /// Moves the leader key `name` to `lease`, only if it is still the key put at
    /// `mod_revision` (a ttl change: see `ha::lease`). True when it moved.
    pub async fn move_leader(&self, name: &str, mod_revision: i64, lease: i64) -> DcsResult<bool> {
        let key = self.keys.leader();
        self.txn(vec![mod_revision_is(&key, mod_revision)], vec![op_put(&key, name, lease)]).await
    }

    /// Writes an event of the timeline under its time `at` and forgets events older than `keep`.
    pub async fn record_event(&self, member: &str, event: &str, at: std::time::SystemTime, keep: Duration) -> DcsResult<()> {
        let at = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let value = serde_json::json!({ "at_ms": at.as_millis() as u64, "member": member, "event": event }).to_string();
        self.put(&self.keys.event(at.as_millis(), member), &value, 0).await?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let cutoff = now.saturating_sub(keep).as_millis();
        let req = DeleteRangeRequest {
            key: self.keys.events_prefix().into(),
            range_end: self.keys.event(cutoff, "").into(),
            ..Default::default()
        };
        self.timed(self.kv().delete_range(req)).await?;
        Ok(())
    }

    /// The timeline, oldest first.
    pub async fn events(&self) -> DcsResult<Vec<Event>> {
        let prefix = self.keys.events_prefix().into_bytes();
        let req = RangeRequest { range_end: prefix_end(&prefix), key: prefix, ..Default::default() };
        let resp = self.timed(self.kv().range(req)).await?.into_inner();
        Ok(resp.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
    }

    /// This node's Raft view (etcd's Maintenance.Status) and the number of leases.
    pub async fn store_status(&self) -> DcsResult<(StatusResponse, usize)> {
        let status = self.timed(MaintenanceClient::new(self.channel.clone()).status(StatusRequest {})).await?.into_inner();
        let leases = self.timed(self.lease().lease_leases(LeaseLeasesRequest {})).await?.into_inner().leases.len();
        Ok((status, leases))
    }

    /// Who leads Raft as this node's store sees it: (this member's id, the leader's id,
    /// every voter's id), from etcd's Maintenance.Status and Cluster.MemberList.
    pub async fn raft_roles(&self) -> DcsResult<(u64, u64, Vec<u64>)> {
        let status = self.timed(MaintenanceClient::new(self.channel.clone()).status(StatusRequest {})).await?.into_inner();
        let me = status.header.map_or(0, |h| h.member_id);
        let members = self.timed(ClusterClient::new(self.channel.clone()).member_list(MemberListRequest { linearizable: false })).await?;
        let voters = members.into_inner().members.iter().filter(|m| !m.is_learner).map(|m| m.id).collect();
        Ok((me, status.leader, voters))
    }

    /// Hands Raft leadership to the voter `target` (etcd's MoveLeader), waiting at most
    /// `wait` for the answer.
    pub async fn move_raft_leader(&self, target: u64, wait: Duration) -> DcsResult<()> {
        let mut client = MaintenanceClient::new(self.channel.clone());
        match tokio::time::timeout(wait, client.move_leader(MoveLeaderRequest { target_id: target })).await {
            Ok(answer) => answer.map(|_| ()).map_err(DcsError::from),
            Err(_) => Err(DcsError::Timeout(wait)),
        }
    }

    /// Sends a notification on `wake` for every change under the cluster prefix that
    /// [calls for a cycle](calls_for_a_cycle), until `wake` is closed; re-creates the
    /// watch after errors.
    pub async fn watch_prefix(self, wake: tokio::sync::mpsc::Sender<()>) {
        let prefix = self.keys.prefix.as_bytes().to_vec();
        loop {
            let create = WatchCreateRequest { key: prefix.clone(), range_end: prefix_end(&prefix), prev_kv: true, ..Default::default() };
            let request = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
            // The request stream must stay open, or the server ends the watch.
            let (_keep_open, rx) = tokio::sync::mpsc::channel::<WatchRequest>(1);
            let outbound = tokio_stream::iter([request]).chain(tokio_stream::wrappers::ReceiverStream::new(rx));
            match WatchClient::new(self.channel.clone()).watch(outbound).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    while let Some(Ok(resp)) = stream.next().await {
                        let wanted = resp.events.iter().any(|e| calls_for_a_cycle(&self.keys, e));
                        if wanted {
                            let keys: Vec<_> =
                                resp.events.iter().filter_map(|e| e.kv.as_ref()).map(|kv| String::from_utf8_lossy(&kv.key)).collect();
                            tracing::debug!(
                                "watch: {} changed (revision {}): waking the HA loop",
                                keys.join(", "),
                                resp.header.as_ref().map_or(0, |h| h.revision)
                            );
                        }
                        if wanted && wake.send(()).await.is_err() {
                            return;
                        }
                        if resp.canceled {
                            break;
                        }
                    }
                }
                Err(e) => tracing::debug!("watch on {} failed: {}", self.keys.prefix, e.message()),
            }
            if wake.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether a change under the cluster prefix calls for an HA cycle at once. Two kinds
/// do not: a write of `status` (the primary's WAL position) and a member key whose
/// only change is its WAL positions. Every member rewrites those each `loop_wait` while
/// the primary writes anything (its liveness probe's write is enough), and each would
/// wake every node's loop; decisions read positions when they are taken, and a cycle
/// comes every `loop_wait` anyway. Everything else does: the leader key, `/config`,
/// `/sync`, `/failover`, `/initialize`, any deletion, and a member that appears or
/// changes its role, state, tags or anything else but its positions.
pub fn calls_for_a_cycle(keys: &Keys, event: &raftgres_proto::mvccpb::Event) -> bool {
    use raftgres_proto::mvccpb::event::EventType;
    let Some(kv) = &event.kv else { return true };
    if event.r#type != EventType::Put as i32 {
        return true;
    }
    let key = String::from_utf8_lossy(&kv.key);
    if key == keys.status() {
        return false;
    }
    if !key.starts_with(&keys.members_prefix()) {
        return true;
    }
    let member = |value: &[u8]| serde_json::from_slice::<Member>(value).ok().map(|m| m.without_positions());
    match (event.prev_kv.as_ref().and_then(|p| member(&p.value)), member(&kv.value)) {
        (Some(before), Some(now)) => before != now,
        _ => true,
    }
}

fn compare(key: &str, target: CompareTarget, union: TargetUnion) -> Compare {
    Compare { result: CompareResult::Equal as i32, target: target as i32, key: key.into(), range_end: vec![], target_union: Some(union) }
}

fn create_revision_is(key: &str, rev: i64) -> Compare {
    compare(key, CompareTarget::Create, TargetUnion::CreateRevision(rev))
}

fn mod_revision_is(key: &str, rev: i64) -> Compare {
    compare(key, CompareTarget::Mod, TargetUnion::ModRevision(rev))
}

fn value_is(key: &str, value: &str) -> Compare {
    compare(key, CompareTarget::Value, TargetUnion::Value(value.into()))
}

fn op_put(key: &str, value: &str, lease: i64) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() })) }
}

fn op_delete(key: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: key.into(), ..Default::default() })) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_beyond_wal_positions_wake_the_loop() {
        use raftgres_proto::mvccpb::event::EventType;
        use raftgres_proto::mvccpb::{Event as Change, KeyValue};
        let keys = Keys::new("service", "demo");
        let member = |role: crate::cluster::Role, lsn: u64| {
            let m = Member { state: "running".into(), role, xlog_location: Some(lsn), replay_lsn: Some(lsn), ..Member::default() };
            serde_json::to_vec(&m).expect("json")
        };
        let kv = |key: String, value: Vec<u8>| KeyValue { key: key.into_bytes(), value, ..Default::default() };
        let put = |key: String, before: Option<Vec<u8>>, now: Vec<u8>| Change {
            r#type: EventType::Put as i32,
            kv: Some(kv(key.clone(), now)),
            prev_kv: before.map(|b| kv(key, b)),
        };
        let node2 = keys.member("node2");
        let replica = crate::cluster::Role::Replica;
        let table = [
            (put(node2.clone(), Some(member(replica, 1)), member(replica, 2)), false, "positions only"),
            (put(keys.status(), Some(b"{\"optime\":1}".to_vec()), b"{\"optime\":2}".to_vec()), false, "the primary's position"),
            (put(node2.clone(), Some(member(replica, 1)), member(crate::cluster::Role::Primary, 2)), true, "a new role"),
            (put(node2.clone(), None, member(replica, 2)), true, "a member that appears"),
            (put(node2.clone(), Some(b"garbage".to_vec()), member(replica, 2)), true, "an unreadable old value"),
            (put(keys.leader(), Some(b"node1".to_vec()), b"node1".to_vec()), true, "the leader key"),
            (put(keys.failover(), None, b"{}".to_vec()), true, "a switchover"),
            (Change { r#type: EventType::Delete as i32, kv: Some(kv(node2.clone(), vec![])), prev_kv: None }, true, "a member that goes"),
        ];
        for (change, wakes, why) in table {
            assert_eq!(calls_for_a_cycle(&keys, &change), wakes, "{why}");
        }
    }

    #[test]
    fn a_store_error_keeps_its_grpc_code() {
        let e = DcsError::from(tonic::Status::unavailable("etcdserver: no leader"));
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert_eq!(e.to_string(), "store error: etcdserver: no leader");
        assert_eq!(DcsError::Timeout(Duration::from_secs(1)).code(), tonic::Code::DeadlineExceeded);
    }
}
