//! Leases: grant, attach, move between leases, detach by put or delete, ignore_lease,
//! and revoke deleting every attached key in one revision.

mod common;

use common::*;
use raftgres_mvcc::{Command, CommandResponse, LeaseInfo, Mvcc, MvccError, MAX_LEASE_TTL};
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use raftgres_proto::mvccpb::event::EventType;

fn grant(m: &mut Mvcc, id: i64, ttl: i64) -> Result<CommandResponse, MvccError> {
    m.apply(&Command::LeaseGrant { id, ttl }).response
}

fn put_lease(m: &mut Mvcc, k: &str, lease: i64) -> Result<CommandResponse, MvccError> {
    m.apply(&Command::Put(PutRequest { lease, ..put_req(k, "v") })).response
}

fn lease_keys(m: &Mvcc, id: i64) -> Vec<String> {
    m.lease(id).expect("lease").keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect()
}

#[test]
fn grant_rules() {
    let mut m = Mvcc::new();
    let Ok(CommandResponse::LeaseGrant(r)) = grant(&mut m, 7, 10) else { panic!("grant") };
    assert_eq!((r.id, r.ttl, header_rev(&r.header), r.error.as_str()), (7, 10, 1, ""));
    assert_eq!(m.revision(), 1, "a grant writes no key");
    assert_eq!(grant(&mut m, 7, 10).expect_err("dup"), MvccError::LeaseExists);
    assert_eq!(grant(&mut m, 0, 10).expect_err("id 0"), MvccError::LeaseNotFound);
    assert_eq!(grant(&mut m, 8, MAX_LEASE_TTL + 1).expect_err("ttl"), MvccError::LeaseTtlTooLarge);
    grant(&mut m, 8, MAX_LEASE_TTL).expect("max ttl");
    grant(&mut m, -3, 5).expect("etcd accepts any non-zero id");
    grant(&mut m, 2, 1).expect("the caller enforces the minimum TTL");
    let ids: Vec<i64> = m.leases().iter().map(|l| l.id).collect();
    assert_eq!(ids, [-3, 2, 7, 8]);
    assert_eq!(m.lease(7), Some(LeaseInfo { id: 7, ttl: 10, keys: vec![] }));
    assert!(m.lease(9).is_none());
}

#[test]
fn attach_move_and_detach() {
    let mut m = Mvcc::new();
    grant(&mut m, 1, 10).expect("grant");
    grant(&mut m, 2, 10).expect("grant");
    assert_eq!(put_lease(&mut m, "a", 3).expect_err("unknown"), MvccError::LeaseNotFound);
    put_lease(&mut m, "a", 1).expect("attach");
    put_lease(&mut m, "b", 1).expect("attach");
    put_lease(&mut m, "c", 1).expect("attach");
    assert_eq!(lease_keys(&m, 1), ["a", "b", "c"]);
    put_lease(&mut m, "b", 2).expect("move");
    assert_eq!((lease_keys(&m, 1), lease_keys(&m, 2)), (vec!["a".to_string(), "c".to_string()], vec!["b".to_string()]));
    assert_eq!(get(&m, "b").expect("b").lease, 2);
    put_lease(&mut m, "c", 0).expect("detach");
    assert_eq!(lease_keys(&m, 1), ["a"]);
    assert_eq!(get(&m, "c").expect("c").lease, 0);
    put_lease(&mut m, "a", 1).expect("same lease");
    assert_eq!(lease_keys(&m, 1), ["a"]);
    del(&mut m, "a", "");
    assert!(lease_keys(&m, 1).is_empty(), "a delete detaches");
    // Re-creating the key does not bring the old lease back.
    put(&mut m, "a", "again");
    assert_eq!(get(&m, "a").expect("a").lease, 0);
}

#[test]
fn ignore_lease_and_ignore_value() {
    let mut m = Mvcc::new();
    grant(&mut m, 1, 10).expect("grant");
    put_lease(&mut m, "k", 1).expect("attach");
    let keep_lease = PutRequest { ignore_lease: true, ..put_req("k", "new") };
    put_resp(&mut m, keep_lease);
    let kv = get(&m, "k").expect("k");
    assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"new"[..], 1, 2));
    let keep_value = PutRequest { ignore_value: true, lease: 0, ..put_req("k", "") };
    put_resp(&mut m, keep_value);
    let kv = get(&m, "k").expect("k");
    assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"new"[..], 0, 3));
    assert!(lease_keys(&m, 1).is_empty());
    for missing in [PutRequest { ignore_value: true, ..put_req("nope", "") }, PutRequest { ignore_lease: true, ..put_req("nope", "v") }] {
        assert_eq!(m.apply(&Command::Put(missing)).response.expect_err("missing"), MvccError::KeyNotFound);
    }
    // etcd checks the lease before the key.
    let both = PutRequest { ignore_value: true, lease: 42, ..put_req("nope", "") };
    assert_eq!(m.apply(&Command::Put(both)).response.expect_err("lease first"), MvccError::LeaseNotFound);
}

#[test]
fn revoke_deletes_every_key_in_one_revision() {
    let mut m = Mvcc::new();
    grant(&mut m, 5, 10).expect("grant");
    put_lease(&mut m, "z", 5).expect("attach"); // 2
    put_lease(&mut m, "a", 5).expect("attach"); // 3
    put(&mut m, "free", "v"); // 4
    let txn_put = TxnRequest { success: vec![op_put("m", "v")], ..Default::default() };
    txn(&mut m, txn_put);
    put_lease(&mut m, "m", 5).expect("attach"); // 6
    let a = m.apply(&Command::LeaseRevoke { id: 5 });
    assert!(matches!(a.response, Ok(CommandResponse::LeaseRevoke(ref r)) if header_rev(&r.header) == 7));
    assert_eq!(a.revision, 7);
    let deleted: Vec<&[u8]> = a.events.iter().map(|e| e.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice())).collect();
    assert_eq!(deleted, [&b"a"[..], b"m", b"z"], "sorted by key");
    assert!(a.events.iter().all(|e| e.r#type == EventType::Delete as i32 && e.prev_kv.as_ref().is_some_and(|p| p.lease == 5)));
    assert!(a.events.iter().all(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision == 7)));
    assert!(m.lease(5).is_none());
    assert_eq!(m.key_count(), 1);
    assert_eq!(m.events_between(7, 7).expect("history"), a.events);
    assert_eq!(m.apply(&Command::LeaseRevoke { id: 5 }).response.expect_err("gone"), MvccError::LeaseNotFound);
    // Revoking an empty lease removes it without a new revision.
    grant(&mut m, 6, 10).expect("grant");
    let a = m.apply(&Command::LeaseRevoke { id: 6 });
    assert!(a.response.is_ok() && a.events.is_empty());
    assert_eq!(a.revision, 7);
    assert!(m.leases().is_empty());
}

#[test]
fn lease_puts_inside_txns() {
    let mut m = Mvcc::new();
    grant(&mut m, 1, 10).expect("grant");
    let t = TxnRequest {
        success: vec![RequestOp { request: Some(Request::RequestPut(PutRequest { lease: 1, ..put_req("a", "v") })) }, op_put("b", "v")],
        ..Default::default()
    };
    txn(&mut m, t);
    assert_eq!(lease_keys(&m, 1), ["a"]);
    let bad = TxnRequest {
        success: vec![RequestOp { request: Some(Request::RequestPut(PutRequest { lease: 2, ..put_req("c", "v") })) }],
        ..Default::default()
    };
    assert_eq!(txn_err(&mut m, bad), MvccError::LeaseNotFound);
}
