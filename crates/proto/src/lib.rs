//! Wire types of raftgres, generated at build time from `proto/` (no logic lives here
//! but etcd's one rule for prefix ranges, [`prefix_end`], which every client of the API needs):
//!
//! * the etcd v3 API — `etcdserverpb` (KV, Watch, Lease, Cluster, Maintenance, Auth),
//!   `mvccpb`, `authpb`, `v3lockpb` and `v3electionpb` — with etcd's package names,
//!   message names and field numbers, so etcdctl and etcd client libraries talk to
//!   raftgres unchanged;
//! * the peer protocol between raftgres nodes (`peer`, proto package `raftgrespb`).
//!
//! Every type in `etcdserverpb`, `mvccpb` and `authpb` (oneof enums included) also
//! derives serde, so requests and data can travel in the Raft log.
//!
//! Every message implements `prost::Name`, and [`FILE_DESCRIPTOR_SET`] describes them
//! all, for code that handles messages by reflection (the JSON gateway).
//!
//! The modules are siblings at the crate root because prost refers across packages
//! with `super::mvccpb::KeyValue` and the like.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// The raftgres peer protocol (proto package `raftgrespb`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod peer {
    tonic::include_proto!("raftgrespb");
}

/// The encoded `FileDescriptorSet` of every proto file above.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));

/// etcd's `GetPrefixRangeEnd`: the smallest key greater than every key starting with
/// `prefix` (the last byte below 0xff incremented, the rest dropped); `"\0"` (all keys)
/// when there is none (empty prefix, or only 0xff bytes).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|b| *b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::etcdserverpb::{compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchResponse};
    use super::mvccpb::Event;

    #[test]
    fn range_request_uses_etcds_field_numbers() {
        let req = RangeRequest { key: b"a".to_vec(), range_end: b"b".to_vec(), limit: 5, serializable: true, ..Default::default() };
        // key=1 (0x0a), range_end=2 (0x12), limit=3 (0x18), serializable=7 (0x38)
        assert_eq!(req.encode_to_vec(), vec![0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 5, 0x38, 1]);
    }

    #[test]
    fn sparse_field_numbers_match_etcd() {
        // Compare.range_end is field 64, length-delimited: tag (64 << 3) | 2 = 514 = varint 0x82 0x04.
        let cmp = Compare { range_end: b"z".to_vec(), ..Default::default() };
        assert_eq!(cmp.encode_to_vec(), vec![0x82, 0x04, 1, b'z']);
        // Compare.mod_revision (oneof target_union) is field 6, varint: tag 0x30.
        let cmp = Compare { target_union: Some(compare::TargetUnion::ModRevision(3)), ..Default::default() };
        assert_eq!(cmp.encode_to_vec(), vec![0x30, 3]);
        // WatchResponse.events is field 11, length-delimited: tag 0x5a.
        let resp = WatchResponse { events: vec![Event::default()], ..Default::default() };
        assert_eq!(resp.encode_to_vec(), vec![0x5a, 0]);
    }

    #[test]
    fn put_request_round_trips_through_prost_and_serde() {
        let put = PutRequest { key: b"/k".to_vec(), value: b"v".to_vec(), lease: 7, prev_kv: true, ..Default::default() };
        assert_eq!(PutRequest::decode(put.encode_to_vec().as_slice()).expect("decode"), put);
        let json = serde_json::to_string(&put).expect("serialize");
        assert_eq!(serde_json::from_str::<PutRequest>(&json).expect("deserialize"), put);
    }

    #[test]
    fn txn_with_oneofs_round_trips_through_serde() {
        let put = PutRequest { key: b"/k".to_vec(), value: b"v".to_vec(), ..Default::default() };
        let txn = TxnRequest {
            compare: vec![Compare { key: b"/k".to_vec(), target_union: Some(compare::TargetUnion::Version(0)), ..Default::default() }],
            success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put)) }],
            failure: vec![],
        };
        let json = serde_json::to_string(&txn).expect("serialize");
        assert_eq!(serde_json::from_str::<TxnRequest>(&json).expect("deserialize"), txn);
        assert_eq!(TxnRequest::decode(txn.encode_to_vec().as_slice()).expect("decode"), txn);
    }
}
