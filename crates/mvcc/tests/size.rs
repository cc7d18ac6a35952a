//! The state's size (what the space quota measures): kept incrementally, always equal
//! to a count from scratch, after loading a snapshot too; and what commands would add.

mod common;

use common::*;
use raftgres_mvcc::{space_needed, Command, Mvcc};
use raftgres_proto::etcdserverpb::{CompactionRequest, PutRequest, TxnRequest};

fn compact(m: &mut Mvcc, revision: i64) {
    m.apply(&Command::Compact(CompactionRequest { revision, physical: false })).response.expect("compact");
}

#[test]
fn the_size_kept_on_every_write_equals_a_count_from_scratch() {
    let mut m = Mvcc::new();
    assert_eq!((m.size(), m.measure()), (0, 0));
    m.apply(&Command::LeaseGrant { id: 7, ttl: 10 }).response.expect("grant");
    for i in 0..50 {
        put(&mut m, &format!("k{}", i % 7), &"v".repeat(i));
        assert_eq!(m.size(), m.measure(), "after put {i}");
    }
    put_resp(&mut m, PutRequest { key: b"leased".to_vec(), value: b"x".to_vec(), lease: 7, ..Default::default() });
    del(&mut m, "k1", "");
    let t = TxnRequest {
        success: vec![op_put("t", "1"), op_txn(TxnRequest { success: vec![op_del("k2", "")], ..Default::default() })],
        ..Default::default()
    };
    txn(&mut m, t);
    assert_eq!(m.size(), m.measure(), "after delete and txn");
    m.apply(&Command::LeaseRevoke { id: 7 }).response.expect("revoke");
    assert_eq!(m.size(), m.measure(), "after revoke");
    let before = m.size();
    let now = m.revision();
    compact(&mut m, now);
    assert!(m.size() < before / 2, "compaction frees the history: {} -> {}", before, m.size());
    assert_eq!(m.size(), m.measure(), "after compaction");
}

#[test]
fn a_loaded_snapshot_counts_its_size_again() {
    let mut m = Mvcc::new();
    for i in 0..20 {
        put(&mut m, &format!("k{i}"), "value");
    }
    let loaded: Mvcc = bincode::deserialize(&bincode::serialize(&m).expect("serialize")).expect("deserialize");
    assert!(loaded.size() > 0);
    assert_eq!(loaded.size(), m.size());
    assert_eq!(loaded, m);
}

#[test]
fn only_commands_that_add_data_need_space() {
    let big = PutRequest { key: b"k".to_vec(), value: vec![0; 1000], ..Default::default() };
    assert!(space_needed(&Command::Put(big.clone())) > 2000, "key-value and its event");
    assert!(space_needed(&Command::Put(PutRequest::default())) > 0, "even an empty put");
    assert!(space_needed(&Command::LeaseGrant { id: 1, ttl: 5 }) > 0);
    assert_eq!(space_needed(&Command::DeleteRange(Default::default())), 0);
    assert_eq!(space_needed(&Command::LeaseRevoke { id: 1 }), 0);
    assert_eq!(space_needed(&Command::Compact(CompactionRequest::default())), 0);
    let reads = TxnRequest { success: vec![op_range("a", "")], failure: vec![op_del("a", "")], ..Default::default() };
    assert_eq!(space_needed(&Command::Txn(reads)), 0, "a txn without puts");
    let nested =
        TxnRequest { failure: vec![op_txn(TxnRequest { success: vec![op_put("a", "b")], ..Default::default() })], ..Default::default() };
    assert!(space_needed(&Command::Txn(nested)) > 0, "a put in a nested txn of either branch");
}
