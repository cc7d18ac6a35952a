//! etcd's data model as a pure, deterministic state machine.
//!
//! Owns: the global revision, every key's history (`create_revision`, `mod_revision`,
//! `version`), range reads at past revisions, Put / DeleteRange / Txn / Compact,
//! leases and the keys attached to them, the event history watchers replay, and the
//! estimated size of all that (`size`, what the space quota measures).
//! Must not touch: I/O, clocks, randomness — it is applied identically on every Raft
//! replica and serialized whole (serde) into snapshots. Lease *deadlines* live elsewhere.
//!
//! No input panics: every request, however hostile, gives a response or an
//! [`MvccError`], and a failing command changes nothing.

mod error;
mod keyspace;
mod range;
mod size;
mod txn;
mod validate;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use raftgres_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use raftgres_proto::mvccpb::{Event, KeyValue};
use serde::{Deserialize, Serialize};

pub use error::{ErrorCode, MvccError};
pub use keyspace::in_interval;
pub use size::space_needed;
pub use txn::{is_read_only, is_serializable};
pub use validate::{validate, Limits};

use keyspace::KeySpace;
use write::Write;

/// etcd's largest lease TTL (seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// How deep txns may nest. etcd's per-level op budget (`max_txn_ops` minus the ops of the
/// enclosing level) bounds nesting to 128 levels with the default limits; deeper
/// commands are refused with [`MvccError::TooManyOps`] rather than risking the stack.
pub const MAX_TXN_DEPTH: usize = 128;

/// What goes through the Raft log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// `id` is chosen by the proposer (non-zero); `ttl` already raised to the minimum.
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    /// An explicit revoke, or an expiry decided by the Raft leader.
    LeaseRevoke {
        id: i64,
    },
}

/// The answer to an applied command. Headers carry only the store revision; the caller
/// fills in cluster id, member id and raft term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
}

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub response: Result<CommandResponse, MvccError>,
    /// What watchers see, in order, all with `mod_revision == revision`. Deletes carry
    /// the key and the delete revision only. `prev_kv` is always filled: the key as it was
    /// just before this revision (none for a create, as in etcd's watch).
    pub events: Vec<Event>,
    /// The store revision after the command.
    pub revision: i64,
}

/// A lease as the replicated state knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub id: i64,
    pub ttl: i64,
    /// The attached keys, sorted.
    pub keys: Vec<Vec<u8>>,
}

/// An [`Event`] as the event history keeps it: its key-values are those of the key
/// space's histories, shared, not copies (a put's value was held twice until its
/// revision was compacted: a third of a member's heap under 256 writers). Serialized
/// as an `Event` (same fields, same order, see [`shared_kv`]), so snapshots are
/// unchanged; one loaded from a snapshot holds its own copies again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    pub r#type: i32,
    #[serde(with = "shared_kv")]
    pub kv: Option<Arc<KeyValue>>,
    #[serde(with = "shared_kv")]
    pub prev_kv: Option<Arc<KeyValue>>,
}

/// Serde for a shared key-value: written as the key-value itself (sharing is not
/// recorded), read back as a key-value of its own.
pub(crate) mod shared_kv {
    use std::sync::Arc;

    use raftgres_proto::mvccpb::KeyValue;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(kv: &Option<Arc<KeyValue>>, s: S) -> Result<S::Ok, S::Error> {
        kv.as_deref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<KeyValue>>, D::Error> {
        Ok(Option::<KeyValue>::deserialize(d)?.map(Arc::new))
    }
}

impl StoredEvent {
    /// The event as watchers receive it.
    fn to_event(&self) -> Event {
        Event { r#type: self.r#type, kv: self.kv.as_deref().cloned(), prev_kv: self.prev_kv.as_deref().cloned() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
}

/// The whole data model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct Mvcc {
    revision: i64,
    compact_revision: i64,
    keys: KeySpace,
    /// The events of every revision since `compact_revision` (inclusive).
    events: BTreeMap<i64, Vec<StoredEvent>>,
    leases: BTreeMap<i64, Lease>,
    /// [`Mvcc::size`]: derived from the fields above, so never serialized.
    #[serde(skip)]
    bytes: u64,
}

/// [`Mvcc`] as snapshots store it: the same fields in the same order (bincode is
/// positional), without the derived size, which loading counts again.
#[derive(Deserialize)]
struct Stored {
    revision: i64,
    compact_revision: i64,
    keys: KeySpace,
    events: BTreeMap<i64, Vec<StoredEvent>>,
    leases: BTreeMap<i64, Lease>,
}

impl From<Stored> for Mvcc {
    fn from(s: Stored) -> Self {
        let mut mvcc =
            Self { revision: s.revision, compact_revision: s.compact_revision, keys: s.keys, events: s.events, leases: s.leases, bytes: 0 };
        mvcc.bytes = mvcc.measure();
        mvcc
    }
}

impl Default for Mvcc {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl Mvcc {
    /// An empty store, at revision 1 (the first write makes revision 2).
    pub fn new() -> Self {
        Self { revision: 1, compact_revision: 0, keys: KeySpace::default(), events: BTreeMap::new(), leases: BTreeMap::new(), bytes: 0 }
    }

