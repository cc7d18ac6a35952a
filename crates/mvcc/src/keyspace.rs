//! The key space: every key's history of revisions, range reads at any revision not
//! yet compacted, and the writes (put, delete) that one revision makes.

use std::collections::BTreeMap;
use std::ops::Bound;

use raftgres_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use raftgres_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use raftgres_proto::mvccpb::KeyValue;
use serde::{Deserialize, Serialize};

use crate::error::MvccError;

/// One revision of a key: its value then, or `None` for a deletion (tombstone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revisioned {
    pub rev: i64,
    pub kv: Option<KeyValue>,
}

/// All keys with their histories since the last compaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeySpace {
    keys: BTreeMap<Vec<u8>, Vec<Revisioned>>,
}

/// The key interval a request names: `[key, end)`, `[key, ∞)` or just `key`.
pub fn interval(key: &[u8], range_end: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    if range_end.is_empty() {
        (Bound::Included(key.to_vec()), Bound::Included(key.to_vec()))
    } else if range_end == [0] {
        (Bound::Included(key.to_vec()), Bound::Unbounded)
    } else if range_end <= key {
        // An empty interval (etcd returns nothing).
        (Bound::Included(key.to_vec()), Bound::Excluded(key.to_vec()))
    } else {
        (Bound::Included(key.to_vec()), Bound::Excluded(range_end.to_vec()))
    }
}

/// True if `key` lies in the interval `[start, end)` as a request names it.
pub fn in_interval(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

impl KeySpace {
    /// The key's value at `rev` (None if absent or deleted then).
    fn at(history: &[Revisioned], rev: i64) -> Option<&KeyValue> {
        let idx = history.partition_point(|r| r.rev <= rev);
        history.get(idx.checked_sub(1)?)?.kv.as_ref()
    }

    /// The key's current value.
    pub fn current(&self, key: &[u8]) -> Option<&KeyValue> {
        self.keys.get(key)?.last()?.kv.as_ref()
    }

    /// Every live key-value in the interval at `rev`, in key order.
    pub fn live_in(&self, key: &[u8], range_end: &[u8], rev: i64) -> Vec<&KeyValue> {
        let (lo, hi) = interval(key, range_end);
        if matches!((&lo, &hi), (Bound::Included(a), Bound::Excluded(b)) if a >= b) {
            return Vec::new();
        }
        self.keys.range((lo, hi)).filter_map(|(_, h)| Self::at(h, rev)).collect()
    }

    pub fn live_count(&self) -> usize {
        self.keys.values().filter(|h| h.last().is_some_and(|r| r.kv.is_some())).count()
    }

    /// Records a new revision of `key` (a value, or a tombstone when `kv` is None).
    pub fn record(&mut self, key: &[u8], rev: i64, kv: Option<KeyValue>) {
        let history = self.keys.entry(key.to_vec()).or_default();
        match history.last_mut() {
            Some(last) if last.rev == rev => last.kv = kv,
            _ => history.push(Revisioned { rev, kv }),
        }
    }

    /// Forgets history older than `rev`, keeping each key's state at `rev`.
    pub fn compact(&mut self, rev: i64) {
        self.keys.retain(|_, history| {
            let keep_from = history.partition_point(|r| r.rev <= rev).saturating_sub(1);
            history.drain(..keep_from);
            if history.first().is_some_and(|r| r.rev <= rev && r.kv.is_none()) {
                history.remove(0);
            }
            !history.is_empty()
        });
    }

    /// A range read at `rev` (already checked against compaction and the current revision).
    pub fn range(&self, req: &RangeRequest, rev: i64, header_rev: i64) -> RangeResponse {
        let mut kvs: Vec<&KeyValue> = self.live_in(&req.key, &req.range_end, rev);
        let count = i64::try_from(kvs.len()).unwrap_or(i64::MAX);
        kvs.retain(|kv| {
            (req.min_mod_revision <= 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_mod_revision <= 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_create_revision <= 0 || kv.create_revision >= req.min_create_revision)
                && (req.max_create_revision <= 0 || kv.create_revision <= req.max_create_revision)
        });
        sort(&mut kvs, req.sort_order, req.sort_target);
        let mut more = false;
        if req.limit > 0 {
            let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
            if kvs.len() > limit {
                kvs.truncate(limit);
                more = true;
            }
        }
        let kvs = if req.count_only {
            Vec::new()
        } else {
            kvs.into_iter()
                .map(|kv| {
                    let mut kv = kv.clone();
                    if req.keys_only {
                        kv.value.clear();
                    }
                    kv
                })
                .collect()
        };
        RangeResponse { header: Some(ResponseHeader { revision: header_rev, ..Default::default() }), kvs, more, count }
    }
}

fn sort(kvs: &mut [&KeyValue], order: i32, target: i32) {
    let order = SortOrder::try_from(order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(target).unwrap_or(SortTarget::Key);
    // etcd: no order with a non-key target means ascending; keys already come ascending.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    kvs.sort_by(|a, b| {
        let ord = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend {
            ord.reverse()
        } else {
            ord
        }
    });
}

/// Checks a read revision: 0 or less means current.
pub fn read_revision(requested: i64, current: i64, compacted: i64) -> Result<i64, MvccError> {
    let rev = if requested <= 0 { current } else { requested };
    if rev > current {
        return Err(MvccError::FutureRevision);
    }
    if rev < compacted {
        return Err(MvccError::Compacted);
    }
    Ok(rev)
}
