//! The Raft log's own write-ahead log: a [`LogBackend`] made of append-only segment
//! files, as etcd keeps its Raft log.
//!
//! Every change is a record appended to the current segment: an entry, a truncation, a
//! purge point or a named metadata value. `sync` is one `fdatasync` of that segment.
//! Segments are preallocated ([`SEGMENT_SIZE`]), so a sync writes the new bytes and no
//! file-size change; records carry a CRC, so a torn write at the end of the last segment
//! is found and cut off when the log is opened. A full segment is synced and closed
//! before the next one is started, and the next one begins with every metadata value
//! and the purge point (written again at every open, in case a crash cut that short),
//! so whole old segments can be deleted once every entry they hold is purged. The entries since the last purge stay in memory (openraft reads them back
//! to apply and to replicate), as etcd keeps its unsnapshotted log in memory.
//!
//! Record layout: body length (u32 LE), CRC-32 of the body (u32 LE), body = kind byte
//! + payload. A zero length marks the end of the written part of a segment.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{BackendError, LogBackend};

/// Bytes preallocated per segment file.
pub const SEGMENT_SIZE: u64 = 16 * 1024 * 1024;
const HEADER: usize = 8;
const SUFFIX: &str = ".wal";

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_META: u8 = 4;

/// One change, as written to a segment.
#[derive(Debug, PartialEq)]
enum Record {
    Entry(u64, Vec<u8>),
    /// Removes every entry with index >= this.
    Truncate(u64),
    /// Removes every entry with index <= this.
    Purge(u64),
    Meta(String, Vec<u8>),
}

impl Record {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        match self {
            Record::Entry(index, bytes) => {
                out.push(KIND_ENTRY);
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Record::Truncate(from) => {
                out.push(KIND_TRUNCATE);
                out.extend_from_slice(&from.to_le_bytes());
            }
            Record::Purge(upto) => {
                out.push(KIND_PURGE);
                out.extend_from_slice(&upto.to_le_bytes());
            }
            Record::Meta(name, value) => {
                out.push(KIND_META);
                // Names are the log store's few constants; longer ones are cut, never
                // written wrong.
                let name = &name.as_bytes()[..name.len().min(255)];
                out.push(name.len() as u8);
                out.extend_from_slice(name);
                out.extend_from_slice(value);
            }
        }
        let body = &out[start + HEADER..];
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
        let crc = crc32fast::hash(body).to_le_bytes();
        out[start..start + 4].copy_from_slice(&len);
        out[start + 4..start + HEADER].copy_from_slice(&crc);
    }

    /// The record at the start of `bytes` and its encoded length; `None` at the end of
    /// the written part or at a damaged (torn) record.
    fn decode(bytes: &[u8]) -> Option<(Record, usize)> {
        let header = bytes.get(..HEADER)?;
        let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
        let body = bytes.get(HEADER..HEADER.checked_add(len)?)?;
        if len == 0 || crc32fast::hash(body) != crc {
            return None;
        }
        let u64_at = |at: usize| body.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let record = match body[0] {
            KIND_ENTRY => Record::Entry(u64_at(1)?, body.get(9..)?.to_vec()),
            KIND_TRUNCATE => Record::Truncate(u64_at(1)?),
            KIND_PURGE => Record::Purge(u64_at(1)?),
            KIND_META => {
                let name_len = *body.get(1)? as usize;
                let name = String::from_utf8(body.get(2..2 + name_len)?.to_vec()).ok()?;
                Record::Meta(name, body.get(2 + name_len..)?.to_vec())
            }
            _ => return None,
        };
        Some((record, HEADER + len))
    }
}

/// The log's contents, rebuilt from the records.
#[derive(Default)]
struct Contents {
    /// Entries `first ..= first + len - 1`, with no gap.
    first: u64,
    entries: VecDeque<Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
    /// The highest purge point applied.
    purged: Option<u64>,
}

impl Contents {
    fn next_index(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// The index after the last entry, or `None` when the log holds none.
    fn next(&self) -> Option<u64> {
        (!self.entries.is_empty()).then(|| self.next_index())
    }

    fn apply(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::Entry(index, bytes) => {
                self.first = admit(self.first, self.next(), index)?;
                // An entry at an index already held replaces it and everything after.
                self.truncate(index);
                self.entries.push_back(bytes);
            }
            Record::Truncate(from) => self.truncate(from),
            Record::Purge(upto) => {
                self.purged = self.purged.max(Some(upto));
                while !self.entries.is_empty() && self.first <= upto {
                    self.entries.pop_front();
                    self.first += 1;
                }
            }
            Record::Meta(name, value) => {
                self.meta.insert(name, value);
            }
        }
        Ok(())
    }

