//! Compaction: its errors, what it keeps and drops, watch history replay around it, and
//! snapshots (serde/bincode) of a populated store.

mod common;

use common::*;
use raftgres_mvcc::{Command, CommandResponse, Mvcc, MvccError};
use raftgres_proto::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest};

fn compact(m: &mut Mvcc, revision: i64) -> Result<CommandResponse, MvccError> {
    m.apply(&Command::Compact(CompactionRequest { revision, physical: true })).response
}

/// a: 2 "1", 3 "2", 6 "3"; b: 4 created, 5 deleted; c: 7.
fn store() -> Mvcc {
    let mut m = Mvcc::new();
    put(&mut m, "a", "1"); // 2
    put(&mut m, "a", "2"); // 3
    put(&mut m, "b", "1"); // 4
    del(&mut m, "b", ""); // 5
    put(&mut m, "a", "3"); // 6
    put(&mut m, "c", "1"); // 7
    m
}

#[test]
fn compaction_errors() {
    let mut m = store();
    assert_eq!(compact(&mut m, 8).expect_err("future"), MvccError::FutureRevision);
    assert_eq!(compact(&mut m, 0).expect_err("nothing to do"), MvccError::Compacted);
    assert_eq!(compact(&mut m, -4).expect_err("negative"), MvccError::Compacted);
    let Ok(CommandResponse::Compact(r)) = compact(&mut m, 4) else { panic!("compact") };
    assert_eq!(header_rev(&r.header), 7);
    assert_eq!((m.compact_revision(), m.revision()), (4, 7), "compaction makes no revision");
    assert_eq!(compact(&mut m, 4).expect_err("again"), MvccError::Compacted);
    assert_eq!(compact(&mut m, 3).expect_err("older"), MvccError::Compacted);
    compact(&mut m, 7).expect("up to the current revision");
    assert_eq!(compact(&mut m, 8).expect_err("future"), MvccError::FutureRevision);
}

#[test]
fn compaction_keeps_the_state_at_its_revision() {
    let mut m = store();
    compact(&mut m, 4).expect("compact");
    let read = |m: &Mvcc, k: &str, rev: i64| m.range(&RangeRequest { revision: rev, ..range_req(k, "") });
    assert_eq!(read(&m, "a", 3).expect_err("before"), MvccError::Compacted);
    assert_eq!(read(&m, "a", 4).expect("at the compact revision").kvs[0].value, b"2");
    assert_eq!(read(&m, "b", 4).expect("b at 4").kvs[0].value, b"1");
    assert!(read(&m, "b", 5).expect("b deleted").kvs.is_empty());
    assert_eq!(read(&m, "a", 6).expect("later").kvs[0].value, b"3");
    assert_eq!(read(&m, "a", 0).expect("current").kvs[0].value, b"3");
    compact(&mut m, 6).expect("compact");
    assert!(read(&m, "b", 6).expect("b gone").kvs.is_empty());
    let all = m.range(&range_req("\0", "\0")).expect("all");
    assert_eq!((keys(&all), all.count), (vec!["a".to_string(), "c".to_string()], 2));
    let kv = get(&m, "a").expect("a");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 6, 3), "compaction keeps create revision and version");
    put(&mut m, "a", "4");
    assert_eq!(get(&m, "a").expect("a").version, 4);
}

#[test]
fn history_replay_around_compaction() {
    let mut m = store();
    assert_eq!(m.events_between(2, 7).expect("all").len(), 6);
    assert_eq!(m.events_between(0, 7).expect("from 0 before any compaction").len(), 6);
    compact(&mut m, 5).expect("compact");
    assert_eq!(m.events_between(4, 7).expect_err("compacted"), MvccError::Compacted);
    assert_eq!(m.events_between(0, 7).expect_err("compacted"), MvccError::Compacted);
    let from5 = m.events_between(5, 7).expect("from the compact revision");
    let revs: Vec<i64> = from5.iter().map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision)).collect();
    assert_eq!(revs, [5, 6, 7]);
    assert_eq!(from5[0].prev_kv.as_ref().map(|kv| kv.value.as_slice()), Some(&b"1"[..]), "prev_kv survives compaction");
    assert_eq!(m.events_between(6, 6).expect("one").len(), 1);
    put(&mut m, "d", "1");
    assert_eq!(m.events_between(8, i64::MAX).expect("open end").len(), 1);
}

#[test]
fn snapshots_round_trip_through_bincode() {
    let mut m = store();
    m.apply(&Command::LeaseGrant { id: 9, ttl: 30 }).response.expect("grant");
    put_resp(&mut m, PutRequest { lease: 9, ..put_req("leased", "v") });
    compact(&mut m, 3).expect("compact");
    let bytes = bincode::serialize(&m).expect("serialize");
    let mut back: Mvcc = bincode::deserialize(&bytes).expect("deserialize");
    assert_eq!(back, m);
    assert_eq!((back.revision(), back.compact_revision(), back.key_count()), (m.revision(), m.compact_revision(), m.key_count()));
    for rev in 3..=m.revision() {
        let req = RangeRequest { revision: rev, ..range_req("\0", "\0") };
        assert_eq!(back.range(&req), m.range(&req), "rev {rev}");
    }
    assert_eq!(back.events_between(3, 100), m.events_between(3, 100));
    assert_eq!(back.leases(), m.leases());
    // Both copies go on identically.
    for cmd in [
        Command::Put(put_req("x", "1")),
        Command::LeaseRevoke { id: 9 },
        Command::Compact(CompactionRequest { revision: 8, physical: false }),
    ] {
        assert_eq!(back.apply(&cmd), m.apply(&cmd));
    }
    assert_eq!(back, m);
}
