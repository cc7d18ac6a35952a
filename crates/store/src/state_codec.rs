//! How the state machine's [`StateData`] is written in snapshot files and in the
//! snapshots sent to peers: the bincode of its original fields, then a tail with what
//! was added later, one field after the other (the alarms, then the auth state).
//! bincode is positional, so a field added to `StateData` itself would make every
//! older snapshot unreadable; the tail keeps them readable (a tail that ends early
//! leaves the missing fields at their defaults), and older raftgres versions, whose
//! bincode ignores bytes after the value, read newer snapshots without the tail.
//!
//! Anything added to the replicated state later goes at the end of the tail, written
//! by [`encode`] and read by [`decode`] the same way.

use serde::de::DeserializeOwned;

use crate::error::io_err;
use crate::state_machine::StateData;

/// The bytes of `data`.
pub(crate) fn encode(data: &StateData) -> std::io::Result<Vec<u8>> {
    let mut bytes = bincode::serialize(data).map_err(io_err)?;
    bincode::serialize_into(&mut bytes, &data.alarms).map_err(io_err)?;
    bincode::serialize_into(&mut bytes, &data.auth).map_err(io_err)?;
    Ok(bytes)
}

/// Reads what [`encode`] wrote, or a snapshot written before (part of) the tail existed.
pub(crate) fn decode(bytes: &[u8]) -> std::io::Result<StateData> {
    let mut rest = bytes;
    let mut data: StateData = bincode::deserialize_from(&mut rest).map_err(io_err)?;
    if let Some(alarms) = next_field(&mut rest)? {
        data.alarms = alarms;
    }
    if let Some(auth) = next_field(&mut rest)? {
        data.auth = auth;
    }
    Ok(data)
}

/// The next tail field, None when the tail ends before it.
fn next_field<T: DeserializeOwned>(rest: &mut &[u8]) -> std::io::Result<Option<T>> {
    if rest.is_empty() {
        return Ok(None);
    }
    bincode::deserialize_from(rest).map(Some).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthChange, AuthState};

    fn populated() -> StateData {
        let mut data = StateData::default();
        let put = raftgres_proto::etcdserverpb::PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() };
        data.mvcc.apply(&raftgres_mvcc::Command::Put(put)).response.expect("put");
        data.cluster_id = 42;
        data.alarms.apply(&crate::alarms::raise_no_space(7));
        data.auth.apply(&AuthChange::UserAdd { name: "root".into(), password_hash: Some("h".into()) }).expect("user add");
        data
    }

    #[test]
    fn the_state_its_alarms_and_auth_round_trip() {
        let data = populated();
        let back = decode(&encode(&data).expect("encode")).expect("decode");
        assert_eq!((back.mvcc.revision(), back.cluster_id, back.alarms.clone()), (2, 42, data.alarms));
        assert!(back.alarms.no_space());
        assert_eq!(back.auth, data.auth);
        assert!(back.auth.user("root").is_some());
    }

    #[test]
    fn snapshots_with_alarms_but_no_auth_still_load() {
        let data = populated();
        let mut alarms_only = bincode::serialize(&data).expect("serialize");
        bincode::serialize_into(&mut alarms_only, &data.alarms).expect("alarms");
        let back = decode(&alarms_only).expect("a snapshot from before auth");
        assert!(back.alarms.no_space());
        assert_eq!(back.auth, AuthState::default());
    }

    #[test]
    fn snapshots_written_before_the_tail_still_load() {
        let data = populated();
        let old_format = bincode::serialize(&data).expect("serialize");
        let back = decode(&old_format).expect("an older snapshot");
        assert_eq!((back.mvcc.revision(), back.cluster_id), (2, 42));
        assert!(!back.alarms.no_space(), "no tail, no alarms");
    }

    #[test]
    fn older_readers_ignore_the_tail() {
        let bytes = encode(&populated()).expect("encode");
        let old_reader: StateData = bincode::deserialize(&bytes).expect("bincode ignores trailing bytes");
        assert_eq!(old_reader.mvcc.revision(), 2);
    }
}
