//! The applied state of the store: openraft's `RaftStateMachine`.
//!
//! The state (the MVCC key space, leases, member attributes, alarms, users
//! and roles) lives in memory and is
//! rebuilt at start from the last snapshot plus the committed log, which openraft
//! re-applies. Snapshots are one file, written to a temporary name, fsynced, then
//! renamed, so a crash leaves either the old or the new snapshot, never half of one;
//! that file work runs on tokio's blocking pool, never on an async worker.
//! So does all work that grows with the key space or the batch: openraft runs this
//! state machine on the Raft runtime (`raft_runtime`), whose one thread must stay free
//! for heartbeats. A few single-key writes are applied in place (a hop to another
//! thread would cost them more than they apply); a batch of many writes, a range
//! delete, a transaction, a compaction or a lease revoke are applied on the blocking
//! pool, and so are the copy, encoding and decoding of a snapshot (seen under 500
//! `etcdctl check perf` clients: a snapshot of ~300 MB of state held the thread for
//! 0.5-1.9 s, the final delete of every key for 1.4 s, and the followers called
//! elections).
//! Applying a write publishes its events to watchers and its lease changes to the
//! [`LeaseClock`].

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use raftgres_mvcc::{Command, CommandResponse, Mvcc, MvccError};
use raftgres_proto::mvccpb::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::alarms::Alarms;
use crate::auth::AuthState;
use crate::error::io_err;
use crate::lease_clock::LeaseClock;
use crate::state_codec;
use crate::types::{Entry, LogId, NodeId, Request, Response, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};

/// The state machine's directory inside a data dir.
pub(crate) const SNAPSHOT_DIR: &str = "snapshot";
/// The snapshot file inside [`SNAPSHOT_DIR`].
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The node's openraft instance over this state machine.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// A member's published attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttrs {
    pub name: String,
    pub client_addr: String,
}

/// Everything a snapshot holds (written by `state_codec`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateData {
    pub mvcc: Mvcc,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub members: BTreeMap<NodeId, MemberAttrs>,
    pub cluster_id: u64,
    /// Written after the fields above by `state_codec`, so older snapshots still load.
    #[serde(skip)]
    pub alarms: Alarms,
    /// Users, roles and permissions (`auth`), after the alarms in the same way.
    #[serde(skip)]
    pub auth: AuthState,
}

/// The events of one revision, as watchers receive them.
#[derive(Debug, Clone)]
pub struct WatchBatch {
    pub revision: i64,
    pub events: Arc<Vec<Event>>,
}

/// Shared, read-mostly view of the applied state, used by the API layer.
#[derive(Debug)]
pub struct Applied {
    data: RwLock<StateData>,
    events: broadcast::Sender<WatchBatch>,
    applied_index: watch::Sender<u64>,
    pub leases: LeaseClock,
}

impl Applied {
    pub fn read(&self) -> RwLockReadGuard<'_, StateData> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, StateData> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Live events of every revision applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchBatch> {
        self.events.subscribe()
    }

    /// Waits until the log index `index` has been applied here.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.applied_index.subscribe();
        // The sender lives as long as `self`, so this only ends by reaching `index`.
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied_index.borrow()
    }

    /// The term of the leader that wrote the last applied entry.
    pub fn applied_term(&self) -> Option<u64> {
        self.read().last_applied.map(|l| l.committed_leader_id().term)
    }

    /// Puts `data` in place of the state; gives the old one back.
    fn replace(&self, data: StateData) -> StateData {
        self.leases.reset(data.mvcc.leases().into_iter().map(|l| (l.id, l.ttl)));
        let index = data.last_applied.map_or(0, |l| l.index);
        let old = std::mem::replace(&mut *self.write(), data);
        self.applied_index.send_replace(index);
        old
    }
}