    /// The current store revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The last compaction's revision (0 before any).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// How many keys are live now.
    pub fn key_count(&self) -> usize {
        self.keys.live_count()
    }

    /// A read-only range, answered with the current revision in the header.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let rev = range::check(req, self.revision, self.compact_revision)?;
        Ok(range::run(&self.keys, req, rev, self.revision))
    }

    /// Every event with `start <= mod_revision <= end`, in revision order (watch history
    /// replay). A start below the compaction point is compacted; the compaction point
    /// itself can still be replayed, as etcd's watch allows (`minRev < compactRev`).
    pub fn events_between(&self, start: i64, end: i64) -> Result<Vec<Event>, MvccError> {
        if start < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if start > end {
            return Ok(Vec::new());
        }
        Ok(self.events.range(start..=end).flat_map(|(_, evs)| evs.iter().map(StoredEvent::to_event)).collect())
    }

    /// One lease and its keys.
    pub fn lease(&self, id: i64) -> Option<LeaseInfo> {
        self.leases.get(&id).map(|l| LeaseInfo { id, ttl: l.ttl, keys: l.keys.iter().cloned().collect() })
    }

    /// Every lease, sorted by id.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        self.leases.keys().filter_map(|id| self.lease(*id)).collect()
    }

    /// Applies one command. Deterministic: the same commands from the same state give the
    /// same state, responses and events. A refused command changes nothing.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        let mut w = Write::new(self.revision);
        let response = match cmd {
            Command::Put(req) => self.put_checked(&mut w, req).map(CommandResponse::Put),
            Command::DeleteRange(req) => self.delete_checked(&mut w, req).map(CommandResponse::DeleteRange),
            Command::Txn(req) => self.txn(&mut w, req).map(CommandResponse::Txn),
            Command::Compact(req) => self.compact(req.revision).map(CommandResponse::Compact),
            Command::LeaseGrant { id, ttl } => self.lease_grant(*id, *ttl).map(CommandResponse::LeaseGrant),
            Command::LeaseRevoke { id } => self.lease_revoke(&mut w, *id).map(CommandResponse::LeaseRevoke),
        };
        if w.changed() {
            self.revision = w.rev();
            let grew = size::events_bytes(&w.events);
            self.grow(i64::try_from(grew).unwrap_or(i64::MAX));
        }
        let events = w.events.iter().map(StoredEvent::to_event).collect();
        if w.changed() {
            self.events.insert(w.rev(), w.events);
        }
        let revision = self.revision;
        let response = response.map(|r| with_revision(r, revision));
        Applied { response, events, revision }
    }
}

/// Sets the store revision in the top-level header (nested txn answers keep theirs).
fn with_revision(resp: CommandResponse, rev: i64) -> CommandResponse {
    match resp {
        CommandResponse::Put(r) => CommandResponse::Put(PutResponse { header: header(rev), ..r }),
        CommandResponse::DeleteRange(r) => CommandResponse::DeleteRange(DeleteRangeResponse { header: header(rev), ..r }),
        CommandResponse::Txn(r) => CommandResponse::Txn(TxnResponse { header: header(rev), ..r }),
        CommandResponse::Compact(_) => CommandResponse::Compact(CompactionResponse { header: header(rev) }),
        CommandResponse::LeaseGrant(r) => CommandResponse::LeaseGrant(LeaseGrantResponse { header: header(rev), ..r }),
        CommandResponse::LeaseRevoke(_) => CommandResponse::LeaseRevoke(LeaseRevokeResponse { header: header(rev) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Command {
        Command::Put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
    }

    /// A put's value is held once, by the key's history and the event history together.
    #[test]
    fn the_event_history_shares_the_key_spaces_values() {
        let mut mvcc = Mvcc::new();
        mvcc.apply(&put("a", "1"));
        mvcc.apply(&put("a", "2"));
        let (first, second) = (&mvcc.events[&2][0], &mvcc.events[&3][0]);
        let history = mvcc.keys.at(b"a", 3).expect("a at 3");
        assert!(Arc::ptr_eq(second.kv.as_ref().expect("kv"), history));
        assert!(Arc::ptr_eq(second.prev_kv.as_ref().expect("prev_kv"), first.kv.as_ref().expect("kv")));
    }

    /// Snapshots written before the history shared its values still load, and the same
    /// state gives the same bytes.
    #[test]
    fn a_stored_event_is_serialized_as_an_event() {
        let kv = KeyValue { key: b"k".to_vec(), value: b"v".to_vec(), mod_revision: 3, create_revision: 2, version: 2, lease: 7 };
        let prev = KeyValue { mod_revision: 2, version: 1, ..kv.clone() };
        let event = Event { r#type: 0, kv: Some(kv.clone()), prev_kv: Some(prev.clone()) };
        let stored = StoredEvent { r#type: 0, kv: Some(Arc::new(kv)), prev_kv: Some(Arc::new(prev)) };
        let bytes = bincode::serialize(&event).expect("event");
        assert_eq!(bincode::serialize(&stored).expect("stored"), bytes);
        assert_eq!(bincode::deserialize::<StoredEvent>(&bytes).expect("loads").to_event(), event);
    }
}
