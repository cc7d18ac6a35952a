//! Stateless checks run before a command is proposed, so the log never carries a
//! request etcd's API layer would refuse outright (etcd's `v3rpc/key.go`): empty keys,
//! `ignore_*` with a value/lease, invalid sort options, empty txn ops, too many txn ops
//! (per level; a nested txn gets what its parent level left), and overlapping
//! puts/deletes in one branch (etcd's `checkIntervals`, quirks included).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Included, Unbounded};

use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};

use crate::{range, Command, MvccError, MAX_LEASE_TTL, MAX_TXN_DEPTH};

/// Request limits (etcd's `--max-txn-ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most compares, success ops or failure ops one txn level may have.
    pub max_txn_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_txn_ops: 128 }
    }
}

/// Checks a command before it is proposed. State-dependent checks (leases, revisions,
/// `ignore_*` on missing keys) happen when it is applied.
pub fn validate(cmd: &Command, limits: &Limits) -> Result<(), MvccError> {
    match cmd {
        Command::Put(p) => check_put(p),
        Command::DeleteRange(d) if d.key.is_empty() => Err(MvccError::KeyNotProvided),
        Command::Txn(t) => {
            check_txn(t, limits.max_txn_ops, 0)?;
            // After the structural checks, as etcd does (avoids quadratic work on junk).
            check_intervals(&t.success)?;
            check_intervals(&t.failure)?;
            Ok(())
        }
        Command::LeaseGrant { ttl, .. } if *ttl > MAX_LEASE_TTL => Err(MvccError::LeaseTtlTooLarge),
        _ => Ok(()),
    }
}

fn check_put(p: &PutRequest) -> Result<(), MvccError> {
    if p.key.is_empty() {
        return Err(MvccError::KeyNotProvided);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

/// etcd's `checkTxnRequest`: `max` bounds the largest of compares, success and failure;
/// nested txns get `max` minus that.
fn check_txn(t: &TxnRequest, max: usize, depth: usize) -> Result<(), MvccError> {
    if depth >= MAX_TXN_DEPTH {
        return Err(MvccError::TooManyOps);
    }
    let opc = t.compare.len().max(t.success.len()).max(t.failure.len());
    if opc > max {
        return Err(MvccError::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(MvccError::KeyNotProvided);
    }
    for op in t.success.iter().chain(&t.failure) {
        check_op(op, max - opc, depth)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max: usize, depth: usize) -> Result<(), MvccError> {
    match &op.request {
        Some(Request::RequestRange(r)) => {
            if r.key.is_empty() {
                return Err(MvccError::KeyNotProvided);
            }
            range::sort_options(r).map(|_| ())
        }
        Some(Request::RequestPut(p)) => check_put(p),
        Some(Request::RequestDeleteRange(d)) if d.key.is_empty() => Err(MvccError::KeyNotProvided),
        Some(Request::RequestDeleteRange(_)) => Ok(()),
        Some(Request::RequestTxn(t)) => check_txn(t, max, depth + 1),
        // An empty op: etcd answers "key not found".
        None => Err(MvccError::KeyNotFound),
    }
}

/// The union of the intervals deleted in a branch, as disjoint `[start, end)` spans. A
/// delete is a point when its `range_end` is empty (the span `[key, key\0)`), else
/// `[key, range_end)` compared as plain bytes — so, as in etcd's interval tree, `"\0"` is
/// not "to the end" here and a from-key delete overlaps nothing.
#[derive(Default)]
struct Deleted {
    spans: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Deleted {
    fn insert_delete(&mut self, key: &[u8], range_end: &[u8]) {
        if range_end.is_empty() {
            let mut end = key.to_vec();
            end.push(0);
            self.insert(key.to_vec(), end);
        } else {
            self.insert(key.to_vec(), range_end.to_vec());
        }
    }

    fn insert(&mut self, start: Vec<u8>, end: Vec<u8>) {
        if end <= start {
            return; // an inverted interval covers nothing
        }
        let (mut start, mut end) = (start, end);
        let before = self.spans.range::<[u8], _>((Unbounded, Included(start.as_slice()))).next_back();
        if let Some((s, e)) = before.filter(|(_, e)| **e >= start) {
            start = s.clone();
            end = end.max(e.clone());
        }
        let merged: Vec<Vec<u8>> =
            self.spans.range::<[u8], _>((Included(start.as_slice()), Included(end.as_slice()))).map(|(s, _)| s.clone()).collect();
        for s in merged {
            if let Some(e) = self.spans.remove(&s) {
                end = end.max(e);
            }
        }
        self.spans.insert(start, end);
    }

    fn extend(&mut self, other: Deleted) {
        for (s, e) in other.spans {
            self.insert(s, e);
        }
    }

    fn covers(&self, k: &[u8]) -> bool {
        self.spans.range::<[u8], _>((Unbounded, Included(k))).next_back().is_some_and(|(_, e)| k < e.as_slice())
    }
}

type Puts<'a> = BTreeSet<&'a [u8]>;

/// etcd's `checkIntervals`: the puts and deletes of a branch (nested txns included) must
/// not overlap; the two branches of a nested txn may put the same key.
fn check_intervals(ops: &[RequestOp]) -> Result<(Puts<'_>, Deleted), MvccError> {
    let mut dels = Deleted::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            dels.insert_delete(&d.key, &d.range_end);
        }
    }
    let mut puts: Puts<'_> = BTreeSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for &k in &puts_then {
            if puts.contains(k) || dels.covers(k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k);
        }
        for &k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || dels.covers(k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else { continue };
        if puts.contains(p.key.as_slice()) || dels.covers(&p.key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(&p.key);
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_spans_merge_and_cover_like_etcds_interval_tree() {
        let mut d = Deleted::default();
        d.insert_delete(b"k", b"");
        d.insert_delete(b"c", b"f");
        d.insert_delete(b"e", b"h");
        d.insert_delete(b"a", b"b");
        d.insert_delete(b"b", b"c");
        d.insert_delete(b"z", b"y");
        d.insert_delete(b"q", b"\0");
        assert_eq!(d.spans.len(), 2, "{:?}", d.spans);
        for k in [&b"a"[..], b"b", b"bzz", b"c", b"g", b"gzzz", b"k"] {
            assert!(d.covers(k), "{k:?}");
        }
        for k in [&b"h"[..], b"k\0", b"ka", b"j", b"q", b"r", b"z", b""] {
            assert!(!d.covers(k), "{k:?}");
        }
        let mut wide = Deleted::default();
        wide.insert_delete(b"m", b"n");
        wide.insert_delete(b"a", b"zz");
        assert_eq!(wide.spans.len(), 1);
        assert!(wide.covers(b"y"));
    }
}
