//! Transactions: compares evaluated against the state before the txn, then one branch
//! executed in order, every write at the same new revision, each read seeing the
//! writes before it. Failing requests (unknown lease, missing key with ignore_*) are
//! found before anything is written, so a txn applies whole or not at all.

use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::response_op::Response;
use raftgres_proto::etcdserverpb::{Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse};
use raftgres_proto::mvccpb::KeyValue;

use crate::keyspace::read_revision;
use crate::{header, Mvcc, MvccError, Write};

impl Mvcc {
    pub(crate) fn txn(&mut self, w: &mut Write, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        self.check_txn(req)?;
        self.run_txn(w, req)
    }

    fn branch<'a>(&self, req: &'a TxnRequest) -> (bool, &'a [RequestOp]) {
        let ok = req.compare.iter().all(|c| self.compare(c));
        (ok, if ok { &req.success } else { &req.failure })
    }

    /// Finds the errors a branch would hit, before writing anything.
    fn check_txn(&self, req: &TxnRequest) -> Result<(), MvccError> {
        let (_, ops) = self.branch(req);
        for op in ops {
            match &op.request {
                Some(Request::RequestPut(put)) => {
                    let existing = self.keyspace().current(&put.key);
                    if (put.ignore_value || put.ignore_lease) && existing.is_none() {
                        return Err(MvccError::KeyNotFound);
                    }
                    if put.key.is_empty() {
                        return Err(MvccError::KeyNotProvided);
                    }
                    if !put.ignore_lease && put.lease != 0 && !self.lease_exists(put.lease) {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                Some(Request::RequestRange(range)) => {
                    if range.key.is_empty() {
                        return Err(MvccError::KeyNotProvided);
                    }
                    read_revision(range.revision, self.revision(), self.compact_revision())?;
                }
                Some(Request::RequestTxn(nested)) => self.check_txn(nested)?,
                Some(Request::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(())
    }

    fn run_txn(&mut self, w: &mut Write, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let (succeeded, ops) = self.branch(req);
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(range)) => {
                    let current = if w.events.is_empty() { self.revision() } else { w.rev };
                    let rev = if range.revision <= 0 { current } else { range.revision };
                    let rev = read_revision(rev, current, self.compact_revision())?;
                    Some(Response::ResponseRange(self.keyspace().range(range, rev, current)))
                }
                Some(Request::RequestPut(put)) => Some(Response::ResponsePut(self.put(w, put)?)),
                Some(Request::RequestDeleteRange(del)) => Some(Response::ResponseDeleteRange(self.delete_range(w, del))),
                Some(Request::RequestTxn(nested)) => Some(Response::ResponseTxn(self.run_txn(w, nested)?)),
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse { header: None, succeeded, responses })
    }

    /// One compare; with a range_end every key in the range must pass, and an empty
    /// range compares like a missing key.
    fn compare(&self, c: &Compare) -> bool {
        let rev = self.revision();
        if c.range_end.is_empty() {
            return compare_kv(c, self.keyspace().current(&c.key));
        }
        let kvs = self.keyspace().live_in(&c.key, &c.range_end, rev);
        if kvs.is_empty() {
            return compare_kv(c, None);
        }
        kvs.into_iter().all(|kv| compare_kv(c, Some(kv)))
    }
}

fn compare_kv(c: &Compare, kv: Option<&KeyValue>) -> bool {
    let Ok(target) = CompareTarget::try_from(c.target) else { return false };
    let Ok(result) = CompareResult::try_from(c.result) else { return false };
    let ordering = match target {
        CompareTarget::Value => {
            let Some(kv) = kv else { return false };
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        _ => {
            let have = kv.map_or(0, |kv| match target {
                CompareTarget::Version => kv.version,
                CompareTarget::Create => kv.create_revision,
                CompareTarget::Mod => kv.mod_revision,
                _ => kv.lease,
            });
            let want = match c.target_union {
                Some(TargetUnion::Version(v))
                | Some(TargetUnion::CreateRevision(v))
                | Some(TargetUnion::ModRevision(v))
                | Some(TargetUnion::Lease(v)) => v,
                _ => 0,
            };
            have.cmp(&want)
        }
    };
    match result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
        CompareResult::NotEqual => ordering.is_ne(),
    }
}

/// Sets the final revision in the txn header and in every nested response header.
pub(crate) fn stamp(mut resp: TxnResponse, rev: i64) -> TxnResponse {
    resp.header = header(rev);
    for op in &mut resp.responses {
        match &mut op.response {
            Some(Response::ResponsePut(r)) => r.header = header(rev),
            Some(Response::ResponseDeleteRange(r)) => r.header = header(rev),
            Some(Response::ResponseRange(r)) => r.header = header(rev),
            Some(Response::ResponseTxn(r)) => *r = stamp(std::mem::take(r), rev),
            None => {}
        }
    }
    resp
}
