//! Transactions: every compare target and result, missing keys, ranged compares,
//! branches, nested txns, reads that see the txn's own writes, one revision per txn,
//! inner headers, and atomic failure.

mod common;

use common::*;
use raftgres_mvcc::{Command, Mvcc, MvccError};
use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use raftgres_proto::mvccpb::event::EventType;

use CompareResult::{Equal, Greater, Less, NotEqual};

fn holds(m: &mut Mvcc, c: Compare) -> bool {
    let before = m.revision();
    let (resp, applied) = txn(m, TxnRequest { compare: vec![c], ..Default::default() });
    assert_eq!(applied.revision, before, "a read-only txn does not bump the revision");
    assert!(applied.events.is_empty());
    resp.succeeded
}

/// k: create 2, mod 4, version 2, value "v2", lease 7.
fn store() -> Mvcc {
    let mut m = Mvcc::new();
    put(&mut m, "k", "v1"); // 2
    m.apply(&Command::LeaseGrant { id: 7, ttl: 60 }).response.expect("grant");
    put(&mut m, "other", "x"); // 3
    put_resp(&mut m, PutRequest { lease: 7, ..put_req("k", "v2") }); // 4
    m
}

#[test]
fn every_target_with_every_result() {
    let mut m = store();
    let targets = [
        (CompareTarget::Version, TargetUnion::Version(2), TargetUnion::Version(1), TargetUnion::Version(3)),
        (CompareTarget::Create, TargetUnion::CreateRevision(2), TargetUnion::CreateRevision(1), TargetUnion::CreateRevision(3)),
        (CompareTarget::Mod, TargetUnion::ModRevision(4), TargetUnion::ModRevision(3), TargetUnion::ModRevision(5)),
        (CompareTarget::Lease, TargetUnion::Lease(7), TargetUnion::Lease(6), TargetUnion::Lease(8)),
        (CompareTarget::Value, TargetUnion::Value(b"v2".to_vec()), TargetUnion::Value(b"v1".to_vec()), TargetUnion::Value(b"v3".to_vec())),
    ];
    for (target, same, lower, higher) in targets {
        let cases = [
            (Equal, same.clone(), true),
            (Equal, lower.clone(), false),
            (NotEqual, same.clone(), false),
            (NotEqual, higher.clone(), true),
            (Greater, lower.clone(), true),
            (Greater, same.clone(), false),
            (Less, higher.clone(), true),
            (Less, same.clone(), false),
        ];
        for (result, union, expect) in cases {
            assert_eq!(holds(&mut m, cmp("k", target, result, union.clone())), expect, "{target:?} {result:?} {union:?}");
        }
    }
}

#[test]
fn missing_keys_compare_as_zero_except_values() {
    let mut m = store();
    assert!(holds(&mut m, cmp("nope", CompareTarget::Create, Equal, TargetUnion::CreateRevision(0))));
    assert!(holds(&mut m, cmp("nope", CompareTarget::Version, Equal, TargetUnion::Version(0))));
    assert!(holds(&mut m, cmp("nope", CompareTarget::Mod, Less, TargetUnion::ModRevision(1))));
    assert!(holds(&mut m, cmp("nope", CompareTarget::Lease, Equal, TargetUnion::Lease(0))));
    assert!(!holds(&mut m, cmp("nope", CompareTarget::Value, Equal, TargetUnion::Value(vec![]))));
    assert!(!holds(&mut m, cmp("nope", CompareTarget::Value, NotEqual, TargetUnion::Value(b"x".to_vec()))));
    // A union of another kind compares against zero / empty, as etcd does.
    assert!(holds(&mut m, cmp("k", CompareTarget::Mod, Greater, TargetUnion::Version(100))));
    assert!(holds(&mut m, cmp("k", CompareTarget::Value, Greater, TargetUnion::Lease(1))));
    let no_union = Compare { key: "k".into(), target: CompareTarget::Version as i32, result: Greater as i32, ..Default::default() };
    assert!(holds(&mut m, no_union));
}

#[test]
fn ranged_compares_need_every_key() {
    let mut m = Mvcc::new();
    put(&mut m, "r/a", "1");
    put(&mut m, "r/b", "1");
    put(&mut m, "r/c", "2");
    let ranged = |k: &str, end: &str, target, result, union| Compare { range_end: end.into(), ..cmp(k, target, result, union) };
    assert!(holds(&mut m, ranged("r/", "r0", CompareTarget::Create, Greater, TargetUnion::CreateRevision(0))));
    assert!(!holds(&mut m, ranged("r/", "r0", CompareTarget::Value, Equal, TargetUnion::Value(b"1".to_vec()))));
    assert!(holds(&mut m, ranged("r/", "r/c", CompareTarget::Value, Equal, TargetUnion::Value(b"1".to_vec()))));
    assert!(holds(&mut m, ranged("r/", "\0", CompareTarget::Mod, Less, TargetUnion::ModRevision(5))));
    // An empty range compares like a missing key.
    assert!(holds(&mut m, ranged("s/", "s0", CompareTarget::Version, Equal, TargetUnion::Version(0))));
    assert!(!holds(&mut m, ranged("s/", "s0", CompareTarget::Value, NotEqual, TargetUnion::Value(b"z".to_vec()))));
}

