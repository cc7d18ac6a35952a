//! The durable bytes under the Raft log: a small trait of our own, and its sled
//! implementation, which data dirs made before the write-ahead log ([`crate::wal`])
//! keep using.
//!
//! The Raft log store ([`crate::log_store`]) speaks only [`LogBackend`], so the engine
//! under it can change without touching Raft code. Writes are durable once `sync`
//! returns: sled's `flush` uses `sync_file_range` on Linux, which flushes
//! neither file metadata nor the drive cache, so [`SledBackend`] follows each flush with
//! an `fsync` of the database file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of the durable layer; each carries the path or operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot open the log store in {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("cannot open {path} for fsync: {source}")]
    OpenFile { path: PathBuf, source: std::io::Error },
    #[error("log store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("fsync of the log store failed: {0}")]
    Sync(std::io::Error),
    #[error("Raft log I/O on {path} failed: {source}")]
    Wal { path: PathBuf, source: std::io::Error },
    #[error("the Raft log in {path} is damaged: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("the Raft log in {path} is in use by another process (is another raftgres running on this data dir?)")]
    Locked { path: PathBuf },
    #[error("the Raft log stopped after an earlier write failed: {0}")]
    Failed(String),
}

/// An ordered map of log index → entry bytes plus a few named metadata values.
pub trait LogBackend: Clone + Send + Sync + 'static {
    /// Writes entries (index, bytes): readable at once, durable only after [`Self::sync`].
    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), BackendError>;
    /// Makes everything written so far durable.
    fn sync(&self) -> Result<(), BackendError>;
    /// Entries with `start <= index < end`, in order.
    fn range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, BackendError>;
    /// The entry with the highest index.
    fn last(&self) -> Result<Option<(u64, Vec<u8>)>, BackendError>;
    /// Removes every entry with `index >= from` (durable after [`Self::sync`]).
    fn truncate_from(&self, from: u64) -> Result<(), BackendError>;
    /// Removes every entry with `index <= upto` (durability not required: the caller
    /// persisted the purge point first).
    fn purge_upto(&self, upto: u64) -> Result<(), BackendError>;
    /// Stores a named metadata value (durable after [`Self::sync`]).
    fn put_meta(&self, name: &str, value: Vec<u8>) -> Result<(), BackendError>;
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError>;
}

/// [`LogBackend`] on sled 0.34: one tree for entries, one for metadata.
#[derive(Clone)]
pub struct SledBackend {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
    db_file: Arc<File>,
}

impl SledBackend {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, BackendError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| BackendError::Open { path: dir.to_path_buf(), source })?;
        let logs = db.open_tree("raft_log")?;
        let meta = db.open_tree("raft_meta")?;
        let file_path = dir.join("db");
        let db_file = File::open(&file_path).map_err(|source| BackendError::OpenFile { path: file_path, source })?;
        Ok(Self { db, logs, meta, db_file: Arc::new(db_file) })
    }

    /// Whether `dir` holds a sled log.
    pub fn exists(dir: &Path) -> bool {
        dir.join("db").is_file()
    }
}

fn index_of(key: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = key.len().min(8);
    buf[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(buf)
}

impl LogBackend for SledBackend {
    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), BackendError> {
        let mut batch = sled::Batch::default();
        for (index, bytes) in entries {
            batch.insert(&index.to_be_bytes(), bytes);
        }
        Ok(self.logs.apply_batch(batch)?)
    }

    /// flush + fsync: the only way a write becomes durable here.
    fn sync(&self) -> Result<(), BackendError> {
        self.db.flush()?;
        self.db_file.sync_data().map_err(BackendError::Sync)
    }

    fn range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, BackendError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.logs
            .range(start.to_be_bytes()..end.to_be_bytes())
            .map(|item| {
                let (k, v) = item?;
                Ok((index_of(&k), v.to_vec()))
            })
            .collect()
    }

    fn last(&self) -> Result<Option<(u64, Vec<u8>)>, BackendError> {
        Ok(self.logs.last()?.map(|(k, v)| (index_of(&k), v.to_vec())))
    }

    fn truncate_from(&self, from: u64) -> Result<(), BackendError> {
        let mut batch = sled::Batch::default();
        for item in self.logs.range(from.to_be_bytes()..) {
            let (k, _) = item?;
            batch.remove(k);
        }
        Ok(self.logs.apply_batch(batch)?)
    }

    fn purge_upto(&self, upto: u64) -> Result<(), BackendError> {
        let mut batch = sled::Batch::default();
        for item in self.logs.range(..=upto.to_be_bytes()) {
            let (k, _) = item?;
            batch.remove(k);
        }
        Ok(self.logs.apply_batch(batch)?)
    }

    fn put_meta(&self, name: &str, value: Vec<u8>) -> Result<(), BackendError> {
        self.meta.insert(name, value)?;
        Ok(())
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.meta.get(name)?.map(|v| v.to_vec()))
    }
}
