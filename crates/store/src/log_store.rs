//! The Raft log and vote, on a [`LogBackend`]: openraft's `RaftLogStorage`.
//!
//! Durability rules (see REFERENCE.md): an append is acknowledged to openraft only
//! after it is fsynced — by the [`Flusher`] thread, which makes every append waiting at
//! that moment durable with one fsync (group commit), so the Raft core never waits on
//! the disk (a leader replicates while its own fsync runs); the vote, truncations and
//! the purge point are fsynced before the call returns; the purge point is persisted
//! before entries are deleted; the committed log id is saved without a sync of its own
//! (durable with the next log sync), so a restart re-applies what was committed.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{BackendError, LogBackend};
use crate::error::io_err;
use crate::flusher::Flusher;
use crate::metrics::StoreMetrics;
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// A disk call that takes longer than this counts as failed: a full or dead disk can
/// leave sled blocked for good, and a node must then stop (to be restarted) rather than
/// hang with Raft waiting on it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a blocking disk call off the async workers, failing it after [`IO_TIMEOUT`].
async fn off_thread<T, F>(f: F) -> Result<T, BackendError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BackendError> + Send + 'static,
{
    match tokio::time::timeout(IO_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(BackendError::Sync(std::io::Error::other(join.to_string()))),
        Err(_) => Err(BackendError::Sync(std::io::Error::other(format!("the disk did not answer within {IO_TIMEOUT:?}")))),
    }
}

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The Raft log of one node.
#[derive(Clone)]
pub struct LogStore<B: LogBackend> {
    backend: B,
    flusher: Flusher,
}

impl<B: LogBackend> LogStore<B> {
    /// Wraps `backend` and starts its flusher thread (needs a tokio runtime for the
    /// flusher's watchdog), which records each fsync's duration in `metrics`.
    pub fn new(backend: B, metrics: Arc<StoreMetrics>) -> std::io::Result<Self> {
        let flusher = Flusher::start(backend.clone(), metrics, IO_TIMEOUT)?;
        Ok(Self { backend, flusher })
    }

    /// Runs a blocking backend call (they fsync) off the async workers.
    async fn blocking<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(B) -> Result<T, BackendError> + Send + 'static,
    {
        let backend = self.backend.clone();
        off_thread(move || f(backend)).await
    }

    fn read_meta<T: DeserializeOwned>(&self, name: &str) -> std::io::Result<Option<T>> {
        let Some(bytes) = self.backend.get_meta(name).map_err(io_err)? else {
            return Ok(None);
        };
        bincode::deserialize(&bytes).map(Some).map_err(io_err)
    }

    async fn write_meta<T: Serialize>(&self, name: &'static str, value: &T) -> std::io::Result<()> {
        let bytes = bincode::serialize(value).map_err(io_err)?;
        self.blocking(move |b| {
            b.put_meta(name, bytes)?;
            b.sync()
        })
        .await
        .map_err(io_err)
    }
}

fn decode(bytes: &[u8]) -> std::io::Result<Entry> {
    bincode::deserialize(bytes).map_err(io_err)
}

impl<B: LogBackend> RaftLogReader<TypeConfig> for LogStore<B> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(&mut self, range: RB) -> std::io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let rows = self.backend.range(start, end).map_err(io_err)?;
        let bytes: usize = rows.iter().map(|(_, b)| b.len()).sum();
        let decode_all = move || rows.iter().map(|(_, bytes)| decode(bytes)).collect::<std::io::Result<Vec<_>>>();
        if bytes <= crate::raft_runtime::IN_PLACE_MAX_BYTES {
            return decode_all();
        }
        // Thousands of client writes: decoded off the Raft runtime's thread (`raft_runtime`).
        off_thread(move || Ok(decode_all())).await.map_err(io_err)?
    }

    async fn read_vote(&mut self) -> std::io::Result<Option<Vote>> {
        self.read_meta(VOTE)
    }
}

impl<B: LogBackend> RaftLogStorage<TypeConfig> for LogStore<B> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> std::io::Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED)?;
        let last = match self.backend.last().map_err(io_err)? {
            Some((_, bytes)) => Some(decode(&bytes)?.log_id),
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::io::Result<()> {
        self.write_meta(VOTE, vote).await
    }

    /// Written, not synced: it becomes durable with the next log sync, as etcd persists
    /// its commit index lazily. A sync here sat between commit and apply on every write
    /// (measured: a third of a single client's put latency). A crash can lose only the
    /// last few advances; the restarted node then re-applies a little less at start and
    /// the rest once the leader's commit reaches it. Entries are written before the
    /// commit point that covers them, so a persisted commit point never runs past the
    /// persisted log.
    async fn save_committed(&mut self, committed: Option<LogId>) -> std::io::Result<()> {
        let bytes = bincode::serialize(&committed).map_err(io_err)?;
        self.backend.put_meta(COMMITTED, bytes).map_err(io_err)
    }

    async fn read_committed(&mut self) -> std::io::Result<Option<LogId>> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> std::io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            rows.push((entry.log_id.index, bincode::serialize(&entry).map_err(io_err)?));
        }
        // Readable when this returns; acknowledged by the flusher once durable.
        if let Err(e) = self.backend.append(rows) {
            callback.io_completed(Err(io_err(&e)));
            return Err(io_err(e));
        }
        self.flusher.flush(callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> std::io::Result<()> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.blocking(move |b| {
            b.truncate_from(from)?;
            b.sync()
        })
        .await
        .map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> std::io::Result<()> {
        self.write_meta(LAST_PURGED, &log_id).await?;
        let upto = log_id.index;
        self.blocking(move |b| b.purge_upto(upto)).await.map_err(io_err)
    }
}
