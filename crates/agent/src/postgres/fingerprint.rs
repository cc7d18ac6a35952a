//! Knowing a file did not change without reading it. The HA loop looks at its config
//! files (`raftgres.conf`, `pg_hba.conf`, the include in `postgresql.conf`) and at
//! `global/pg_control` every cycle; a [`Fingerprint`] (device, inode, size, mtime) that
//! is the one recorded when the file was last read says it still holds what it held,
//! so neither the read nor `pg_controldata` runs again.
//!
//! A fingerprint is recorded only once it is [settled](Fingerprint::settled): its mtime
//! lies [`SETTLE`] in the past, more than any filesystem's timestamp granularity, so a
//! later write cannot leave the same mtime behind. A file written just now is read again
//! at the next look, until its fingerprint settles.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How old a file's mtime must be before its fingerprint is trusted.
const SETTLE: Duration = Duration::from_secs(2);

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Fingerprint {
    /// The file's fingerprint now; None when it cannot be looked at.
    pub fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self { dev: m.dev(), ino: m.ino(), size: m.size(), mtime: (m.mtime(), m.mtime_nsec()) })
    }

    /// True when the mtime lies at least [`SETTLE`] before `now` (a wall clock time):
    /// any write after `now` gives the file another mtime.
    pub fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else { return false };
        let (secs, nanos) = self.mtime;
        let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u32::try_from(nanos)) else { return false };
        Duration::new(secs, nanos).saturating_add(SETTLE) <= now
    }

    /// [`Self::of`] when it is settled now.
    pub fn settled_of(path: &Path) -> Option<Self> {
        Self::of(path).filter(|f| f.settled(SystemTime::now()))
    }
}

/// Files found to hold what the agent wants, each with the settled fingerprint it had
/// then and what was checked (the wanted text, or a line it must contain).
static CONFIRMED: Mutex<Option<HashMap<PathBuf, (Fingerprint, String)>>> = Mutex::new(None);

fn confirmed() -> MutexGuard<'static, Option<HashMap<PathBuf, (Fingerprint, String)>>> {
    CONFIRMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// True when `path` was [confirmed](confirm) to satisfy `check` and has not changed since.
pub fn still_confirmed(path: &Path, check: &str) -> bool {
    let Some(now) = Fingerprint::of(path) else { return false };
    confirmed().as_ref().and_then(|m| m.get(path)).is_some_and(|(f, c)| *f == now && c == check)
}

/// Records that `path` satisfies `check` now (the caller just read or wrote it); not
/// recorded until its fingerprint has settled.
pub fn confirm(path: &Path, check: &str) {
    let mut map = confirmed();
    let map = map.get_or_insert_with(HashMap::new);
    match Fingerprint::settled_of(path) {
        Some(f) => map.insert(path.to_path_buf(), (f, check.to_string())),
        None => map.remove(path),
    };
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Moves `path`'s mtime `ago` into the past.
    pub(crate) fn age(path: &Path, ago: Duration) {
        let f = std::fs::File::options().write(true).open(path).expect("open");
        f.set_modified(SystemTime::now() - ago).expect("set mtime");
    }

    #[test]
    fn a_file_is_confirmed_only_once_settled_and_until_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.conf");
        std::fs::write(&path, "a = 1\n").expect("write");
        confirm(&path, "a = 1\n");
        assert!(!still_confirmed(&path, "a = 1\n"), "written just now: not trusted yet");
        age(&path, Duration::from_secs(10));
        confirm(&path, "a = 1\n");
        assert!(still_confirmed(&path, "a = 1\n"));
        assert!(!still_confirmed(&path, "a = 2\n"), "another check");
        std::fs::write(&path, "a = 3\n").expect("write");
        age(&path, Duration::from_secs(20));
        assert!(!still_confirmed(&path, "a = 1\n"), "rewritten (another mtime)");
        std::fs::remove_file(&path).expect("remove");
        assert!(!still_confirmed(&path, "a = 1\n"), "gone");
    }

    #[test]
    fn settled_means_older_than_the_margin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "x").expect("write");
        let f = Fingerprint::of(&path).expect("exists");
        assert!(!f.settled(SystemTime::now()));
        assert!(f.settled(SystemTime::now() + SETTLE + Duration::from_millis(1)));
        assert_eq!(Fingerprint::of(&dir.path().join("missing")), None);
    }
}
