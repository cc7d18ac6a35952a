//! Backups of the store: the file `etcdctl snapshot save` writes (Maintenance.Snapshot
//! streams [`encode`]'s bytes) and the restore that makes a new cluster's data dir from
//! it, as `etcdutl snapshot restore` does.
//!
//! Owns the file format (described in the store's DESIGN.md, "Backups"): a magic line,
//! a format version, the length and bincode of the payload, zeros up to a multiple of
//! 512 bytes, then the SHA-256 of everything before it, as etcd ends its snapshots
//! (etcdctl refuses a download whose size is not 512 x n + 32). The payload of format 2
//! is the MVCC state (every key's history with its create/mod revisions and versions,
//! the leases, the compaction point) followed by the auth state (users, roles, `auth
//! enable`), as etcd's snapshots carry its auth buckets; format 1 (older raftgres) holds
//! the MVCC state only and restores with auth disabled and no users. [`decode`] checks
//! each of these in turn, so a file that is not a backup, is cut short or is damaged is
//! refused with what is wrong.
//!
//! Restoring writes the state machine's snapshot of a member whose Raft log is empty:
//! openraft starts from it as from any snapshot, with the membership of
//! `--initial-cluster` and log position 0, the same on every restored member.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use openraft::vote::RaftLeaderId;
use openraft::Membership;
use raftgres_mvcc::Mvcc;
use sha2::{Digest, Sha256};

use crate::auth::AuthState;
use crate::state_machine::{cluster_id_of, write_seed_snapshot, StateData, SNAPSHOT_DIR};
use crate::types::{member_id, LogId, NodeId, PeerNode, StoredMembership, TypeConfig};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 16] = b"raftgres-backup\n";
/// The format version this raftgres writes (it reads it and [`FORMAT_MVCC_ONLY`]).
pub const FORMAT_VERSION: u32 = 2;
/// The format of older raftgres: the MVCC state without the auth state.
pub const FORMAT_MVCC_ONLY: u32 = 1;
/// Magic, version (u32) and payload length (u64), all little-endian.
const HEADER_LEN: usize = MAGIC.len() + 4 + 8;
/// The SHA-256 after the padded payload.
const TRAILER_LEN: usize = 32;
/// The header and payload are padded to a multiple of this (etcd's page multiple).
const PAD_TO: u64 = 512;

/// Why a backup could not be read or restored. Each message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "not a raftgres snapshot (it does not begin with {:?}; an etcd bbolt snapshot cannot be restored by raftgres)",
        String::from_utf8_lossy(MAGIC)
    )]
    NotABackup,
    #[error("snapshot format version {0} is not supported (this raftgres reads versions {FORMAT_MVCC_ONLY} and {FORMAT_VERSION})")]
    Version(u32),
    #[error("the snapshot is truncated: {expected} bytes expected, {found} present")]
    Truncated { expected: u64, found: u64 },
    #[error("the snapshot has {0} bytes after its checksum: it is not one whole snapshot")]
    TrailingBytes(u64),
    #[error("the snapshot's checksum does not match (stored sha256 {stored}, computed {computed}): the file is damaged")]
    Checksum { stored: String, computed: String },
    #[error("the snapshot's content cannot be decoded: {0}")]
    Content(String),
    #[error("data dir {0} is not empty: restore only into a new or empty directory")]
    DataDirNotEmpty(PathBuf),
    #[error("--name {0} does not appear in --initial-cluster")]
    NotInInitialCluster(String),
    #[error("data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

/// What a backup holds: the store's state a restore starts from.
#[derive(Debug, Clone)]
pub struct Contents {
    pub mvcc: Mvcc,
    pub auth: AuthState,
    /// The format the file was written in (`FORMAT_MVCC_ONLY` files have no auth state).
    pub format: u32,
}

/// The backup file of `mvcc` and `auth`, in [`FORMAT_VERSION`].
pub fn encode(mvcc: &Mvcc, auth: &AuthState) -> Result<Vec<u8>, BackupError> {
    let payload = bincode::serialize(&(mvcc, auth)).map_err(|e| BackupError::Content(e.to_string()))?;
    Ok(frame(FORMAT_VERSION, &payload))
}

