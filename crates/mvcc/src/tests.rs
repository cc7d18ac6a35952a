//! Unit tests of the data model against etcd's documented behaviour.

use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use super::*;

fn put(m: &mut Mvcc, k: &str, v: &str) -> i64 {
    let a = m.apply(&Command::Put(PutRequest { key: k.into(), value: v.into(), ..Default::default() }));
    a.response.expect("put");
    a.revision
}

fn get(m: &Mvcc, k: &str) -> Option<KeyValue> {
    m.range(&RangeRequest { key: k.into(), ..Default::default() }).expect("range").kvs.into_iter().next()
}

fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

fn cmp(key: &str, target: CompareTarget, result: CompareResult, union: TargetUnion) -> Compare {
    Compare { key: key.into(), target: target as i32, result: result as i32, target_union: Some(union), ..Default::default() }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), value: v.into(), ..Default::default() })) }
}

#[test]
fn revisions_and_versions_follow_etcd() {
    let mut m = Mvcc::new();
    assert_eq!(m.revision(), 1);
    assert_eq!(put(&mut m, "a", "1"), 2);
    assert_eq!(put(&mut m, "a", "2"), 3);
    let kv = get(&m, "a").expect("a");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    let del = m.apply(&Command::DeleteRange(DeleteRangeRequest { key: "zz".into(), ..Default::default() }));
    assert_eq!(del.revision, 3, "deleting nothing does not bump the revision");
    let del = m.apply(&Command::DeleteRange(DeleteRangeRequest { key: "a".into(), prev_kv: true, ..Default::default() }));
    assert_eq!(del.revision, 4);
    assert!(get(&m, "a").is_none());
    assert_eq!(put(&mut m, "a", "3"), 5);
    let kv = get(&m, "a").expect("a");
    assert_eq!((kv.create_revision, kv.version), (5, 1), "a new generation");
    let past = m.range(&RangeRequest { key: "a".into(), revision: 3, ..Default::default() }).expect("past");
    assert_eq!(past.kvs[0].value, b"2");
    let gone = m.range(&RangeRequest { key: "a".into(), revision: 4, ..Default::default() }).expect("past");
    assert!(gone.kvs.is_empty());
    let future = m.range(&RangeRequest { key: "a".into(), revision: 99, ..Default::default() });
    assert_eq!(future.expect_err("future"), MvccError::FutureRevision);
}

#[test]
fn ranges_prefixes_limits_and_sorting() {
    let mut m = Mvcc::new();
    for (k, v) in [("p/b", "2"), ("p/a", "3"), ("p/c", "1"), ("q", "0")] {
        put(&mut m, k, v);
    }
    let prefix = RangeRequest { key: "p/".into(), range_end: "p0".into(), ..Default::default() };
    let r = m.range(&prefix).expect("range");
    assert_eq!(keys(&r), ["p/a", "p/b", "p/c"]);
    let r = m.range(&RangeRequest { limit: 2, ..prefix.clone() }).expect("range");
    assert_eq!((r.count, r.more, r.kvs.len()), (3, true, 2));
    let all = m.range(&RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() }).expect("all");
    assert_eq!(all.count, 4);
    let from = m.range(&RangeRequest { key: "p/b".into(), range_end: vec![0], ..Default::default() }).expect("from");
    assert_eq!(keys(&from), ["p/b", "p/c", "q"]);
    let by_value = RangeRequest { sort_order: SortOrder::Descend as i32, sort_target: SortTarget::Value as i32, ..prefix.clone() };
    assert_eq!(keys(&m.range(&by_value).expect("sorted")), ["p/a", "p/b", "p/c"]);
    let by_create = RangeRequest { sort_order: SortOrder::Descend as i32, sort_target: SortTarget::Create as i32, limit: 1, max_create_revision: 3, ..prefix.clone() };
    assert_eq!(keys(&m.range(&by_create).expect("lock-style")), ["p/a"]);
    let keys_only = m.range(&RangeRequest { keys_only: true, ..prefix.clone() }).expect("keys only");
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    let count_only = m.range(&RangeRequest { count_only: true, ..prefix }).expect("count only");
    assert_eq!((count_only.count, count_only.kvs.len()), (3, 0));
    assert_eq!(m.range(&RangeRequest::default()).expect_err("empty key"), MvccError::KeyNotProvided);
}

#[test]
fn txn_compares_branches_and_reads_its_own_writes() {
    let mut m = Mvcc::new();
    put(&mut m, "k", "v");
    let txn = TxnRequest {
        compare: vec![cmp("k", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value("v".into()))],
        success: vec![
            op_put("k", "w"),
            op_put("other", "x"),
            RequestOp { request: Some(Request::RequestRange(RangeRequest { key: "k".into(), ..Default::default() })) },
        ],
        failure: vec![],
    };
    let applied = m.apply(&Command::Txn(txn));
    let Ok(CommandResponse::Txn(resp)) = applied.response else { panic!("txn failed") };
    assert!(resp.succeeded);
    assert_eq!(applied.revision, 3, "one revision for the whole txn");
    assert_eq!(applied.events.len(), 2);
    let Some(raftgres_proto::etcdserverpb::response_op::Response::ResponseRange(r)) = &resp.responses[2].response else {
        panic!("range response")
    };
    assert_eq!(r.kvs[0].value, b"w");
    // Missing keys compare as zero; a value compare on a missing key is false.
    let create_zero = cmp("missing", CompareTarget::Create, CompareResult::Equal, TargetUnion::CreateRevision(0));
    let value_cmp = cmp("missing", CompareTarget::Value, CompareResult::NotEqual, TargetUnion::Value("x".into()));
    for (c, expect) in [(create_zero, true), (value_cmp, false)] {
        let a = m.apply(&Command::Txn(TxnRequest { compare: vec![c], ..Default::default() }));
        let Ok(CommandResponse::Txn(resp)) = a.response else { panic!("txn failed") };
        assert_eq!(resp.succeeded, expect);
        assert_eq!(a.revision, 3, "read-only txn does not bump");
    }
    // Hostile enum values neither panic nor pass.
    let weird = Compare { key: "k".into(), target: 42, result: 99, ..Default::default() };
    let a = m.apply(&Command::Txn(TxnRequest { compare: vec![weird], ..Default::default() }));
    assert!(matches!(a.response, Ok(CommandResponse::Txn(TxnResponse { succeeded: false, .. }))));
}

