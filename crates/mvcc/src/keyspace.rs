//! The key space: every key's history of revisions since the last compaction, point and
//! interval lookups at any revision, the writes one revision makes, and compaction.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use raftgres_proto::mvccpb::KeyValue;
use serde::{Deserialize, Serialize};

use crate::size;

/// One revision of a key: its value then, or `None` for a deletion (tombstone). The
/// key-value is shared with the event history ([`crate::StoredEvent`]), which would
/// otherwise hold a second copy of every value written since the last compaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Revisioned {
    pub rev: i64,
    #[serde(with = "crate::shared_kv")]
    pub kv: Option<Arc<KeyValue>>,
}

/// All keys with their histories (oldest first) since the last compaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeySpace {
    keys: BTreeMap<Vec<u8>, Vec<Revisioned>>,
}

/// True if `key` lies in the interval a request names with `start` and `end` (etcd's
/// `range_end`): `end` empty = just `start`; `end` = `"\0"` = every key `>= start`;
/// otherwise `[start, end)`.
pub fn in_interval(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

/// Bounds of a key interval, borrowed from a request.
type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The bounds of a request's interval, or `None` when it is empty (`end <= key`).
fn bounds<'a>(key: &'a [u8], end: &'a [u8]) -> Option<Bounds<'a>> {
    if end.is_empty() {
        Some((Bound::Included(key), Bound::Included(key)))
    } else if end == [0] {
        Some((Bound::Included(key), Bound::Unbounded))
    } else if end <= key {
        None
    } else {
        Some((Bound::Included(key), Bound::Excluded(end)))
    }
}

/// The state of a history at `rev` (None if absent or deleted then).
fn state_at(history: &[Revisioned], rev: i64) -> Option<&Arc<KeyValue>> {
    let idx = history.partition_point(|r| r.rev <= rev);
    history.get(idx.checked_sub(1)?)?.kv.as_ref()
}

impl KeySpace {
    /// The key's value at `rev`.
    pub fn at(&self, key: &[u8], rev: i64) -> Option<&Arc<KeyValue>> {
        state_at(self.keys.get(key)?, rev)
    }

    /// The key's current value (writes of a revision in progress included).
    pub fn current(&self, key: &[u8]) -> Option<&KeyValue> {
        self.keys.get(key)?.last()?.kv.as_deref()
    }

    /// Every live key-value of the interval at `rev`, in key order.
    pub fn live_in(&self, key: &[u8], end: &[u8], rev: i64) -> Vec<&KeyValue> {
        let Some(range) = bounds(key, end) else { return Vec::new() };
        self.keys.range::<[u8], _>(range).filter_map(|(_, h)| state_at(h, rev).map(|kv| &**kv)).collect()
    }

    /// Every currently live key-value of the interval, in key order.
    pub fn current_in(&self, key: &[u8], end: &[u8]) -> Vec<&KeyValue> {
        let Some(range) = bounds(key, end) else { return Vec::new() };
        self.keys.range::<[u8], _>(range).filter_map(|(_, h)| h.last()?.kv.as_deref()).collect()
    }

    /// How many keys are live now.
    pub fn live_count(&self) -> usize {
        self.keys.values().filter(|h| h.last().is_some_and(|r| r.kv.is_some())).count()
    }

    /// Records `key` at `rev` (a value, or a tombstone when `kv` is None). A second write
    /// of the same key in the same revision (inside one txn) replaces the first.
    /// Returns how many bytes the key space grew by (`size`; negative when it shrank).
    pub fn record(&mut self, key: &[u8], rev: i64, kv: Option<Arc<KeyValue>>) -> i64 {
        let mut grew = 0;
        let history = self.keys.entry(key.to_vec()).or_insert_with(|| {
            grew += size::key_bytes(key);
            // Most keys keep one revision between compactions: a first push into
            // `Vec::new()` reserves four (~260 spare bytes a key, a third of a member's
            // heap under `kvbench`'s 256 writers).
            Vec::with_capacity(1)
        });
        let new = Revisioned { rev, kv };
        grew += size::revision_bytes(&new);
        let mut shrank = 0;
        match history.last_mut() {
            Some(last) if last.rev == rev => {
                shrank = size::revision_bytes(last);
                *last = new;
            }
            _ => history.push(new),
        }
        i64::try_from(grew).unwrap_or(i64::MAX).saturating_sub(i64::try_from(shrank).unwrap_or(i64::MAX))
    }

    /// The bytes of every key's history (`size`).
    pub fn measure(&self) -> u64 {
        self.keys.iter().map(|(key, history)| size::key_bytes(key) + history.iter().map(size::revision_bytes).sum::<u64>()).sum()
    }

    /// Forgets history older than `rev`: each key keeps its state at `rev` (unless that
    /// is a deletion) and everything after it.
    pub fn compact(&mut self, rev: i64) {
        self.keys.retain(|_, history| {
            let keep_from = history.partition_point(|r| r.rev <= rev).saturating_sub(1);
            history.drain(..keep_from);
            if history.first().is_some_and(|r| r.rev <= rev && r.kv.is_none()) {
                history.remove(0);
            }
            // A history a burst of writes grew gives its room back once compacted.
            if history.capacity() > 2 * history.len() {
                history.shrink_to_fit();
            }
            !history.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, rev: i64) -> KeyValue {
        KeyValue { key: key.into(), mod_revision: rev, create_revision: rev, version: 1, ..Default::default() }
    }

    #[test]
    fn intervals_follow_etcds_range_end_forms() {
        assert!(in_interval(b"a", b"a", b""));
        assert!(!in_interval(b"ab", b"a", b""));
        assert!(in_interval(b"zzz", b"a", b"\0"));
        assert!(!in_interval(b"0", b"a", b"\0"));
        assert!(in_interval(b"a/x", b"a/", b"a0"));
        assert!(!in_interval(b"a0", b"a/", b"a0"));
        assert!(!in_interval(b"b", b"b", b"a"), "end before start names nothing");
    }

    #[test]
    fn compaction_keeps_the_state_at_the_compact_revision() {
        let mut ks = KeySpace::default();
        ks.record(b"a", 2, Some(Arc::new(kv("a", 2))));
        ks.record(b"a", 4, Some(Arc::new(kv("a", 4))));
        ks.record(b"b", 3, Some(Arc::new(kv("b", 3))));
        ks.record(b"b", 5, None);
        ks.record(b"c", 2, Some(Arc::new(kv("c", 2))));
        ks.record(b"c", 3, None);
        ks.compact(4);
        assert_eq!(ks.at(b"a", 4).map(|k| k.mod_revision), Some(4));
        assert_eq!(ks.at(b"b", 4).map(|k| k.mod_revision), Some(3));
        assert!(ks.at(b"b", 5).is_none());
        assert!(!ks.keys.contains_key(b"c".as_slice()), "a key deleted before the compaction is gone");
        assert_eq!(ks.live_count(), 1);
    }

    #[test]
    fn histories_hold_no_spare_room_for_revisions() {
        let mut ks = KeySpace::default();
        ks.record(b"a", 2, Some(Arc::new(kv("a", 2))));
        assert_eq!(ks.keys[b"a".as_slice()].capacity(), 1, "a new key's history");
        for rev in 3..=10 {
            ks.record(b"a", rev, Some(Arc::new(kv("a", rev))));
        }
        ks.compact(10);
        assert_eq!(ks.keys[b"a".as_slice()].capacity(), 1, "a compacted history");
    }

    #[test]
    fn empty_and_inverted_intervals_do_not_panic() {
        let mut ks = KeySpace::default();
        ks.record(b"m", 2, Some(Arc::new(kv("m", 2))));
        assert!(ks.live_in(b"z", b"a", 2).is_empty());
        assert!(ks.live_in(b"m", b"m", 2).is_empty());
        assert_eq!(ks.live_in(&[0], &[0], 2).len(), 1);
        assert_eq!(ks.current_in(b"m", b"").len(), 1);
    }
}