/// Header, `payload`, padding and checksum: the file around a payload of `version`.
fn frame(version: u32, payload: &[u8]) -> Vec<u8> {
    let body_len = padded(payload.len() as u64) as usize;
    let mut out = Vec::with_capacity(body_len + TRAILER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(body_len, 0);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The length of the header and a payload of `payload_len` bytes, padded.
fn padded(payload_len: u64) -> u64 {
    (HEADER_LEN as u64).saturating_add(payload_len).div_ceil(PAD_TO).saturating_mul(PAD_TO)
}

/// The contents of a backup file, once its magic, version, length and checksum hold.
pub fn decode(bytes: &[u8]) -> Result<Contents, BackupError> {
    let found = bytes.len() as u64;
    let magic_len = MAGIC.len().min(bytes.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        return Err(BackupError::NotABackup);
    }
    if bytes.len() < HEADER_LEN {
        return Err(BackupError::Truncated { expected: (HEADER_LEN + TRAILER_LEN) as u64, found });
    }
    let version = u32::from_le_bytes(bytes[16..20].try_into().map_err(|_| BackupError::NotABackup)?);
    if version != FORMAT_VERSION && version != FORMAT_MVCC_ONLY {
        return Err(BackupError::Version(version));
    }
    let payload_len = u64::from_le_bytes(bytes[20..28].try_into().map_err(|_| BackupError::NotABackup)?);
    let expected = padded(payload_len).saturating_add(TRAILER_LEN as u64);
    if found < expected {
        return Err(BackupError::Truncated { expected, found });
    }
    if found > expected {
        return Err(BackupError::TrailingBytes(found - expected));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let computed = Sha256::digest(body);
    if trailer != computed.as_slice() {
        return Err(BackupError::Checksum { stored: hex(trailer), computed: hex(&computed) });
    }
    let payload_end = HEADER_LEN.saturating_add(usize::try_from(payload_len).map_err(|e| BackupError::Content(e.to_string()))?);
    let payload = &body[HEADER_LEN..payload_end];
    let content = |e: bincode::Error| BackupError::Content(e.to_string());
    let (mvcc, auth) = if version == FORMAT_MVCC_ONLY {
        (bincode::deserialize(payload).map_err(content)?, AuthState::default())
    } else {
        bincode::deserialize(payload).map_err(content)?
    };
    Ok(Contents { mvcc, auth, format: version })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where and as whom a backup is restored (etcdutl's `--name`, `--initial-cluster`,
/// `--data-dir`).
#[derive(Debug, Clone)]
pub struct RestoreTarget<'a> {
    pub name: &'a str,
    /// Every member of the new cluster: (name, peer address).
    pub initial_cluster: &'a [(String, String)],
    pub data_dir: &'a Path,
}

/// What a restore made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub member_id: NodeId,
    pub cluster_id: u64,
    pub revision: i64,
    pub keys: usize,
}

/// Makes `target.data_dir` (absent or empty) the data dir of a member of a new cluster
/// whose state is `contents` (keys, leases, users, roles). Every member restored from
/// the same backup with the same `--initial-cluster` gets the same state, so they form
/// one cluster.
pub fn restore(contents: Contents, target: &RestoreTarget<'_>) -> Result<Restored, BackupError> {
    let dir = target.data_dir;
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            if entries.count() > 0 {
                return Err(BackupError::DataDirNotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(BackupError::DataDir { path: dir.to_path_buf(), source }),
    }
    seed(contents.mvcc, contents.auth, target.name, target.initial_cluster, &dir.join(SNAPSHOT_DIR))
}

/// Writes into `snapshot_dir` the state machine snapshot of member `name` of a new
/// cluster of `initial_cluster` (all voters) whose state is `mvcc` and `auth`, at log
/// position 0 with a leader id every member derives alike (as after openraft's
/// `initialize`).
pub(crate) fn seed(
    mvcc: Mvcc,
    auth: AuthState,
    name: &str,
    initial_cluster: &[(String, String)],
    snapshot_dir: &Path,
) -> Result<Restored, BackupError> {
    let own_peer = initial_cluster
        .iter()
        .find(|(member, _)| member == name)
        .map(|(_, addr)| addr)
        .ok_or_else(|| BackupError::NotInInitialCluster(name.to_string()))?;
    let members: BTreeMap<NodeId, PeerNode> =
        initial_cluster.iter().map(|(name, addr)| (member_id(addr), PeerNode { name: name.clone(), peer_addr: addr.clone() })).collect();
    let cluster_id = cluster_id_of(members.keys().copied());
    let first = members.keys().next().copied().unwrap_or_default();
    let log_id = LogId::new(openraft::alias::LeaderIdOf::<TypeConfig>::new(0, first).to_committed(), 0);
    // Every member of `initial_cluster` is a voter.
    let membership = Membership::from(members);
    let restored = Restored { member_id: member_id(own_peer), cluster_id, revision: mvcc.revision(), keys: mvcc.key_count() };
    let data = StateData {
        mvcc,
        last_applied: Some(log_id),
        membership: StoredMembership::new(Some(log_id), membership),
        members: BTreeMap::new(),
        cluster_id,
        alarms: Default::default(),
        auth,
    };
    let io = |source| BackupError::DataDir { path: snapshot_dir.to_path_buf(), source };
    std::fs::create_dir_all(snapshot_dir).map_err(io)?;
    write_seed_snapshot(snapshot_dir, &data).map_err(io)?;
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use raftgres_mvcc::Command;
    use raftgres_proto::etcdserverpb::PutRequest;

    use super::*;
    use crate::auth::{AuthChange, ROOT};

    fn mvcc() -> Mvcc {
        let mut mvcc = Mvcc::new();
        for i in 0..5 {
            mvcc.apply(&Command::Put(PutRequest { key: format!("/k{i}").into_bytes(), value: b"v".to_vec(), ..Default::default() }));
        }
        mvcc
    }

    /// Root and a user with a role, auth enabled.
    fn auth() -> AuthState {
        let mut auth = AuthState::default();
        for change in [
            AuthChange::UserAdd { name: ROOT.into(), password_hash: Some("h".into()) },
            AuthChange::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
            AuthChange::UserAdd { name: "app".into(), password_hash: Some("h2".into()) },
            AuthChange::RoleAdd { name: "reader".into() },
            AuthChange::UserGrantRole { user: "app".into(), role: "reader".into() },
            AuthChange::Enable,
        ] {
            auth.apply(&change).expect("apply");
        }
        auth
    }

    fn sample() -> Contents {
        Contents { mvcc: mvcc(), auth: auth(), format: FORMAT_VERSION }
    }

    fn bytes() -> Vec<u8> {
        encode(&mvcc(), &auth()).expect("encode")
    }

    #[test]
    fn a_backup_round_trips_with_its_users_and_roles() {
        let back = decode(&bytes()).expect("decode");
        assert_eq!((back.mvcc.revision(), back.mvcc.key_count(), back.format), (mvcc().revision(), 5, FORMAT_VERSION));
        assert_eq!(back.auth, auth());
        assert!(back.auth.enabled() && back.auth.role_names().contains(&"reader".to_string()));
    }

    #[test]
    fn an_older_mvcc_only_backup_restores_with_auth_disabled() {
        let old = frame(FORMAT_MVCC_ONLY, &bincode::serialize(&mvcc()).expect("mvcc"));
        let back = decode(&old).expect("format 1 is still read");
        assert_eq!((back.mvcc.key_count(), back.format), (5, FORMAT_MVCC_ONLY));
        assert_eq!(back.auth, AuthState::default());
    }

    #[test]
    fn damaged_files_are_refused_naming_the_problem() {
        let bytes = bytes();
        assert_eq!(bytes.len() % 512, 32, "etcdctl's size check: 512 x n + 32");
        let err = decode(&bytes[..bytes.len() - 1]).expect_err("truncated");
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = decode(&bytes[..10]).expect_err("truncated in the header");
        assert!(err.to_string().contains("truncated"), "{err}");
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 3] ^= 0x40;
        let err = decode(&flipped).expect_err("bit flip");
        assert!(err.to_string().contains("checksum does not match"), "{err}");
        let err = decode(b"\xd5\x8a\x01\x00bbolt pages").expect_err("not ours");
        assert!(err.to_string().contains("not a raftgres snapshot"), "{err}");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(BackupError::TrailingBytes(1))));
        let mut future = bytes;
        future[16] = 9;
        assert!(matches!(decode(&future), Err(BackupError::Version(9))));
    }

    #[test]
    fn restore_refuses_a_non_empty_data_dir_and_an_unknown_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("leftover"), b"x").expect("write");
        let cluster = vec![("n1".to_string(), "127.0.0.1:2380".to_string())];
        let target = RestoreTarget { name: "n1", initial_cluster: &cluster, data_dir: dir.path() };
        let err = restore(sample(), &target).expect_err("not empty");
        assert!(err.to_string().contains("is not empty"), "{err}");
        let fresh = dir.path().join("fresh");
        let target = RestoreTarget { name: "n9", initial_cluster: &cluster, data_dir: &fresh };
        let err = restore(sample(), &target).expect_err("unknown name");
        assert!(err.to_string().contains("--name n9"), "{err}");
    }

    #[test]
    fn every_member_restores_the_same_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster: Vec<(String, String)> = (1..=3).map(|i| (format!("n{i}"), format!("127.0.0.1:{}", 2380 + i))).collect();
        let mut snapshots = Vec::new();
        for (name, _) in &cluster {
            let data_dir = dir.path().join(name);
            let restored = restore(sample(), &RestoreTarget { name, initial_cluster: &cluster, data_dir: &data_dir }).expect("restore");
            assert_eq!((restored.revision, restored.keys), (6, 5));
            snapshots.push(std::fs::read(data_dir.join(SNAPSHOT_DIR).join("snapshot.bin")).expect("snapshot written"));
        }
        assert!(snapshots.windows(2).all(|w| w[0] == w[1]), "restored members differ");
    }
}
