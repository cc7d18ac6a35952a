//! Watch streams: ids and created replies in order, history then live events without
//! gaps or duplicates, filters and prev_kv, cancel, progress, compaction, bad ranges.

use std::time::Duration;

use raftgres_proto::etcdserverpb::watch_create_request::FilterType;
use raftgres_proto::etcdserverpb::watch_request::RequestUnion;
use raftgres_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use raftgres_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::{within, Node};

struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

impl Stream {
    async fn open(node: &Node) -> Stream {
        let (tx, rx) = mpsc::channel(16);
        let resp = within(node.watch().watch(ReceiverStream::new(rx))).await.expect("watch stream");
        Stream { tx, rx: resp.into_inner() }
    }

    async fn send(&self, req: RequestUnion) {
        self.tx.send(WatchRequest { request_union: Some(req) }).await.expect("send");
    }

    async fn create(&self, c: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(c)).await;
    }

    async fn next(&mut self) -> WatchResponse {
        within(self.rx.message()).await.expect("stream ok").expect("a response")
    }

    /// The next response, or None if nothing comes within `wait`.
    async fn maybe_next(&mut self, wait: Duration) -> Option<WatchResponse> {
        tokio::time::timeout(wait, self.rx.message()).await.ok().and_then(|r| r.ok().flatten())
    }
}

fn prefix(p: &str) -> WatchCreateRequest {
    let end = raftgres_etcd_api::prefix_end(p.as_bytes());
    WatchCreateRequest { key: p.into(), range_end: end, ..Default::default() }
}

fn keys_and_revs(resp: &WatchResponse) -> Vec<(String, i64)> {
    resp.events.iter().filter_map(|e| e.kv.as_ref()).map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.mod_revision)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_are_answered_in_order_with_ids_from_zero() {
    let node = Node::start().await;
    let mut s = Stream::open(&node).await;
    s.create(prefix("/a/")).await;
    s.create(prefix("/b/")).await;
    let (first, second) = (s.next().await, s.next().await);
    assert!(first.created && second.created);
    assert_eq!((first.watch_id, second.watch_id), (0, 1));
    let header = first.header.expect("header");
    assert_eq!(header.member_id, node.store.id());
    assert!(header.raft_term >= 1);

    node.put("/b/x", "1").await;
    let rev = node.put("/a/x", "2").await;
    let ev = s.next().await;
    assert_eq!((ev.watch_id, keys_and_revs(&ev)), (1, vec![("/b/x".into(), rev - 1)]));
    let ev = s.next().await;
    assert_eq!((ev.watch_id, keys_and_revs(&ev)), (0, vec![("/a/x".into(), rev)]));
    assert!(ev.events[0].prev_kv.is_none(), "prev_kv only when asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_then_live_without_gaps_or_duplicates() {
    let node = Node::start().await;
    let first = node.put("/h/1", "a").await;
    node.put("/h/2", "b").await;
    node.put("/other", "x").await;
    node.put("/h/1", "c").await;
    let mut s = Stream::open(&node).await;
    s.create(WatchCreateRequest { start_revision: first, prev_kv: true, ..prefix("/h/") }).await;
    assert!(s.next().await.created);
    let writer = {
        let node_kv = node.kv();
        tokio::spawn(async move {
            let mut kv = node_kv;
            for i in 0..20 {
                let put = raftgres_proto::etcdserverpb::PutRequest {
                    key: format!("/h/live{i}").into_bytes(),
                    value: b"v".to_vec(),
                    ..Default::default()
                };
                kv.put(put).await.expect("put");
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 23 {
        let resp = s.next().await;
        seen.extend(keys_and_revs(&resp));
    }
    within(writer).await.expect("writer");
    let revs: Vec<i64> = seen.iter().map(|(_, r)| *r).collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "strictly increasing, no duplicates: {revs:?}");
    assert_eq!(seen[0], ("/h/1".to_string(), first));
    assert!(seen.iter().all(|(k, _)| k.starts_with("/h/")));
    assert!(s.maybe_next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_prev_kv_cancel_and_progress() {
    let node = Node::start().await;
    node.put("/f", "old").await;
    let mut s = Stream::open(&node).await;
    let no_put =
        WatchCreateRequest { key: "/f".into(), filters: vec![FilterType::Noput as i32], prev_kv: true, watch_id: 7, ..Default::default() };
    s.create(no_put).await;
    assert_eq!(s.next().await.watch_id, 7);
    node.put("/f", "new").await;
    let mut kv = node.kv();
    let del = DeleteRangeRequest { key: "/f".into(), ..Default::default() };
    let rev = within(kv.delete_range(del)).await.expect("delete").into_inner().header.expect("header").revision;
    let ev = s.next().await;
    assert_eq!(ev.events.len(), 1);
    assert_eq!(ev.events[0].r#type, EventType::Delete as i32);
    assert_eq!(ev.events[0].prev_kv.as_ref().map(|kv| kv.value.clone()), Some(b"new".to_vec()));

    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {})).await;
    let progress = s.next().await;
    assert_eq!(progress.watch_id, -1);
    assert!(progress.events.is_empty());
    assert!(progress.header.expect("header").revision >= rev);

    s.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 7 })).await;
    let cancel = s.next().await;
    assert!(cancel.canceled && cancel.watch_id == 7);
    // Unknown ids get no answer; the stream stays usable.
    s.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 99 })).await;
    s.create(WatchCreateRequest { key: "/g".into(), ..Default::default() }).await;
    let created = s.next().await;
    assert!(created.created && !created.canceled);
}

