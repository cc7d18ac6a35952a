//! `etcdserverpb.Lease`: Grant, Revoke, KeepAlive (stream), TimeToLive, Leases.
//!
//! Lease existence is replicated (grant and revoke are log entries); deadlines live on
//! the Raft leader, so keep-alive and time-to-live are answered by the leader (the
//! store forwards them). etcd's quirks kept: id 0 means "pick one"; the TTL is raised
//! to the minimum (`Store::min_lease_ttl`) and the reply says so; keep-alive of an
//! unknown lease answers TTL 0 without error; time-to-live of an unknown lease answers
//! TTL -1 without error.
//!
//! With auth enabled every call needs an authenticated user, and a revoke write
//! permission on each key attached to the lease (etcd's `checkLeasePuts`).

use raftgres_mvcc::{Command, CommandResponse};
use raftgres_proto::etcdserverpb::lease_server::Lease;
use raftgres_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use raftgres_store::auth::Need;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{no_leader, unexpected_response, OrStatus};
use crate::leader::LeaderMonitor;
use crate::EtcdApi;

/// A random lease id: positive, 63 bits, as etcd's id generator gives.
fn random_lease_id() -> i64 {
    rand::thread_rng().gen_range(1..=i64::MAX)
}

impl EtcdApi {
    /// Grants a lease; `id` 0 picks a fresh one.
    pub(crate) async fn grant_lease(&self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, Status> {
        let id = if id != 0 {
            id
        } else {
            let data = self.store.applied().read();
            // A collision is astronomically rare; the log would refuse it anyway.
            std::iter::repeat_with(random_lease_id).find(|id| data.mvcc.lease(*id).is_none()).unwrap_or(1)
        };
        let ttl = ttl.max(self.store.min_lease_ttl());
        match self.propose(Command::LeaseGrant { id, ttl }).await? {
            CommandResponse::LeaseGrant(r) => Ok(r),
            _ => Err(unexpected_response("LeaseGrant")),
        }
    }
}

/// The Lease service.
pub struct LeaseService {
    api: EtcdApi,
}

impl LeaseService {
    pub fn new(api: EtcdApi) -> Self {
        Self { api }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        self.api.authorize(&req, &[Need::User])?;
        let req = req.into_inner();
        self.api.grant_lease(req.id, req.ttl).await.map(Response::new)
    }

    /// Revoking deletes the lease's keys: the caller needs write permission on each.
    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let keys = self.api.store.applied().read().mvcc.lease(req.get_ref().id).map(|l| l.keys).unwrap_or_default();
        let needs: Vec<Need<'_>> = keys.iter().map(|k| Need::Write(k, &[])).chain([Need::User]).collect();
        self.api.authorize(&req, &needs)?;
        match self.api.propose(Command::LeaseRevoke { id: req.into_inner().id }).await? {
            CommandResponse::LeaseRevoke(r) => Ok(Response::new(r)),
            _ => Err(unexpected_response("LeaseRevoke")),
        }
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.api.authorize(&req, &[Need::User])?;
        let monitor = LeaderMonitor::new(self.api.store.clone(), req.metadata());
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(keep_alive_loop(self.api.clone(), req.into_inner(), tx, monitor));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(&self, req: Request<LeaseTimeToLiveRequest>) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.api.authorize(&req, &[Need::User])?;
        let req = req.into_inner();
        let Some((granted_ttl, ttl)) = self.api.store.lease_time_to_live(req.id).await.or_status()? else {
            let header = self.api.header_now();
            return Ok(Response::new(LeaseTimeToLiveResponse { header, id: req.id, ttl: -1, ..Default::default() }));
        };
        let keys = if req.keys {
            // The leader knows the lease; this node must have applied as much before
            // listing its keys.
            self.api.store.read_barrier().await.or_status()?;
            self.api.store.applied().read().mvcc.lease(req.id).map(|l| l.keys).unwrap_or_default()
        } else {
            Vec::new()
        };
        let header = self.api.header_now();
        Ok(Response::new(LeaseTimeToLiveResponse { header, id: req.id, ttl, granted_ttl, keys }))
    }

    async fn lease_leases(&self, req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.api.authorize(&req, &[Need::User])?;
        self.api.store.read_barrier().await.or_status()?;
        let (leases, revision) = {
            let data = self.api.store.applied().read();
            (data.mvcc.leases().into_iter().map(|l| LeaseStatus { id: l.id }).collect(), data.mvcc.revision())
        };
        Ok(Response::new(LeaseLeasesResponse { header: self.api.header(revision), leases }))
    }
}

/// Answers keep-alives in order until the client stops, the store fails (the stream
/// ends with that error, as in etcd) or, with `hasleader`, the leader is gone.
async fn keep_alive_loop(
    api: EtcdApi,
    mut inbound: Streaming<LeaseKeepAliveRequest>,
    tx: mpsc::Sender<Result<LeaseKeepAliveResponse, Status>>,
    mut monitor: LeaderMonitor,
) {
    loop {
        let msg = tokio::select! {
            msg = inbound.message() => msg,
            () = monitor.lost() => {
                let _ = tx.send(Err(no_leader())).await;
                return;
            }
            () = tx.closed() => return,
        };
        let id = match msg {
            Ok(Some(req)) => req.id,
            Ok(None) => return,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        let reply = match api.store.lease_keep_alive(id).await.or_status() {
            Ok(ttl) => Ok(LeaseKeepAliveResponse { header: api.header_now(), id, ttl: ttl.unwrap_or(0) }),
            Err(status) => Err(status),
        };
        let failed = reply.is_err();
        if tx.send(reply).await.is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::random_lease_id;

    #[test]
    fn random_ids_are_positive() {
        for _ in 0..1000 {
            assert!(random_lease_id() > 0);
        }
    }
}
