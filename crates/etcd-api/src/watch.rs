//! `etcdserverpb.Watch`: one bidirectional stream carries many watches.
//!
//! The stream subscribes to applied events *before* any watch is created; a create
//! reads the history up to the current revision R and then takes live batches with
//! revisions above R only, so a watch sees every event once, in order, with no gap.
//! A watch that falls behind the live channel catches up from the history.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use raftgres_mvcc::in_interval;
use raftgres_proto::etcdserverpb::watch_create_request::FilterType;
use raftgres_proto::etcdserverpb::watch_request::RequestUnion;
use raftgres_proto::etcdserverpb::watch_server::Watch;
use raftgres_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use raftgres_proto::mvccpb::event::EventType;
use raftgres_proto::mvccpb::Event;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::Ctx;

pub struct WatchService(pub Ctx);

type Outbound = mpsc::Sender<Result<WatchResponse, Status>>;

/// One watch of a stream.
struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    /// The next revision this watch must deliver.
    next_rev: i64,
}

impl Watcher {
    fn new(c: &WatchCreateRequest) -> Self {
        let key = if c.key.is_empty() { vec![0] } else { c.key.clone() };
        Self {
            key,
            range_end: c.range_end.clone(),
            prev_kv: c.prev_kv,
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
            next_rev: 0,
        }
    }

    /// The events of one revision this watch wants, shaped as asked.
    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| {
                let key = e.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice());
                let is_put = e.r#type == EventType::Put as i32;
                in_interval(key, &self.key, &self.range_end) && !(is_put && self.no_put) && !(!is_put && self.no_delete)
            })
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

fn event_rev(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

struct WatchStream {
    ctx: Ctx,
    out: Outbound,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
}

impl WatchStream {
    async fn send(&self, resp: WatchResponse) -> bool {
        self.out.send(Ok(resp)).await.is_ok()
    }

    fn reply(&self, watch_id: i64, revision: i64) -> WatchResponse {
        WatchResponse { header: self.ctx.header(revision), watch_id, ..Default::default() }
    }

    /// Sends history from the watcher's next revision up to `upto`, one reply per revision.
    async fn catch_up(&mut self, id: i64, upto: i64) -> bool {
        let Some(w) = self.watchers.get(&id) else { return true };
        let history = self.ctx.store.applied().read().mvcc.events_between(w.next_rev, upto);
        let events = match history {
            Ok(events) => events,
            Err(_) => {
                let compact = self.ctx.store.applied().read().mvcc.compact_revision();
                self.watchers.remove(&id);
                let resp = WatchResponse { canceled: true, compact_revision: compact, ..self.reply(id, upto) };
                return self.send(resp).await;
            }
        };
        let mut by_rev: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for e in events {
            by_rev.entry(event_rev(&e)).or_default().push(e);
        }
        for (rev, evs) in by_rev {
            let selected = self.watchers.get(&id).map(|w| w.select(&evs)).unwrap_or_default();
            if !selected.is_empty() && !self.send(WatchResponse { events: selected, ..self.reply(id, rev) }).await {
                return false;
            }
        }
        if let Some(w) = self.watchers.get_mut(&id) {
            w.next_rev = w.next_rev.max(upto + 1);
        }
        true
    }

    async fn create(&mut self, c: WatchCreateRequest) -> bool {
        let id = if c.watch_id > 0 { c.watch_id } else { self.next_id };
        if self.watchers.contains_key(&id) {
            let resp = WatchResponse { created: true, canceled: true, cancel_reason: "etcdserver: duplicate watch ID".into(), ..self.reply(id, self.ctx.revision()) };
            return self.send(resp).await;
        }
        self.next_id = self.next_id.max(id + 1);
        let current = self.ctx.revision();
        let mut w = Watcher::new(&c);
        w.next_rev = if c.start_revision <= 0 { current + 1 } else { c.start_revision };
        if !self.send(WatchResponse { created: true, ..self.reply(id, current) }).await {
            return false;
        }
        self.watchers.insert(id, w);
        self.catch_up(id, current).await
    }

    async fn on_request(&mut self, req: WatchRequest) -> bool {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    let resp = WatchResponse { canceled: true, ..self.reply(c.watch_id, self.ctx.revision()) };
                    return self.send(resp).await;
                }
                true
            }
            Some(RequestUnion::ProgressRequest(_)) => self.send(self.reply(-1, self.ctx.revision())).await,
            None => true,
        }
    }

    async fn on_batch(&mut self, revision: i64, events: &[Event]) -> bool {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(w) = self.watchers.get_mut(&id) else { continue };
            if revision < w.next_rev {
                continue;
            }
            if revision > w.next_rev {
                // A gap (the watch was created between batches): replay it from history.
                if !self.catch_up(id, revision - 1).await {
                    return false;
                }
            }
            let Some(w) = self.watchers.get_mut(&id) else { continue };
            w.next_rev = revision + 1;
            let selected = w.select(events);
            if !selected.is_empty() && !self.send(WatchResponse { events: selected, ..self.reply(id, revision) }).await {
                return false;
            }
        }
        true
    }

    async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
        let mut live = self.ctx.store.applied().subscribe();
        loop {
            let keep_going = tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => self.on_request(req).await,
                    Ok(None) | Err(_) => false,
                },
                batch = live.recv() => match batch {
                    Ok(batch) => self.on_batch(batch.revision, &batch.events).await,
                    Err(RecvError::Lagged(_)) => {
                        let current = self.ctx.revision();
                        let ids: Vec<i64> = self.watchers.keys().copied().collect();
                        let mut ok = true;
                        for id in ids {
                            ok = ok && self.catch_up(id, current).await;
                        }
                        ok
                    }
                    Err(RecvError::Closed) => false,
                },
            };
            if !keep_going {
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(256);
        let stream = WatchStream { ctx: self.0.clone(), out: tx, watchers: BTreeMap::new(), next_id: 0 };
        tokio::spawn(stream.run(req.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
