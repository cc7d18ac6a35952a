//! `etcdserverpb.Watch`: one bidirectional stream carries many watches.
//!
//! Ordering without gaps or duplicates: the stream subscribes to the store's applied
//! events *before* any watch exists. Creating a watch reads the current revision R,
//! answers `created` (so creates are answered in request order, as etcd 3.4 clients
//! expect), replays history from the start revision up to R, and from then on takes
//! live batches with revisions above R only. A watch that finds a gap (a live batch
//! beyond the next revision it owes) or a stream that lagged behind the live channel
//! catches up from history; history that was compacted away cancels the watch with
//! `compact_revision` set, as etcd does. All events of one revision for one watch go in
//! one response (split only into `fragment`s when the watch asked for them).
//!
//! Also: cancel (answered `canceled`), progress requests (answered with watch id -1 and
//! the revision every watch of the stream has been brought to), periodic progress
//! notifications for `progress_notify` watches that saw no event, and the `hasleader`
//! cancellation ("etcdserver: no leader"). With auth enabled each watch needs read
//! permission on its interval (checked with the stream's token when it is created); a
//! refused watch is answered created and canceled with etcd's reason ("... desc =
//! etcdserver: permission denied"). A client that half-closes its side keeps
//! receiving events, as with etcd.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use prost::Message;
use raftgres_proto::etcdserverpb::watch_request::RequestUnion;
use raftgres_proto::etcdserverpb::watch_server::Watch;
use raftgres_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use raftgres_proto::mvccpb::Event;
use raftgres_store::auth::Need;
use raftgres_store::WatchBatch;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::client_port::ClientConn;
use crate::error::no_leader;
use crate::keys::KeyRange;
use crate::leader::LeaderMonitor;
use crate::watcher::{event_revision, fragments, WatchIds, Watcher};
use crate::EtcdApi;

/// Replayed history goes out in responses of at most this many revisions (etcd's
/// `watchBatchMaxRevs`).
const MAX_REVISIONS_PER_RESPONSE: usize = 1000;

/// Responses buffered per stream before the stream waits for the client.
const OUTBOUND_BUFFER: usize = 64;

type Outbound = mpsc::Sender<Result<WatchResponse, Status>>;

/// The Watch service.
pub struct WatchService {
    api: EtcdApi,
}

