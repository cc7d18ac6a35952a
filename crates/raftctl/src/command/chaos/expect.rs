//! What each fault kind must lead to, beyond the run's own checks (one writer at a
//! time, acknowledged writes kept, the cluster healed), and the pure judgement of one
//! round against it, from the writes the clients saw and what the injection recorded.
//! A fault whose outcome may safely go either way (a kill of the postmaster may end in
//! a restart in place or a failover) expects only the run's checks.

use std::time::Duration;

use super::kinds::Fault;
use super::verdict::Ack;

/// What a fault must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Only the run's own checks.
    Safe,
    /// Another node takes writes after the fault.
    Failover,
    /// No other node takes a write while the fault is held.
    NoFailover,
    /// No other node takes a write in the whole round, and the primary's postmaster is
    /// the one it was (never fenced or restarted).
    Undisturbed,
    /// No node acknowledges a write sent after the lease ran out (ttl and
    /// [`FENCE_GRACE`] after the fault) until the fault is undone.
    NoWrites,
    /// After the new primary was killed too, a third writer takes over: in synchronous
    /// mode one of the standbys `/sync` named when it was killed.
    SecondFailover,
    /// The switchover requested during the fault completed or was refused, never left
    /// pending.
    Resolved,
}

/// How long after its lease ran out a cut-off primary may still acknowledge a write:
/// the fencer stopping PostgreSQL and a write already in flight.
pub const FENCE_GRACE: Duration = Duration::from_secs(1);

/// The expectation of each fault kind.
pub fn of(fault: Fault) -> Expect {
    match fault {
        Fault::GroupStop | Fault::PgHang => Expect::Failover,
        Fault::DoubleFailover => Expect::SecondFailover,
        Fault::IsolateTwo => Expect::NoWrites,
        Fault::Failsafe => Expect::NoFailover,
        Fault::TtlChange => Expect::Undisturbed,
        Fault::PgStall => Expect::Resolved,
        Fault::Kill
        | Fault::Postmaster
        | Fault::Pause
        | Fault::Partition
        | Fault::PartitionOneway
        | Fault::PartitionInbound
        | Fault::Netem
        | Fault::Diskfull
        | Fault::RestartAll
        | Fault::Bridge => Expect::Safe,
    }
}

/// What an injection saw that a check needs besides the writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Evidence {
    #[default]
    None,
    /// The second kill of `double-failover`: when, which node, in synchronous mode the
    /// nodes `/sync` named as standbys then, and the nodes already on its timeline.
    SecondKill { at: Duration, node: usize, standbys: Option<Vec<usize>>, caught_up: Vec<usize> },
    /// Whether the primary's postmaster was the same process after the fault.
    PostmasterKept(bool),
    /// How the switchover requested during the fault ended, in a few words, and whether
    /// it ended at all (completed or refused).
    Switchover { resolved: bool, how: String },
}

/// One round as the check sees it: the old primary, when the fault hit and was undone,
/// when the round ended, the lease's ttl, and the injection's evidence.
#[derive(Debug, Clone)]
pub struct Facts {
    pub old: usize,
    pub at: Duration,
    pub undone: Duration,
    pub to: Duration,
    pub ttl: Duration,
    pub evidence: Evidence,
}

