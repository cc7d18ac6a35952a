//! etcd's JSON encoding of protobuf messages (grpc-gateway's `JSONPb{OrigName: true}`):
//! proto3 JSON with the fields under their proto names (`cluster_id`, `peerURLs`, `ID`),
//! bytes as base64, 64-bit integers as strings, enums by name, zero fields left out.
//! Requests are read the same way, accepting lowerCamelCase names, numbers or strings for
//! integers, enum names or numbers, and ignoring unknown fields, as etcd does.
//!
//! Done by reflection over the descriptor set that `raftgres_proto` is generated from: a
//! prost message is transcoded to a `prost_reflect::DynamicMessage` of the same type and
//! that is (de)serialized, so every message of the API is covered by one code path.

use std::sync::LazyLock;

use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use tonic::Status;

/// The descriptors of every message of the API, decoded once.
static POOL: LazyLock<Result<DescriptorPool, String>> =
    LazyLock::new(|| DescriptorPool::decode(raftgres_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()));

fn descriptor<T: Name>() -> Result<MessageDescriptor, Status> {
    let pool = POOL.as_ref().map_err(|e| Status::internal(format!("the API's descriptor set does not decode: {e}")))?;
    let name = T::full_name();
    pool.get_message_by_name(&name).ok_or_else(|| Status::internal(format!("no descriptor for {name}")))
}

/// One request message from its JSON text; an empty (or all-blank) body is the empty
/// message, as etcd's gateway reads it.
pub fn decode<T: Message + Name + Default>(body: &[u8]) -> Result<T, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let message = read_dynamic::<T>(&mut de)?;
    de.end().map_err(|e| invalid(&e))?;
    Ok(message)
}

/// Every request message in `body`, one JSON value after another (a streaming call's
/// requests, etcd's `/v3/watch` and `/v3/lease/keepalive`); an empty body is one empty
/// message.
pub fn decode_all<T: Message + Name + Default>(body: &[u8]) -> Result<Vec<T>, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(vec![T::default()]);
    }
    serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .map(|value| read_dynamic::<T>(value.map_err(|e| invalid(&e))?))
        .collect()
}

fn read_dynamic<'de, T: Message + Name + Default>(de: impl serde::Deserializer<'de, Error: std::fmt::Display>) -> Result<T, Status> {
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic = DynamicMessage::deserialize_with_options(descriptor::<T>()?, de, &options).map_err(|e| invalid(&e))?;
    dynamic.transcode_to::<T>().map_err(|e| invalid(&e))
}

fn invalid(e: &impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("invalid JSON request: {e}"))
}

/// A response message as etcd's gateway writes it.
pub fn encode<T: Message + Name>(message: &T) -> Result<String, Status> {
    let mut dynamic = DynamicMessage::new(descriptor::<T>()?);
    dynamic.transcode_from(message).map_err(|e| Status::internal(format!("transcoding {}: {e}", T::full_name())))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut out = serde_json::Serializer::new(Vec::new());
    dynamic.serialize_with_options(&mut out, &options).map_err(|e| Status::internal(format!("encoding {}: {e}", T::full_name())))?;
    String::from_utf8(out.into_inner()).map_err(|e| Status::internal(format!("encoding {}: {e}", T::full_name())))
}

#[cfg(test)]
mod tests {
    use raftgres_proto::etcdserverpb::{
        compare, request_op, Compare, Member, MemberListResponse, PutRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest,
        WatchCreateRequest, WatchRequest,
    };
    use raftgres_proto::mvccpb::{event::EventType, Event, KeyValue};

    use super::*;

    fn header() -> Option<ResponseHeader> {
        Some(ResponseHeader { cluster_id: 15118495548433857066, member_id: 13668033151171901709, revision: 2, raft_term: 2 })
    }

    /// etcd 3.4.23's answer to `curl -X POST /v3/kv/range -d '{"key":"Zm9v"}'`.
    #[test]
    fn a_range_response_is_written_as_etcd_writes_it() {
        let kv = KeyValue { key: b"foo".to_vec(), create_revision: 2, mod_revision: 2, version: 1, value: b"bar".to_vec(), lease: 0 };
        let response = RangeResponse { header: header(), kvs: vec![kv], more: false, count: 1 };
        assert_eq!(
            encode(&response).expect("encode"),
            r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );
    }

    /// Proto names that are camelCase in etcd's proto stay so (`peerURLs`, `ID`).
    #[test]
    fn member_fields_keep_their_proto_names() {
        let member = Member { id: 7, name: "gw".into(), peer_ur_ls: vec!["http://a:2380".into()], ..Default::default() };
        let response = MemberListResponse { members: vec![member], ..Default::default() };
        assert_eq!(encode(&response).expect("encode"), r#"{"members":[{"ID":"7","name":"gw","peerURLs":["http://a:2380"]}]}"#);
    }

    #[test]
    fn enums_are_written_by_name_and_the_zero_one_left_out() {
        let delete = Event { r#type: EventType::Delete.into(), kv: None, prev_kv: None };
        let put = Event { r#type: EventType::Put.into(), kv: None, prev_kv: None };
        assert_eq!(encode(&delete).expect("encode"), r#"{"type":"DELETE"}"#);
        assert_eq!(encode(&put).expect("encode"), "{}");
    }

    #[test]
    fn requests_accept_proto_and_camel_case_names_strings_and_numbers() {
        let put: PutRequest = decode(br#"{"key":"Zm9v","value":"YmFy","lease":"12","prevKv":true,"bogus":1}"#).expect("decode");
        assert_eq!(put, PutRequest { key: b"foo".to_vec(), value: b"bar".to_vec(), lease: 12, prev_kv: true, ..Default::default() });
        let txn: TxnRequest = decode(
            br#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"MOD","mod_revision":5}],
                 "success":[{"requestPut":{"key":"Zm9v"}}]}"#,
        )
        .expect("decode");
        let compare = &txn.compare[0];
        assert_eq!(compare.target_union, Some(compare::TargetUnion::ModRevision(5)));
        assert_eq!(compare.target, compare::CompareTarget::Mod as i32);
        assert_eq!(compare.result, compare::CompareResult::Equal as i32);
        assert!(matches!(&txn.success[..], [RequestOp { request: Some(request_op::Request::RequestPut(_)) }]));
        assert_eq!(decode::<Compare>(b" \n").expect("empty body"), Compare::default());
    }

    #[test]
    fn bad_json_is_one_invalid_argument_naming_the_problem() {
        for body in [&br#"{"key":"#[..], br#"{"key":"!!"}"#, br#"{"key":"Zm9v"} x"#, br#"{"lease":"ten"}"#] {
            let status = decode::<PutRequest>(body).expect_err("bad body");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{body:?}");
            assert!(status.message().starts_with("invalid JSON request: "), "{}", status.message());
        }
    }

    #[test]
    fn a_stream_body_is_read_as_one_message_after_another() {
        let body = br#"{"create_request":{"key":"YQ=="}} {"progress_request":{}}"#;
        let requests: Vec<WatchRequest> = decode_all(body).expect("decode");
        assert_eq!(requests.len(), 2);
        let create = WatchCreateRequest { key: b"a".to_vec(), ..Default::default() };
        assert_eq!(
            requests[0],
            WatchRequest { request_union: Some(raftgres_proto::etcdserverpb::watch_request::RequestUnion::CreateRequest(create)) }
        );
        assert_eq!(decode_all::<WatchRequest>(b"").expect("empty"), vec![WatchRequest::default()]);
        assert!(decode_all::<WatchRequest>(br#"{"create_request":{"key":1}}"#).is_err());
    }
}
