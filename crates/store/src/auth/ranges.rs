//! The permission range check, a pure function: does the union of a role set's
//! permitted key intervals cover the interval a request names?
//!
//! Intervals are written as etcd writes them (`key`, `range_end`): an empty `range_end`
//! is the single key, `"\0"` is every key `>= key`, anything else `[key, range_end)`.
//! As etcd does, the granted intervals are merged first (overlapping or touching ones
//! become one), so a request spanning two adjacent grants is permitted; a single key is
//! the interval `[key, key + "\0")`, the smallest one holding it.

/// A half-open interval; `end: None` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn of(key: &[u8], range_end: &[u8]) -> Self {
        let end = match range_end {
            [] => {
                let mut next = key.to_vec();
                next.push(0);
                Some(next)
            }
            [0] => None,
            end => Some(end.to_vec()),
        };
        Self { start: key.to_vec(), end }
    }

    /// Whether `self` holds all of `other`.
    fn holds(&self, other: &Interval) -> bool {
        let end_ok = match (&self.end, &other.end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs <= mine,
        };
        self.start <= other.start && end_ok
    }
}

/// Whether a grant interval is well formed (etcd refuses the others with "invalid auth
/// management"): a single key, from-key, or a non-empty `[key, range_end)`.
pub fn valid_grant(key: &[u8], range_end: &[u8]) -> bool {
    range_end.is_empty() || range_end == [0] || key < range_end
}

/// Whether the union of `granted` (each `(key, range_end)`) covers the request's
/// `(key, range_end)`. A request interval that holds no key (`range_end <= key`) is
/// covered by anything, as it touches nothing.
pub fn covers<'a>(granted: impl IntoIterator<Item = (&'a [u8], &'a [u8])>, key: &[u8], range_end: &[u8]) -> bool {
    let wanted = Interval::of(key, range_end);
    if matches!(&wanted.end, Some(end) if *end <= wanted.start) {
        return true;
    }
    merged(granted.into_iter().map(|(k, e)| Interval::of(k, e))).iter().any(|i| i.holds(&wanted))
}

/// The union of `intervals` as disjoint, non-touching intervals, by start.
fn merged(intervals: impl Iterator<Item = Interval>) -> Vec<Interval> {
    let mut sorted: Vec<Interval> = intervals.filter(|i| i.end.as_ref().is_none_or(|end| *end > i.start)).collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start));
    let mut out: Vec<Interval> = Vec::with_capacity(sorted.len());
    for next in sorted {
        match out.last_mut() {
            Some(last) if last.end.as_ref().is_none_or(|end| next.start <= *end) => {
                last.end = match (last.end.take(), next.end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => out.push(next),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[(&'static str, &'static str)]) -> Vec<(&'static [u8], &'static [u8])> {
        list.iter().map(|(k, e)| (k.as_bytes(), e.as_bytes())).collect()
    }

    #[test]
    fn a_single_key_grant_covers_that_key_only() {
        let g = grants(&[("/a", "")]);
        assert!(covers(g.clone(), b"/a", b""));
        assert!(!covers(g.clone(), b"/ab", b""));
        assert!(!covers(g.clone(), b"/", b""));
        assert!(!covers(g, b"/a", b"/b"), "a range beyond the key");
    }

    #[test]
    fn a_prefix_grant_covers_keys_and_ranges_inside_it() {
        // etcdctl's --prefix /app/ is [/app/, /app0).
        let g = grants(&[("/app/", "/app0")]);
        assert!(covers(g.clone(), b"/app/x", b""));
        assert!(covers(g.clone(), b"/app/", b"/app0"), "the whole prefix");
        assert!(covers(g.clone(), b"/app/a", b"/app/b"));
        assert!(!covers(g.clone(), b"/app0", b""), "just past the end");
        assert!(!covers(g.clone(), b"/apq", b""));
        assert!(!covers(g.clone(), b"/app/", &[0]), "from-key reaches past the prefix");
        assert!(!covers(g, b"/ap", b"/app0"), "starts before the prefix");
    }

    #[test]
    fn a_from_key_grant_covers_everything_after_it() {
        let g = grants(&[("/m", "\0")]);
        assert!(covers(g.clone(), b"/m", b""));
        assert!(covers(g.clone(), b"/zzz", &[0]));
        assert!(covers(g.clone(), b"\xff\xff", b""));
        assert!(!covers(g, b"/a", b""));
    }

    #[test]
    fn adjacent_or_overlapping_grants_merge() {
        let g = grants(&[("/a", "/c"), ("/c", "/e"), ("/x", "/z"), ("/y", "\0")]);
        assert!(covers(g.clone(), b"/b", b"/d"), "across the touching grants");
        assert!(covers(g.clone(), b"/x", &[0]), "/x.. merged with /y..");
        assert!(!covers(g.clone(), b"/d", b"/f"), "gap after /e");
        assert!(!covers(g, b"/e", b""));
        // A single key touching the start of a range merges with it.
        let g = grants(&[("/k", ""), ("/k\0", "/l")]);
        assert!(covers(g, b"/k", b"/l"));
    }

    #[test]
    fn no_grant_covers_nothing_and_empty_requests_touch_nothing() {
        assert!(!covers(Vec::new(), b"/a", b""));
        assert!(covers(Vec::new(), b"/b", b"/a"), "an empty interval holds no key");
    }

    #[test]
    fn grant_validity() {
        assert!(valid_grant(b"/a", b""));
        assert!(valid_grant(b"/a", b"\0"));
        assert!(valid_grant(b"/a", b"/b"));
        assert!(!valid_grant(b"/b", b"/a"));
        assert!(!valid_grant(b"/a", b"/a"));
    }
}
