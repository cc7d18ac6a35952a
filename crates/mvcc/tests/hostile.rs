//! Hostile and unvalidated input: extreme numbers, unknown enum values, deep nesting,
//! overlapping writes that skipped `validate`, and a seeded random walk checking that
//! nothing panics, failures change nothing, and replicas stay identical.

mod common;

use common::*;
use raftgres_mvcc::{validate, Command, CommandResponse, Limits, Mvcc, MvccError};
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::{CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use raftgres_proto::mvccpb::event::EventType;

#[test]
fn extreme_range_requests() {
    let mut m = Mvcc::new();
    put(&mut m, "a", "1");
    put(&mut m, "b", "2");
    let base = range_req("\0", "\0");
    let odd = [
        RangeRequest { limit: i64::MAX, ..base.clone() },
        RangeRequest { limit: i64::MIN, ..base.clone() },
        RangeRequest { revision: i64::MIN, ..base.clone() },
        RangeRequest { min_mod_revision: i64::MAX, max_mod_revision: i64::MIN, ..base.clone() },
        RangeRequest { min_create_revision: i64::MIN, max_create_revision: i64::MAX, ..base.clone() },
        RangeRequest { keys_only: true, count_only: true, sort_order: 2, sort_target: 4, limit: 1, ..base.clone() },
        RangeRequest { key: vec![0xff; 4096], range_end: vec![0], ..base.clone() },
        RangeRequest { key: vec![0xff], range_end: vec![0x00, 0x01], ..base.clone() },
    ];
    for req in odd {
        let r = m.range(&req).expect("odd but valid");
        assert!(r.kvs.len() <= 2 && r.count <= 2);
    }
    for (req, err) in [
        (RangeRequest { revision: i64::MAX, ..base.clone() }, MvccError::FutureRevision),
        (RangeRequest { sort_order: 99, ..base.clone() }, MvccError::InvalidSortOption),
        (RangeRequest { sort_target: i32::MIN, ..base.clone() }, MvccError::InvalidSortOption),
        (RangeRequest { key: vec![], ..base }, MvccError::KeyNotProvided),
    ] {
        assert_eq!(m.range(&req).expect_err("refused"), err);
    }
}

#[test]
fn extreme_commands() {
    let mut m = Mvcc::new();
    put(&mut m, "a", "1");
    for (cmd, err) in [
        (Command::Compact(CompactionRequest { revision: i64::MAX, physical: false }), MvccError::FutureRevision),
        (Command::Compact(CompactionRequest { revision: i64::MIN, physical: false }), MvccError::Compacted),
        (Command::LeaseRevoke { id: i64::MIN }, MvccError::LeaseNotFound),
        (Command::LeaseGrant { id: 1, ttl: i64::MAX }, MvccError::LeaseTtlTooLarge),
        (Command::Put(PutRequest { lease: i64::MIN, ..put_req("a", "x") }), MvccError::LeaseNotFound),
    ] {
        assert_eq!(m.apply(&cmd).response.expect_err("refused"), err, "{cmd:?}");
    }
    m.apply(&Command::LeaseGrant { id: i64::MAX, ttl: i64::MIN }).response.expect("odd but valid lease");
    m.apply(&Command::LeaseGrant { id: i64::MIN, ttl: 0 }).response.expect("odd but valid lease");
    put_resp(&mut m, PutRequest { lease: i64::MIN, ..put_req("a", "x") });
    assert_eq!(m.lease(i64::MIN).expect("lease").keys, vec![b"a".to_vec()]);
    assert_eq!(m.events_between(i64::MIN, i64::MAX).expect_err("below 0"), MvccError::Compacted);
    assert!(m.events_between(0, i64::MAX).is_ok());
    assert!(m.events_between(i64::MAX, i64::MIN).expect("empty").is_empty());
    let weird = Compare { key: "a".into(), target: 42, result: 42, range_end: vec![0], ..Default::default() };
    let (resp, _) = txn(&mut m, TxnRequest { compare: vec![weird], failure: vec![op_range("a", "")], ..Default::default() });
    assert!(!resp.succeeded);
}

fn nest(depth: usize) -> TxnRequest {
    let mut t = TxnRequest { success: vec![op_put("leaf", "v")], ..Default::default() };
    for _ in 0..depth {
        t = TxnRequest { success: vec![op_txn(t)], ..Default::default() };
    }
    t
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let mut m = Mvcc::new();
    let unlimited = Limits { max_txn_ops: usize::MAX };
    // nest(n) has n + 1 levels.
    for depth in [128, 1000] {
        let cmd = Command::Txn(nest(depth));
        assert_eq!(validate(&cmd, &unlimited), Err(MvccError::TooManyOps), "depth {depth}");
        assert_eq!(m.apply(&cmd).response.expect_err("too deep"), MvccError::TooManyOps);
    }
    assert_eq!(m.revision(), 1);
    let cmd = Command::Txn(nest(127));
    assert_eq!(validate(&cmd, &unlimited), Ok(()));
    assert_eq!(validate(&cmd, &Limits::default()), Ok(()));
    assert_eq!(m.apply(&cmd).revision, 2);
}

#[test]
fn unvalidated_overlapping_txns_stay_consistent() {
    let mut m = Mvcc::new();
    m.apply(&Command::LeaseGrant { id: 1, ttl: 10 }).response.expect("grant");
    put_resp(&mut m, PutRequest { lease: 1, ..put_req("k", "old") }); // 2
    let keep_value =
        RequestOp { request: Some(Request::RequestPut(PutRequest { ignore_value: true, ignore_lease: true, ..put_req("k", "") })) };
    let t = TxnRequest {
        success: vec![op_del("k", ""), keep_value, op_put("n", "1"), op_put("n", "2"), op_del("n", ""), op_put("k", "again")],
        ..Default::default()
    };
    assert_eq!(validate(&Command::Txn(t.clone()), &Limits::default()), Err(MvccError::DuplicateKey));
    let (_, applied) = txn(&mut m, t);
    assert_eq!(applied.revision, 3);
    assert_eq!(applied.events.len(), 6);
    assert!(applied.events.iter().all(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision == 3)));
    // Watchers' prev_kv is the state before the txn, never a write of the txn itself.
    let types: Vec<bool> = applied.events.iter().map(|e| e.r#type == EventType::Put as i32).collect();
    assert_eq!(types, [false, true, true, true, false, true]);
    assert_eq!(applied.events[0].prev_kv.as_ref().map(|kv| kv.value.as_slice()), Some(&b"old"[..]));
    assert!(applied.events[3].prev_kv.is_none() && applied.events[4].prev_kv.is_none());
    let kv = get(&m, "k").expect("k");
    assert_eq!((kv.value.as_slice(), kv.version, kv.create_revision, kv.lease), (&b"again"[..], 2, 3, 0));
    assert!(get(&m, "n").is_none());
    assert!(m.lease(1).expect("lease").keys.is_empty());
    assert!(get_at(&m, "k", 2).is_some_and(|kv| kv.value == b"old"));
}

/// A tiny deterministic generator (xorshift64*), so the walk needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn num(&mut self) -> i64 {
        [0, 1, 2, 3, 5, -1, i64::MAX, i64::MIN][self.below(8) as usize]
    }
    fn key(&mut self) -> Vec<u8> {
        match self.below(10) {
            0 => vec![],
            1 => vec![0],
            _ => vec![b'a' + self.below(6) as u8],
        }
    }
    fn end(&mut self) -> Vec<u8> {
        match self.below(4) {
            0 => vec![],
            1 => vec![0],
            _ => vec![b'a' + self.below(7) as u8],
        }
    }
    fn op(&mut self, depth: u32) -> RequestOp {
        let request = match self.below(if depth < 3 { 6 } else { 5 }) {
            0 => None,
            1 => Some(Request::RequestRange(self.range())),
            2 | 3 => Some(Request::RequestPut(self.put())),
            4 => Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: self.key(),
                range_end: self.end(),
                prev_kv: self.below(2) == 0,
            })),
            _ => Some(Request::RequestTxn(self.txn(depth + 1))),
        };
        RequestOp { request }
    }
    fn range(&mut self) -> RangeRequest {
        RangeRequest {
            key: self.key(),
            range_end: self.end(),
            limit: self.num(),
            revision: self.num(),
            sort_order: self.below(4) as i32,
            sort_target: self.below(6) as i32,
            keys_only: self.below(2) == 0,
            count_only: self.below(4) == 0,
            min_mod_revision: self.num(),
            max_create_revision: self.num(),
            ..Default::default()
        }
    }
    fn put(&mut self) -> PutRequest {
        PutRequest {
            key: self.key(),
            value: vec![b'v'; self.below(3) as usize],
            lease: [0, 0, 1, 2, 3][self.below(5) as usize],
            prev_kv: self.below(2) == 0,
            ignore_value: self.below(5) == 0,
            ignore_lease: self.below(5) == 0,
        }
    }
    fn txn(&mut self, depth: u32) -> TxnRequest {
        let compare = (0..self.below(3))
            .map(|_| Compare {
                key: self.key(),
                range_end: self.end(),
                target: self.below(6) as i32,
                result: self.below(5) as i32,
                target_union: None,
            })
            .collect();
        let success = (0..self.below(4)).map(|_| self.op(depth)).collect();
        let failure = (0..self.below(3)).map(|_| self.op(depth)).collect();
        TxnRequest { compare, success, failure }
    }
    fn command(&mut self, rev: i64) -> Command {
        match self.below(10) {
            0..=2 => Command::Put(self.put()),
            3 => Command::DeleteRange(DeleteRangeRequest { key: self.key(), range_end: self.end(), prev_kv: true }),
            4..=6 => Command::Txn(self.txn(0)),
            7 => Command::Compact(CompactionRequest { revision: rev - self.below(4) as i64, physical: false }),
            8 => Command::LeaseGrant { id: self.below(4) as i64, ttl: self.num() },
            _ => Command::LeaseRevoke { id: self.below(4) as i64 },
        }
    }
}