    fn truncate(&mut self, from: u64) {
        let keep = from.saturating_sub(self.first).min(self.entries.len() as u64);
        self.entries.truncate(keep as usize);
    }

    /// What a new segment starts with: every metadata value and the purge point.
    fn checkpoint(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self.meta.iter().map(|(n, v)| Record::Meta(n.clone(), v.clone())).collect();
        records.extend(self.purged.map(Record::Purge));
        records
    }
}

/// The log's first index once entry `index` is added to a log holding `first..next`
/// (`next` is `None` when it holds nothing: it then starts at any index), or why the
/// entry cannot go there.
fn admit(first: u64, next: Option<u64>, index: u64) -> Result<u64, String> {
    match next {
        None => Ok(index),
        Some(n) if index > n => Err(format!("entry {index} follows entry {}: the log has a gap", n - 1)),
        Some(_) if index < first => Err(format!("entry {index} comes before the first entry {first}")),
        Some(_) => Ok(first),
    }
}

/// One segment file.
struct Segment {
    seq: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Bytes of records written.
    len: u64,
    /// The highest entry index ever written to it.
    last_index: Option<u64>,
}

struct Wal {
    dir: PathBuf,
    contents: Contents,
    /// Closed segments (synced), oldest first.
    closed: Vec<Segment>,
    current: Segment,
    /// Set by the first failed write: the file and memory may disagree from then on.
    failed: Option<String>,
    /// Held for the life of the log: a second process gets a clear error.
    _lock: File,
}

/// [`LogBackend`] on the write-ahead log in one directory.
#[derive(Clone)]
pub struct WalBackend {
    wal: Arc<Mutex<Wal>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackendError + '_ {
    move |source| BackendError::Wal { path: path.to_path_buf(), source }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}{SUFFIX}"))
}

fn sync_dir(dir: &Path) -> Result<(), BackendError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Gives `file` `SEGMENT_SIZE` bytes of allocated, zero-reading space from `from` on.
fn preallocate(file: &File, path: &Path, from: u64) -> Result<(), BackendError> {
    file.set_len(from).map_err(io(path))?;
    let len = SEGMENT_SIZE.saturating_sub(from);
    if len > 0 {
        rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), from, len)
            .map_err(|e| BackendError::Wal { path: path.to_path_buf(), source: e.into() })?;
    }
    Ok(())
}

impl Segment {
    /// Creates segment `seq` holding `records`, durably (file and directory entry).
    fn create(dir: &Path, seq: u64, records: &[Record]) -> Result<Self, BackendError> {
        let path = segment_path(dir, seq);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io(&path))?;
        preallocate(&file, &path, 0)?;
        let mut bytes = Vec::new();
        for record in records {
            record.encode_into(&mut bytes);
        }
        file.write_all_at(&bytes, 0).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        sync_dir(dir)?;
        Ok(Self { seq, path, file: Arc::new(file), len: bytes.len() as u64, last_index: None })
    }
}

impl WalBackend {
    /// Opens (or creates) the log in `dir`, replaying every segment. A damaged record at
    /// the end of the last segment (a write cut short by a crash, never acknowledged) is
    /// cut off; damage anywhere else is an error.
    pub fn open(dir: &Path) -> Result<Self, BackendError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(BackendError::Locked { path: dir.to_path_buf() }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }

