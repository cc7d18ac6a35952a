//! Which gRPC method each gateway path calls (etcd's `google.api.http` annotations), and
//! the three call shapes: unary, server-streaming (one request, a stream of responses)
//! and bidirectional (the body's requests, then a stream of responses).
//!
//! Each call goes through the node's in-process gRPC channel to the same services,
//! interceptors and limits a gRPC client meets (etcd's gateway likewise dials its own
//! gRPC server), with the HTTP `Authorization` header as the `token` metadata etcd's auth
//! reads.

use std::future::Future;

use prost::{Message, Name};
use raftgres_proto::etcdserverpb::auth_client::AuthClient;
use raftgres_proto::etcdserverpb::cluster_client::ClusterClient;
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::lease_client::LeaseClient;
use raftgres_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftgres_proto::etcdserverpb::watch_client::WatchClient;
use raftgres_proto::v3electionpb::election_client::ElectionClient;
use raftgres_proto::v3lockpb::lock_client::LockClient;
use tokio_stream::StreamExt;
use tonic::body::BoxBody;
use tonic::codegen::http::Response;
use tonic::codegen::Bytes;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::{json, reply};

/// One gateway request: its body, its token and the channel to call through.
pub struct Call {
    pub channel: Channel,
    pub token: Option<AsciiMetadataValue>,
    pub body: Bytes,
}

/// A client of `$client` on the channel, reading answers of any size (the server
/// enforces the request limits), calling `$method`.
macro_rules! rpc {
    ($client:ident :: $method:ident) => {
        |channel, request| async move { $client::new(channel).max_decoding_message_size(usize::MAX).$method(request).await }
    };
}

/// Calls the method behind `method` (the path after `/v3/`); `None` if there is none.
pub async fn dispatch(method: &str, call: Call) -> Option<Response<BoxBody>> {
    let answer = match method {
        "kv/range" => call.unary(rpc!(KvClient::range)).await,
        "kv/put" => call.unary(rpc!(KvClient::put)).await,
        "kv/deleterange" => call.unary(rpc!(KvClient::delete_range)).await,
        "kv/txn" => call.unary(rpc!(KvClient::txn)).await,
        "kv/compaction" => call.unary(rpc!(KvClient::compact)).await,
        "watch" => call.bidi(rpc!(WatchClient::watch)).await,
        "lease/grant" => call.unary(rpc!(LeaseClient::lease_grant)).await,
        "lease/revoke" | "kv/lease/revoke" => call.unary(rpc!(LeaseClient::lease_revoke)).await,
        "lease/keepalive" => call.bidi(rpc!(LeaseClient::lease_keep_alive)).await,
        "lease/timetolive" | "kv/lease/timetolive" => call.unary(rpc!(LeaseClient::lease_time_to_live)).await,
        "lease/leases" | "kv/lease/leases" => call.unary(rpc!(LeaseClient::lease_leases)).await,
        "cluster/member/add" => call.unary(rpc!(ClusterClient::member_add)).await,
        "cluster/member/remove" => call.unary(rpc!(ClusterClient::member_remove)).await,
        "cluster/member/update" => call.unary(rpc!(ClusterClient::member_update)).await,
        "cluster/member/list" => call.unary(rpc!(ClusterClient::member_list)).await,
        "cluster/member/promote" => call.unary(rpc!(ClusterClient::member_promote)).await,
        "maintenance/alarm" => call.unary(rpc!(MaintenanceClient::alarm)).await,
        "maintenance/status" => call.unary(rpc!(MaintenanceClient::status)).await,
        "maintenance/defragment" => call.unary(rpc!(MaintenanceClient::defragment)).await,
        "maintenance/hash" => call.unary(rpc!(MaintenanceClient::hash)).await,
        "maintenance/hashkv" => call.unary(rpc!(MaintenanceClient::hash_kv)).await,
        "maintenance/snapshot" => call.server_stream(rpc!(MaintenanceClient::snapshot)).await,
        "maintenance/transfer-leadership" => call.unary(rpc!(MaintenanceClient::move_leader)).await,
        "maintenance/downgrade" => call.unary(rpc!(MaintenanceClient::downgrade)).await,
        "auth/enable" => call.unary(rpc!(AuthClient::auth_enable)).await,
        "auth/disable" => call.unary(rpc!(AuthClient::auth_disable)).await,
        "auth/status" => call.unary(rpc!(AuthClient::auth_status)).await,
        "auth/authenticate" => call.unary(rpc!(AuthClient::authenticate)).await,
        "auth/user/add" => call.unary(rpc!(AuthClient::user_add)).await,
        "auth/user/get" => call.unary(rpc!(AuthClient::user_get)).await,
        "auth/user/list" => call.unary(rpc!(AuthClient::user_list)).await,
        "auth/user/delete" => call.unary(rpc!(AuthClient::user_delete)).await,
        "auth/user/changepw" => call.unary(rpc!(AuthClient::user_change_password)).await,
        "auth/user/grant" => call.unary(rpc!(AuthClient::user_grant_role)).await,
        "auth/user/revoke" => call.unary(rpc!(AuthClient::user_revoke_role)).await,
        "auth/role/add" => call.unary(rpc!(AuthClient::role_add)).await,
        "auth/role/get" => call.unary(rpc!(AuthClient::role_get)).await,
        "auth/role/list" => call.unary(rpc!(AuthClient::role_list)).await,
        "auth/role/delete" => call.unary(rpc!(AuthClient::role_delete)).await,
        "auth/role/grant" => call.unary(rpc!(AuthClient::role_grant_permission)).await,
        "auth/role/revoke" => call.unary(rpc!(AuthClient::role_revoke_permission)).await,
        "lock/lock" => call.unary(rpc!(LockClient::lock)).await,
        "lock/unlock" => call.unary(rpc!(LockClient::unlock)).await,
        "election/campaign" => call.unary(rpc!(ElectionClient::campaign)).await,
        "election/proclaim" => call.unary(rpc!(ElectionClient::proclaim)).await,
        "election/leader" => call.unary(rpc!(ElectionClient::leader)).await,
        "election/observe" => call.server_stream(rpc!(ElectionClient::observe)).await,
        "election/resign" => call.unary(rpc!(ElectionClient::resign)).await,
        _ => return None,
    };
    Some(answer)
}