fn check_invariants(m: &Mvcc) {
    let all = m.range(&range_req("\0", "\0")).expect("all keys");
    assert_eq!(all.kvs.len(), m.key_count());
    for kv in &all.kvs {
        assert!(kv.version >= 1 && kv.create_revision <= kv.mod_revision && kv.mod_revision <= m.revision());
        if kv.lease != 0 {
            assert!(m.lease(kv.lease).is_some_and(|l| l.keys.contains(&kv.key)), "key on a live lease");
        }
    }
    for lease in m.leases() {
        for key in &lease.keys {
            assert!(all.kvs.iter().any(|kv| &kv.key == key && kv.lease == lease.id), "lease lists only its keys");
        }
    }
}

#[test]
fn random_walk_never_panics_and_replicas_agree() {
    let (mut writes, mut refused, mut compactions) = (0, 0, 0);
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (mut a, mut b) = (Mvcc::new(), Mvcc::new());
        for step in 0..300 {
            let cmd = rng.command(a.revision());
            let _ = validate(&cmd, &Limits::default());
            let before = a.clone();
            let applied = a.apply(&cmd);
            assert_eq!(b.apply(&cmd), applied, "seed {seed} step {step}: replicas differ");
            assert!(applied.events.iter().all(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision == applied.revision)));
            match &applied.response {
                Err(_) => {
                    refused += 1;
                    assert_eq!(a, before, "seed {seed} step {step}: a failure changed state");
                }
                Ok(CommandResponse::Compact(_)) => compactions += 1,
                Ok(CommandResponse::Txn(_) | CommandResponse::Put(_) | CommandResponse::DeleteRange(_)) => {
                    let bumped = applied.revision == before.revision() + 1;
                    assert_eq!(bumped, !applied.events.is_empty());
                    writes += usize::from(bumped);
                }
                Ok(_) => {}
            }
            let _ = a.range(&rng.range());
            let _ = a.events_between(rng.num(), rng.num());
            check_invariants(&a);
        }
        let back: Mvcc = bincode::deserialize(&bincode::serialize(&a).expect("serialize")).expect("deserialize");
        assert_eq!(back, b);
    }
    assert!(writes > 500 && refused > 500 && compactions > 50, "the walk covers a mix: {writes} {refused} {compactions}");
}