        let mut seqs: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                u64::from_str_radix(name.strip_suffix(SUFFIX)?, 16).ok()
            })
            .collect();
        seqs.sort_unstable();

        let mut contents = Contents::default();
        let mut segments = Vec::new();
        for (i, &seq) in seqs.iter().enumerate() {
            let path = segment_path(dir, seq);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let mut at = 0;
            let mut last_index = None;
            while let Some((record, len)) = Record::decode(&bytes[at..]) {
                if let Record::Entry(index, _) = record {
                    last_index = last_index.max(Some(index));
                }
                contents.apply(record).map_err(|e| BackendError::Corrupt { path: path.clone(), what: e })?;
                at += len;
            }
            let is_last = i + 1 == seqs.len();
            let rest_is_zero = bytes[at..].iter().take(HEADER).all(|b| *b == 0);
            if !is_last && !rest_is_zero {
                return Err(BackendError::Corrupt { path, what: format!("damaged record at byte {at} of a closed segment") });
            }
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io(&path))?;
            if is_last && !rest_is_zero {
                tracing::warn!(path = %path.display(), at, "cutting off a torn write at the end of the Raft log");
            }
            if is_last {
                // Whatever follows the last good record (a torn write) becomes zeros
                // (synced below, with the checkpoint).
                preallocate(&file, &path, at as u64)?;
            }
            segments.push(Segment { seq, path, file: Arc::new(file), len: at as u64, last_index });
        }
        let current = match segments.pop() {
            Some(segment) => segment,
            None => Segment::create(dir, 1, &[])?,
        };
        let mut wal = Wal { dir: dir.to_path_buf(), contents, closed: segments, current, failed: None, _lock: lock };
        // A crash while a segment was being started can leave it without its whole
        // checkpoint; the metadata would then live only in older segments, which purging
        // deletes. Written again here, the current segment always holds it.
        let checkpoint = wal.contents.checkpoint();
        wal.write(checkpoint)?;
        wal.current.file.sync_all().map_err(io(&wal.current.path))?;
        Ok(Self { wal: Arc::new(Mutex::new(wal)) })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Wal>, BackendError> {
        let wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        match &wal.failed {
            Some(e) => Err(BackendError::Failed(e.clone())),
            None => Ok(wal),
        }
    }
}

impl Wal {
    /// Appends `records` to the log (and memory), starting a new segment first when they
    /// do not fit in this one.
    fn write(&mut self, records: Vec<Record>) -> Result<(), BackendError> {
        self.check_order(&records).map_err(|what| BackendError::Corrupt { path: self.current.path.clone(), what })?;
        let mut bytes = Vec::new();
        for record in &records {
            record.encode_into(&mut bytes);
        }
        let result = self.write_bytes(&bytes);
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
            return result;
        }
        for record in records {
            if let Record::Entry(index, _) = &record {
                self.current.last_index = self.current.last_index.max(Some(*index));
            }
            if let Err(what) = self.contents.apply(record) {
                let e = BackendError::Corrupt { path: self.current.path.clone(), what };
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Refuses entries that would leave a gap, before anything is written (the rules of
    /// `Contents::apply`, run ahead).
    fn check_order(&self, records: &[Record]) -> Result<(), String> {
        let (mut first, mut next) = (self.contents.first, self.contents.next());
        for record in records {
            if let Record::Entry(index, _) = record {
                first = admit(first, next, *index)?;
                next = Some(index + 1);
            }
        }
        Ok(())
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        if self.current.len + bytes.len() as u64 > SEGMENT_SIZE && self.current.last_index.is_some() {
            self.start_segment()?;
        }
        let current = &mut self.current;
        current.file.write_all_at(bytes, current.len).map_err(io(&current.path))?;
        current.len += bytes.len() as u64;
        Ok(())
    }

    /// Closes the current segment (synced, so the log never has a hole) and starts the
    /// next one with the checkpoint.
    fn start_segment(&mut self) -> Result<(), BackendError> {
        self.current.file.sync_data().map_err(io(&self.current.path))?;
        let next = Segment::create(&self.dir, self.current.seq + 1, &self.contents.checkpoint())?;
        let closed = std::mem::replace(&mut self.current, next);
        self.closed.push(closed);
        Ok(())
    }
}

impl LogBackend for WalBackend {
    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), BackendError> {
        let records = entries.into_iter().map(|(index, bytes)| Record::Entry(index, bytes)).collect();
        self.lock()?.write(records)
    }

    /// One `fdatasync` of the current segment: earlier segments were synced when closed.
    fn sync(&self) -> Result<(), BackendError> {
        let (file, path) = {
            let wal = self.lock()?;
            (wal.current.file.clone(), wal.current.path.clone())
        };
        file.sync_data().map_err(io(&path))
    }

    fn range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, BackendError> {
        let wal = self.lock()?;
        let c = &wal.contents;
        let start = start.max(c.first);
        let end = end.min(c.next_index());
        Ok((start..end).map(|i| (i, c.entries[(i - c.first) as usize].clone())).collect())
    }

    fn last(&self) -> Result<Option<(u64, Vec<u8>)>, BackendError> {
        let wal = self.lock()?;
        let c = &wal.contents;
        Ok(c.entries.back().map(|bytes| (c.next_index() - 1, bytes.clone())))
    }

    fn truncate_from(&self, from: u64) -> Result<(), BackendError> {
        self.lock()?.write(vec![Record::Truncate(from)])
    }

    /// Records the purge point and deletes the closed segments that hold only purged
    /// entries (the directory is synced, so a crash cannot bring one back).
    fn purge_upto(&self, upto: u64) -> Result<(), BackendError> {
        let mut wal = self.lock()?;
        wal.write(vec![Record::Purge(upto)])?;
        let done = wal.closed.iter().take_while(|s| s.last_index.is_none_or(|l| l <= upto)).count();
        if done == 0 {
            return Ok(());
        }
        for segment in wal.closed.drain(..done) {
            std::fs::remove_file(&segment.path).map_err(io(&segment.path))?;
        }
        sync_dir(&wal.dir)
    }

    fn put_meta(&self, name: &str, value: Vec<u8>) -> Result<(), BackendError> {
        self.lock()?.write(vec![Record::Meta(name.to_string(), value)])
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.lock()?.contents.meta.get(name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
        range.map(|i| (i, format!("entry {i}").into_bytes())).collect()
    }

    fn indexes(wal: &WalBackend) -> Vec<u64> {
        wal.range(0, u64::MAX).expect("range").into_iter().map(|(i, _)| i).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = WalBackend::open(dir.path()).expect("open");
            wal.append(entries(0..11)).expect("append");
            wal.truncate_from(8).expect("truncate");
            wal.append(entries(8..9)).expect("append");
            wal.put_meta("vote", b"v1".to_vec()).expect("meta");
            wal.put_meta("vote", b"v2".to_vec()).expect("meta");
            wal.purge_upto(3).expect("purge");
            wal.sync().expect("sync");
        }
        let wal = WalBackend::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&wal), (4..9).collect::<Vec<_>>());
        assert_eq!(wal.last().expect("last"), Some((8, b"entry 8".to_vec())));
        assert_eq!(wal.range(5, 7).expect("range"), entries(5..7));
        assert_eq!(wal.get_meta("vote").expect("meta"), Some(b"v2".to_vec()));
        assert_eq!(wal.get_meta("other").expect("meta"), None);
    }

