//! How many bytes the data model holds: the figure the space quota
//! (`--quota-backend-bytes`) and `etcdctl endpoint status`'s DB SIZE measure.
//!
//! The state lives in memory, so the figure estimates what it occupies there: every
//! revision of every key (key, value, and a fixed overhead for revisions and map
//! nodes), the watch event history (each event carries its key-value and the previous
//! one; counted in full although the history shares them with the key space, so the
//! figure and the quota keep their meaning), and the leases. It is a pure function of the state ([`Mvcc::measure`]), kept
//! up to date incrementally on every write so that reading it costs nothing, and
//! recomputed after a compaction and after a snapshot is loaded. It is the same on
//! every replica. [`space_needed`] is what a command would add, and whether it adds
//! anything: the writes the NOSPACE alarm refuses are exactly those it prices above 0.

use raftgres_proto::etcdserverpb::request_op::Request as Op;
use raftgres_proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use raftgres_proto::mvccpb::KeyValue;

use crate::keyspace::Revisioned;
use crate::{Command, Mvcc, StoredEvent};

/// A key-value's fixed part (revisions, version, lease, vector headers).
const KV_OVERHEAD: u64 = 64;
/// A key's history: its map node and vector header, besides the key bytes.
const KEY_OVERHEAD: u64 = 64;
/// One revision in a key's history, besides its key-value.
const REVISION_OVERHEAD: u64 = 24;
/// One revision's entry in the event history, besides its events.
const EVENTS_OVERHEAD: u64 = 48;
/// One event, besides its key-values.
const EVENT_OVERHEAD: u64 = 16;
/// One lease.
pub(crate) const LEASE_BYTES: u64 = 64;

fn len(bytes: &[u8]) -> u64 {
    bytes.len() as u64
}

fn kv_bytes(kv: &KeyValue) -> u64 {
    KV_OVERHEAD + len(&kv.key) + len(&kv.value)
}

/// A key's history without its revisions.
pub(crate) fn key_bytes(key: &[u8]) -> u64 {
    KEY_OVERHEAD + len(key)
}

/// One revision of a key's history.
pub(crate) fn revision_bytes(r: &Revisioned) -> u64 {
    REVISION_OVERHEAD + r.kv.as_deref().map_or(0, kv_bytes)
}

/// One revision's events in the event history.
pub(crate) fn events_bytes(events: &[StoredEvent]) -> u64 {
    EVENTS_OVERHEAD
        + events
            .iter()
            .map(|e| EVENT_OVERHEAD + e.kv.as_deref().map_or(0, kv_bytes) + e.prev_kv.as_deref().map_or(0, kv_bytes))
            .sum::<u64>()
}

/// What `cmd` would add to the state, roughly; 0 for commands that add no data
/// (deletes, revokes, compaction), which the NOSPACE alarm lets through. A put counts
/// its key-value twice (the key's history and the event history); a txn counts its
/// costlier branch, nested txns included.
pub fn space_needed(cmd: &Command) -> u64 {
    match cmd {
        Command::Put(p) => put_space(p),
        Command::Txn(t) => txn_space(t),
        Command::LeaseGrant { .. } => LEASE_BYTES,
        Command::DeleteRange(_) | Command::Compact(_) | Command::LeaseRevoke { .. } => 0,
    }
}

fn put_space(p: &PutRequest) -> u64 {
    2 * (KV_OVERHEAD + len(&p.key) + len(&p.value))
}

fn txn_space(t: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => put_space(p),
                Some(Op::RequestTxn(nested)) => txn_space(nested),
                Some(Op::RequestRange(_)) | Some(Op::RequestDeleteRange(_)) | None => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

impl Mvcc {
    /// The estimated bytes of the state (kept incrementally; see the module doc).
    pub fn size(&self) -> u64 {
        self.bytes
    }

    /// The estimated bytes of the state, counted from scratch.
    pub fn measure(&self) -> u64 {
        let keys = self.keys.measure();
        let events: u64 = self.events.values().map(|evs| events_bytes(evs)).sum();
        keys + events + LEASE_BYTES * self.leases.len() as u64
    }
}