impl WatchService {
    pub fn new(api: EtcdApi) -> Self {
        Self { api }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let monitor = LeaderMonitor::new(self.api.store.clone(), req.metadata());
        let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
        // Subscribe before anything else: every revision applied from here on reaches us.
        let live = self.api.store.applied().subscribe();
        self.api.store.store_metrics().watch_streams.fetch_add(1, Ordering::Relaxed);
        let stream = WatchStream {
            synced_rev: self.api.current_revision(),
            api: self.api.clone(),
            out: tx,
            watchers: BTreeMap::new(),
            counted: 0,
            ids: WatchIds::default(),
            caller: caller_of(&req),
        };
        tokio::spawn(stream.run(req.into_inner(), live, monitor));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The server side of one watch stream.
struct WatchStream {
    api: EtcdApi,
    out: Outbound,
    watchers: BTreeMap<i64, Watcher>,
    /// How many of `watchers` the store's watch gauge counts now.
    counted: i64,
    ids: WatchIds,
    /// Every watch of the stream has been given every event up to this revision.
    synced_rev: i64,
    /// Who opened the stream (its token, or its client certificate's user): each watch
    /// created is authorized as it.
    caller: Request<()>,
}

/// The caller of `req` (its metadata and connection), kept to authorize later watches.
fn caller_of<T>(req: &Request<T>) -> Request<()> {
    let mut caller = Request::new(());
    *caller.metadata_mut() = req.metadata().clone();
    if let Some(conn) = req.extensions().get::<ClientConn>() {
        caller.extensions_mut().insert(conn.clone());
    }
    caller
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let metrics = self.api.store.store_metrics();
        metrics.watches.fetch_sub(self.counted, Ordering::Relaxed);
        metrics.watch_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WatchStream {
    async fn run(mut self, mut inbound: Streaming<WatchRequest>, mut live: broadcast::Receiver<WatchBatch>, mut monitor: LeaderMonitor) {
        let period = self.api.progress_notify_interval;
        let mut progress = interval_at(Instant::now() + period, period);
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let out = self.out.clone();
        let mut inbound_open = true;
        loop {
            let keep_going = tokio::select! {
                msg = inbound.message(), if inbound_open => match msg {
                    Ok(Some(req)) => self.drain(&mut live).await && self.on_request(req).await,
                    // Half-closed: keep sending events until the client goes away.
                    Ok(None) => {
                        inbound_open = false;
                        true
                    }
                    Err(status) => {
                        let _ = self.out.send(Err(status)).await;
                        false
                    }
                },
                batch = live.recv() => match batch {
                    Ok(batch) => self.on_batch(&batch).await,
                    Err(RecvError::Lagged(_)) => self.resync().await,
                    Err(RecvError::Closed) => false,
                },
                _ = progress.tick() => self.drain(&mut live).await && self.on_progress_tick().await,
                () = monitor.lost() => {
                    let _ = self.out.send(Err(no_leader())).await;
                    false
                }
                () = out.closed() => false,
            };
            self.count_watches();
            if !keep_going {
                return;
            }
        }
    }

    /// Brings the store's watch gauge up to date with this stream's watches.
    fn count_watches(&mut self) {
        let now = i64::try_from(self.watchers.len()).unwrap_or(i64::MAX);
        self.api.store.store_metrics().watches.fetch_add(now - self.counted, Ordering::Relaxed);
        self.counted = now;
    }

    /// Handles every live batch already received, so answers reflect them.
    async fn drain(&mut self, live: &mut broadcast::Receiver<WatchBatch>) -> bool {
        loop {
            let ok = match live.try_recv() {
                Ok(batch) => self.on_batch(&batch).await,
                Err(TryRecvError::Lagged(_)) => self.resync().await,
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return true,
            };
            if !ok {
                return false;
            }
        }
    }

    /// Sends one response; false when the client is gone.
    async fn send(&self, resp: WatchResponse) -> bool {
        self.out.send(Ok(resp)).await.is_ok()
    }

    fn reply(&self, watch_id: i64, revision: i64) -> WatchResponse {
        WatchResponse { header: self.api.header(revision), watch_id, ..Default::default() }
    }

    /// Sends events to watch `id`, in fragments if it asked for them.
    async fn send_events(&mut self, id: i64, revision: i64, events: Vec<Event>) -> bool {
        let Some(w) = self.watchers.get_mut(&id) else { return true };
        w.sent_since_tick = true;
        let limit = if w.fragment { self.api.limits.max_request_bytes } else { usize::MAX };
        let resp = WatchResponse { events, ..self.reply(id, revision) };
        for part in fragments(resp, limit) {
            if !self.send(part).await {
                return false;
            }
        }
        true
    }

    async fn on_request(&mut self, req: WatchRequest) -> bool {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                // An unknown id gets no answer, as in etcd.
                if self.watchers.remove(&c.watch_id).is_none() {
                    return true;
                }
                let resp = WatchResponse { canceled: true, ..self.reply(c.watch_id, self.api.current_revision()) };
                self.send(resp).await
            }
            Some(RequestUnion::ProgressRequest(_)) => self.send(self.reply(-1, self.synced_rev)).await,
            // etcd ignores empty requests rather than ending the stream.
            None => true,
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> bool {
        let current = self.api.current_revision();
        let start = match c.start_revision {
            0 => current.saturating_add(1),
            // etcd replays everything still in history for a negative start.
            s if s < 0 => 1,
            s => s,
        };
        let created = self
            .authorize_watch(&c)
            .and_then(|()| Watcher::new(&c, start).map_err(str::to_string))
            .and_then(|w| Ok((self.ids.assign(c.watch_id, &self.watchers).map_err(str::to_string)?, w)));
        let (id, watcher) = match created {
            Ok(created) => created,
            Err(reason) => {
                let resp = WatchResponse { created: true, canceled: true, cancel_reason: reason, ..self.reply(-1, current) };
                return self.send(resp).await;
            }
        };
        if !self.send(WatchResponse { created: true, ..self.reply(id, current) }).await {
            return false;
        }
        self.watchers.insert(id, watcher);
        self.catch_up(id, current).await
    }

    /// Read permission on the watched interval, or why not: the cancel reason, the
    /// status as Go prints it, as etcd answers a watch it refuses (created and canceled
    /// at once).
    fn authorize_watch(&self, c: &WatchCreateRequest) -> Result<(), String> {
        let Ok(range) = KeyRange::for_watch(&c.key, &c.range_end) else { return Ok(()) }; // Watcher::new refuses it.
        let needs = [Need::Read(range.key(), range.range_end())];
        self.api.authorize(&self.caller, &needs).map_err(|s| format!("rpc error: code = {:?} desc = {}", s.code(), s.message()))
    }

    /// Replays history to watch `id` from its next revision up to `upto` inclusive.
    async fn catch_up(&mut self, id: i64, upto: i64) -> bool {
        let Some(w) = self.watchers.get(&id) else { return true };
        if w.next_rev > upto {
            return true;
        }
        let history = {
            let data = self.api.store.applied().read();
            data.mvcc.events_between(w.next_rev, upto).map_err(|_| data.mvcc.compact_revision())
        };
        let events = match history {
            Ok(events) => w.select(&events),
            Err(compact_revision) => {
                self.watchers.remove(&id);
                let resp = WatchResponse { canceled: true, compact_revision, ..self.reply(id, upto) };
                return self.send(resp).await;
            }
        };
        for chunk in by_revisions(events, MAX_REVISIONS_PER_RESPONSE, self.api.limits.max_request_bytes) {
            if !self.send_events(id, upto, chunk).await {
                return false;
            }
        }
        if let Some(w) = self.watchers.get_mut(&id) {
            w.next_rev = upto.saturating_add(1);
        }
        true
    }

    /// One applied revision, to every watch that has not seen it yet.
    async fn on_batch(&mut self, batch: &WatchBatch) -> bool {
        let rev = batch.revision;
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(next_rev) = self.watchers.get(&id).map(|w| w.next_rev) else { continue };
            if rev < next_rev {
                continue;
            }
            // A gap: revisions this watch never got. History has them.
            if rev > next_rev && !self.catch_up(id, rev - 1).await {
                return false;
            }
            let Some(w) = self.watchers.get_mut(&id) else { continue };
            w.next_rev = rev.saturating_add(1);
            let events = w.select(batch.events.iter());
            if !events.is_empty() && !self.send_events(id, rev, events).await {
                return false;
            }
        }
        self.synced_rev = self.synced_rev.max(rev);
        true
    }

    /// The live channel dropped batches: bring every watch up to now from history.
    async fn resync(&mut self) -> bool {
        let current = self.api.current_revision();
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            if !self.catch_up(id, current).await {
                return false;
            }
        }
        self.synced_rev = self.synced_rev.max(current);
        true
    }

    /// Progress notifications for `progress_notify` watches that saw no event lately.
    async fn on_progress_tick(&mut self) -> bool {
        let due: Vec<i64> = self
            .watchers
            .iter_mut()
            .filter_map(|(id, w)| {
                let due = w.progress_notify && !w.sent_since_tick;
                w.sent_since_tick = false;
                due.then_some(*id)
            })
            .collect();
        for id in due {
            if !self.send(self.reply(id, self.synced_rev)).await {
                return false;
            }
        }
        true
    }
}

/// Splits events (in revision order) into chunks of whole revisions: at most `max_revs`
/// revisions, and no more than about `max_bytes` unless one revision alone is bigger
/// (clients often refuse messages over 4 MiB).
fn by_revisions(events: Vec<Event>, max_revs: usize, max_bytes: usize) -> Vec<Vec<Event>> {
    let mut chunks: Vec<Vec<Event>> = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let (mut revs, mut bytes) = (0, 0);
    let mut last = None;
    for e in events {
        let rev = event_revision(&e);
        let size = e.encoded_len() + 8;
        if last != Some(rev) {
            if !current.is_empty() && (revs == max_revs || bytes + size > max_bytes) {
                chunks.push(std::mem::take(&mut current));
                (revs, bytes) = (0, 0);
            }
            revs += 1;
            last = Some(rev);
        }
        bytes += size;
        current.push(e);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use raftgres_proto::mvccpb::KeyValue;

    use super::*;

    fn at(rev: i64) -> Event {
        Event { kv: Some(KeyValue { mod_revision: rev, ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn history_chunks_keep_revisions_whole() {
        let events = vec![at(2), at(2), at(3), at(4), at(4), at(4), at(5)];
        let revs = |chunks: Vec<Vec<Event>>| -> Vec<Vec<i64>> { chunks.iter().map(|c| c.iter().map(event_revision).collect()).collect() };
        assert_eq!(revs(by_revisions(events.clone(), 2, usize::MAX)), vec![vec![2, 2, 3], vec![4, 4, 4, 5]]);
        // A byte budget of about one event: one revision per chunk, never split.
        let one = at(2).encoded_len() + 8;
        assert_eq!(revs(by_revisions(events, 100, one)), vec![vec![2, 2], vec![3], vec![4, 4, 4], vec![5]]);
        assert!(by_revisions(Vec::new(), 2, 10).is_empty());
    }
}
