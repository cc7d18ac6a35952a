//! Range reads: the range_end forms, limit/count/more, sorting by every target both
//! ways, mod/create revision filters, keys_only/count_only, and `etcdctl lock`'s query.

mod common;

use common::*;
use raftgres_mvcc::{Mvcc, MvccError};
use raftgres_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use raftgres_proto::etcdserverpb::RangeRequest;

/// p/a..p/d with distinct create, mod, version and value orders, plus neighbours.
fn store() -> Mvcc {
    let mut m = Mvcc::new();
    put(&mut m, "p/c", "2"); // 2: c created first
    put(&mut m, "p/a", "4"); // 3
    put(&mut m, "p/d", "1"); // 4
    put(&mut m, "p/b", "3"); // 5
    put(&mut m, "p/c", "2"); // 6: c version 2
    put(&mut m, "p/c", "2"); // 7: c version 3
    put(&mut m, "p/d", "1"); // 8: d version 2
    put(&mut m, "o", "x"); // 9
    put(&mut m, "p0", "x"); // 10
    put(&mut m, "\u{7f}", "x"); // 11
    m
}

fn sorted(m: &Mvcc, order: SortOrder, target: SortTarget) -> Vec<String> {
    let req = RangeRequest { sort_order: order as i32, sort_target: target as i32, ..range_req("p/", "p0") };
    keys(&m.range(&req).expect("sorted range"))
}

#[test]
fn range_end_forms() {
    let m = store();
    assert_eq!(keys(&m.range(&range_req("p/a", "")).expect("single")), ["p/a"]);
    assert!(m.range(&range_req("p/", "")).expect("single missing").kvs.is_empty());
    assert_eq!(keys(&m.range(&range_req("p/", "p0")).expect("prefix")), ["p/a", "p/b", "p/c", "p/d"]);
    assert_eq!(keys(&m.range(&range_req("p/b", "p/d")).expect("interval")), ["p/b", "p/c"]);
    assert_eq!(keys(&m.range(&range_req("p/d", "\0")).expect("from key")), ["p/d", "p0", "\u{7f}"]);
    let all = m.range(&range_req("\0", "\0")).expect("all");
    assert_eq!(keys(&all), ["o", "p/a", "p/b", "p/c", "p/d", "p0", "\u{7f}"]);
    assert_eq!(all.count, 7);
    assert!(m.range(&range_req("p/d", "p/a")).expect("inverted").kvs.is_empty());
    assert!(m.range(&range_req("p/a", "p/a")).expect("empty interval").kvs.is_empty());
    assert_eq!(m.range(&range_req("", "")).expect_err("no key"), MvccError::KeyNotProvided);
    assert_eq!(m.range(&range_req("", "\0")).expect_err("no key"), MvccError::KeyNotProvided);
}

#[test]
fn limit_count_and_more() {
    let m = store();
    let base = range_req("p/", "p0");
    for (limit, n, more) in [(0, 4, false), (1, 1, true), (3, 3, true), (4, 4, false), (5, 4, false), (-3, 4, false), (i64::MAX, 4, false)]
    {
        let r = m.range(&RangeRequest { limit, ..base.clone() }).expect("range");
        assert_eq!((r.kvs.len(), r.more, r.count), (n, more, 4), "limit {limit}");
    }
    let r = m.range(&RangeRequest { limit: 2, ..base.clone() }).expect("range");
    assert_eq!(keys(&r), ["p/a", "p/b"]);
    let r = m.range(&RangeRequest { count_only: true, limit: 1, ..base.clone() }).expect("count only");
    assert_eq!((r.count, r.kvs.len(), r.more), (4, 0, false));
    let r = m.range(&RangeRequest { keys_only: true, ..base }).expect("keys only");
    assert_eq!(r.kvs.len(), 4);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty() && kv.version > 0 && kv.mod_revision > 0));
}

