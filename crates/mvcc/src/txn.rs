//! Transactions, as etcd's applier runs them:
//!
//! 1. every compare — nested txns' included — is evaluated against the state before
//!    the txn, which fixes the branch each level takes (etcd's `compareToPath`);
//! 2. the chosen ops are checked, puts first (missing key under `ignore_*`, unknown
//!    lease) then ranges (revision bounds, sort options), so a failing txn writes nothing;
//! 3. the ops run in order, every write at the same new revision, each read seeing the
//!    writes before it.
//!
//! A txn whose ops (nested ones included, in both branches) are all ranges writes
//! nothing: [`Mvcc::read_txn`] answers it from the current state, off the log, as etcd
//! serves read-only txns.
//!
//! Compares with an unknown target or result are false (etcd would treat an unknown
//! result as true; failing closed is safer for locks and elections).

use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::response_op::Response;
use raftgres_proto::etcdserverpb::{Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse};
use raftgres_proto::mvccpb::KeyValue;

use crate::write::Write;
use crate::{range, Mvcc, MvccError, MAX_TXN_DEPTH};

/// The branch one txn level takes, and for each op of that branch the path of its
/// nested txn (None for other ops).
struct Path {
    succeeded: bool,
    ops: Vec<Option<Path>>,
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// Whether every op of both branches, nested txns included, only reads.
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) | None => true,
        Some(Request::RequestTxn(nested)) => is_read_only(nested),
        Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
    })
}

/// Whether every range of a read-only txn asked for a serializable read.
pub fn is_serializable(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).all(|op| match &op.request {
        Some(Request::RequestRange(r)) => r.serializable,
        Some(Request::RequestTxn(nested)) => is_serializable(nested),
        _ => true,
    })
}

impl Mvcc {
    /// Runs `req` against the current state when it only reads (see [`is_read_only`]),
    /// with the current revision in the header; `None` for a txn that writes (it must
    /// go through the log).
    pub fn read_txn(&self, req: &TxnRequest) -> Option<Result<TxnResponse, MvccError>> {
        if !is_read_only(req) {
            return None;
        }
        let answer = self.path(req, 0).and_then(|path| {
            self.check_reads(req, &path)?;
            Ok(TxnResponse { header: crate::header(self.revision), ..self.reads(req, &path) })
        });
        Some(answer)
    }

    /// The answers of a read-only txn's chosen ops.
    fn reads(&self, req: &TxnRequest, path: &Path) -> TxnResponse {
        let responses = branch(req, path.succeeded)
            .iter()
            .zip(&path.ops)
            .map(|(op, sub)| ResponseOp {
                response: match (&op.request, sub) {
                    (Some(Request::RequestRange(r)), _) => Some(self.range_op(r, self.revision)),
                    (Some(Request::RequestTxn(nested)), Some(sub)) => Some(Response::ResponseTxn(self.reads(nested, sub))),
                    _ => None,
                },
            })
            .collect();
        TxnResponse { header: Some(ResponseHeader::default()), succeeded: path.succeeded, responses }
    }

    /// One range op of a txn, at the revision it asked for or `current`.
    fn range_op(&self, r: &raftgres_proto::etcdserverpb::RangeRequest, current: i64) -> Response {
        let rev = if r.revision > 0 { r.revision } else { current };
        Response::ResponseRange(range::run(&self.keys, r, rev, current))
    }

    pub(crate) fn txn(&mut self, w: &mut Write, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let path = self.path(req, 0)?;
        self.check_writes(req, &path)?;
        self.check_reads(req, &path)?;
        Ok(self.run(w, req, &path))
    }