#[test]
fn branches_one_revision_and_reads_that_see_writes() {
    let mut m = store();
    let t = TxnRequest {
        compare: vec![cmp("k", CompareTarget::Value, Equal, TargetUnion::Value(b"v2".to_vec()))],
        success: vec![
            op_range("k", ""),
            op_put("k", "v3"),
            op_put("new", "n"),
            op_range("k", ""),
            op_del("other", ""),
            op_range("\0", "\0"),
        ],
        failure: vec![op_put("failed", "x")],
    };
    let (resp, applied) = txn(&mut m, t.clone());
    assert!(resp.succeeded);
    assert_eq!((applied.revision, m.revision()), (5, 5), "one revision for the whole txn");
    assert_eq!(header_rev(&resp.header), 5);
    let types: Vec<i32> = applied.events.iter().map(|e| e.r#type).collect();
    assert_eq!(types, [EventType::Put as i32, EventType::Put as i32, EventType::Delete as i32]);
    assert!(applied.events.iter().all(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision == 5)));
    // The first read runs before any write: it sees v2 at revision 4.
    let first = resp_range(&resp, 0);
    assert_eq!((first.kvs[0].value.as_slice(), header_rev(&first.header)), (&b"v2"[..], 4));
    let put = resp_put(&resp, 1);
    assert_eq!(header_rev(&put.header), 5);
    let later = resp_range(&resp, 3);
    assert_eq!((later.kvs[0].value.as_slice(), later.kvs[0].version, header_rev(&later.header)), (&b"v3"[..], 3, 5));
    assert_eq!(resp_del(&resp, 4).deleted, 1);
    assert_eq!(keys(resp_range(&resp, 5)), ["k", "new"]);
    // The same txn again takes the failure branch.
    let (resp, applied) = txn(&mut m, t);
    assert!(!resp.succeeded);
    assert_eq!((resp.responses.len(), applied.revision), (1, 6));
    assert!(get(&m, "failed").is_some());
}

#[test]
fn past_reads_inside_a_txn() {
    let mut m = store();
    let t = TxnRequest {
        success: vec![
            op_put("k", "v3"),
            RequestOp { request: Some(Request::RequestRange(RangeRequest { revision: 2, ..range_req("k", "") })) },
        ],
        ..Default::default()
    };
    let (resp, _) = txn(&mut m, t);
    let r = resp_range(&resp, 1);
    assert_eq!((r.kvs[0].value.as_slice(), header_rev(&r.header)), (&b"v1"[..], 5));
    let future = TxnRequest {
        success: vec![
            op_put("k", "v4"),
            RequestOp { request: Some(Request::RequestRange(RangeRequest { revision: 6, ..range_req("k", "") })) },
        ],
        ..Default::default()
    };
    assert_eq!(txn_err(&mut m, future), MvccError::FutureRevision, "checked against the revision before the txn");
    assert_eq!(m.revision(), 5);
}

#[test]
fn nested_txns_take_paths_fixed_before_any_write() {
    let mut m = Mvcc::new();
    put(&mut m, "flag", "0");
    // The outer success writes flag=1; the nested compare still sees flag=0.
    let nested = TxnRequest {
        compare: vec![cmp("flag", CompareTarget::Value, Equal, TargetUnion::Value(b"0".to_vec()))],
        success: vec![op_put("saw", "0"), op_range("flag", "")],
        failure: vec![op_put("saw", "1")],
    };
    let t = TxnRequest { success: vec![op_put("flag", "1"), op_txn(nested.clone()), op_range("saw", "")], ..Default::default() };
    let (resp, applied) = txn(&mut m, t);
    assert!(resp.succeeded);
    assert_eq!(applied.revision, 3);
    let inner = resp_txn(&resp, 1);
    assert!(inner.succeeded);
    assert_eq!(header_rev(&inner.header), 0, "etcd leaves nested txn headers empty");
    assert_eq!(resp_range(inner, 1).kvs[0].value, b"1", "reads inside see the outer writes");
    assert_eq!(resp_range(&resp, 2).kvs[0].value, b"0");
    // Nested failure branch.
    let (resp, _) = txn(&mut m, TxnRequest { success: vec![op_txn(nested)], ..Default::default() });
    assert!(!resp_txn(&resp, 0).succeeded);
    assert_eq!(get(&m, "saw").expect("saw").value, b"1");
}

