//! The Raft log and vote, on a [`LogBackend`]: openraft's `RaftLogStorage`.
//!
//! Durability rules (see REFERENCE.md): an append is acknowledged to openraft only
//! after it is fsynced; the vote, truncations and the purge point are fsynced before
//! the call returns; the purge point is persisted before entries are deleted; the
//! committed log id is saved so a restart re-applies everything committed.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{BackendError, LogBackend};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The Raft log of one node.
#[derive(Clone)]
pub struct LogStore<B: LogBackend> {
    backend: B,
}

impl<B: LogBackend> LogStore<B> {
    pub fn new(backend: B) -> Self {
        Self { backend }
    }

    /// Runs a blocking backend call (they fsync) off the async workers.
    async fn blocking<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(B) -> Result<T, BackendError> + Send + 'static,
    {
        let backend = self.backend.clone();
        match tokio::task::spawn_blocking(move || f(backend)).await {
            Ok(result) => result,
            Err(join) => Err(BackendError::Sync(std::io::Error::other(join.to_string()))),
        }
    }

    fn read_meta<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.backend.get_meta(name).map_err(read_err)? else {
            return Ok(None);
        };
        bincode::deserialize(&bytes).map(Some).map_err(read_err)
    }

    async fn write_meta<T: Serialize>(&self, name: &'static str, value: &T) -> Result<(), StorageError> {
        let bytes = bincode::serialize(value).map_err(write_err)?;
        self.blocking(move |b| b.put_meta(name, bytes)).await.map_err(write_err)
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::<NodeId>::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::<NodeId>::write_logs(AnyError::new(&e)).into()
}

fn decode(bytes: &[u8]) -> Result<Entry, StorageError> {
    bincode::deserialize(bytes).map_err(read_err)
}

impl<B: LogBackend> RaftLogReader<TypeConfig> for LogStore<B> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
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
        let rows = self.backend.range(start, end).map_err(read_err)?;
        rows.iter().map(|(_, bytes)| decode(bytes)).collect()
    }
}

impl<B: LogBackend> RaftLogStorage<TypeConfig> for LogStore<B> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED)?;
        let last = match self.backend.last().map_err(read_err)? {
            Some((_, bytes)) => Some(decode(&bytes)?.log_id),
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            rows.push((entry.log_id.index, bincode::serialize(&entry).map_err(write_err)?));
        }
        // Entries must be readable when this returns, and acknowledged only once durable:
        // the backend's append does both before it returns.
        let result = self.blocking(move |b| b.append(rows)).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        self.blocking(move |b| b.truncate_from(from)).await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_meta(LAST_PURGED, &log_id).await?;
        let upto = log_id.index;
        self.blocking(move |b| b.purge_upto(upto)).await.map_err(write_err)
    }
}
