//! Revision numbering, versions across generations, past reads, and the events and
//! prev_kvs a write produces.

mod common;

use common::*;
use raftgres_mvcc::{Command, CommandResponse, Mvcc, MvccError};
use raftgres_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use raftgres_proto::mvccpb::event::EventType;

#[test]
fn empty_store_is_at_revision_one_and_the_first_write_is_two() {
    let mut m = Mvcc::new();
    assert_eq!((m.revision(), m.compact_revision(), m.key_count()), (1, 0, 0));
    assert_eq!(Mvcc::default().revision(), 1);
    let r = m.range(&range_req("a", "")).expect("range");
    assert_eq!((header_rev(&r.header), r.count, r.kvs.len(), r.more), (1, 0, 0, false));
    let a = m.apply(&Command::Put(put_req("a", "1")));
    assert_eq!(a.revision, 2);
    let Ok(CommandResponse::Put(resp)) = a.response else { panic!("put") };
    assert_eq!(header_rev(&resp.header), 2);
    assert_eq!(put(&mut m, "b", "1"), 3);
    assert_eq!(put(&mut m, "a", "2"), 4);
    assert_eq!(m.key_count(), 2);
}

#[test]
fn versions_and_create_revisions_follow_generations() {
    let mut m = Mvcc::new();
    put(&mut m, "k", "1"); // 2
    put(&mut m, "k", "2"); // 3
    put(&mut m, "k", "3"); // 4
    let kv = get(&m, "k").expect("k");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.value.as_slice()), (2, 4, 3, &b"3"[..]));
    let d = del(&mut m, "k", ""); // 5
    assert_eq!((d.deleted, header_rev(&d.header)), (1, 5));
    assert_eq!(d.prev_kvs, vec![kv]);
    assert!(get(&m, "k").is_none());
    assert_eq!(m.key_count(), 0);
    put(&mut m, "k", "new"); // 6
    let kv = get(&m, "k").expect("k");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (6, 6, 1), "a put after delete starts a new generation");
}

#[test]
fn deleting_nothing_does_not_bump_the_revision() {
    let mut m = Mvcc::new();
    put(&mut m, "a", "1");
    let a = m.apply(&Command::DeleteRange(del_req("zz", "")));
    assert_eq!(a.revision, 2);
    assert!(a.events.is_empty());
    let Ok(CommandResponse::DeleteRange(d)) = a.response else { panic!("delete") };
    assert_eq!((d.deleted, header_rev(&d.header)), (0, 2));
    // An inverted range deletes nothing either.
    assert_eq!(del(&mut m, "b", "a").deleted, 0);
    assert_eq!(m.revision(), 2);
}

#[test]
fn past_reads_see_each_key_as_it_was() {
    let mut m = Mvcc::new();
    put(&mut m, "a", "1"); // 2
    put(&mut m, "b", "1"); // 3
    put(&mut m, "a", "2"); // 4
    del(&mut m, "b", ""); // 5
    put(&mut m, "b", "2"); // 6
    assert!(get_at(&m, "a", 1).is_none());
    assert_eq!(get_at(&m, "a", 2).expect("a@2").value, b"1");
    assert_eq!(get_at(&m, "a", 3).expect("a@3").value, b"1");
    assert_eq!(get_at(&m, "a", 4).expect("a@4").value, b"2");
    assert_eq!(get_at(&m, "b", 4).expect("b@4").version, 1);
    assert!(get_at(&m, "b", 5).is_none());
    assert_eq!(get_at(&m, "b", 6).expect("b@6").create_revision, 6);
    let all_at_3 = m.range(&RangeRequest { revision: 3, ..range_req("\0", "\0") }).expect("range");
    assert_eq!(keys(&all_at_3), ["a", "b"]);
    assert_eq!(header_rev(&all_at_3.header), 6, "the header has the current revision");
    let future = m.range(&RangeRequest { revision: 7, ..range_req("a", "") });
    assert_eq!(future.expect_err("future"), MvccError::FutureRevision);
    let current = m.range(&RangeRequest { revision: 6, ..range_req("a", "") }).expect("current");
    assert_eq!(current.kvs.len(), 1);
    for negative in [-1, i64::MIN] {
        let r = m.range(&RangeRequest { revision: negative, ..range_req("a", "") }).expect("negative = current");
        assert_eq!(r.kvs[0].value, b"2");
    }
}

