//! openraft's own storage test suite, run against the sled log store and the state
//! machine, each test on a fresh temporary directory.

use openraft::testing::{StoreBuilder, Suite};
use raftgres_store::backend::SledBackend;
use raftgres_store::log_store::LogStore;
use raftgres_store::state_machine::StateMachine;
use raftgres_store::types::{NodeId, StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore<SledBackend>, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore<SledBackend>, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| io_error(&e))?;
        let backend = SledBackend::open(&dir.path().join("raft")).map_err(|e| io_error(&e))?;
        let sm = StateMachine::open(&dir.path().join("snapshot"))?;
        Ok((dir, LogStore::new(backend, Default::default()), sm))
    }
}

fn io_error(e: &(impl std::error::Error + 'static)) -> StorageError {
    openraft::StorageIOError::<NodeId>::write(openraft::AnyError::new(e)).into()
}

#[test]
fn openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(Builder)
}
