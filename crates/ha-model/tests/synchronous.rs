//! The synchronous-mode model checked under `SyncConfig::small` (three nodes, two
//! commits): whether a node can promote without a commit a client saw acknowledged.
//! Run with `--nocapture` to see state counts, times and counterexamples.

use raftgres_ha_model::checker::{check, Report};
use raftgres_ha_model::synchronous::{SyncBehaviour, SyncConfig, SyncModel};

const MAX_STATES: usize = 4_000_000;
const LOST: &str = "a node promoted without an acknowledged commit";

fn run(behaviour: impl FnOnce(&mut SyncBehaviour)) -> Report<SyncModel> {
    let mut config = SyncConfig::small();
    behaviour(&mut config.behaviour);
    assert_eq!(config.problem(), None);
    let report = check(&SyncModel { config }, MAX_STATES).expect("the bounds are small enough");
    println!("{config:?}\n  {}", report.summary());
    if let Some(c) = &report.counterexample {
        println!("{c}");
    }
    report
}

fn assert_loses_a_commit(behaviour: impl FnOnce(&mut SyncBehaviour)) {
    let c = run(behaviour).counterexample.expect("a trace that loses an acknowledged commit");
    assert_eq!(c.why, LOST);
}

/// Both fixes of `SyncBehaviour::FIXED`: no trace loses an acknowledged commit.
#[test]
fn fixed_sync_mode_keeps_every_acknowledged_commit() {
    let report = run(|_| {});
    assert!(report.counterexample.is_none(), "{}", report.counterexample.as_ref().map(ToString::to_string).unwrap_or_default());
    assert!(report.states > 10_000, "the model explored too little to mean anything: {}", report.summary());
}

/// The mutation that ignores `/sync` when racing: the check can fail.
#[test]
fn letting_any_replica_race_loses_a_commit() {
    assert_loses_a_commit(|b| b.any_replica_may_race = true);
}

/// Issue 16 item 6 before its fix: the old leader of a `/sync` the new primary did not
/// rewrite takes over before `/history` names the new primary.
#[test]
fn promoting_before_writing_sync_loses_a_commit() {
    assert_loses_a_commit(|b| b.promote_without_writing_sync = true);
}

/// A node races on a `/sync` read before another node promoted, committed (acknowledged
/// by a third) and failed; its `/sync` write fails, and the next cycle promotes anyway.
#[test]
fn a_postponed_promotion_without_a_sync_check_loses_a_commit() {
    assert_loses_a_commit(|b| b.postponed_promotion_skips_sync_check = true);
}

/// A commit acknowledged under `'*'` by one standby; `/sync` then lists another that
/// PostgreSQL reports `sync` before it has that commit.
#[test]
fn growing_sync_with_a_lagging_standby_loses_a_commit() {
    assert_loses_a_commit(|b| b.grow_with_lagging_standby = true);
}

/// The agent before this session's fixes had both of the last two: either loses an
/// acknowledged commit.
#[test]
fn the_code_before_the_fixes_can_lose_an_acknowledged_commit() {
    assert_loses_a_commit(|b| *b = SyncBehaviour::BEFORE_FIXES);
}
