//! KV and Lease over gRPC: headers, reads, txn, the lease quirks etcd clients rely on,
//! and the small services (Cluster, Maintenance, Auth).

use raftgres_proto::etcdserverpb::auth_client::AuthClient;
use raftgres_proto::etcdserverpb::cluster_client::ClusterClient;
use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftgres_proto::etcdserverpb::request_op::Request as Op;
use raftgres_proto::etcdserverpb::{
    AuthEnableRequest, AuthStatusRequest, AuthUserListRequest, Compare, HashKvRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, MemberAddRequest, MemberListRequest, MoveLeaderRequest, PutRequest,
    RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::{within, Node};

#[tokio::test(flavor = "multi_thread")]
async fn range_put_txn_with_full_headers() {
    let node = Node::start().await;
    let rev = node.put("/k", "v1").await;
    let mut kv = node.kv();
    let get = within(kv.range(RangeRequest { key: "/k".into(), ..Default::default() })).await.expect("range");
    let get = get.into_inner();
    let header = get.header.expect("header");
    assert_eq!((header.revision, header.member_id), (rev, node.store.id()));
    assert_eq!(get.kvs[0].value, b"v1");
    let serializable = RangeRequest { key: "/k".into(), serializable: true, ..Default::default() };
    assert_eq!(within(kv.range(serializable)).await.expect("range").into_inner().count, 1);

    let put = PutRequest { key: "/k".into(), value: "v2".into(), ..Default::default() };
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: "/k".into(),
            target_union: Some(TargetUnion::ModRevision(rev)),
            ..Default::default()
        }],
        success: vec![RequestOp { request: Some(Op::RequestPut(put)) }],
        failure: Vec::new(),
    };
    let resp = within(kv.txn(txn.clone())).await.expect("txn").into_inner();
    assert!(resp.succeeded);
    assert_eq!(resp.header.expect("header").revision, rev + 1);
    assert!(!within(kv.txn(txn)).await.expect("txn").into_inner().succeeded);

    let err =
        within(kv.range(RangeRequest { revision: rev + 100, key: "/k".into(), ..Default::default() })).await.expect_err("future revision");
    assert_eq!((err.code(), err.message()), (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_quirks_match_etcd() {
    let node = Node::start().await;
    let mut lease = node.lease();
    let granted = within(lease.lease_grant(LeaseGrantRequest { ttl: 0, id: 0 })).await.expect("grant").into_inner();
    assert!(granted.id > 0);
    assert_eq!(granted.ttl, node.store.min_lease_ttl(), "TTL raised to the minimum");
    let dup = within(lease.lease_grant(LeaseGrantRequest { ttl: 5, id: granted.id })).await.expect_err("duplicate");
    assert_eq!((dup.code(), dup.message()), (Code::FailedPrecondition, "etcdserver: lease already exists"));

    let put = PutRequest { key: "/eph".into(), value: "x".into(), lease: granted.id, ..Default::default() };
    within(node.kv().put(put)).await.expect("put on lease");
    let ttl = within(lease.lease_time_to_live(LeaseTimeToLiveRequest { id: granted.id, keys: true })).await;
    let ttl = ttl.expect("ttl").into_inner();
    assert_eq!(ttl.keys, vec![b"/eph".to_vec()]);
    assert!(ttl.granted_ttl >= 1);
    let leases = within(lease.lease_leases(LeaseLeasesRequest {})).await.expect("leases").into_inner();
    assert!(leases.leases.iter().any(|l| l.id == granted.id));

    let unknown = within(lease.lease_time_to_live(LeaseTimeToLiveRequest { id: 424242, keys: false })).await;
    let unknown = unknown.expect("no error for unknown lease").into_inner();
    assert_eq!((unknown.id, unknown.ttl), (424242, -1));

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut stream = within(lease.lease_keep_alive(ReceiverStream::new(rx))).await.expect("keep-alive").into_inner();
    tx.send(LeaseKeepAliveRequest { id: granted.id }).await.expect("send");
    let alive = within(stream.message()).await.expect("ok").expect("reply");
    assert_eq!((alive.id, alive.ttl), (granted.id, granted.ttl));
    tx.send(LeaseKeepAliveRequest { id: 424242 }).await.expect("send");
    let dead = within(stream.message()).await.expect("ok").expect("reply");
    assert_eq!((dead.id, dead.ttl), (424242, 0));

    within(lease.lease_revoke(LeaseRevokeRequest { id: granted.id })).await.expect("revoke");
    let get = within(node.kv().range(RangeRequest { key: "/eph".into(), ..Default::default() })).await.expect("range");
    assert!(get.into_inner().kvs.is_empty(), "revoke deletes attached keys");
    let again = within(lease.lease_revoke(LeaseRevokeRequest { id: granted.id })).await.expect_err("gone");
    assert_eq!((again.code(), again.message()), (Code::NotFound, "etcdserver: requested lease not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_maintenance_and_auth() {
    let node = Node::start().await;
    let mut cluster = ClusterClient::new(node.channel.clone());
    let list = within(cluster.member_list(MemberListRequest { linearizable: true })).await.expect("list").into_inner();
    assert_eq!(list.members.len(), 1);
    assert!(list.members[0].peer_ur_ls[0].starts_with("http://127.0.0.1:"));
    let bad = within(cluster.member_add(MemberAddRequest { peer_ur_ls: vec!["http://nohost".into()], is_learner: true }))
        .await
        .expect_err("bad url");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("no port"), "{}", bad.message());

    let mut maintenance = MaintenanceClient::new(node.channel.clone());
    let status = within(maintenance.status(StatusRequest {})).await.expect("status").into_inner();
    assert_eq!(status.leader, node.store.id());
    assert!(!status.version.is_empty() && status.raft_term >= 1 && status.raft_index >= status.raft_applied_index.min(1));
    node.put("/hash", "1").await;
    let h1 = within(maintenance.hash_kv(HashKvRequest { revision: 0 })).await.expect("hashkv").into_inner();
    let h2 = within(maintenance.hash_kv(HashKvRequest { revision: h1.hash_revision })).await.expect("hashkv");
    assert_eq!(h1.hash, h2.into_inner().hash);
    let stranger = within(maintenance.move_leader(MoveLeaderRequest { target_id: 1 })).await.expect_err("no such member");
    assert_eq!((stranger.code(), stranger.message()), (Code::FailedPrecondition, "etcdserver: bad leader transferee"));
    within(maintenance.move_leader(MoveLeaderRequest { target_id: node.store.id() })).await.expect("already leads");

    let mut auth = AuthClient::new(node.channel.clone());
    assert!(!within(auth.auth_status(AuthStatusRequest {})).await.expect("status").into_inner().enabled);
    let users = within(auth.user_list(AuthUserListRequest {})).await.expect("list").into_inner();
    assert!(users.users.is_empty());
    let refused = within(auth.auth_enable(AuthEnableRequest {})).await.expect_err("no root user");
    assert_eq!((refused.code(), refused.message()), (Code::FailedPrecondition, "etcdserver: root user does not exist"));
}
