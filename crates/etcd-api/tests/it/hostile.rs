//! Malformed and hostile requests get etcd's errors, and the node keeps serving.

use raftgres_etcd_api::ApiLimits;
use raftgres_proto::etcdserverpb::request_op::Request as Op;
use raftgres_proto::etcdserverpb::{DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::Code;

use crate::{within, Node};

fn put_op(key: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(PutRequest { key: key.into(), ..Default::default() })) }
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_bad_requests_answer_etcds_errors() {
    let node = Node::start_with(ApiLimits { max_request_bytes: 4096, max_txn_ops: 8 }).await;
    let mut kv = node.kv();

    let big = PutRequest { key: "/big".into(), value: vec![b'x'; 8192], ..Default::default() };
    let err = within(kv.put(big)).await.expect_err("too large");
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "etcdserver: request is too large"));

    let huge = PutRequest { key: "/huge".into(), value: vec![b'x'; 1024 * 1024], ..Default::default() };
    let err = within(kv.put(huge)).await.expect_err("beyond the gRPC limit");
    // tonic refuses it while decoding (OutOfRange; grpc-go would say ResourceExhausted).
    assert!(matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted), "{err:?}");

    let many = TxnRequest { success: (0..9).map(|i| put_op(&format!("/t{i}"))).collect(), ..Default::default() };
    let err = within(kv.txn(many)).await.expect_err("too many ops");
    assert_eq!(err.message(), "etcdserver: too many operations in txn request");

    let dup = TxnRequest { success: vec![put_op("/d"), put_op("/d")], ..Default::default() };
    let err = within(kv.txn(dup)).await.expect_err("duplicate key");
    assert_eq!(err.message(), "etcdserver: duplicate key given in txn request");

    let empty = within(kv.range(RangeRequest::default())).await.expect_err("empty key");
    assert_eq!((empty.code(), empty.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
    let sort = RangeRequest { key: "a".into(), sort_order: 42, ..Default::default() };
    assert_eq!(within(kv.range(sort)).await.expect_err("bad sort").code(), Code::InvalidArgument);
    let odd = RangeRequest { key: "a".into(), limit: -5, revision: -9, min_mod_revision: i64::MIN, ..Default::default() };
    within(kv.range(odd)).await.expect("odd but harmless numbers are fine");
    let del = DeleteRangeRequest { key: "z".into(), range_end: "a".into(), ..Default::default() };
    assert_eq!(within(kv.delete_range(del)).await.expect("empty interval").into_inner().deleted, 0);

    let mut lease = node.lease();
    let ttl = within(lease.lease_grant(LeaseGrantRequest { ttl: i64::MAX, id: 0 })).await.expect_err("ttl");
    assert_eq!((ttl.code(), ttl.message()), (Code::OutOfRange, "etcdserver: too large lease TTL"));
    let unknown = PutRequest { key: "/l".into(), lease: 99, ..Default::default() };
    let err = within(kv.put(unknown)).await.expect_err("unknown lease");
    assert_eq!((err.code(), err.message()), (Code::NotFound, "etcdserver: requested lease not found"));

    // Still serving.
    node.put("/alive", "yes").await;
}
