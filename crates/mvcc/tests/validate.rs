//! The stateless checks run before proposing: etcd's API-layer refusals with its exact
//! messages and gRPC code classes.

mod common;

use common::*;
use raftgres_mvcc::{validate, Command, ErrorCode, Limits, MvccError, MAX_LEASE_TTL};
use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::{CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

fn check(t: TxnRequest) -> Result<(), MvccError> {
    validate(&Command::Txn(t), &Limits::default())
}

fn success(ops: Vec<RequestOp>) -> TxnRequest {
    TxnRequest { success: ops, ..Default::default() }
}

fn op(r: Request) -> RequestOp {
    RequestOp { request: Some(r) }
}

#[test]
fn messages_and_codes_are_etcds() {
    let cases = [
        (MvccError::KeyNotProvided, "etcdserver: key is not provided", ErrorCode::InvalidArgument),
        (MvccError::Compacted, "etcdserver: mvcc: required revision has been compacted", ErrorCode::OutOfRange),
        (MvccError::FutureRevision, "etcdserver: mvcc: required revision is a future revision", ErrorCode::OutOfRange),
        (MvccError::KeyNotFound, "etcdserver: key not found", ErrorCode::InvalidArgument),
        (MvccError::LeaseNotFound, "etcdserver: requested lease not found", ErrorCode::NotFound),
        (MvccError::LeaseExists, "etcdserver: lease already exists", ErrorCode::FailedPrecondition),
        (MvccError::LeaseTtlTooLarge, "etcdserver: too large lease TTL", ErrorCode::OutOfRange),
        (MvccError::TooManyOps, "etcdserver: too many operations in txn request", ErrorCode::InvalidArgument),
        (MvccError::DuplicateKey, "etcdserver: duplicate key given in txn request", ErrorCode::InvalidArgument),
        (MvccError::InvalidSortOption, "etcdserver: invalid sort option", ErrorCode::InvalidArgument),
        (MvccError::ValueProvided, "etcdserver: value is provided", ErrorCode::InvalidArgument),
        (MvccError::LeaseProvided, "etcdserver: lease is provided", ErrorCode::InvalidArgument),
    ];
    for (err, msg, code) in cases {
        assert_eq!((err.to_string().as_str(), err.code()), (msg, code));
    }
}

#[test]
fn simple_commands() {
    let l = Limits::default();
    assert_eq!(l.max_txn_ops, 128);
    assert_eq!(validate(&Command::Put(PutRequest::default()), &l), Err(MvccError::KeyNotProvided));
    assert_eq!(validate(&Command::Put(put_req("k", "v")), &l), Ok(()));
    let iv = PutRequest { ignore_value: true, ..put_req("k", "v") };
    assert_eq!(validate(&Command::Put(iv), &l), Err(MvccError::ValueProvided));
    let il = PutRequest { ignore_lease: true, lease: 3, ..put_req("k", "") };
    assert_eq!(validate(&Command::Put(il), &l), Err(MvccError::LeaseProvided));
    let ok = PutRequest { ignore_lease: true, ignore_value: true, ..put_req("k", "") };
    assert_eq!(validate(&Command::Put(ok), &l), Ok(()));
    assert_eq!(validate(&Command::DeleteRange(DeleteRangeRequest::default()), &l), Err(MvccError::KeyNotProvided));
    assert_eq!(validate(&Command::DeleteRange(del_req("a", "\0")), &l), Ok(()));
    assert_eq!(validate(&Command::LeaseGrant { id: 1, ttl: MAX_LEASE_TTL + 1 }, &l), Err(MvccError::LeaseTtlTooLarge));
    assert_eq!(validate(&Command::LeaseGrant { id: 1, ttl: MAX_LEASE_TTL }, &l), Ok(()));
    assert_eq!(validate(&Command::LeaseRevoke { id: 0 }, &l), Ok(()));
    assert_eq!(validate(&Command::Compact(CompactionRequest { revision: -1, physical: false }), &l), Ok(()), "state decides");
}

#[test]
fn op_counts_per_level() {
    let puts = |n: usize| (0..n).map(|i| op_put(&format!("k{i}"), "v")).collect::<Vec<_>>();
    assert_eq!(check(success(puts(128))), Ok(()));
    assert_eq!(check(success(puts(129))), Err(MvccError::TooManyOps));
    assert_eq!(check(TxnRequest { failure: puts(129), ..Default::default() }), Err(MvccError::TooManyOps));
    let compares = (0..129).map(|i| cmp(&format!("k{i}"), CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(0))).collect();
    assert_eq!(check(TxnRequest { compare: compares, ..Default::default() }), Err(MvccError::TooManyOps));
    // 128 success and 128 failure ops: each branch counts on its own.
    assert_eq!(check(TxnRequest { success: puts(128), failure: puts(128), ..Default::default() }), Ok(()));
    // A nested txn gets what its parent level left: 128 - 100 = 28.
    let nested = |n: usize| {
        let mut ops = puts(99);
        ops.push(op_txn(TxnRequest { success: (0..n).map(|i| op_put(&format!("n{i}"), "v")).collect(), ..Default::default() }));
        success(ops)
    };
    assert_eq!(check(nested(28)), Ok(()));
    assert_eq!(check(nested(29)), Err(MvccError::TooManyOps));
    let small = Limits { max_txn_ops: 2 };
    assert_eq!(validate(&Command::Txn(success(puts(3))), &small), Err(MvccError::TooManyOps));
}

#[test]
fn malformed_ops() {
    assert_eq!(check(success(vec![RequestOp { request: None }])), Err(MvccError::KeyNotFound), "an empty op");
    assert_eq!(check(success(vec![op_range("", "")])), Err(MvccError::KeyNotProvided));
    assert_eq!(check(success(vec![op_del("", "")])), Err(MvccError::KeyNotProvided));
    assert_eq!(check(success(vec![op_put("", "v")])), Err(MvccError::KeyNotProvided));
    assert_eq!(check(TxnRequest { compare: vec![Compare::default()], ..Default::default() }), Err(MvccError::KeyNotProvided));
    let sort = RangeRequest { sort_order: 7, ..range_req("k", "") };
    assert_eq!(
        check(TxnRequest { failure: vec![op(Request::RequestRange(sort))], ..Default::default() }),
        Err(MvccError::InvalidSortOption)
    );
    let iv = PutRequest { ignore_value: true, ..put_req("k", "v") };
    let nested = TxnRequest { success: vec![op(Request::RequestPut(iv))], ..Default::default() };
    assert_eq!(check(success(vec![op_txn(nested)])), Err(MvccError::ValueProvided));
    // Structural errors win over duplicates, as in etcd.
    assert_eq!(check(success(vec![op_put("k", "1"), op_put("k", "2"), op_range("", "")])), Err(MvccError::KeyNotProvided));
}

#[test]
fn duplicate_keys_in_a_branch() {
    assert_eq!(check(success(vec![op_put("k", "1"), op_put("k", "2")])), Err(MvccError::DuplicateKey));
    assert_eq!(check(success(vec![op_put("k", "1"), op_del("a", "z")])), Err(MvccError::DuplicateKey));
    assert_eq!(check(success(vec![op_del("k", ""), op_put("k", "1")])), Err(MvccError::DuplicateKey));
    assert_eq!(check(success(vec![op_del("a", "k"), op_put("k", "1")])), Ok(()), "range_end is exclusive");
    assert_eq!(check(success(vec![op_del("k", ""), op_put("k0", "1")])), Ok(()));
    assert_eq!(check(success(vec![op_del("a", "b"), op_del("a", "z")])), Ok(()), "deletes may overlap each other");
    assert_eq!(check(success(vec![op_put("k", "1"), op_range("k", "")])), Ok(()));
    // As in etcd's interval tree, "\0" is no open end here: a from-key delete overlaps nothing.
    assert_eq!(check(success(vec![op_del("a", "\0"), op_put("k", "1")])), Ok(()));
    // The two branches are separate.
    assert_eq!(check(TxnRequest { success: vec![op_put("k", "1")], failure: vec![op_put("k", "2")], ..Default::default() }), Ok(()));
}

#[test]
fn duplicate_keys_across_nested_txns() {
    let nested = |success: Vec<RequestOp>, failure: Vec<RequestOp>| op_txn(TxnRequest { success, failure, ..Default::default() });
    // Both branches of a nested txn may write the same key.
    assert_eq!(check(success(vec![nested(vec![op_put("k", "1")], vec![op_put("k", "2")])])), Ok(()));
    // But not one the enclosing branch writes or deletes.
    assert_eq!(check(success(vec![op_put("k", "0"), nested(vec![op_put("k", "1")], vec![])])), Err(MvccError::DuplicateKey));
    assert_eq!(check(success(vec![op_del("a", "z"), nested(vec![], vec![op_put("k", "1")])])), Err(MvccError::DuplicateKey));
    assert_eq!(check(success(vec![nested(vec![op_del("a", "z")], vec![]), op_put("k", "0")])), Err(MvccError::DuplicateKey));
    // Two sibling nested txns writing the same key.
    assert_eq!(
        check(success(vec![nested(vec![op_put("k", "1")], vec![]), nested(vec![op_put("k", "2")], vec![])])),
        Err(MvccError::DuplicateKey)
    );
    // Inside one nested branch.
    assert_eq!(check(success(vec![nested(vec![op_put("k", "1"), op_put("k", "2")], vec![])])), Err(MvccError::DuplicateKey));
    // Deeper nesting reports upward.
    let deep = nested(vec![nested(vec![op_put("k", "1")], vec![])], vec![]);
    assert_eq!(check(success(vec![deep, op_del("k", "")])), Err(MvccError::DuplicateKey));
}
