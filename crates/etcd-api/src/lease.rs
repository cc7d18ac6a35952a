//! `etcdserverpb.Lease`: grant (TTL raised to the minimum, id picked when 0), revoke,
//! keep-alive stream (renewed on the leader, which re-confirms its quorum first),
//! time-to-live and listing.

use std::pin::Pin;

use futures::Stream;
use rand::Rng;
use raftgres_mvcc::{Command, CommandResponse};
use raftgres_proto::etcdserverpb::lease_server::Lease;
use raftgres_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{from_mvcc, from_store};
use crate::Ctx;

pub struct LeaseService(pub Ctx);

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

impl LeaseService {
    fn pick_id(&self) -> i64 {
        let data = self.0.store.applied().read();
        loop {
            let id = rand::thread_rng().gen_range(1..i64::MAX);
            if data.mvcc.lease(id).is_none() {
                return id;
            }
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let req = req.into_inner();
        if req.id < 0 {
            return Err(Status::invalid_argument("etcdserver: lease ID must be positive"));
        }
        let id = if req.id == 0 { self.pick_id() } else { req.id };
        let ttl = req.ttl.max(self.0.store.min_lease_ttl());
        let cmd = Command::LeaseGrant { id, ttl };
        raftgres_mvcc::validate(&cmd, &Default::default()).map_err(from_mvcc)?;
        let result = self.0.store.kv(cmd).await.map_err(from_store)?.map_err(from_mvcc)?;
        let CommandResponse::LeaseGrant(mut resp) = result else { return Err(Status::internal("unexpected response")) };
        resp.header = self.0.header(resp.header.map_or(0, |h| h.revision));
        Ok(Response::new(resp))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let id = req.into_inner().id;
        let result = self.0.store.kv(Command::LeaseRevoke { id }).await.map_err(from_store)?.map_err(from_mvcc)?;
        let CommandResponse::LeaseRevoke(mut resp) = result else { return Err(Status::internal("unexpected response")) };
        resp.header = self.0.header(resp.header.map_or(0, |h| h.revision));
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let ctx = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                let reply = match ctx.store.lease_keep_alive(msg.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse { header: ctx.header(ctx.revision()), id: msg.id, ttl: ttl.unwrap_or(0) }),
                    Err(e) => Err(from_store(e)),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let remaining = self.0.store.lease_time_to_live(req.id).await.map_err(from_store)?;
        let info = self.0.store.applied().read().mvcc.lease(req.id);
        let resp = match (remaining, info) {
            (Some((granted, left)), Some(info)) => LeaseTimeToLiveResponse {
                header: self.0.header(self.0.revision()),
                id: req.id,
                ttl: left,
                granted_ttl: granted,
                keys: if req.keys { info.keys } else { Vec::new() },
            },
            _ => LeaseTimeToLiveResponse { header: self.0.header(self.0.revision()), id: req.id, ttl: -1, ..Default::default() },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, _req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.0.store.read_barrier().await.map_err(from_store)?;
        let leases = self.0.store.applied().read().mvcc.leases().into_iter().map(|l| LeaseStatus { id: l.id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: self.0.header(self.0.revision()), leases }))
    }
}

