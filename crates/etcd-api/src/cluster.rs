//! `etcdserverpb.Cluster`: the member list joined from Raft membership and published
//! member attributes, and the same membership changes as `raftctl members`.

use raftgres_proto::etcdserverpb::cluster_server::Cluster;
use raftgres_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use raftgres_store::MembershipChange;
use tonic::{Request, Response, Status};

use crate::error::from_store;
use crate::Ctx;

pub struct ClusterService(pub Ctx);

/// `http://host:port` (or `host:port`) → `host:port`.
pub fn peer_addr_of(url: &str) -> Result<String, Status> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    let bad = || Status::invalid_argument(format!("etcdserver: invalid peer URL {url:?}: expected http://HOST:PORT"));
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() || rest.contains('/') {
        return Err(bad());
    }
    Ok(rest.to_string())
}

impl ClusterService {
    fn members(&self) -> Vec<Member> {
        let data = self.0.store.applied().read();
        self.0
            .store
            .members()
            .into_iter()
            .map(|m| {
                let attrs = data.members.get(&m.id);
                let name = attrs.map(|a| a.name.clone()).filter(|n| !n.is_empty()).unwrap_or(m.node.name);
                Member {
                    id: m.id,
                    name,
                    peer_ur_ls: vec![format!("http://{}", m.node.peer_addr)],
                    client_ur_ls: attrs
                        .filter(|a| !a.client_addr.is_empty())
                        .map(|a| vec![format!("http://{}", a.client_addr)])
                        .unwrap_or_default(),
                    is_learner: m.is_learner,
                }
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let req = req.into_inner();
        let url = req.peer_ur_ls.first().ok_or_else(|| Status::invalid_argument("etcdserver: no peer URL given"))?;
        let peer_addr = peer_addr_of(url)?;
        let change = MembershipChange::Add { name: String::new(), peer_addr: peer_addr.clone(), as_voter: !req.is_learner };
        let id = self.0.store.request_membership(change).await.map_err(from_store)?;
        let mut members = self.members();
        // This node may not have applied the change yet: answer with what was committed.
        let member = match members.iter().find(|m| m.id == id) {
            Some(m) => m.clone(),
            None => {
                let m = Member { id, peer_ur_ls: vec![format!("http://{peer_addr}")], is_learner: req.is_learner, ..Default::default() };
                members.push(m.clone());
                m
            }
        };
        let member = Some(member);
        Ok(Response::new(MemberAddResponse { header: self.0.header(self.0.revision()), member, members }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        self.0.store.request_membership(MembershipChange::Remove { id }).await.map_err(from_store)?;
        Ok(Response::new(MemberRemoveResponse { header: self.0.header(self.0.revision()), members: self.members() }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = req.into_inner();
        let url = req.peer_ur_ls.first().ok_or_else(|| Status::invalid_argument("etcdserver: no peer URL given"))?;
        let change = MembershipChange::Update { id: req.id, peer_addr: peer_addr_of(url)? };
        self.0.store.request_membership(change).await.map_err(from_store)?;
        Ok(Response::new(MemberUpdateResponse { header: self.0.header(self.0.revision()), members: self.members() }))
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.0.store.read_barrier().await.map_err(from_store)?;
        }
        Ok(Response::new(MemberListResponse { header: self.0.header(self.0.revision()), members: self.members() }))
    }

    async fn member_promote(&self, req: Request<MemberPromoteRequest>) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        self.0.store.request_membership(MembershipChange::Promote { id }).await.map_err(from_store)?;
        Ok(Response::new(MemberPromoteResponse { header: self.0.header(self.0.revision()), members: self.members() }))
    }
}

#[cfg(test)]
mod tests {
    use super::peer_addr_of;

    #[test]
    fn parses_peer_urls() {
        assert_eq!(peer_addr_of("http://127.0.0.1:2380").expect("ok"), "127.0.0.1:2380");
        assert_eq!(peer_addr_of("10.0.0.1:2380/").expect("ok"), "10.0.0.1:2380");
        for bad in ["", "http://", "http://h", "http://h:x", "http://h:1/path"] {
            assert!(peer_addr_of(bad).is_err(), "{bad}");
        }
    }
}
