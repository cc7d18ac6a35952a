//! How the state machine's [`StateData`] is written in snapshot files and in the
//! snapshots sent to peers: the bincode of its original fields, then a tail with what
//! was added later (the alarms). bincode is positional, so a field added to
//! `StateData` itself would make every older snapshot unreadable; the tail keeps them
//! readable (no tail: no alarms), and older raftgres versions, whose bincode ignores
//! bytes after the value, read newer snapshots without the tail.
//!
//! Anything added to the replicated state later goes at the end of [`Tail`], read
//! the same way (a missing end means its default).

use serde::{Deserialize, Serialize};

use crate::alarms::Alarms;
use crate::error::io_err;
use crate::state_machine::StateData;

/// The fields added to [`StateData`] after its first format.
#[derive(Serialize, Deserialize)]
struct Tail {
    alarms: Alarms,
}

/// The bytes of `data`.
pub(crate) fn encode(data: &StateData) -> std::io::Result<Vec<u8>> {
    let mut bytes = bincode::serialize(data).map_err(io_err)?;
    let tail = Tail { alarms: data.alarms.clone() };
    bincode::serialize_into(&mut bytes, &tail).map_err(io_err)?;
    Ok(bytes)
}

/// Reads what [`encode`] wrote, or a snapshot written before the tail existed.
pub(crate) fn decode(bytes: &[u8]) -> std::io::Result<StateData> {
    let mut rest = bytes;
    let mut data: StateData = bincode::deserialize_from(&mut rest).map_err(io_err)?;
    if !rest.is_empty() {
        let tail: Tail = bincode::deserialize(rest).map_err(io_err)?;
        data.alarms = tail.alarms;
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn populated() -> StateData {
        let mut data = StateData::default();
        let put = raftgres_proto::etcdserverpb::PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() };
        data.mvcc.apply(&raftgres_mvcc::Command::Put(put)).response.expect("put");
        data.cluster_id = 42;
        data.alarms.apply(&crate::alarms::raise_no_space(7));
        data
    }

    #[test]
    fn the_state_and_its_alarms_round_trip() {
        let data = populated();
        let back = decode(&encode(&data).expect("encode")).expect("decode");
        assert_eq!((back.mvcc.revision(), back.cluster_id, back.alarms.clone()), (2, 42, data.alarms));
        assert!(back.alarms.no_space());
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
