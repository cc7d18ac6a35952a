//! etcd's data model as a pure, deterministic state machine.
//!
//! Owns: the global revision, every key's history (`create_revision`, `mod_revision`,
//! `version`), range reads at past revisions, Put / DeleteRange / Txn / Compact,
//! leases and the keys attached to them, and the event history watchers replay.
//! Must not touch: I/O, clocks, randomness — it is applied identically on every Raft
//! replica and serialized whole into snapshots. Lease *deadlines* live elsewhere.

mod error;
mod keyspace;
mod txn;
mod validate;

use std::collections::{BTreeMap, BTreeSet};

use raftgres_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest,
    TxnResponse,
};
use raftgres_proto::mvccpb::{event::EventType, Event, KeyValue};
use serde::{Deserialize, Serialize};

pub use error::{ErrorCode, MvccError};
pub use keyspace::{in_interval, KeySpace};
pub use validate::{validate, Limits, MAX_LEASE_TTL};

/// What goes through the Raft log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// `id` is chosen by the proposer (non-zero); `ttl` already raised to the minimum.
    LeaseGrant { id: i64, ttl: i64 },
    /// An explicit revoke, or an expiry decided by the Raft leader.
    LeaseRevoke { id: i64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CommandResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
}

/// The outcome of applying one command.
#[derive(Debug, Clone)]
pub struct Applied {
    pub response: Result<CommandResponse, MvccError>,
    /// What watchers see, all at `revision`; prev_kv always filled where there was one.
    pub events: Vec<Event>,
    /// The store revision after the command.
    pub revision: i64,
}

/// A lease as the replicated state knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub id: i64,
    pub ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
}

/// The whole data model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mvcc {
    revision: i64,
    compact_revision: i64,
    keys: KeySpace,
    events: BTreeMap<i64, Vec<Event>>,
    leases: BTreeMap<i64, Lease>,
}

impl Default for Mvcc {
    fn default() -> Self {
        Self::new()
    }
}

