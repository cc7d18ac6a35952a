//! The judgement of a chaos run, pure (tested without processes): from every
//! acknowledged write and the rounds' times, the split-brain windows, the acknowledged
//! writes missing on the final primary, the failover time and the longest write gap
//! of each round.
//!
//! Split brain is decided with PostgreSQL's own timelines: every promotion starts a new
//! timeline, and each write reports the timeline it was written on. Two nodes writing
//! on one timeline, or a node writing on an older timeline *after* a write on a newer
//! timeline of another node was already acknowledged (its send time is later than that
//! acknowledgement), are two writable primaries at once. Both tests only use facts a
//! client observed, so network delay on the acknowledgements cannot fake a window.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One write the cluster acknowledged: which node, on which timeline, at which WAL
/// position, sent and acknowledged when (since the run started).
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub id: u64,
    pub node: usize,
    pub timeline: u32,
    pub lsn: u64,
    pub sent: Duration,
    pub acked: Duration,
}

/// A node writing on a timeline: (node, timeline).
pub type Writer = (usize, u32);

/// Two writable primaries at once: `old` acknowledged a write sent at `at` although
/// `new` had already acknowledged one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SplitBrain {
    pub old: Writer,
    pub new: Writer,
    pub at: Duration,
}

/// Every split-brain window in `acks`, one per pair of (node, timeline) writers.
pub fn split_brain(acks: &[Ack]) -> Vec<SplitBrain> {
    // The earliest acknowledgement and send of each (node, timeline) writer.
    let mut first_acked: BTreeMap<Writer, Duration> = BTreeMap::new();
    let mut first_sent: BTreeMap<Writer, Duration> = BTreeMap::new();
    for a in acks {
        let key = (a.node, a.timeline);
        let e = first_acked.entry(key).or_insert(a.acked);
        *e = (*e).min(a.acked);
        let s = first_sent.entry(key).or_insert(a.sent);
        *s = (*s).min(a.sent);
    }
    let mut windows: BTreeMap<(Writer, Writer), Duration> = BTreeMap::new();
    // Two nodes on one timeline: both promoted from the same parent.
    let mut by_timeline: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &(node, tl) in first_acked.keys() {
        by_timeline.entry(tl).or_default().push(node);
    }
    for (tl, nodes) in &by_timeline {
        for pair in nodes.windows(2) {
            let at = first_sent[&(pair[1], *tl)].max(first_sent[&(pair[0], *tl)]);
            windows.insert(((pair[0], *tl), (pair[1], *tl)), at);
        }
    }
    // An older timeline's node writing after a newer timeline's write was acknowledged.
    for a in acks {
        for (&(node, tl), &acked) in &first_acked {
            if tl > a.timeline && node != a.node && a.sent > acked {
                let e = windows.entry(((a.node, a.timeline), (node, tl))).or_insert(a.sent);
                *e = (*e).min(a.sent);
            }
        }
    }
    let mut out: Vec<SplitBrain> = windows.into_iter().map(|((old, new), at)| SplitBrain { old, new, at }).collect();
    out.sort();
    out
}

/// The acknowledged writes whose ids the final primary does not hold.
pub fn lost<'a>(acks: &'a [Ack], present: &BTreeSet<u64>) -> Vec<&'a Ack> {
    acks.iter().filter(|a| !present.contains(&a.id)).collect()
}

/// The WAL the lost writes spanned on their primary, in bytes (0 when none was lost):
/// what to compare with `maximum_lag_on_failover`.
pub fn lost_wal_bytes(lost: &[&Ack]) -> u64 {
    let lo = lost.iter().map(|a| a.lsn).min();
    let hi = lost.iter().map(|a| a.lsn).max();
    match (lo, hi) {
        (Some(lo), Some(hi)) => hi - lo,
        _ => 0,
    }
}

/// The longest time without an acknowledged write from `from` to `to`, counting from
/// `from` (the fault) to the first acknowledgement after it.
pub fn longest_gap(acks: &[Ack], from: Duration, to: Duration) -> Duration {
    let mut times: Vec<Duration> = acks.iter().map(|a| a.acked).filter(|t| *t > from && *t <= to).collect();
    times.sort();
    let mut last = from;
    let mut gap = Duration::ZERO;
    for t in times {
        gap = gap.max(t - last);
        last = t;
    }
    if last == from {
        // Nothing was acknowledged at all after the fault.
        return to.saturating_sub(from);
    }
    gap
}