    #[test]
    fn entry_zero_survives_reopens() {
        // openraft's first entry has index 0; nothing was purged, so nothing may go.
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = WalBackend::open(dir.path()).expect("open");
            wal.append(entries(0..3)).expect("append");
            wal.sync().expect("sync");
        }
        for _ in 0..2 {
            let wal = WalBackend::open(dir.path()).expect("reopen");
            assert_eq!(indexes(&wal), vec![0, 1, 2]);
        }
    }

    #[test]
    fn a_second_process_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _wal = WalBackend::open(dir.path()).expect("open");
        let err = WalBackend::open(dir.path()).err().expect("locked");
        assert!(matches!(err, BackendError::Locked { .. }), "{err}");
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_writing_goes_on_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tail_at;
        {
            let wal = WalBackend::open(dir.path()).expect("open");
            wal.append(entries(1..4)).expect("append");
            tail_at = wal.lock().expect("lock").current.len;
            wal.append(entries(4..5)).expect("append");
            wal.sync().expect("sync");
        }
        // Entry 4's record was only half written when the machine stopped.
        let path = segment_files(dir.path()).pop().expect("a segment");
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0xAB; 5], tail_at + HEADER as u64 + 3).expect("tear");
        drop(file);
        {
            let wal = WalBackend::open(dir.path()).expect("reopen");
            assert_eq!(indexes(&wal), vec![1, 2, 3]);
            wal.append(entries(4..6)).expect("append after the cut");
            wal.sync().expect("sync");
        }
        let wal = WalBackend::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&wal), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_log_cut_anywhere_opens_as_a_prefix_of_what_was_written() {
        // A crash can stop the last segment's bytes at any offset: every cut must open,
        // hold entries 1..=m for some m, and keep every record that was whole.
        let written = tempfile::tempdir().expect("tempdir");
        let mut ends = Vec::new();
        {
            let wal = WalBackend::open(written.path()).expect("open");
            for i in 1..=40u64 {
                wal.append(vec![(i, vec![i as u8; 10 + (i as usize * 7) % 50])]).expect("append");
                ends.push(wal.lock().expect("lock").current.len);
            }
            wal.sync().expect("sync");
        }
        let segment = segment_files(written.path()).pop().expect("a segment");
        let bytes = std::fs::read(&segment).expect("read");
        for cut in (0..=ends[ends.len() - 1] as usize).step_by(13) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut torn = bytes[..cut].to_vec();
            torn.resize(bytes.len(), 0);
            std::fs::write(dir.path().join(segment.file_name().expect("name")), &torn).expect("write");
            let wal = WalBackend::open(dir.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            let whole = ends.iter().filter(|end| **end as usize <= cut).count() as u64;
            assert_eq!(indexes(&wal), (1..=whole).collect::<Vec<_>>(), "cut at {cut}");
        }
    }

    #[test]
    fn damage_inside_a_closed_segment_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = WalBackend::open(dir.path()).expect("open");
            let big = vec![7u8; (SEGMENT_SIZE / 3) as usize];
            for i in 1..5 {
                wal.append(vec![(i, big.clone())]).expect("append");
            }
            wal.sync().expect("sync");
        }
        let files = segment_files(dir.path());
        assert!(files.len() >= 2, "{files:?}");
        let file = OpenOptions::new().write(true).open(&files[0]).expect("open");
        file.write_all_at(&[0xFF; 4], 1000).expect("damage");
        let err = WalBackend::open(dir.path()).err().expect("damaged");
        assert!(matches!(err, BackendError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn segments_roll_over_and_purged_ones_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = vec![1u8; (SEGMENT_SIZE / 4) as usize];
        {
            let wal = WalBackend::open(dir.path()).expect("open");
            wal.put_meta("vote", b"kept".to_vec()).expect("meta");
            for i in 1..=12 {
                wal.append(vec![(i, big.clone())]).expect("append");
            }
            assert!(segment_files(dir.path()).len() >= 4);
            wal.purge_upto(10).expect("purge");
            wal.sync().expect("sync");
            // Only segments that still hold entry 11 or later are left.
            assert!(segment_files(dir.path()).len() <= 2, "{:?}", segment_files(dir.path()));
        }
        let wal = WalBackend::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&wal), vec![11, 12]);
        assert_eq!(wal.get_meta("vote").expect("meta"), Some(b"kept".to_vec()));
        wal.append(entries(13..14)).expect("append");
        assert_eq!(indexes(&wal), vec![11, 12, 13]);
    }

    #[test]
    fn metadata_survives_a_crash_while_a_segment_was_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = WalBackend::open(dir.path()).expect("open");
            wal.put_meta("vote", b"term 7".to_vec()).expect("meta");
            wal.append(entries(1..4)).expect("append");
            wal.sync().expect("sync");
        }
        // The next segment's file was made, but its checkpoint never reached the disk.
        let last = segment_files(dir.path()).pop().expect("a segment");
        let seq = u64::from_str_radix(last.file_stem().and_then(|s| s.to_str()).expect("stem"), 16).expect("seq");
        std::fs::write(segment_path(dir.path(), seq + 1), vec![0u8; 4096]).expect("empty segment");
        {
            let wal = WalBackend::open(dir.path()).expect("reopen");
            wal.append(entries(4..6)).expect("append");
            // Purging deletes the first segment, the only one that held the vote before.
            wal.purge_upto(3).expect("purge");
            wal.sync().expect("sync");
            assert_eq!(segment_files(dir.path()).len(), 1);
        }
        let wal = WalBackend::open(dir.path()).expect("reopen");
        assert_eq!(wal.get_meta("vote").expect("meta"), Some(b"term 7".to_vec()));
        assert_eq!(indexes(&wal), vec![4, 5]);
    }

    #[test]
    fn a_gap_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = WalBackend::open(dir.path()).expect("open");
        wal.append(entries(1..3)).expect("append");
        let err = wal.append(entries(5..6)).expect_err("gap");
        assert!(err.to_string().contains("gap"), "{err}");
    }

    #[test]
    fn after_an_empty_purge_the_log_restarts_at_any_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = WalBackend::open(dir.path()).expect("open");
        wal.append(entries(1..3)).expect("append");
        wal.purge_upto(50).expect("purge (a snapshot was installed)");
        wal.append(entries(51..53)).expect("append");
        assert_eq!(indexes(&wal), vec![51, 52]);
    }
}
