//! What the API layer asks of the store: writes, linearizable read barriers, lease
//! keep-alive and time-to-live, status. Whatever only the leader can do is done
//! locally when this node leads, and forwarded to the leader otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::RaftError;
use openraft::ServerState;
use raftgres_mvcc::{Command, CommandResponse, MvccError};

use crate::error::StoreError;
use crate::forward::{ForwardRequest, ForwardResponse, NodeStatus};
use crate::lease_clock::Renewal;
use crate::metrics::StoreMetrics;
use crate::state_machine::Applied;
use crate::types::{NodeId, PeerNode, RaftMetrics, Request, Response};
use crate::Store;

/// How long a request may wait for a leader and an answer (etcdctl's command timeout is 5 s).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

impl Store {
    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether peers talk over (mutual) TLS, so member peer URLs are `https://`.
    pub fn peer_tls(&self) -> bool {
        self.config.peer_tls.is_some()
    }

    pub fn applied(&self) -> &Applied {
        &self.applied
    }

    /// The store's latency histograms and watch gauges (for `/metrics`).
    pub fn store_metrics(&self) -> &Arc<StoreMetrics> {
        &self.metrics
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    pub fn min_lease_ttl(&self) -> i64 {
        self.config.timing.min_lease_ttl()
    }

    pub fn cluster_id(&self) -> u64 {
        self.applied.read().cluster_id
    }

    pub(crate) fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// Waits (up to `timeout`) until some node is known as leader.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<(NodeId, PeerNode), StoreError> {
        let mut rx = self.raft.metrics();
        let found = tokio::time::timeout(timeout, async {
            loop {
                {
                    let m = rx.borrow_and_update();
                    if let Some(leader) = m.current_leader {
                        if let Some(node) = m.membership_config.membership().get_node(&leader) {
                            return Some((leader, node.clone()));
                        }
                    }
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match found {
            Ok(Some(leader)) => Ok(leader),
            Ok(None) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::NoLeader),
        }
    }

    /// Runs `request` on the leader, retrying while leadership is moving.
    pub async fn on_leader(&self, request: ForwardRequest) -> Result<ForwardResponse, StoreError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (leader, node) = self.wait_leader(remaining).await?;
            let result = if leader == self.id {
                self.serve_forwarded(request.clone()).await
            } else if let ForwardRequest::Write(write) = &request {
                self.forwarder.write(&node.peer_addr, write.clone(), deadline).await.map(ForwardResponse::Write)
            } else {
                self.net.forward(&node.peer_addr, &request, remaining.max(Duration::from_millis(100))).await
            };
            match result {
                Err(StoreError::NotLeader { .. }) | Err(StoreError::NoLeader) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Serves a request that needs the leader. Answers `NotLeader` when this node is not.
    pub async fn serve_forwarded(&self, request: ForwardRequest) -> Result<ForwardResponse, StoreError> {
        if !matches!(request, ForwardRequest::Status) && !self.is_leader() {
            return Err(StoreError::NotLeader { leader: self.raft.metrics().borrow_watched().current_leader });
        }
        match request {
            ForwardRequest::Status => Ok(ForwardResponse::Status(self.status())),
            ForwardRequest::Write(req) => self.batcher.write(req).await.map(ForwardResponse::Write),
            ForwardRequest::ReadIndex => self.confirm_leadership().await.map(ForwardResponse::ReadIndex),
            ForwardRequest::LeaseKeepAlive { id } => {
                let term = self.lease_authority().await?;
                // Renew first, then prove we still lead: any later leader is elected after
                // this confirmation and refreshes every lease once it applied its log.
                let ttl = match self.applied.leases.renew(id) {
                    Renewal::Renewed(ttl) => Some(ttl),
                    Renewal::Unknown => None,
                    Renewal::Expired => {
                        self.await_revoked(id, term).await?;
                        None
                    }
                };
                self.confirm_leadership().await?;
                Ok(ForwardResponse::LeaseKeepAlive(ttl))
            }
            ForwardRequest::LeaseTimeToLive { id } => {
                self.lease_authority().await?;
                self.confirm_leadership().await?;
                Ok(ForwardResponse::LeaseTimeToLive(self.applied.leases.remaining(id)))
            }
            ForwardRequest::Membership(change) => self.change_membership(change).await.map(ForwardResponse::Membership),
            ForwardRequest::MoveLeader { target } => self.transfer_leadership(target).await.map(|()| ForwardResponse::MoveLeader),
        }
    }

    /// Serves writes a follower forwarded together: one result per request, in order
    /// (each `NotLeader` when this node is not the leader).
    pub async fn serve_forwarded_writes(&self, requests: Vec<Request>) -> Vec<Result<Response, StoreError>> {
        if !self.is_leader() {
            let not_leader = StoreError::NotLeader { leader: self.raft.metrics().borrow_watched().current_leader };
            return vec![Err(not_leader); requests.len()];
        }
        self.batcher.write_all(requests).await
    }

    /// A quorum confirms this node still leads; returns the read index.
    async fn confirm_leadership(&self) -> Result<u64, StoreError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex)).await {
            Err(_) => Err(StoreError::Timeout),
            Ok(Ok(read)) => Ok(read.index()),
            Ok(Err(RaftError::APIError(openraft::error::LinearizableReadError::ForwardToLeader(f)))) => {
                Err(StoreError::NotLeader { leader: f.leader_id })
            }
            Ok(Err(RaftError::APIError(openraft::error::LinearizableReadError::QuorumNotEnough(_)))) => Err(StoreError::NoLeader),
            Ok(Err(e)) => Err(StoreError::internal(e)),
        }
    }

    /// Replicates `request` through the leader and returns its applied result.
    pub async fn write(&self, request: Request) -> Result<Response, StoreError> {
        match self.on_leader(ForwardRequest::Write(request)).await? {
            ForwardResponse::Write(resp) => Ok(resp),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// Replicates an etcd data-model command, within the space quota (`quota`).
    pub async fn kv(&self, command: Command) -> Result<Result<CommandResponse, MvccError>, StoreError> {
        if let Err(refused) = self.check_quota(&command).await {
            return Ok(Err(refused));
        }
        match self.write(Request::Kv(command)).await? {
            Response::Kv(result) => Ok(result),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// Returns once this node's state reflects every write acknowledged before the call.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        let ForwardResponse::ReadIndex(index) = self.on_leader(ForwardRequest::ReadIndex).await? else {
            return Err(StoreError::Internal("unexpected answer to read index".into()));
        };
        tokio::time::timeout(REQUEST_TIMEOUT, self.applied.wait_applied(index)).await.map_err(|_| StoreError::Timeout)
    }

    /// Renews a lease on the leader. Ok(None): no such lease.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<Option<i64>, StoreError> {
        match self.on_leader(ForwardRequest::LeaseKeepAlive { id }).await? {
            ForwardResponse::LeaseKeepAlive(ttl) => Ok(ttl),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// (granted TTL, seconds left) as the leader sees it. Ok(None): no such lease.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<(i64, i64)>, StoreError> {
        match self.on_leader(ForwardRequest::LeaseTimeToLive { id }).await? {
            ForwardResponse::LeaseTimeToLive(ttl) => Ok(ttl),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// This node's own view.
    pub fn status(&self) -> NodeStatus {
        let m = self.metrics();
        let data = self.applied.read();
        NodeStatus {
            id: self.id,
            name: self.config.name.clone(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            is_learner: m.state == ServerState::Learner,
            revision: data.mvcc.revision(),
            db_size: self.db_size(),
            members: m.membership_config.membership().nodes().map(|(id, _)| *id).collect(),
            membership_index: m.membership_config.log_id().map_or(0, |l| l.index),
        }
    }

    /// Bytes on disk under the data dir.
    pub fn db_size(&self) -> i64 {
        fn walk(path: &std::path::Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(path) else { return 0 };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        i64::try_from(walk(&self.config.data_dir)).unwrap_or(i64::MAX)
    }

    /// Asks the member at `peer_addr` for its status (for `raftctl members`).
    pub async fn peer_status(&self, peer_addr: &str, timeout: Duration) -> Result<NodeStatus, StoreError> {
        match self.net.forward(peer_addr, &ForwardRequest::Status, timeout).await? {
            ForwardResponse::Status(s) => Ok(s),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }
}
