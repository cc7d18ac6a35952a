//! Key intervals as etcd requests name them with `key` and `range_end`:
//! an empty `range_end` means the single key, `"\0"` means every key `>= key`, anything
//! else the half-open `[key, range_end)`; a prefix is `[prefix, prefix_end(prefix))`.
//! Watches add one rule: an empty key means `"\0"`.

pub use raftgres_proto::prefix_end;

/// Why a watch's interval is refused (etcd's `mvcc.ErrEmptyWatcherRange`).
pub const EMPTY_WATCHER_RANGE: &str = "mvcc: watcher range is empty";

/// A key interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    key: Vec<u8>,
    range_end: Vec<u8>,
}

impl KeyRange {
    /// The interval a request names; `range_end` as etcd reads it.
    pub fn new(key: Vec<u8>, range_end: Vec<u8>) -> Self {
        Self { key, range_end }
    }

    /// The interval of a watch request: an empty key is `"\0"`; an interval that can hold
    /// no key (`range_end` set, not `"\0"`, and `<= key`) is refused as etcd does.
    pub fn for_watch(key: &[u8], range_end: &[u8]) -> Result<Self, &'static str> {
        let key = if key.is_empty() { vec![0] } else { key.to_vec() };
        if !range_end.is_empty() && range_end != [0] && key.as_slice() >= range_end {
            return Err(EMPTY_WATCHER_RANGE);
        }
        Ok(Self { key, range_end: range_end.to_vec() })
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        Self { key: prefix.to_vec(), range_end: prefix_end(prefix) }
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn range_end(&self) -> &[u8] {
        &self.range_end
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            key == self.key.as_slice()
        } else if self.range_end == [0] {
            key >= self.key.as_slice()
        } else {
            key >= self.key.as_slice() && key < self.range_end.as_slice()
        }
    }
}

/// A lease id as Go's `%x` prints it (etcd's lock and election keys end with it).
pub fn lease_hex(id: i64) -> String {
    if id < 0 {
        format!("-{:x}", id.unsigned_abs())
    } else {
        format!("{id:x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_matches_etcd() {
        assert_eq!(prefix_end(b"/svc/"), b"/svc0".to_vec());
        assert_eq!(prefix_end(b"a"), b"b".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn single_key_from_key_and_half_open_intervals() {
        let single = KeyRange::new(b"a".to_vec(), vec![]);
        assert!(single.contains(b"a") && !single.contains(b"ab") && !single.contains(b""));
        let from = KeyRange::new(b"b".to_vec(), vec![0]);
        assert!(from.contains(b"b") && from.contains(b"zzz") && !from.contains(b"a"));
        let half = KeyRange::new(b"b".to_vec(), b"d".to_vec());
        assert!(half.contains(b"b") && half.contains(b"c\xff") && !half.contains(b"d") && !half.contains(b"a"));
        let prefix = KeyRange::prefix(b"/svc/");
        assert!(prefix.contains(b"/svc/") && prefix.contains(b"/svc/x") && !prefix.contains(b"/svc0"));
        let all = KeyRange::prefix(b"");
        assert!(all.contains(b"") && all.contains(b"\xff\xff"));
    }

    #[test]
    fn watch_intervals() {
        // Empty key = "\0": alone it is the single key "\0"; with "\0" it is every key.
        let w = KeyRange::for_watch(b"", b"").expect("valid");
        assert!(w.contains(&[0]) && !w.contains(b"a"));
        let all = KeyRange::for_watch(b"", &[0]).expect("valid");
        assert!(all.contains(&[0]) && all.contains(b"anything"));
        assert_eq!(KeyRange::for_watch(b"b", b"a"), Err(EMPTY_WATCHER_RANGE));
        assert_eq!(KeyRange::for_watch(b"b", b"b"), Err(EMPTY_WATCHER_RANGE));
        assert!(KeyRange::for_watch(b"a", b"b").is_ok());
    }

    #[test]
    fn lease_hex_is_gos_percent_x() {
        assert_eq!(lease_hex(0x694d_7c3b_0a1b_2c3d), "694d7c3b0a1b2c3d");
        assert_eq!(lease_hex(255), "ff");
        assert_eq!(lease_hex(-255), "-ff");
        assert_eq!(lease_hex(i64::MIN), "-8000000000000000");
    }
}