#[tokio::test(flavor = "multi_thread")]
async fn compacted_start_and_bad_ranges_are_cancelled() {
    let node = Node::start().await;
    let first = node.put("/c", "1").await;
    let last = node.put("/c", "2").await;
    let compact = CompactionRequest { revision: last, physical: false };
    within(node.kv().compact(compact)).await.expect("compact");

    let mut s = Stream::open(&node).await;
    s.create(WatchCreateRequest { key: "/c".into(), start_revision: first, ..Default::default() }).await;
    let created = s.next().await;
    assert!(created.created && !created.canceled);
    let cancelled = s.next().await;
    assert!(cancelled.canceled);
    assert_eq!((cancelled.watch_id, cancelled.compact_revision), (created.watch_id, last));

    s.create(WatchCreateRequest { key: "b".into(), range_end: "a".into(), ..Default::default() }).await;
    let bad = s.next().await;
    assert!(bad.created && bad.canceled);
    assert_eq!(bad.watch_id, -1);
    assert_eq!(bad.cancel_reason, "mvcc: watcher range is empty");

    s.create(WatchCreateRequest { key: "/d".into(), watch_id: 3, ..Default::default() }).await;
    assert!(!s.next().await.canceled);
    s.create(WatchCreateRequest { key: "/d".into(), watch_id: 3, ..Default::default() }).await;
    let dup = s.next().await;
    assert!(dup.canceled && dup.cancel_reason.contains("duplicate watch ID"));
}

#[tokio::test(flavor = "multi_thread")]
async fn half_closed_streams_keep_delivering() {
    let node = Node::start().await;
    let mut s = Stream::open(&node).await;
    s.create(WatchCreateRequest { key: "/hc".into(), ..Default::default() }).await;
    assert!(s.next().await.created);
    let Stream { tx, mut rx } = s;
    drop(tx);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rev = node.put("/hc", "x").await;
    let ev = within(rx.message()).await.expect("ok").expect("an event");
    assert_eq!(ev.events[0].kv.as_ref().map(|kv| kv.mod_revision), Some(rev));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_falls_behind_catches_up_from_history() {
    // More revisions than the store's live event channel holds (4096), written while
    // the client does not read: the stream lags, then must resync from history.
    const WRITES: usize = 5000;
    let node = Node::start().await;
    let mut s = Stream::open(&node).await;
    s.create(prefix("/lag/")).await;
    assert!(s.next().await.created);
    let mut tasks = Vec::new();
    for t in 0..50 {
        let store = node.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..WRITES / 50 {
                // Big enough values that the client's HTTP/2 windows fill up.
                let put = raftgres_proto::etcdserverpb::PutRequest {
                    key: format!("/lag/{t}-{i}").into_bytes(),
                    value: vec![b'v'; 8192],
                    ..Default::default()
                };
                let result = store.kv(raftgres_mvcc::Command::Put(put)).await;
                assert!(matches!(result, Ok(Ok(_))), "{result:?}");
            }
        }));
    }
    // 40 MB through the log with an fsync per group: on a loaded 2-core machine that
    // can take longer than PATIENCE; the test is about the stream, not the write rate.
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await.expect("the writers finished").expect("writer");
    }
    let mut revs = Vec::new();
    while revs.len() < WRITES {
        revs.extend(keys_and_revs(&s.next().await).into_iter().map(|(_, r)| r));
    }
    assert_eq!(revs.len(), WRITES);
    assert!(revs.windows(2).all(|w| w[1] == w[0] + 1), "every revision once, in order");
    assert!(s.maybe_next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_progress_notify_watches_get_progress_responses() {
    let node = Node::start_api(|store| {
        raftgres_etcd_api::EtcdApi::new(store, raftgres_etcd_api::ApiLimits::default())
            .with_progress_notify_interval(Duration::from_millis(200))
    })
    .await;
    let rev = node.put("/p", "1").await;
    let mut s = Stream::open(&node).await;
    s.create(WatchCreateRequest { key: "/p".into(), progress_notify: true, ..Default::default() }).await;
    s.create(WatchCreateRequest { key: "/q".into(), ..Default::default() }).await;
    let (a, b) = (s.next().await, s.next().await);
    assert!(a.created && b.created);
    let progress = s.next().await;
    assert_eq!(progress.watch_id, a.watch_id, "only the progress_notify watch");
    assert!(progress.events.is_empty() && !progress.created && !progress.canceled);
    assert_eq!(progress.header.expect("header").revision, rev);
}