#[test]
fn sorting_by_every_target_both_ways() {
    let m = store();
    use SortOrder::{Ascend, Descend};
    assert_eq!(sorted(&m, Ascend, SortTarget::Key), ["p/a", "p/b", "p/c", "p/d"]);
    assert_eq!(sorted(&m, Descend, SortTarget::Key), ["p/d", "p/c", "p/b", "p/a"]);
    assert_eq!(sorted(&m, Ascend, SortTarget::Create), ["p/c", "p/a", "p/d", "p/b"]);
    assert_eq!(sorted(&m, Descend, SortTarget::Create), ["p/b", "p/d", "p/a", "p/c"]);
    assert_eq!(sorted(&m, Ascend, SortTarget::Mod), ["p/a", "p/b", "p/c", "p/d"]);
    assert_eq!(sorted(&m, Descend, SortTarget::Mod), ["p/d", "p/c", "p/b", "p/a"]);
    assert_eq!(sorted(&m, Ascend, SortTarget::Value), ["p/d", "p/c", "p/b", "p/a"]);
    assert_eq!(sorted(&m, Descend, SortTarget::Value), ["p/a", "p/b", "p/c", "p/d"]);
    // Versions: a 1, b 1, c 3, d 2; ties keep key order both ways.
    assert_eq!(sorted(&m, Ascend, SortTarget::Version), ["p/a", "p/b", "p/d", "p/c"]);
    assert_eq!(sorted(&m, Descend, SortTarget::Version), ["p/c", "p/d", "p/a", "p/b"]);
    // Order NONE: key order for KEY (what etcdctl sends), ascending for other targets.
    assert_eq!(sorted(&m, SortOrder::None, SortTarget::Key), ["p/a", "p/b", "p/c", "p/d"]);
    assert_eq!(sorted(&m, SortOrder::None, SortTarget::Create), ["p/c", "p/a", "p/d", "p/b"]);
    assert_eq!(sorted(&m, SortOrder::None, SortTarget::Value), ["p/d", "p/c", "p/b", "p/a"]);
}

#[test]
fn sort_then_limit() {
    let m = store();
    let req =
        RangeRequest { sort_order: SortOrder::Descend as i32, sort_target: SortTarget::Create as i32, limit: 2, ..range_req("p/", "p0") };
    let r = m.range(&req).expect("range");
    assert_eq!((keys(&r), r.more, r.count), (vec!["p/b".to_string(), "p/d".to_string()], true, 4));
}

#[test]
fn mod_and_create_revision_filters() {
    let m = store();
    let base = range_req("p/", "p0");
    let f = |req: RangeRequest| keys(&m.range(&req).expect("filtered"));
    assert_eq!(f(RangeRequest { min_mod_revision: 7, ..base.clone() }), ["p/c", "p/d"]);
    assert_eq!(f(RangeRequest { max_mod_revision: 5, ..base.clone() }), ["p/a", "p/b"]);
    assert_eq!(f(RangeRequest { min_create_revision: 4, ..base.clone() }), ["p/b", "p/d"]);
    assert_eq!(f(RangeRequest { max_create_revision: 3, ..base.clone() }), ["p/a", "p/c"]);
    assert_eq!(f(RangeRequest { min_create_revision: 3, max_create_revision: 4, ..base.clone() }), ["p/a", "p/d"]);
    // As in etcd, only 0 turns a filter off: a negative maximum keeps nothing.
    assert!(f(RangeRequest { max_mod_revision: -1, ..base.clone() }).is_empty());
    assert_eq!(f(RangeRequest { min_mod_revision: -1, ..base.clone() }).len(), 4);
    // count is taken before the filters; more after them.
    let r = m.range(&RangeRequest { min_mod_revision: 6, limit: 1, ..base }).expect("filtered");
    assert_eq!((r.count, r.kvs.len(), r.more), (4, 1, true));
}

#[test]
fn etcdctl_lock_queries() {
    // Waiters find their predecessor with Range(prefix, sort CREATE DESCEND, limit 1,
    // max_create_revision = mine - 1); the owner is the lowest create revision.
    let mut m = Mvcc::new();
    let r1 = put(&mut m, "lock/1", "");
    let r2 = put(&mut m, "lock/2", "");
    let r3 = put(&mut m, "lock/3", "");
    put(&mut m, "lock/1", "touched"); // create revision unchanged
    let before = |mine: i64| {
        let req = RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            limit: 1,
            max_create_revision: mine - 1,
            ..range_req("lock/", "lock0")
        };
        keys(&m.range(&req).expect("lock range"))
    };
    assert_eq!(before(r3), ["lock/2"]);
    assert_eq!(before(r2), ["lock/1"]);
    assert!(before(r1).is_empty(), "the first waiter owns the lock");
    let owner = RangeRequest {
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..range_req("lock/", "lock0")
    };
    let r = m.range(&owner).expect("owner");
    assert_eq!((keys(&r), r.more), (vec!["lock/1".to_string()], true));
}

#[test]
fn invalid_sort_options_are_refused() {
    let m = store();
    for (order, target) in [(99, 0), (0, 99), (-1, 0), (0, -1), (3, 5)] {
        let req = RangeRequest { sort_order: order, sort_target: target, ..range_req("p/", "p0") };
        assert_eq!(m.range(&req).expect_err("invalid sort"), MvccError::InvalidSortOption, "{order}/{target}");
    }
}
