//! `--force-new-cluster` (etcd's flag): recovery after losing a quorum for good. Before
//! the node starts, the surviving member's data dir is rewritten into the data dir of a
//! one-member cluster holding everything the member had: its snapshot plus every entry
//! of its Raft log applied (as etcd commits every entry of its WAL), so no committed
//! entry is lost. New members are then added the usual way (`etcdctl member add`).
//!
//! The old Raft log and snapshot are moved, not deleted, to
//! `DATA_DIR/before-force-new-cluster-UNIXSECONDS/`: the operator can go back to them.

use std::path::{Path, PathBuf};

use crate::backend::{BackendError, LogBackend, SledBackend};
use crate::backup::{seed, BackupError, Restored};
use crate::state_machine::{StateMachine, SNAPSHOT_DIR};
use crate::types::Entry;
use crate::wal::WalBackend;

/// The Raft log's directory inside a data dir.
pub(crate) const RAFT_DIR: &str = "raft";

/// The directory the old state is moved to: this prefix and the time.
const MOVED_PREFIX: &str = "before-force-new-cluster-";

/// The old state of an earlier rewrite of `data_dir`, if there was one. A flag left in
/// a service file must not turn a recovered cluster back into one member at the next
/// restart: the members added since would keep a log this one no longer has.
fn earlier_rewrite(data_dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(data_dir).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(MOVED_PREFIX)))
}

/// Why the rewrite could not be done. Each message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum ForceNewClusterError {
    #[error("--force-new-cluster: data dir {0} holds no store state (no Raft log, no snapshot): give it a surviving member's data dir")]
    NoState(PathBuf),
    #[error("--force-new-cluster: the Raft log of {path}: {source}")]
    Log { path: PathBuf, source: BackendError },
    #[error("--force-new-cluster: log entry {index} of {path} cannot be decoded: {reason}")]
    Entry { path: PathBuf, index: u64, reason: String },
    #[error("--force-new-cluster: the Raft log of {path} starts at entry {first}, after the snapshot's last entry {applied}: entries are missing")]
    Gap { path: PathBuf, first: u64, applied: u64 },
    #[error("--force-new-cluster: data dir {data_dir} was already forced into a new cluster ({} exists): start without --force-new-cluster (forcing again would drop the members added since); to force again anyway, move that directory away first", earlier.display())]
    AlreadyForced { data_dir: PathBuf, earlier: PathBuf },
    #[error("--force-new-cluster: {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("--force-new-cluster: {0}")]
    Seed(#[from] BackupError),
}

/// What the rewrite made, and where the old state went.
#[derive(Debug)]
pub struct Rewritten {
    pub restored: Restored,
    /// Log entries applied on top of the snapshot.
    pub replayed: usize,
    pub moved_to: PathBuf,
}

/// Rewrites `data_dir` (of a stopped member named `name` at `own_peer`) into the data
/// dir of a one-member cluster with all of its state.
pub fn rewrite(data_dir: &Path, name: &str, own_peer: &str) -> Result<Rewritten, ForceNewClusterError> {
    let raft_dir = data_dir.join(RAFT_DIR);
    let snapshot_dir = data_dir.join(SNAPSHOT_DIR);
    if !raft_dir.exists() && !snapshot_dir.exists() {
        return Err(ForceNewClusterError::NoState(data_dir.to_path_buf()));
    }
    if let Some(earlier) = earlier_rewrite(data_dir) {
        return Err(ForceNewClusterError::AlreadyForced { data_dir: data_dir.to_path_buf(), earlier });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ForceNewClusterError::Io { path, source }
    };
    let state_machine = StateMachine::open(&snapshot_dir).map_err(io(&snapshot_dir))?;
    let log = |source| ForceNewClusterError::Log { path: raft_dir.clone(), source };
    // The backend is dropped at the end of `replay`, releasing the log's lock.
    let replayed = if SledBackend::exists(&raft_dir) {
        replay(&SledBackend::open(&raft_dir).map_err(log)?, &state_machine, &raft_dir)?
    } else {
        replay(&WalBackend::open(&raft_dir).map_err(log)?, &state_machine, &raft_dir)?
    };
    // The users and roles stay: auth enabled before stays enabled.
    let applied = state_machine.applied();
    let (mvcc, auth) = {
        let data = applied.read();
        (data.mvcc.clone(), data.auth.clone())
    };

    // The new snapshot is complete on disk before the old state is moved away.
    let staged = data_dir.join("snapshot.force-new-cluster");
    if staged.exists() {
        std::fs::remove_dir_all(&staged).map_err(io(&staged))?;
    }
    let members = [(name.to_string(), own_peer.to_string())];
    let restored = seed(mvcc, auth, name, &members, &staged)?;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let moved_to = data_dir.join(format!("{MOVED_PREFIX}{secs}"));
    std::fs::create_dir_all(&moved_to).map_err(io(&moved_to))?;
    for dir in [&raft_dir, &snapshot_dir] {
        if dir.exists() {
            let target = moved_to.join(dir.file_name().unwrap_or_default());
            std::fs::rename(dir, &target).map_err(io(dir))?;
        }
    }
    std::fs::rename(&staged, &snapshot_dir).map_err(io(&snapshot_dir))?;
    std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(io(data_dir))?;
    Ok(Rewritten { restored, replayed, moved_to })
}

/// Applies every entry of `backend` after the state machine's last applied one; how many.
fn replay(backend: &impl LogBackend, state_machine: &StateMachine, path: &Path) -> Result<usize, ForceNewClusterError> {
    let log = |source| ForceNewClusterError::Log { path: path.to_path_buf(), source };
    let Some((last, _)) = backend.last().map_err(log)? else { return Ok(0) };
    let applied = state_machine.applied().read().last_applied.map(|l| l.index);
    let start = applied.map_or(0, |i| i + 1);
    let entries = backend.range(start, last + 1).map_err(log)?;
    if let Some((first, _)) = entries.first() {
        if *first != start && applied.is_some() {
            return Err(ForceNewClusterError::Gap { path: path.to_path_buf(), first: *first, applied: start - 1 });
        }
    }
    let count = entries.len();
    for (index, bytes) in entries {
        let entry: Entry = bincode::deserialize(&bytes).map_err(|e| ForceNewClusterError::Entry {
            path: path.to_path_buf(),
            index,
            reason: e.to_string(),
        })?;
        state_machine.apply_one(entry);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_without_store_state_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = rewrite(dir.path(), "n1", "127.0.0.1:2380").expect_err("nothing to recover");
        assert!(err.to_string().contains("holds no store state"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0, "nothing written");
    }

    #[test]
    fn a_second_rewrite_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let three: Vec<(String, String)> = (1..=3).map(|i| (format!("n{i}"), format!("127.0.0.1:{}", 2380 + i))).collect();
        let target = crate::backup::RestoreTarget { name: "n1", initial_cluster: &three, data_dir: dir.path() };
        let empty =
            crate::backup::Contents { mvcc: raftgres_mvcc::Mvcc::new(), auth: Default::default(), format: crate::backup::FORMAT_VERSION };
        crate::backup::restore(empty, &target).expect("a member's data dir");
        let done = rewrite(dir.path(), "n1", "127.0.0.1:2381").expect("first rewrite");
        assert!(done.moved_to.join(SNAPSHOT_DIR).is_dir(), "old snapshot kept");
        let err = rewrite(dir.path(), "n1", "127.0.0.1:2381").expect_err("second rewrite");
        assert!(err.to_string().contains("was already forced into a new cluster"), "{err}");
    }
}
