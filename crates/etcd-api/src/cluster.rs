//! `etcdserverpb.Cluster`: the member list (Raft membership joined with the attributes
//! members publish), and membership changes (add, remove, promote) done by the store on
//! the leader, one at a time. URLs are `http://HOST:PORT`, `https://` with TLS (see
//! `peer_url`); this node's TLS settings stand for the cluster's.
//!
//! A change is committed when the store answers, but a follower may not have applied it
//! yet: the member list in the answer waits briefly for this node to see it.
//!
//! With auth enabled, changes need root; the member list is open, as in etcd.

use std::time::Duration;

use raftgres_proto::etcdserverpb::cluster_server::Cluster;
use raftgres_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use raftgres_store::auth::Need;
use raftgres_store::{MembershipChange, NodeId};
use tonic::{Request, Response, Status};

use crate::error::{bad_member_url, OrStatus};
use crate::peer_url::{single_peer_addr, url_from_addr};
use crate::EtcdApi;

/// How long an answer waits for this node to see a committed membership change.
const SEE_CHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Cluster service.
pub struct ClusterService {
    api: EtcdApi,
}

impl ClusterService {
    pub fn new(api: EtcdApi) -> Self {
        Self { api }
    }

    /// Every member as etcd shows it. The name is the published one, else the one from
    /// the initial cluster (etcd also knows initial members' names before they start);
    /// client URLs appear once the member published them.
    fn members(&self) -> Vec<Member> {
        let raft_members = self.api.store.members();
        let (peer_tls, client_tls) = (self.api.store.peer_tls(), self.api.tls.is_some());
        let data = self.api.store.applied().read();
        raft_members
            .into_iter()
            .map(|m| {
                let attrs = data.members.get(&m.id);
                let name = attrs.map(|a| a.name.clone()).filter(|n| !n.is_empty()).unwrap_or(m.node.name);
                let client_ur_ls = attrs
                    .filter(|a| !a.client_addr.is_empty())
                    .map(|a| vec![url_from_addr(&a.client_addr, client_tls)])
                    .unwrap_or_default();
                let peer_ur_ls = vec![url_from_addr(&m.node.peer_addr, peer_tls)];
                Member { id: m.id, name, peer_ur_ls, client_ur_ls, is_learner: m.is_learner }
            })
            .collect()
    }

    /// The member list once `seen` holds for it (or the timeout passed).
    async fn members_when(&self, seen: impl Fn(&[Member]) -> bool) -> Vec<Member> {
        let deadline = tokio::time::Instant::now() + SEE_CHANGE_TIMEOUT;
        loop {
            let members = self.members();
            if seen(&members) || tokio::time::Instant::now() >= deadline {
                return members;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn change(&self, change: MembershipChange) -> Result<NodeId, Status> {
        self.api.store.request_membership(change).await.or_status()
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let req = req.into_inner();
        let peer_addr = single_peer_addr(&req.peer_ur_ls, self.api.store.peer_tls()).map_err(|e| bad_member_url(&e))?;
        let change = MembershipChange::Add { name: String::new(), peer_addr: peer_addr.clone(), as_voter: !req.is_learner };
        let id = self.change(change).await?;
        let mut members = self.members_when(|ms| ms.iter().any(|m| m.id == id)).await;
        let member = match members.iter().find(|m| m.id == id) {
            Some(m) => m.clone(),
            None => {
                // Committed, not yet visible here: answer with what was committed.
                let m = Member {
                    id,
                    peer_ur_ls: vec![url_from_addr(&peer_addr, self.api.store.peer_tls())],
                    is_learner: req.is_learner,
                    ..Default::default()
                };
                members.push(m.clone());
                m
            }
        };
        Ok(Response::new(MemberAddResponse { header: self.api.header_now(), member: Some(member), members }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let id = req.into_inner().id;
        self.change(MembershipChange::Remove { id }).await?;
        let members = self.members_when(|ms| ms.iter().all(|m| m.id != id)).await;
        Ok(Response::new(MemberRemoveResponse { header: self.api.header_now(), members }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let req = req.into_inner();
        let peer_addr = single_peer_addr(&req.peer_ur_ls, self.api.store.peer_tls()).map_err(|e| bad_member_url(&e))?;
        self.change(MembershipChange::Update { id: req.id, peer_addr }).await?;
        Ok(Response::new(MemberUpdateResponse { header: self.api.header_now(), members: self.members() }))
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.api.store.read_barrier().await.or_status()?;
        }
        Ok(Response::new(MemberListResponse { header: self.api.header_now(), members: self.members() }))
    }

    async fn member_promote(&self, req: Request<MemberPromoteRequest>) -> Result<Response<MemberPromoteResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let id = req.into_inner().id;
        self.change(MembershipChange::Promote { id }).await?;
        let members = self.members_when(|ms| ms.iter().any(|m| m.id == id && !m.is_learner)).await;
        Ok(Response::new(MemberPromoteResponse { header: self.api.header_now(), members }))
    }
}