#[test]
fn leases_attach_move_and_revoke() {
    let mut m = Mvcc::new();
    m.apply(&Command::LeaseGrant { id: 7, ttl: 10 }).response.expect("grant");
    assert_eq!(m.apply(&Command::LeaseGrant { id: 7, ttl: 10 }).response.expect_err("dup"), MvccError::LeaseExists);
    let with_lease = |k: &str, lease| Command::Put(PutRequest { key: k.into(), value: "v".into(), lease, ..Default::default() });
    assert_eq!(m.apply(&with_lease("a", 8)).response.expect_err("unknown"), MvccError::LeaseNotFound);
    m.apply(&with_lease("a", 7)).response.expect("attach");
    m.apply(&with_lease("b", 7)).response.expect("attach");
    m.apply(&with_lease("b", 0)).response.expect("detach");
    assert_eq!(m.lease(7).expect("lease").keys, vec![b"a".to_vec()]);
    let before = m.revision();
    let revoked = m.apply(&Command::LeaseRevoke { id: 7 });
    assert_eq!(revoked.revision, before + 1);
    assert_eq!(revoked.events.len(), 1);
    assert!(get(&m, "a").is_none() && get(&m, "b").is_some());
    assert_eq!(m.apply(&Command::LeaseRevoke { id: 7 }).response.expect_err("gone"), MvccError::LeaseNotFound);
    let ignore = Command::Put(PutRequest { key: "nope".into(), ignore_value: true, ..Default::default() });
    assert_eq!(m.apply(&ignore).response.expect_err("missing"), MvccError::KeyNotFound);
}

#[test]
fn compaction_and_history() {
    let mut m = Mvcc::new();
    put(&mut m, "a", "1"); // 2
    put(&mut m, "a", "2"); // 3
    put(&mut m, "b", "1"); // 4
    assert_eq!(m.events_between(2, 4).expect("history").len(), 3);
    m.apply(&Command::Compact(CompactionRequest { revision: 3, physical: false })).response.expect("compact");
    assert_eq!(m.compact_revision(), 3);
    assert_eq!(m.events_between(2, 4).expect_err("compacted"), MvccError::Compacted);
    assert_eq!(m.events_between(3, 4).expect("from compact rev").len(), 2);
    let at3 = m.range(&RangeRequest { key: "a".into(), revision: 3, ..Default::default() }).expect("at compact rev");
    assert_eq!(at3.kvs[0].value, b"2");
    let at2 = m.range(&RangeRequest { key: "a".into(), revision: 2, ..Default::default() });
    assert_eq!(at2.expect_err("compacted"), MvccError::Compacted);
    let again = m.apply(&Command::Compact(CompactionRequest { revision: 3, physical: false }));
    assert_eq!(again.response.expect_err("again"), MvccError::Compacted);
    let bytes = bincode::serialize(&m).expect("serialize");
    let back: Mvcc = bincode::deserialize(&bytes).expect("deserialize");
    assert_eq!(get(&back, "b"), get(&m, "b"));
    assert_eq!(back.revision(), m.revision());
}

#[test]
fn validation_matches_etcd() {
    let limits = Limits::default();
    let many = TxnRequest { success: (0..129).map(|i| op_put(&format!("k{i}"), "v")).collect(), ..Default::default() };
    assert_eq!(validate(&Command::Txn(many), &limits).expect_err("too many"), MvccError::TooManyOps);
    let dup = TxnRequest { success: vec![op_put("k", "1"), op_put("k", "2")], ..Default::default() };
    assert_eq!(validate(&Command::Txn(dup), &limits).expect_err("dup"), MvccError::DuplicateKey);
    let del = RequestOp { request: Some(Request::RequestDeleteRange(DeleteRangeRequest { key: "a".into(), range_end: "z".into(), prev_kv: false })) };
    let overlap = TxnRequest { success: vec![op_put("k", "1"), del], ..Default::default() };
    assert_eq!(validate(&Command::Txn(overlap), &limits).expect_err("overlap"), MvccError::DuplicateKey);
    let nested = TxnRequest {
        success: vec![RequestOp { request: Some(Request::RequestTxn(TxnRequest { success: vec![op_put("k", "1")], failure: vec![op_put("k", "2")], ..Default::default() })) }],
        ..Default::default()
    };
    validate(&Command::Txn(nested), &limits).expect("nested branches may write the same key");
    assert_eq!(validate(&Command::Put(PutRequest::default()), &limits).expect_err("empty"), MvccError::KeyNotProvided);
}