/// The state machine handed to openraft.
#[derive(Clone)]
pub struct StateMachine {
    applied: Arc<Applied>,
    snapshot_path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl StateMachine {
    /// Opens the state machine of `dir`, loading the last snapshot if there is one.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (events, _) = broadcast::channel(4096);
        let applied = Arc::new(Applied {
            data: RwLock::new(StateData::default()),
            events,
            applied_index: watch::Sender::new(0),
            leases: LeaseClock::default(),
        });
        let sm = Self { applied, snapshot_path: dir.join(SNAPSHOT_FILE) };
        if let Some(file) = read_snapshot_file(&sm.snapshot_path)? {
            sm.applied.replace(state_codec::decode(&file.data)?);
        }
        Ok(sm)
    }

    pub fn applied(&self) -> Arc<Applied> {
        self.applied.clone()
    }

    pub(crate) fn apply_one(&self, entry: Entry) -> Response {
        self.applied.write().last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => Response::Done,
            EntryPayload::Membership(m) => {
                let mut data = self.applied.write();
                if data.cluster_id == 0 {
                    // The first membership fixes the cluster id, identically on every replica.
                    data.cluster_id = cluster_id_of(m.voter_ids());
                }
                data.membership = StoredMembership::new(Some(entry.log_id), m);
                Response::Done
            }
            EntryPayload::Normal(request) => self.apply_request(request),
        }
    }

    fn apply_request(&self, request: Request) -> Response {
        match request {
            Request::Batch(requests) => Response::Batch(requests.into_iter().map(|r| self.apply_request(r)).collect()),
            Request::PublishMember { id, name, client_addr } => {
                self.applied.write().members.insert(id, MemberAttrs { name, client_addr });
                Response::Done
            }
            Request::Alarm(req) => Response::Alarms(self.applied.write().alarms.apply(&req)),
            Request::Auth(change) => Response::Auth(self.applied.write().auth.apply(&change)),
            Request::Kv(command) => {
                let mut data = self.applied.write();
                // etcd's capped applier: under NOSPACE, writes that add data are refused.
                if data.alarms.no_space() && raftgres_mvcc::space_needed(&command) > 0 {
                    return Response::Kv(Err(MvccError::NoSpace));
                }
                let applied = data.mvcc.apply(&command);
                drop(data);
                self.after_kv(&command, &applied.response, applied.revision, applied.events);
                Response::Kv(applied.response)
            }
        }
    }

    /// Side effects of an applied write outside the replicated state.
    fn after_kv(&self, command: &Command, response: &Result<CommandResponse, raftgres_mvcc::MvccError>, revision: i64, events: Vec<Event>) {
        match (command, response) {
            (Command::LeaseGrant { id, ttl }, Ok(_)) => self.applied.leases.granted(*id, *ttl),
            (Command::LeaseRevoke { id }, _) => self.applied.leases.removed(*id),
            _ => {}
        }
        if !events.is_empty() {
            // No receiver is fine: nobody watches.
            let _ = self.applied.events.send(WatchBatch { revision, events: Arc::new(events) });
        }
    }
}

/// The cluster id of a cluster whose first voters are `voters`.
pub(crate) fn cluster_id_of(voters: impl Iterator<Item = NodeId>) -> u64 {
    let seed: String = voters.map(|id| format!("{id:x},")).collect();
    crate::types::member_id(&seed)
}

/// Writes `data` as the snapshot of a member that has no Raft log yet (a restore):
/// openraft starts from it.
pub(crate) fn write_seed_snapshot(dir: &Path, data: &StateData) -> std::io::Result<()> {
    let meta = SnapshotMeta { last_log_id: data.last_applied, last_membership: data.membership.clone() };
    let file = SnapshotFile { meta, data: state_codec::encode(data)? };
    write_durably(&dir.join(SNAPSHOT_FILE), &bincode::serialize(&file).map_err(io_err)?)
}

