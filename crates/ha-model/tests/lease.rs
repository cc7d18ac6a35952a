//! The leader-lease model checked under the bounds of `Config::small` (and variants):
//! each test names the behaviour or timing it checks and whether two writers are
//! reachable. Run with `--nocapture` to see state counts, times and counterexamples.

use raftgres_ha_model::checker::{check, Report};
use raftgres_ha_model::failsafe::Failsafe;
use raftgres_ha_model::lease::{Behaviour, Config, LeaseModel};

const MAX_STATES: usize = 4_000_000;

fn run(config: Config) -> Report<LeaseModel> {
    assert_eq!(config.problem(), None);
    let report = check(&LeaseModel { config }, MAX_STATES).expect("the bounds are small enough");
    println!("{config:?}\n  {}", report.summary());
    if let Some(c) = &report.counterexample {
        println!("{c}");
    }
    report
}

fn assert_safe(config: Config) {
    let report = run(config);
    assert!(report.counterexample.is_none(), "{}", report.counterexample.as_ref().map(ToString::to_string).unwrap_or_default());
    assert!(report.states > 50_000, "the model explored too little to mean anything: {}", report.summary());
}

fn assert_two_writers(config: Config) {
    let report = run(config);
    let c = report.counterexample.expect("a two-writer trace");
    assert_eq!(c.why, "two nodes accept writes");
}

fn with(behaviour: impl FnOnce(&mut Behaviour)) -> Config {
    let mut config = Config::small();
    behaviour(&mut config.behaviour);
    config
}

#[test]
fn fixed_protocol_keeps_one_writer() {
    assert!(Config::small().timing_is_safe());
    assert_safe(Config::small());
}

#[test]
fn fencer_frozen_with_its_agent_lets_a_second_writer_in() {
    assert_two_writers(with(|b| b.fencer_in_agent_group = true));
}

#[test]
fn store_renewing_an_expired_lease_lets_a_second_writer_in() {
    assert_two_writers(with(|b| b.store_renews_expired_lease = true));
}

#[test]
fn promotion_without_a_live_deadline_lets_a_second_writer_in() {
    assert_two_writers(with(|b| b.writes_before_arming = true));
}

/// Safe in the model: a lease leaves the store only by expiring, at least ttl after the
/// last keep-alive it accepted, and by then the fencer armed on it has fired; so a
/// re-grant can re-arm only a fencer that no longer guards a running primary. An
/// explicit revoke (an operator's, or a future code path) is not modelled and would
/// break this.
#[test]
fn fencer_rearmed_by_another_lease_is_safe_while_leases_only_expire() {
    assert_safe(with(|b| b.fencer_rearmed_by_any_lease = true));
}

#[test]
fn the_code_before_the_fixes_has_two_writers() {
    let mut config = Config::small();
    config.behaviour = Behaviour::BEFORE_FIXES;
    assert_two_writers(config);
}

/// `timing.rs` requires safety_margin ≥ the fencer's latency; one tick less is unsafe.
#[test]
fn margin_within_the_fencer_latency_lets_a_second_writer_in() {
    let config = Config { safety_margin: 1, ..Config::small() };
    assert!(!config.timing_is_safe());
    assert_two_writers(config);
}

/// With clocks drifting ±1 tick from real time the margin must also cover twice the
/// skew: margin 2 with an instant fencer is unsafe, margin 3 is safe.
#[test]
fn clock_skew_needs_its_own_share_of_the_margin() {
    let skewed = Config { max_skew: 1, fence_latency: 0, ..Config::small() };
    let short = Config { safety_margin: 2, ..skewed };
    assert!(!short.timing_is_safe());
    assert_two_writers(short);
    let enough = Config { safety_margin: 3, ..skewed };
    assert!(enough.timing_is_safe());
    assert_safe(enough);
}

/// Failsafe mode: a node cut from the store alone keeps writing past its lease only with
/// every other member's confirmation, and a confirmed member does not race while its
/// promise lasts; the key's lease expires in the store meanwhile, and no second writer
/// appears.
#[test]
fn failsafe_confirmations_keep_one_writer() {
    assert_safe(Config { failsafe: Failsafe::On, ..Config::small() });
}

/// The same with members that race despite their promise: the check finds the second
/// writer (so the check above can fail).
#[test]
fn a_member_breaking_its_failsafe_promise_lets_a_second_writer_in() {
    assert_two_writers(Config { failsafe: Failsafe::PromiseBroken, ..Config::small() });
}