/// The writes of one revision in progress.
pub(crate) struct Write {
    pub rev: i64,
    pub events: Vec<Event>,
}

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl Mvcc {
    /// An empty store, at revision 1 (the first write makes revision 2).
    pub fn new() -> Self {
        Self { revision: 1, compact_revision: 0, keys: KeySpace::default(), events: BTreeMap::new(), leases: BTreeMap::new() }
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    pub fn key_count(&self) -> usize {
        self.keys.live_count()
    }

    /// A read-only range.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        if req.key.is_empty() {
            return Err(MvccError::KeyNotProvided);
        }
        let rev = keyspace::read_revision(req.revision, self.revision, self.compact_revision)?;
        Ok(self.keys.range(req, rev, self.revision))
    }

    /// Events with `start <= mod_revision <= end`, in order (watch history replay).
    pub fn events_between(&self, start: i64, end: i64) -> Result<Vec<Event>, MvccError> {
        if start < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if start > end {
            return Ok(Vec::new());
        }
        Ok(self.events.range(start..=end).flat_map(|(_, evs)| evs.iter().cloned()).collect())
    }

    pub fn lease(&self, id: i64) -> Option<LeaseInfo> {
        self.leases.get(&id).map(|l| LeaseInfo { id, ttl: l.ttl, keys: l.keys.iter().cloned().collect() })
    }

    pub fn leases(&self) -> Vec<LeaseInfo> {
        self.leases.keys().filter_map(|id| self.lease(*id)).collect()
    }

    /// Applies one command. Deterministic: the same commands give the same state.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        let mut w = Write { rev: self.revision + 1, events: Vec::new() };
        let response = match cmd {
            Command::Put(req) => self.put(&mut w, req).map(CommandResponse::Put),
            Command::DeleteRange(req) => Ok(CommandResponse::DeleteRange(self.delete_range(&mut w, req))),
            Command::Txn(req) => self.txn(&mut w, req).map(CommandResponse::Txn),
            Command::Compact(req) => self.compact(req.revision).map(CommandResponse::Compact),
            Command::LeaseGrant { id, ttl } => self.lease_grant(*id, *ttl).map(CommandResponse::LeaseGrant),
            Command::LeaseRevoke { id } => self.lease_revoke(&mut w, *id).map(CommandResponse::LeaseRevoke),
        };
        if !w.events.is_empty() {
            self.revision = w.rev;
            self.events.insert(w.rev, w.events.clone());
        }
        let response = response.map(|r| with_revision(r, self.revision));
        Applied { response, events: w.events, revision: self.revision }
    }

    pub(crate) fn put(&mut self, w: &mut Write, req: &PutRequest) -> Result<PutResponse, MvccError> {
        if req.key.is_empty() {
            return Err(MvccError::KeyNotProvided);
        }
        let prev = self.keys.current(&req.key).cloned();
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        if lease != 0 && !self.leases.contains_key(&lease) {
            return Err(MvccError::LeaseNotFound);
        }
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(w.rev, |p| p.create_revision),
            mod_revision: w.rev,
            version: prev.as_ref().map_or(1, |p| p.version.saturating_add(1)),
            value,
            lease,
        };
        if let Some(old) = prev.as_ref().map(|p| p.lease).filter(|l| *l != 0 && *l != lease) {
            if let Some(l) = self.leases.get_mut(&old) {
                l.keys.remove(&req.key);
            }
        }
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.insert(req.key.clone());
        }
        self.keys.record(&req.key, w.rev, Some(kv.clone()));
        w.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: prev.clone() });
        Ok(PutResponse { header: None, prev_kv: if req.prev_kv { prev } else { None } })
    }

    pub(crate) fn delete_range(&mut self, w: &mut Write, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<KeyValue> =
            self.keys.live_in(&req.key, &req.range_end, self.revision.max(w.rev)).into_iter().cloned().collect();
        for prev in &doomed {
            self.delete_key(w, prev.clone());
        }
        DeleteRangeResponse {
            header: None,
            deleted: i64::try_from(doomed.len()).unwrap_or(i64::MAX),
            prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
        }
    }

    fn delete_key(&mut self, w: &mut Write, prev: KeyValue) {
        if let Some(l) = self.leases.get_mut(&prev.lease) {
            l.keys.remove(&prev.key);
        }
        self.keys.record(&prev.key, w.rev, None);
        let tomb = KeyValue { key: prev.key.clone(), mod_revision: w.rev, ..Default::default() };
        w.events.push(Event { r#type: EventType::Delete as i32, kv: Some(tomb), prev_kv: Some(prev) });
    }

    fn compact(&mut self, rev: i64) -> Result<CompactionResponse, MvccError> {
        if rev > self.revision {
            return Err(MvccError::FutureRevision);
        }
        if rev <= self.compact_revision {
            return Err(MvccError::Compacted);
        }
        self.keys.compact(rev);
        self.events = self.events.split_off(&rev);
        self.compact_revision = rev;
        Ok(CompactionResponse { header: None })
    }

    fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, MvccError> {
        if id <= 0 || self.leases.contains_key(&id) {
            return Err(MvccError::LeaseExists);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(MvccError::LeaseTtlTooLarge);
        }
        self.leases.insert(id, Lease { ttl, keys: BTreeSet::new() });
        Ok(LeaseGrantResponse { header: None, id, ttl, error: String::new() })
    }

    fn lease_revoke(&mut self, w: &mut Write, id: i64) -> Result<LeaseRevokeResponse, MvccError> {
        let lease = self.leases.remove(&id).ok_or(MvccError::LeaseNotFound)?;
        for key in lease.keys {
            if let Some(prev) = self.keys.current(&key).cloned() {
                self.delete_key(w, prev);
            }
        }
        Ok(LeaseRevokeResponse { header: None })
    }

    pub(crate) fn lease_exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub(crate) fn keyspace(&self) -> &KeySpace {
        &self.keys
    }
}

/// Sets the store revision in every header of a response (nested txn ones included).
fn with_revision(resp: CommandResponse, rev: i64) -> CommandResponse {
    match resp {
        CommandResponse::Put(mut r) => {
            r.header = header(rev);
            CommandResponse::Put(r)
        }
        CommandResponse::DeleteRange(mut r) => {
            r.header = header(rev);
            CommandResponse::DeleteRange(r)
        }
        CommandResponse::Txn(r) => CommandResponse::Txn(txn::stamp(r, rev)),
        CommandResponse::Compact(mut r) => {
            r.header = header(rev);
            CommandResponse::Compact(r)
        }
        CommandResponse::LeaseGrant(mut r) => {
            r.header = header(rev);
            CommandResponse::LeaseGrant(r)
        }
        CommandResponse::LeaseRevoke(mut r) => {
            r.header = header(rev);
            CommandResponse::LeaseRevoke(r)
        }
    }
}

#[cfg(test)]
mod tests;