/// The first node other than `old` that acknowledged a write after `fault`, and how
/// long after the fault: the failover as a client saw it.
pub fn first_other_writer(acks: &[Ack], old: usize, fault: Duration) -> Option<(usize, Duration)> {
    acks.iter().filter(|a| a.node != old && a.acked > fault).min_by_key(|a| a.acked).map(|a| (a.node, a.acked - fault))
}

/// `0/3000148` → 0x3000148.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The timeline of a WAL file name (its first 8 hex digits): `000000030000000000000005` → 3.
pub fn timeline_of_walfile(name: &str) -> Option<u32> {
    let name = name.trim();
    if name.len() != 24 {
        return None;
    }
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

/// The median and the maximum (p50 and max) of some durations.
pub fn p50_max(values: &[Duration]) -> Option<(Duration, Duration)> {
    let mut v = values.to_vec();
    v.sort();
    Some((*v.get(v.len().checked_sub(1)? / 2)?, *v.last()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ack(id: u64, node: usize, timeline: u32, sent: u64, acked: u64) -> Ack {
        Ack { id, node, timeline, lsn: id * 100, sent: ms(sent), acked: ms(acked) }
    }

    #[test]
    fn a_clean_handover_has_no_window() {
        // node0 writes on timeline 1 until it is fenced; node1 writes on timeline 2.
        let acks = vec![ack(1, 0, 1, 0, 10), ack(2, 0, 1, 100, 400), ack(3, 1, 2, 350, 500), ack(4, 1, 2, 600, 610)];
        // The slow ack of write 2 overlaps write 3's window, but write 2 was sent before
        // write 3 was acknowledged: no proof of two primaries.
        assert!(split_brain(&acks).is_empty());
    }

    #[test]
    fn an_old_primary_writing_after_the_new_one_acknowledged_is_split_brain() {
        let acks = vec![ack(1, 0, 1, 0, 10), ack(2, 1, 2, 100, 110), ack(3, 0, 1, 200, 210), ack(4, 0, 1, 300, 310)];
        assert_eq!(split_brain(&acks), vec![SplitBrain { old: (0, 1), new: (1, 2), at: ms(200) }]);
    }

    #[test]
    fn two_nodes_on_one_timeline_is_split_brain() {
        let acks = vec![ack(1, 0, 2, 0, 10), ack(2, 1, 2, 50, 60)];
        assert_eq!(split_brain(&acks), vec![SplitBrain { old: (0, 2), new: (1, 2), at: ms(50) }]);
    }

    #[test]
    fn failing_back_later_is_no_window() {
        // node0 → node1 (timeline 2) → node0 again (timeline 3).
        let acks = vec![ack(1, 0, 1, 0, 10), ack(2, 1, 2, 100, 110), ack(3, 0, 3, 200, 210)];
        assert!(split_brain(&acks).is_empty());
    }

    #[test]
    fn lost_writes_and_their_wal() {
        let acks = vec![ack(1, 0, 1, 0, 10), ack(2, 0, 1, 20, 30), ack(3, 0, 1, 40, 50)];
        let present: BTreeSet<u64> = [1].into();
        let lost = lost(&acks, &present);
        assert_eq!(lost.iter().map(|a| a.id).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(lost_wal_bytes(&lost), 100);
        assert_eq!(lost_wal_bytes(&[]), 0);
    }

    #[test]
    fn gaps_count_from_the_fault() {
        let acks = vec![ack(1, 0, 1, 0, 900), ack(2, 1, 2, 2000, 3000), ack(3, 1, 2, 3000, 3100)];
        assert_eq!(longest_gap(&acks, ms(1000), ms(5000)), ms(2000));
        assert_eq!(longest_gap(&acks, ms(3100), ms(5000)), ms(1900));
        assert_eq!(first_other_writer(&acks, 0, ms(1000)), Some((1, ms(2000))));
        assert_eq!(first_other_writer(&acks, 1, ms(1000)), None);
    }

    #[test]
    fn parses_postgres_positions() {
        assert_eq!(parse_lsn("0/3000148"), Some(0x300_0148));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("x"), None);
        assert_eq!(timeline_of_walfile("000000030000000000000005"), Some(3));
        assert_eq!(timeline_of_walfile("0003"), None);
        assert_eq!(p50_max(&[ms(3), ms(1), ms(2)]), Some((ms(2), ms(3))));
        assert_eq!(p50_max(&[]), None);
    }
}
