//! Helpers shared by the data-model tests: short builders for requests and accessors
//! for responses.
#![allow(dead_code)]

use raftgres_mvcc::{Applied, Command, CommandResponse, Mvcc, MvccError};
use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::response_op::Response;
use raftgres_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest,
    TxnResponse,
};
use raftgres_proto::mvccpb::KeyValue;

pub fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest { key: k.into(), value: v.into(), ..Default::default() }
}

pub fn del_req(k: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest { key: k.into(), range_end: end.into(), prev_kv: true }
}

pub fn range_req(k: &str, end: &str) -> RangeRequest {
    RangeRequest { key: k.into(), range_end: end.into(), ..Default::default() }
}

/// Puts `k = v` and returns the new store revision.
pub fn put(m: &mut Mvcc, k: &str, v: &str) -> i64 {
    put_resp(m, put_req(k, v));
    m.revision()
}

pub fn put_resp(m: &mut Mvcc, req: PutRequest) -> PutResponse {
    match m.apply(&Command::Put(req)).response {
        Ok(CommandResponse::Put(r)) => r,
        other => panic!("put: {other:?}"),
    }
}

pub fn del(m: &mut Mvcc, k: &str, end: &str) -> DeleteRangeResponse {
    match m.apply(&Command::DeleteRange(del_req(k, end))).response {
        Ok(CommandResponse::DeleteRange(r)) => r,
        other => panic!("delete: {other:?}"),
    }
}

pub fn txn(m: &mut Mvcc, t: TxnRequest) -> (TxnResponse, Applied) {
    let applied = m.apply(&Command::Txn(t));
    match &applied.response {
        Ok(CommandResponse::Txn(r)) => (r.clone(), applied),
        other => panic!("txn: {other:?}"),
    }
}

pub fn txn_err(m: &mut Mvcc, t: TxnRequest) -> MvccError {
    match m.apply(&Command::Txn(t)).response {
        Err(e) => e,
        other => panic!("txn should fail: {other:?}"),
    }
}

pub fn get(m: &Mvcc, k: &str) -> Option<KeyValue> {
    m.range(&range_req(k, "")).expect("range").kvs.into_iter().next()
}

pub fn get_at(m: &Mvcc, k: &str, rev: i64) -> Option<KeyValue> {
    m.range(&RangeRequest { revision: rev, ..range_req(k, "") }).expect("range").kvs.into_iter().next()
}

pub fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

pub fn cmp(key: &str, target: CompareTarget, result: CompareResult, union: TargetUnion) -> Compare {
    Compare { key: key.into(), target: target as i32, result: result as i32, target_union: Some(union), ..Default::default() }
}

pub fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestPut(put_req(k, v))) }
}

pub fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestDeleteRange(del_req(k, end))) }
}

pub fn op_range(k: &str, end: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestRange(range_req(k, end))) }
}

pub fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp { request: Some(Request::RequestTxn(t)) }
}

pub fn resp_range(r: &TxnResponse, i: usize) -> &RangeResponse {
    match r.responses.get(i).and_then(|o| o.response.as_ref()) {
        Some(Response::ResponseRange(r)) => r,
        other => panic!("response {i} is not a range: {other:?}"),
    }
}

pub fn resp_put(r: &TxnResponse, i: usize) -> &PutResponse {
    match r.responses.get(i).and_then(|o| o.response.as_ref()) {
        Some(Response::ResponsePut(r)) => r,
        other => panic!("response {i} is not a put: {other:?}"),
    }
}

pub fn resp_del(r: &TxnResponse, i: usize) -> &DeleteRangeResponse {
    match r.responses.get(i).and_then(|o| o.response.as_ref()) {
        Some(Response::ResponseDeleteRange(r)) => r,
        other => panic!("response {i} is not a delete: {other:?}"),
    }
}

pub fn resp_txn(r: &TxnResponse, i: usize) -> &TxnResponse {
    match r.responses.get(i).and_then(|o| o.response.as_ref()) {
        Some(Response::ResponseTxn(r)) => r,
        other => panic!("response {i} is not a txn: {other:?}"),
    }
}

pub fn header_rev(h: &Option<raftgres_proto::etcdserverpb::ResponseHeader>) -> i64 {
    h.as_ref().map_or(-1, |h| h.revision)
}