/// `Ok(what was seen)` when the round went as `expect` says, else why not.
pub fn check(expect: Expect, facts: &Facts, acks: &[Ack]) -> Result<String, String> {
    let other_acked = |from: Duration, to: Duration| {
        acks.iter().filter(|a| a.node != facts.old && a.acked > from && a.acked <= to).min_by_key(|a| a.acked)
    };
    let node = |i: usize| format!("node{}", i + 1);
    match expect {
        Expect::Safe => Ok("safe".into()),
        Expect::Failover => match other_acked(facts.at, facts.to) {
            Some(a) => Ok(format!("failover to {}", node(a.node))),
            None => Err(format!("expected a failover, but no node but {} took a write", node(facts.old))),
        },
        Expect::NoFailover => match other_acked(facts.at, facts.undone) {
            None => Ok("no failover while held".into()),
            Some(a) => Err(format!(
                "expected no failover while held, but {} took a write {:.2} s after the fault",
                node(a.node),
                secs(a.acked - facts.at)
            )),
        },
        Expect::Undisturbed => {
            if let Some(a) = other_acked(facts.at, facts.to) {
                return Err(format!(
                    "expected no failover, but {} took a write {:.2} s after the fault",
                    node(a.node),
                    secs(a.acked - facts.at)
                ));
            }
            match facts.evidence {
                Evidence::PostmasterKept(true) => Ok("no failover, the primary's postmaster untouched".into()),
                Evidence::PostmasterKept(false) => {
                    Err(format!("the healthy primary {}'s postmaster was stopped (fenced or restarted)", node(facts.old)))
                }
                _ => Err("the injection did not record the primary's postmaster".into()),
            }
        }
        Expect::NoWrites => {
            let deadline = facts.at + facts.ttl + FENCE_GRACE;
            match acks.iter().filter(|a| a.sent > deadline && a.sent <= facts.undone).min_by_key(|a| a.sent) {
                None => Ok(format!("no write accepted from {:.1} s after the fault until the heal", secs(deadline - facts.at))),
                Some(a) => Err(format!(
                    "{} accepted a write sent {:.2} s after the fault, past the write deadline ({:.1} s: ttl + {:.1} s)",
                    node(a.node),
                    secs(a.sent - facts.at),
                    secs(deadline - facts.at),
                    secs(FENCE_GRACE)
                )),
            }
        }
        Expect::SecondFailover => {
            let Evidence::SecondKill { at, node: killed, standbys, caught_up } = &facts.evidence else {
                return Err("the injection did not record the second kill".into());
            };
            let third = acks.iter().filter(|a| a.node != *killed && a.acked > *at && a.acked <= facts.to).min_by_key(|a| a.acked);
            match (third, standbys) {
                // Nobody else had reached its timeline: taking over would drop what it
                // acknowledged, so the others wait until it is back (Patroni's check_timeline).
                (None, _) if caught_up.is_empty() => {
                    Ok(format!("nobody else was on {}'s timeline yet: they waited for it to come back", node(*killed)))
                }
                (None, _) => Err(format!("expected a failover after {} was killed too, but no other node took a write", node(*killed))),
                (Some(a), Some(names)) if !names.contains(&a.node) => Err(format!(
                    "{} took over after {} was killed, but /sync named only {} as synchronous",
                    node(a.node),
                    node(*killed),
                    names.iter().map(|&i| node(i)).collect::<Vec<_>>().join(",")
                )),
                (Some(a), _) => Ok(format!("{} took over after {} was killed", node(a.node), node(*killed))),
            }
        }
        Expect::Resolved => match &facts.evidence {
            Evidence::Switchover { resolved: true, how } => Ok(how.clone()),
            Evidence::Switchover { resolved: false, how } => Err(format!("the switchover was left pending: {how}")),
            _ => Err("the injection did not record the switchover".into()),
        },
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ack(node: usize, sent: u64, acked: u64) -> Ack {
        Ack { id: sent, node, timeline: 1, lsn: 0, sent: ms(sent), acked: ms(acked) }
    }

    fn facts(evidence: Evidence) -> Facts {
        Facts { old: 0, at: ms(1000), undone: ms(7000), to: ms(10_000), ttl: ms(2000), evidence }
    }

    #[test]
    fn a_failover_needs_another_writer_after_the_fault() {
        let before = vec![ack(0, 100, 200), ack(1, 500, 900)];
        assert!(check(Expect::Failover, &facts(Evidence::None), &before).is_err());
        let after = vec![ack(0, 100, 200), ack(1, 3000, 3100)];
        assert_eq!(check(Expect::Failover, &facts(Evidence::None), &after), Ok("failover to node2".into()));
    }

    #[test]
    fn no_failover_looks_only_while_held() {
        let after_heal = vec![ack(0, 2000, 2100), ack(2, 8000, 8100)];
        assert!(check(Expect::NoFailover, &facts(Evidence::None), &after_heal).is_ok());
        let during = vec![ack(2, 4000, 4100)];
        let err = check(Expect::NoFailover, &facts(Evidence::None), &during).expect_err("node3 wrote while held");
        assert!(err.contains("node3") && err.contains("3.10 s"), "{err}");
    }

    #[test]
    fn undisturbed_needs_the_same_postmaster_and_no_other_writer() {
        let acks = vec![ack(0, 2000, 2100)];
        assert!(check(Expect::Undisturbed, &facts(Evidence::PostmasterKept(true)), &acks).is_ok());
        assert!(check(Expect::Undisturbed, &facts(Evidence::PostmasterKept(false)), &acks).is_err());
        assert!(check(Expect::Undisturbed, &facts(Evidence::None), &acks).is_err());
        let moved = vec![ack(1, 9000, 9100)];
        assert!(check(Expect::Undisturbed, &facts(Evidence::PostmasterKept(true)), &moved).is_err());
    }

    #[test]
    fn no_writes_past_the_lease_until_the_heal() {
        // The deadline is 1 + 2 + 1 = 4 s; a slow acknowledgement of an earlier write is fine.
        let ok = vec![ack(0, 3900, 5000), ack(1, 7100, 7300)];
        assert!(check(Expect::NoWrites, &facts(Evidence::None), &ok).is_ok());
        let late = vec![ack(0, 4100, 4200)];
        let err = check(Expect::NoWrites, &facts(Evidence::None), &late).expect_err("written past the deadline");
        assert!(err.contains("node1") && err.contains("3.10 s"), "{err}");
    }

    #[test]
    fn the_third_writer_must_be_a_named_standby_in_sync_mode() {
        let kill = |standbys| Evidence::SecondKill { at: ms(5000), node: 1, standbys, caught_up: vec![2] };
        let acks = vec![ack(1, 3000, 3100), ack(2, 6000, 6100)];
        assert_eq!(check(Expect::SecondFailover, &facts(kill(Some(vec![2]))), &acks), Ok("node3 took over after node2 was killed".into()));
        assert!(check(Expect::SecondFailover, &facts(kill(Some(vec![0]))), &acks).is_err());
        assert!(check(Expect::SecondFailover, &facts(kill(None)), &acks).is_ok());
        assert!(check(Expect::SecondFailover, &facts(kill(None)), &acks[..1]).is_err());
        assert!(check(Expect::SecondFailover, &facts(Evidence::None), &acks).is_err());
    }

    /// Nobody on the killed node's timeline: waiting for it is right (taking over would
    /// drop what it acknowledged); a standby that was on it must take over.
    #[test]
    fn nobody_need_take_over_from_a_primary_whose_timeline_nobody_reached() {
        let behind = Evidence::SecondKill { at: ms(5000), node: 1, standbys: None, caught_up: vec![] };
        let only_the_first = vec![ack(1, 3000, 3100)];
        let ok = check(Expect::SecondFailover, &facts(behind), &only_the_first).expect("waiting is right");
        assert!(ok.contains("waited for it to come back"), "{ok}");
        let caught_up = Evidence::SecondKill { at: ms(5000), node: 1, standbys: None, caught_up: vec![2] };
        assert!(check(Expect::SecondFailover, &facts(caught_up), &only_the_first).is_err());
    }

    #[test]
    fn a_switchover_must_end_one_way_or_the_other() {
        let done = Evidence::Switchover { resolved: true, how: "refused".into() };
        assert_eq!(check(Expect::Resolved, &facts(done), &[]), Ok("refused".into()));
        let pending = Evidence::Switchover { resolved: false, how: "no answer".into() };
        assert!(check(Expect::Resolved, &facts(pending), &[]).is_err());
        assert_eq!(check(Expect::Safe, &facts(Evidence::None), &[]), Ok("safe".into()));
    }
}
