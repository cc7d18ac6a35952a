//! openraft's own storage test suite, run against the sled log store and the state
//! machine, each test on a fresh temporary directory.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use raftgres_store::backend::SledBackend;
use raftgres_store::log_store::LogStore;
use raftgres_store::state_machine::StateMachine;
use raftgres_store::types::TypeConfig;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore<SledBackend>, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<SledBackend>, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(store_error)?;
        let backend = SledBackend::open(&dir.path().join("raft")).map_err(|e| store_error(std::io::Error::other(e)))?;
        let sm = StateMachine::open(&dir.path().join("snapshot")).map_err(store_error)?;
        let log = LogStore::new(backend, Default::default()).map_err(store_error)?;
        Ok((dir, log, sm))
    }
}

fn store_error(e: std::io::Error) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder).await
}
