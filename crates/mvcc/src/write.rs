//! The writes: put, delete, compaction, lease grant and revoke. Every write of one
//! command lands at the same new revision; everything that can fail is checked before
//! the first write, so a refused command changes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use raftgres_proto::etcdserverpb::{
    CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutRequest, PutResponse,
};
use raftgres_proto::mvccpb::{event::EventType, KeyValue};

use crate::size::LEASE_BYTES;
use crate::{header, Lease, Mvcc, MvccError, StoredEvent, MAX_LEASE_TTL};

/// The writes of one revision in progress.
pub(crate) struct Write {
    /// The store revision before the command.
    begin: i64,
    pub events: Vec<StoredEvent>,
}

impl Write {
    pub fn new(begin: i64) -> Self {
        Self { begin, events: Vec::new() }
    }

    /// The store revision before the command.
    pub fn begin(&self) -> i64 {
        self.begin
    }

    /// The revision this command writes at.
    pub fn rev(&self) -> i64 {
        self.begin.saturating_add(1)
    }

    pub fn changed(&self) -> bool {
        !self.events.is_empty()
    }

    /// The revision reads inside the command see as current: the new one once something
    /// was written, as etcd's write txn does.
    pub fn read_rev(&self) -> i64 {
        if self.changed() {
            self.rev()
        } else {
            self.begin
        }
    }
}

impl Mvcc {
    /// A top-level put: etcd checks the lease first, then `ignore_*` against the key.
    pub(crate) fn put_checked(&mut self, w: &mut Write, req: &PutRequest) -> Result<PutResponse, MvccError> {
        if req.key.is_empty() {
            return Err(MvccError::KeyNotProvided);
        }
        if req.lease != 0 && !self.leases.contains_key(&req.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        if (req.ignore_value || req.ignore_lease) && self.keys.current(&req.key).is_none() {
            return Err(MvccError::KeyNotFound);
        }
        Ok(self.put(w, req))
    }

    /// A put already checked. Never fails: should a check have been skipped, a missing
    /// key under `ignore_*` takes the request's value/lease and an unknown lease is not
    /// attached.
    pub(crate) fn put(&mut self, w: &mut Write, req: &PutRequest) -> PutResponse {
        let rev = w.rev();
        let prev = self.keys.current(&req.key).cloned();
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        let lease = if lease == 0 || self.leases.contains_key(&lease) { lease } else { 0 };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version.saturating_add(1)),
            value,
            lease,
        };
        let old_lease = prev.as_ref().map_or(0, |p| p.lease);
        if old_lease != lease {
            self.detach(old_lease, &req.key);
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(req.key.clone());
            }
        }
        // Watchers see the key as of the revision before; a create has no prev_kv.
        let event_prev = if kv.version == 1 { None } else { self.keys.at(&req.key, w.begin()).cloned() };
        let kv = Arc::new(kv);
        let grew = self.keys.record(&req.key, rev, Some(kv.clone()));
        self.grow(grew);
        w.events.push(StoredEvent { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: event_prev });
        PutResponse { header: header(rev), prev_kv: if req.prev_kv { prev } else { None } }
    }

    /// A top-level delete.
    pub(crate) fn delete_checked(&mut self, w: &mut Write, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        if req.key.is_empty() {
            return Err(MvccError::KeyNotProvided);
        }
        Ok(self.delete_range(w, req))
    }

    /// Deletes every live key of the interval (writes earlier in the txn included).
    pub(crate) fn delete_range(&mut self, w: &mut Write, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<KeyValue> = self.keys.current_in(&req.key, &req.range_end).into_iter().cloned().collect();
        for kv in &doomed {
            self.delete_key(w, kv);
        }
        DeleteRangeResponse {
            header: header(w.read_rev()),
            deleted: i64::try_from(doomed.len()).unwrap_or(i64::MAX),
            prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
        }
    }

    /// Deletes one live key (its current value is `current`) and detaches its lease.
    fn delete_key(&mut self, w: &mut Write, current: &KeyValue) {
        self.detach(current.lease, &current.key);
        let event_prev = self.keys.at(&current.key, w.begin()).cloned();
        let grew = self.keys.record(&current.key, w.rev(), None);
        self.grow(grew);
        let tomb = KeyValue { key: current.key.clone(), mod_revision: w.rev(), ..Default::default() };
        w.events.push(StoredEvent { r#type: EventType::Delete as i32, kv: Some(Arc::new(tomb)), prev_kv: event_prev });
    }

    /// Keeps [`Mvcc::size`] in step with a change of `delta` bytes.
    pub(crate) fn grow(&mut self, delta: i64) {
        self.bytes = self.bytes.saturating_add_signed(delta);
    }

    fn detach(&mut self, lease: i64, key: &[u8]) {
        if lease == 0 {
            return;
        }
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.remove(key);
        }
    }

    /// Drops history before `rev` (etcd's order of checks: compacted, then future).
    pub(crate) fn compact(&mut self, rev: i64) -> Result<CompactionResponse, MvccError> {
        if rev <= self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if rev > self.revision {
            return Err(MvccError::FutureRevision);
        }
        self.keys.compact(rev);
        self.events = self.events.split_off(&rev);
        self.compact_revision = rev;
        self.bytes = self.measure();
        Ok(CompactionResponse { header: None })
    }

    /// etcd's lessor: id 0 is "not found", then the TTL cap, then duplicates.
    pub(crate) fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, MvccError> {
        if id == 0 {
            return Err(MvccError::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(MvccError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(MvccError::LeaseExists);
        }
        self.leases.insert(id, Lease { ttl, keys: BTreeSet::new() });
        self.grow(i64::try_from(LEASE_BYTES).unwrap_or(i64::MAX));
        Ok(LeaseGrantResponse { header: None, id, ttl, error: String::new() })
    }

    /// Removes the lease and deletes its keys, in key order, all in one revision.
    pub(crate) fn lease_revoke(&mut self, w: &mut Write, id: i64) -> Result<LeaseRevokeResponse, MvccError> {
        let lease = self.leases.remove(&id).ok_or(MvccError::LeaseNotFound)?;
        self.grow(-i64::try_from(LEASE_BYTES).unwrap_or(i64::MAX));
        for key in lease.keys {
            if let Some(current) = self.keys.current(&key).filter(|kv| kv.lease == id).cloned() {
                self.delete_key(w, &current);
            }
        }
        Ok(LeaseRevokeResponse { header: None })
    }
}
