//! openraft's own storage test suite, run against the log store on each log backend
//! (the write-ahead log and the sled log of older data dirs) with the state machine,
//! each test on a fresh temporary directory.

use std::marker::PhantomData;
use std::path::Path;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use raftgres_store::backend::{BackendError, LogBackend, SledBackend};
use raftgres_store::log_store::LogStore;
use raftgres_store::state_machine::StateMachine;
use raftgres_store::types::TypeConfig;
use raftgres_store::wal::WalBackend;

/// A backend the suite can open in a directory.
trait Open: LogBackend {
    fn open_in(dir: &Path) -> Result<Self, BackendError>;
}

impl Open for SledBackend {
    fn open_in(dir: &Path) -> Result<Self, BackendError> {
        SledBackend::open(dir)
    }
}

impl Open for WalBackend {
    fn open_in(dir: &Path) -> Result<Self, BackendError> {
        WalBackend::open(dir)
    }
}

struct Builder<B>(PhantomData<B>);

impl<B: Open> StoreBuilder<TypeConfig, LogStore<B>, StateMachine, tempfile::TempDir> for Builder<B> {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore<B>, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(store_error)?;
        let backend = B::open_in(&dir.path().join("raft")).map_err(|e| store_error(std::io::Error::other(e)))?;
        let sm = StateMachine::open(&dir.path().join("snapshot")).map_err(store_error)?;
        let log = LogStore::new(backend, Default::default()).map_err(store_error)?;
        Ok((dir, log, sm))
    }
}

fn store_error(e: std::io::Error) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_on_the_write_ahead_log() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder::<WalBackend>(PhantomData)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_on_sled() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder::<SledBackend>(PhantomData)).await
}
