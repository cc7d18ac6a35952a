//! The chaos run's table, one row per fault kind (the last two columns count the
//! rounds that did not end as the kind expects and those that did not heal), and its
//! summary line `chaos: N rounds, S split-brain windows, L acknowledged writes lost`.

use std::time::Duration;

use super::kinds::Fault;
use super::verdict::{p50_max, Ack, SplitBrain};

/// One round as it happened.
#[derive(Debug, Clone)]
pub struct Round {
    pub fault: Fault,
    /// What was done, in a few words.
    pub what: String,
    /// The primary before the fault, the first other node that took a write after it,
    /// and the primary once healed (node indexes).
    pub old: usize,
    pub writer: Option<usize>,
    pub primary_after: Option<usize>,
    /// Since the run started: the round's window (from the previous round's end), and
    /// when the fault hit.
    pub from: Duration,
    pub at: Duration,
    pub to: Duration,
    /// Until a new primary took a write, when the primary changed.
    pub failover: Option<Duration>,
    /// The longest time without an acknowledged write after the fault.
    pub gap: Duration,
    pub healed: bool,
    /// Nodes found exited after the fault and started again (as systemd would).
    pub restarts: usize,
    /// The fault kind's own expectation: what was seen, or why it failed.
    pub expected: Result<String, String>,
}

impl Round {
    /// Whether `t` falls in this round's window.
    pub fn holds(&self, t: Duration) -> bool {
        t > self.from && t <= self.to
    }
}

/// Everything the table and the verdict need.
pub struct Outcome<'a> {
    pub rounds: &'a [Round],
    pub split_brain: &'a [SplitBrain],
    pub lost: &'a [&'a Ack],
}

fn seconds(d: Option<(Duration, Duration)>) -> String {
    d.map_or_else(|| "-".to_string(), |(p50, max)| format!("{:.2} / {:.2}", p50.as_secs_f64(), max.as_secs_f64()))
}

/// The table, one row per fault kind in the order they first ran.
pub fn table(outcome: &Outcome) -> String {
    let mut kinds: Vec<Fault> = Vec::new();
    for r in outcome.rounds {
        if !kinds.contains(&r.fault) {
            kinds.push(r.fault);
        }
    }
    let mut out = format!(
        "{:<28} {:>6} {:>9} {:>18} {:>18} {:>11} {:>11} {:>10} {:>8}\n",
        "fault", "rounds", "failovers", "failover s p50/max", "write gap s p50/max", "split-brain", "writes lost", "unexpected", "unhealed"
    );
    for kind in kinds {
        let rounds: Vec<&Round> = outcome.rounds.iter().filter(|r| r.fault == kind).collect();
        let failovers: Vec<Duration> = rounds.iter().filter_map(|r| r.failover).collect();
        let gaps: Vec<Duration> = rounds.iter().map(|r| r.gap).collect();
        let split = outcome.split_brain.iter().filter(|w| rounds.iter().any(|r| r.holds(w.at))).count();
        let lost = outcome.lost.iter().filter(|a| rounds.iter().any(|r| r.holds(a.acked))).count();
        let unexpected = rounds.iter().filter(|r| r.expected.is_err()).count();
        let unhealed = rounds.iter().filter(|r| !r.healed).count();
        let restarts: usize = rounds.iter().map(|r| r.restarts).sum();
        let name = if restarts > 0 { format!("{} (+{restarts} restarts)", kind.name()) } else { kind.name().to_string() };
        out += &format!(
            "{:<28} {:>6} {:>9} {:>18} {:>18} {:>11} {:>11} {:>10} {:>8}\n",
            name,
            rounds.len(),
            failovers.len(),
            seconds(p50_max(&failovers)),
            seconds(p50_max(&gaps)),
            split,
            lost,
            unexpected,
            unhealed
        );
    }
    out
}

/// `chaos: N rounds, S split-brain windows, L acknowledged writes lost`
pub fn summary(outcome: &Outcome) -> String {
    format!(
        "chaos: {} rounds, {} split-brain windows, {} acknowledged writes lost",
        outcome.rounds.len(),
        outcome.split_brain.len(),
        outcome.lost.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_count_per_fault() {
        let s = Duration::from_secs;
        let round = |fault, from, to, failover| Round {
            fault,
            what: String::new(),
            old: 0,
            writer: None,
            primary_after: None,
            from: s(from),
            at: s(from + 1),
            to: s(to),
            failover,
            gap: s(2),
            healed: true,
            restarts: 0,
            expected: Ok(String::new()),
        };
        let mut rounds =
            vec![round(Fault::Kill, 0, 10, Some(s(3))), round(Fault::Pause, 10, 20, None), round(Fault::Kill, 20, 30, Some(s(5)))];
        rounds[1].expected = Err("no failover".into());
        let lost_ack = Ack { id: 7, node: 0, timeline: 1, lsn: 0, sent: s(21), acked: s(22) };
        let lost = vec![&lost_ack];
        let windows = vec![SplitBrain { old: (0, 1), new: (1, 2), at: s(15) }];
        let outcome = Outcome { rounds: &rounds, split_brain: &windows, lost: &lost };
        let table = table(&outcome);
        let kill = table.lines().find(|l| l.starts_with("kill")).expect("kill row");
        assert!(kill.contains("3.00 / 5.00"), "{kill}");
        let cols: Vec<&str> = kill.split_whitespace().collect();
        assert_eq!(&cols[1..3], &["2", "2"], "{kill}");
        assert_eq!(cols[cols.len() - 4..], ["0", "1", "0", "0"], "{kill}");
        let pause = table.lines().find(|l| l.starts_with("pause")).expect("pause row");
        assert!(pause.contains(" - "), "{pause}");
        let cols: Vec<&str> = pause.split_whitespace().collect();
        assert_eq!(cols[cols.len() - 4..], ["1", "0", "1", "0"], "{pause}");
        assert_eq!(summary(&outcome), "chaos: 3 rounds, 1 split-brain windows, 1 acknowledged writes lost");
    }
}
