//! One watch of a watch stream, as pure logic: what it watches (interval, filters,
//! `prev_kv`), the next revision it must deliver, how ids are handed out (etcd's
//! `watchStream.Watch`), and how a large response is split when the client allows
//! fragments. The stream itself (I/O, ordering, history) is in `watch`.

use std::collections::BTreeMap;

use prost::Message;
use raftgres_proto::etcdserverpb::watch_create_request::FilterType;
use raftgres_proto::etcdserverpb::{WatchCreateRequest, WatchResponse};
use raftgres_proto::mvccpb::event::EventType;
use raftgres_proto::mvccpb::Event;

use crate::keys::KeyRange;

/// etcd's `ErrWatcherDuplicateID`.
pub const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// A negative watch id in a create request (etcd would register it; raftgres refuses).
pub const NEGATIVE_WATCH_ID: &str = "raftgres: watch_id must be 0 (server assigns) or positive";

/// One watch.
#[derive(Debug, Clone)]
pub struct Watcher {
    range: KeyRange,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    pub progress_notify: bool,
    pub fragment: bool,
    /// The next revision this watch must deliver; everything before it was delivered.
    pub next_rev: i64,
    /// Whether events were sent since the last progress tick.
    pub sent_since_tick: bool,
}

impl Watcher {
    /// A watch as requested, starting at `start` (the caller resolves 0 to now + 1).
    /// Err: etcd's cancel reason.
    pub fn new(req: &WatchCreateRequest, start: i64) -> Result<Self, &'static str> {
        let range = KeyRange::for_watch(&req.key, &req.range_end)?;
        // Unknown filter values are ignored, as etcd's FiltersFromRequest does.
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        Ok(Self {
            range,
            prev_kv: req.prev_kv,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            next_rev: start,
            sent_since_tick: false,
        })
    }

    fn wants(&self, e: &Event) -> bool {
        let key = e.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice());
        let put = e.r#type == EventType::Put as i32;
        self.range.contains(key) && if put { !self.no_put } else { !self.no_delete }
    }

    /// The events this watch wants out of `events`, `prev_kv` kept only if asked.
    pub fn select<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> Vec<Event> {
        events
            .into_iter()
            .filter(|e| self.wants(e))
            .map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

/// The revision an event belongs to.
pub fn event_revision(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// Hands out watch ids per stream as etcd does: a requested id (> 0) is used if free;
/// 0 takes the lowest free id counting up from the last one handed out, starting at 0.
#[derive(Debug, Default)]
pub struct WatchIds {
    next: i64,
}

impl WatchIds {
    pub fn assign<T>(&mut self, requested: i64, in_use: &BTreeMap<i64, T>) -> Result<i64, &'static str> {
        if requested < 0 {
            return Err(NEGATIVE_WATCH_ID);
        }
        if requested > 0 {
            return if in_use.contains_key(&requested) { Err(DUPLICATE_WATCH_ID) } else { Ok(requested) };
        }
        while in_use.contains_key(&self.next) {
            self.next = self.next.saturating_add(1);
        }
        let id = self.next;
        self.next = self.next.saturating_add(1);
        Ok(id)
    }
}

/// Splits `resp` into responses of at most `limit` encoded bytes (at least one event
/// each), all but the last marked `fragment`, as etcd does for watches created with
/// `fragment`. Responses within the limit are returned whole.
pub fn fragments(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if resp.encoded_len() <= limit || resp.events.len() < 2 {
        return vec![resp];
    }
    let base = WatchResponse { events: Vec::new(), ..resp.clone() };
    let base_len = base.encoded_len();
    let mut out = Vec::new();
    let mut current = base.clone();
    let mut size = base_len;
    for event in resp.events {
        // Field 11, length-delimited: tag, length varint, body.
        let event_len = 1 + prost::length_delimiter_len(event.encoded_len()) + event.encoded_len();
        if !current.events.is_empty() && size + event_len > limit {
            out.push(WatchResponse { fragment: true, ..std::mem::replace(&mut current, base.clone()) });
            size = base_len;
        }
        size += event_len;
        current.events.push(event);
    }
    out.push(current);
    out
}

#[cfg(test)]
mod tests {
    use raftgres_proto::mvccpb::KeyValue;

    use super::*;

    fn event(kind: EventType, key: &[u8], rev: i64) -> Event {
        let kv = KeyValue { key: key.to_vec(), mod_revision: rev, value: vec![1; 10], ..Default::default() };
        Event { r#type: kind as i32, kv: Some(kv.clone()), prev_kv: Some(kv) }
    }

    fn create(key: &[u8], end: &[u8]) -> WatchCreateRequest {
        WatchCreateRequest { key: key.to_vec(), range_end: end.to_vec(), ..Default::default() }
    }

    #[test]
    fn selects_by_interval_and_filters_and_strips_prev_kv() {
        let evs = [event(EventType::Put, b"/a/1", 5), event(EventType::Delete, b"/a/2", 5), event(EventType::Put, b"/b", 5)];
        let w = Watcher::new(&create(b"/a/", b"/a0"), 1).expect("valid");
        let got = w.select(&evs);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|e| e.prev_kv.is_none()));

        let mut req = create(b"/a/", b"/a0");
        req.filters = vec![FilterType::Noput as i32, 99];
        req.prev_kv = true;
        let w = Watcher::new(&req, 1).expect("valid");
        let got = w.select(&evs);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].r#type, EventType::Delete as i32);
        assert!(got[0].prev_kv.is_some());

        req.filters = vec![FilterType::Nodelete as i32];
        assert_eq!(Watcher::new(&req, 1).expect("valid").select(&evs).len(), 1);
    }

    #[test]
    fn refuses_empty_intervals() {
        assert_eq!(Watcher::new(&create(b"b", b"a"), 1).err(), Some(crate::keys::EMPTY_WATCHER_RANGE));
    }

    #[test]
    fn ids_count_up_from_zero_and_skip_taken_ones() {
        let mut ids = WatchIds::default();
        let mut used: BTreeMap<i64, ()> = BTreeMap::new();
        for want in [0, 1, 2] {
            let id = ids.assign(0, &used).expect("free");
            assert_eq!(id, want);
            used.insert(id, ());
        }
        assert_eq!(ids.assign(5, &used), Ok(5));
        used.insert(5, ());
        assert_eq!(ids.assign(5, &used), Err(DUPLICATE_WATCH_ID));
        assert_eq!(ids.assign(-1, &used), Err(NEGATIVE_WATCH_ID));
        assert_eq!(ids.assign(0, &used), Ok(3));
        used.insert(3, ());
        used.insert(4, ());
        assert_eq!(ids.assign(0, &used), Ok(6));
    }

    #[test]
    fn fragments_split_big_responses_only() {
        let events: Vec<Event> = (0..10).map(|i| event(EventType::Put, format!("k{i}").as_bytes(), 7)).collect();
        let resp = WatchResponse { watch_id: 3, events, ..Default::default() };
        assert_eq!(fragments(resp.clone(), usize::MAX).len(), 1);
        let parts = fragments(resp.clone(), 120);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment && !p.events.is_empty()));
        assert!(parts.last().is_some_and(|p| !p.fragment));
        assert!(parts.iter().all(|p| p.watch_id == 3 && p.encoded_len() <= 120));
        let total: usize = parts.iter().map(|p| p.events.len()).sum();
        assert_eq!(total, 10);
        // An event bigger than the limit still goes out, alone.
        assert_eq!(fragments(resp, 1).len(), 10);
    }
}