type Answer<T> = Result<tonic::Response<T>, Status>;

impl Call {
    /// `message` as a gRPC request carrying the caller's token.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("token", token.clone());
        }
        request
    }

    async fn unary<Req, Resp, Fut>(self, call: impl FnOnce(Channel, tonic::Request<Req>) -> Fut) -> Response<BoxBody>
    where
        Req: Message + Name + Default,
        Resp: Message + Name,
        Fut: Future<Output = Answer<Resp>>,
    {
        let result = async {
            let request = self.request(json::decode::<Req>(&self.body)?);
            json::encode(call(self.channel, request).await?.get_ref())
        };
        reply::unary(result.await)
    }

    async fn server_stream<Req, Resp, Fut>(self, call: impl FnOnce(Channel, tonic::Request<Req>) -> Fut) -> Response<BoxBody>
    where
        Req: Message + Name + Default,
        Resp: Message + Name + 'static,
        Fut: Future<Output = Answer<Streaming<Resp>>>,
    {
        let started = async {
            let request = self.request(json::decode::<Req>(&self.body)?);
            call(self.channel, request).await
        };
        respond_with_stream(started.await)
    }

    async fn bidi<Req, Resp, Fut>(
        self,
        call: impl FnOnce(Channel, tonic::Request<tokio_stream::Iter<std::vec::IntoIter<Req>>>) -> Fut,
    ) -> Response<BoxBody>
    where
        Req: Message + Name + Default,
        Resp: Message + Name + 'static,
        Fut: Future<Output = Answer<Streaming<Resp>>>,
    {
        let started = async {
            let request = self.request(tokio_stream::iter(json::decode_all::<Req>(&self.body)?));
            call(self.channel, request).await
        };
        respond_with_stream(started.await)
    }
}

/// A stream that started: its messages as lines; one that did not: the error.
fn respond_with_stream<Resp: Message + Name + 'static>(started: Answer<Streaming<Resp>>) -> Response<BoxBody> {
    match started {
        Ok(response) => reply::stream(response.into_inner().map(|item| json::encode(&item?))),
        Err(status) => reply::unary(Err(status)),
    }
}