fn read_snapshot_file(path: &Path) -> std::io::Result<Option<SnapshotFile>> {
    match std::fs::read(path) {
        Ok(bytes) => bincode::deserialize(&bytes).map(Some).map_err(io_err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Most writes in an entry applied on the calling thread; bigger batches go to the
/// blocking pool.
const APPLY_IN_PLACE_MAX: usize = 8;

/// Whether `entry` is small enough to apply without leaving the Raft runtime's thread.
fn applied_in_place(entry: &Entry) -> bool {
    match &entry.payload {
        EntryPayload::Normal(Request::Batch(requests)) => requests.len() <= APPLY_IN_PLACE_MAX && requests.iter().all(bounded),
        EntryPayload::Normal(request) => bounded(request),
        EntryPayload::Blank | EntryPayload::Membership(_) => true,
    }
}

/// Whether applying `request` costs about the same whatever the size of the key space:
/// single-key writes and the small non-KV requests. A range delete, a transaction, a
/// compaction or a lease revoke (which deletes every key attached) can touch any
/// number of keys.
fn bounded(request: &Request) -> bool {
    match request {
        Request::Kv(Command::Put(_) | Command::LeaseGrant { .. }) => true,
        Request::Kv(Command::DeleteRange(delete)) => delete.range_end.is_empty(),
        Request::Kv(Command::Txn(_) | Command::Compact(_) | Command::LeaseRevoke { .. }) => false,
        Request::Batch(_) => false,
        Request::PublishMember { .. } | Request::Alarm(_) | Request::Auth(_) => true,
    }
}

/// Runs blocking work (file reads and fsyncs, big applies, snapshot encoding) on
/// tokio's blocking pool, never on an async worker: neither a slow disk nor a big state
/// may stall Raft's heartbeats.
async fn off_the_runtime<T: Send + 'static>(work: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(io_err)?
}

/// Writes `file` to `path` durably; gives it back.
fn write_snapshot_file(path: &Path, file: SnapshotFile) -> std::io::Result<SnapshotFile> {
    let bytes = bincode::serialize(&file).map_err(io_err)?;
    write_durably(path, &bytes)?;
    Ok(file)
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync dir).
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Builds a snapshot from the state as it was when the builder was made.
pub struct SnapshotBuilder {
    /// Taken by the build, so the copy is also freed off the Raft runtime's thread.
    data: Option<StateData>,
    target: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> std::io::Result<Snapshot> {
        let state = self.data.take().ok_or_else(|| std::io::Error::other("this snapshot builder already built its snapshot"))?;
        let target = self.target.clone();
        let (meta, file) = off_the_runtime(move || {
            let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone() };
            let data = state_codec::encode(&state)?;
            Ok((meta.clone(), write_snapshot_file(&target, SnapshotFile { meta, data })?))
        })
        .await?;
        Ok(Snapshot { meta, snapshot: Cursor::new(file.data) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> std::io::Result<(Option<LogId>, StoredMembership)> {
        let data = self.applied.read();
        Ok((data.last_applied, data.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> std::io::Result<()>
    where
        Strm: Stream<Item = std::io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.log_id.index;
            let response = if applied_in_place(&entry) {
                self.apply_one(entry)
            } else {
                let sm = self.clone();
                off_the_runtime(move || Ok(sm.apply_one(entry))).await?
            };
            // Published before the answer, so whoever sees the answer sees the index applied.
            self.applied.applied_index.send_replace(index);
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    /// The copy of the state is made on the blocking pool: no entry is applied meanwhile
    /// (openraft waits for this call before it applies more), so it is still the state
    /// as of the last applied entry.
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let applied = self.applied.clone();
        let data = match tokio::task::spawn_blocking(move || applied.read().clone()).await {
            Ok(data) => data,
            // Only when the runtime is stopping: the copy is then made here.
            Err(_) => self.applied.read().clone(),
        };
        SnapshotBuilder { data: Some(data), target: self.snapshot_path.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> std::io::Result<()> {
        let bytes = snapshot.into_inner();
        let (path, meta) = (self.snapshot_path.clone(), meta.clone());
        let data = off_the_runtime(move || {
            let mut data = state_codec::decode(&bytes)?;
            data.last_applied = meta.last_log_id;
            data.membership = meta.last_membership.clone();
            write_snapshot_file(&path, SnapshotFile { meta, data: bytes })?;
            Ok(data)
        })
        .await?;
        let old = self.applied.replace(data);
        // Freeing a big state takes as long as copying it: not on the Raft runtime's thread.
        tokio::task::spawn_blocking(move || drop(old));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> std::io::Result<Option<Snapshot>> {
        let path = self.snapshot_path.clone();
        let file = off_the_runtime(move || read_snapshot_file(&path)).await?;
        Ok(file.map(|f| Snapshot { meta: f.meta, snapshot: Cursor::new(f.data) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::vote::RaftLeaderId;
    use raftgres_proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, TxnRequest};

    fn entry(request: Request) -> Entry {
        let leader = openraft::alias::LeaderIdOf::<TypeConfig>::new(1, 1).to_committed();
        Entry { log_id: LogId::new(leader, 7), payload: EntryPayload::Normal(request) }
    }

    fn put(key: &str) -> Request {
        Request::Kv(Command::Put(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() }))
    }

    fn delete(key: &str, range_end: &str) -> Request {
        Request::Kv(Command::DeleteRange(DeleteRangeRequest { key: key.into(), range_end: range_end.into(), ..Default::default() }))
    }

    #[test]
    fn single_key_writes_are_applied_in_place() {
        assert!(applied_in_place(&entry(put("a"))));
        assert!(applied_in_place(&entry(delete("a", ""))));
        assert!(applied_in_place(&entry(Request::Batch((0..APPLY_IN_PLACE_MAX).map(|i| put(&i.to_string())).collect()))));
    }

    /// `etcdctl check perf` ends with one delete of every key it wrote: applied on the
    /// Raft runtime's thread it held heartbeats back for 1.4 s.
    #[test]
    fn work_that_grows_with_the_key_space_leaves_the_raft_thread() {
        let big = [
            delete("a", "\0"),
            Request::Kv(Command::Compact(CompactionRequest { revision: 5, ..Default::default() })),
            Request::Kv(Command::Txn(TxnRequest::default())),
            Request::Kv(Command::LeaseRevoke { id: 3 }),
        ];
        for request in big {
            assert!(!applied_in_place(&entry(request.clone())), "alone: {request:?}");
            assert!(!applied_in_place(&entry(Request::Batch(vec![put("a"), request.clone()]))), "in a batch: {request:?}");
        }
        let many = Request::Batch((0..=APPLY_IN_PLACE_MAX).map(|i| put(&i.to_string())).collect());
        assert!(!applied_in_place(&entry(many)));
    }

    /// A snapshot copies the whole state: under 500 clients (~300 MB) that held the Raft
    /// runtime's thread for 0.5-1.9 s. Here the copy waits for a lock another thread
    /// holds, and the runtime's only thread must still run another task meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn copying_the_state_for_a_snapshot_leaves_the_runtime_thread_free() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sm = StateMachine::open(dir.path()).expect("open");
        let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
        let applied = sm.applied();
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
        let holder = std::thread::spawn(move || {
            let _guard = applied.write();
            locked_tx.send(()).expect("test waits");
            // Released once the other task ran, or after a minute (then the test fails).
            ran_rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok()
        });
        locked_rx.await.expect("locked");
        let other = tokio::spawn(async move { ran_tx.send(()).ok() });
        let builder = sm.get_snapshot_builder().await;
        other.await.expect("other task");
        assert!(holder.join().expect("holder"), "the runtime's thread was blocked while the state was copied");
        assert_eq!(builder.data.expect("copied").last_applied, None);
    }
}