#[test]
fn failing_txns_write_nothing() {
    let mut m = store();
    let before = m.clone();
    let ignore = PutRequest { ignore_value: true, ..put_req("missing", "") };
    let with_lease = PutRequest { lease: 99, ..put_req("x", "") };
    let cases = [
        (vec![op_put("a", "1"), RequestOp { request: Some(Request::RequestPut(ignore)) }], MvccError::KeyNotFound),
        (vec![op_put("a", "1"), RequestOp { request: Some(Request::RequestPut(with_lease)) }], MvccError::LeaseNotFound),
        (vec![op_put("a", "1"), op_txn(TxnRequest { success: vec![op_range("", "")], ..Default::default() })], MvccError::KeyNotProvided),
    ];
    for (ops, err) in cases {
        assert_eq!(txn_err(&mut m, TxnRequest { success: ops, ..Default::default() }), err);
        assert_eq!(m, before);
    }
    // Only the branch taken is checked.
    let bad_failure = TxnRequest { success: vec![op_put("a", "1")], failure: vec![op_range("", "")], ..Default::default() };
    assert!(txn(&mut m, bad_failure).0.succeeded);
}

#[test]
fn ignore_flags_inside_txns_use_the_state_before_the_txn() {
    let mut m = store();
    let keep = PutRequest { ignore_value: true, ignore_lease: true, prev_kv: true, ..put_req("k", "") };
    let t = TxnRequest { success: vec![RequestOp { request: Some(Request::RequestPut(keep)) }], ..Default::default() };
    let (resp, _) = txn(&mut m, t);
    assert_eq!(resp_put(&resp, 0).prev_kv.as_ref().map(|kv| kv.version), Some(2));
    let kv = get(&m, "k").expect("k");
    assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"v2"[..], 7, 3));
}

#[test]
fn unknown_compare_enums_fail_closed() {
    let mut m = store();
    for (target, result) in [(42, Equal as i32), (CompareTarget::Version as i32, 42), (-1, -1)] {
        let c = Compare { key: "k".into(), target, result, target_union: Some(TargetUnion::Version(2)), ..Default::default() };
        assert!(!holds(&mut m, c), "target {target} result {result}");
    }
}

#[test]
fn an_empty_txn_succeeds_without_a_revision() {
    let mut m = store();
    let (resp, applied) = txn(&mut m, TxnRequest::default());
    assert!(resp.succeeded && resp.responses.is_empty());
    assert_eq!((applied.revision, header_rev(&resp.header)), (4, 4));
}

#[test]
fn a_read_only_txn_is_answered_off_the_log_as_the_log_would() {
    let mut m = store();
    let old = RangeRequest { revision: 2, ..range_req("k", "") };
    let nested = TxnRequest {
        compare: vec![cmp("other", CompareTarget::Value, Equal, TargetUnion::Value(b"x".to_vec()))],
        success: vec![op_range("a", "z")],
        failure: vec![op_range("k", "")],
    };
    let reads = TxnRequest {
        compare: vec![cmp("k", CompareTarget::Version, Equal, TargetUnion::Version(2))],
        success: vec![op_range("k", ""), RequestOp { request: Some(Request::RequestRange(old)) }, op_txn(nested)],
        failure: vec![op_range("other", "")],
    };
    assert!(raftgres_mvcc::is_read_only(&reads));
    let off_log = m.read_txn(&reads).expect("read-only").expect("answered");
    let (through_log, applied) = txn(&mut m, reads.clone());
    assert_eq!(off_log, through_log);
    assert_eq!(header_rev(&off_log.header), applied.revision);
    assert_eq!(resp_range(&off_log, 1).kvs[0].value, b"v1");

    let writes = TxnRequest { failure: vec![op_put("k", "v3")], ..reads.clone() };
    assert!(!raftgres_mvcc::is_read_only(&writes), "a write in the branch not taken still counts");
    assert!(m.read_txn(&writes).is_none());
    let future = TxnRequest {
        success: vec![RequestOp { request: Some(Request::RequestRange(RangeRequest { revision: 99, ..range_req("k", "") })) }],
        ..Default::default()
    };
    assert_eq!(m.read_txn(&future).expect("read-only").expect_err("future"), txn_err(&mut m, future));
    let serial = TxnRequest {
        success: vec![RequestOp { request: Some(Request::RequestRange(RangeRequest { serializable: true, ..range_req("k", "") })) }],
        ..Default::default()
    };
    assert!(raftgres_mvcc::is_serializable(&serial) && !raftgres_mvcc::is_serializable(&reads));
}
