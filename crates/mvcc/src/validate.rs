//! Stateless checks run before a command is proposed, so the log never carries a
//! request etcd would refuse outright.

use std::collections::BTreeSet;

use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::{RequestOp, TxnRequest};

use crate::keyspace::in_interval;
use crate::{Command, MvccError};

/// etcd's largest lease TTL (seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Request limits (etcd's `--max-txn-ops`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_txn_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_txn_ops: 128 }
    }
}

pub fn validate(cmd: &Command, limits: &Limits) -> Result<(), MvccError> {
    match cmd {
        Command::Put(p) if p.key.is_empty() => Err(MvccError::KeyNotProvided),
        Command::DeleteRange(d) if d.key.is_empty() => Err(MvccError::KeyNotProvided),
        Command::Txn(t) => validate_txn(t, limits),
        Command::LeaseGrant { ttl, .. } if *ttl > MAX_LEASE_TTL => Err(MvccError::LeaseTtlTooLarge),
        _ => Ok(()),
    }
}

fn validate_txn(t: &TxnRequest, limits: &Limits) -> Result<(), MvccError> {
    let max = limits.max_txn_ops;
    if t.compare.len() > max || t.success.len() > max || t.failure.len() > max {
        return Err(MvccError::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(MvccError::KeyNotProvided);
        }
    }
    for branch in [&t.success, &t.failure] {
        let mut writes = Writes::default();
        writes.collect(branch, limits)?;
        writes.check()?;
    }
    Ok(())
}

/// The puts and deletes of one branch, nested txns included.
#[derive(Default)]
struct Writes {
    puts: Vec<Vec<u8>>,
    deletes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Writes {
    fn collect(&mut self, ops: &[RequestOp], limits: &Limits) -> Result<(), MvccError> {
        for op in ops {
            match &op.request {
                Some(Request::RequestPut(p)) => {
                    if p.key.is_empty() {
                        return Err(MvccError::KeyNotProvided);
                    }
                    self.puts.push(p.key.clone());
                }
                Some(Request::RequestDeleteRange(d)) => {
                    if d.key.is_empty() {
                        return Err(MvccError::KeyNotProvided);
                    }
                    self.deletes.push((d.key.clone(), d.range_end.clone()));
                }
                Some(Request::RequestRange(r)) if r.key.is_empty() => return Err(MvccError::KeyNotProvided),
                Some(Request::RequestTxn(nested)) => {
                    validate_txn(nested, limits)?;
                    // Only one nested branch runs: each is checked against the outer
                    // writes, not against each other.
                    let mut union: BTreeSet<Vec<u8>> = BTreeSet::new();
                    for branch in [&nested.success, &nested.failure] {
                        let mut w = Writes::default();
                        w.collect(branch, limits)?;
                        union.extend(w.puts);
                        self.deletes.extend(w.deletes);
                    }
                    self.puts.extend(union);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), MvccError> {
        let mut seen = BTreeSet::new();
        for key in &self.puts {
            if !seen.insert(key) {
                return Err(MvccError::DuplicateKey);
            }
            if self.deletes.iter().any(|(start, end)| in_interval(key, start, end)) {
                return Err(MvccError::DuplicateKey);
            }
        }
        Ok(())
    }
}