    fn path(&self, req: &TxnRequest, depth: usize) -> Result<Path, MvccError> {
        if depth >= MAX_TXN_DEPTH {
            return Err(MvccError::TooManyOps);
        }
        let succeeded = req.compare.iter().all(|c| self.compare(c));
        let ops = branch(req, succeeded)
            .iter()
            .map(|op| match &op.request {
                Some(Request::RequestTxn(nested)) => self.path(nested, depth + 1).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        Ok(Path { succeeded, ops })
    }

    /// The checks etcd's `checkPut` makes, plus empty keys (normally refused by `validate`).
    fn check_writes(&self, req: &TxnRequest, path: &Path) -> Result<(), MvccError> {
        for (op, sub) in branch(req, path.succeeded).iter().zip(&path.ops) {
            match (&op.request, sub) {
                (Some(Request::RequestTxn(nested)), Some(sub)) => self.check_writes(nested, sub)?,
                (Some(Request::RequestPut(put)), _) => {
                    if put.key.is_empty() {
                        return Err(MvccError::KeyNotProvided);
                    }
                    if (put.ignore_value || put.ignore_lease) && self.keys.current(&put.key).is_none() {
                        return Err(MvccError::KeyNotFound);
                    }
                    if put.lease != 0 && !self.leases.contains_key(&put.lease) {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                (Some(Request::RequestDeleteRange(del)), _) if del.key.is_empty() => {
                    return Err(MvccError::KeyNotProvided);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The checks etcd's `checkRange` makes, against the revision before the txn.
    fn check_reads(&self, req: &TxnRequest, path: &Path) -> Result<(), MvccError> {
        for (op, sub) in branch(req, path.succeeded).iter().zip(&path.ops) {
            match (&op.request, sub) {
                (Some(Request::RequestTxn(nested)), Some(sub)) => self.check_reads(nested, sub)?,
                (Some(Request::RequestRange(r)), _) => {
                    range::check(r, self.revision, self.compact_revision)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs checked ops. Headers of inner answers are what etcd puts there: a put has the
    /// new revision, a range or delete the revision current when it ran, and a nested
    /// txn an empty header.
    fn run(&mut self, w: &mut Write, req: &TxnRequest, path: &Path) -> TxnResponse {
        let mut responses = Vec::with_capacity(path.ops.len());
        for (op, sub) in branch(req, path.succeeded).iter().zip(&path.ops) {
            let response = match (&op.request, sub) {
                (Some(Request::RequestRange(r)), _) => Some(self.range_op(r, w.read_rev())),
                (Some(Request::RequestPut(put)), _) => Some(Response::ResponsePut(self.put(w, put))),
                (Some(Request::RequestDeleteRange(del)), _) => Some(Response::ResponseDeleteRange(self.delete_range(w, del))),
                (Some(Request::RequestTxn(nested)), Some(sub)) => Some(Response::ResponseTxn(self.run(w, nested, sub))),
                (Some(Request::RequestTxn(_)), None) => Some(Response::ResponseTxn(TxnResponse::default())),
                (None, _) => None,
            };
            responses.push(ResponseOp { response });
        }
        TxnResponse { header: Some(ResponseHeader::default()), succeeded: path.succeeded, responses }
    }

    /// One compare against the current state. With a range_end every live key of the
    /// range must pass; an empty range compares like a missing key.
    fn compare(&self, c: &Compare) -> bool {
        if c.range_end.is_empty() {
            return compare_kv(c, self.keys.current(&c.key));
        }
        let kvs = self.keys.current_in(&c.key, &c.range_end);
        if kvs.is_empty() {
            return compare_kv(c, None);
        }
        kvs.into_iter().all(|kv| compare_kv(c, Some(kv)))
    }
}

/// etcd's `compareKV`: a missing key is all zeros, except that a VALUE compare on it is
/// always false; a target union of another kind compares against zero / empty.
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
        CompareTarget::Version => {
            let want = match c.target_union {
                Some(TargetUnion::Version(v)) => v,
                _ => 0,
            };
            kv.map_or(0, |kv| kv.version).cmp(&want)
        }
        CompareTarget::Create => {
            let want = match c.target_union {
                Some(TargetUnion::CreateRevision(v)) => v,
                _ => 0,
            };
            kv.map_or(0, |kv| kv.create_revision).cmp(&want)
        }
        CompareTarget::Mod => {
            let want = match c.target_union {
                Some(TargetUnion::ModRevision(v)) => v,
                _ => 0,
            };
            kv.map_or(0, |kv| kv.mod_revision).cmp(&want)
        }
        CompareTarget::Lease => {
            let want = match c.target_union {
                Some(TargetUnion::Lease(v)) => v,
                _ => 0,
            };
            kv.map_or(0, |kv| kv.lease).cmp(&want)
        }
    };
    match result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
        CompareResult::NotEqual => ordering.is_ne(),
    }
}