#[test]
fn put_and_delete_return_prev_kvs_when_asked() {
    let mut m = Mvcc::new();
    let r = put_resp(&mut m, PutRequest { prev_kv: true, ..put_req("a", "1") });
    assert!(r.prev_kv.is_none());
    let r = put_resp(&mut m, PutRequest { prev_kv: true, ..put_req("a", "2") });
    assert_eq!(r.prev_kv.expect("prev").value, b"1");
    let r = put_resp(&mut m, put_req("a", "3"));
    assert!(r.prev_kv.is_none(), "not asked");
    put(&mut m, "b", "1");
    let a = m.apply(&Command::DeleteRange(DeleteRangeRequest { key: "a".into(), range_end: "c".into(), prev_kv: false }));
    let Ok(CommandResponse::DeleteRange(d)) = a.response else { panic!("delete") };
    assert_eq!((d.deleted, d.prev_kvs.len()), (2, 0));
}

#[test]
fn events_carry_the_revision_and_the_previous_state() {
    let mut m = Mvcc::new();
    let a = m.apply(&Command::Put(put_req("a", "1")));
    assert_eq!(a.events.len(), 1);
    let e = &a.events[0];
    assert_eq!(e.r#type, EventType::Put as i32);
    assert_eq!(e.kv.as_ref().map(|kv| (kv.mod_revision, kv.version)), Some((2, 1)));
    assert!(e.prev_kv.is_none(), "a create has no prev_kv");
    let a = m.apply(&Command::Put(put_req("a", "2")));
    assert_eq!(a.events[0].prev_kv.as_ref().map(|kv| kv.value.clone()), Some(b"1".to_vec()));
    put(&mut m, "b", "x");
    let a = m.apply(&Command::DeleteRange(del_req("a", "c")));
    assert_eq!(a.revision, 5);
    assert_eq!(a.events.len(), 2, "one delete event per key, in key order");
    for (e, (key, prev)) in a.events.iter().zip([("a", "2"), ("b", "x")]) {
        assert_eq!(e.r#type, EventType::Delete as i32);
        let kv = e.kv.as_ref().expect("kv");
        assert_eq!((kv.key.as_slice(), kv.mod_revision, kv.version, kv.create_revision), (key.as_bytes(), 5, 0, 0));
        assert!(kv.value.is_empty());
        assert_eq!(e.prev_kv.as_ref().map(|kv| kv.value.as_slice()), Some(prev.as_bytes()));
    }
    assert_eq!(m.events_between(2, 5).expect("history").len(), 5);
    assert_eq!(m.events_between(5, 5).expect("history"), a.events);
    assert!(m.events_between(6, 100).expect("nothing yet").is_empty());
    assert!(m.events_between(5, 4).expect("empty window").is_empty());
}

#[test]
fn failed_commands_change_nothing() {
    let mut m = Mvcc::new();
    put(&mut m, "a", "1");
    let before = m.clone();
    for cmd in [
        Command::Put(PutRequest::default()),
        Command::Put(PutRequest { lease: 5, ..put_req("a", "x") }),
        Command::Put(PutRequest { ignore_value: true, ..put_req("missing", "") }),
        Command::DeleteRange(DeleteRangeRequest::default()),
        Command::LeaseRevoke { id: 9 },
    ] {
        let a = m.apply(&cmd);
        assert!(a.response.is_err(), "{cmd:?}");
        assert!(a.events.is_empty());
        assert_eq!(a.revision, 2);
    }
    assert_eq!(m, before);
}
