//! Unit tests of the checker: accepted and rejected histories, by hand and random.

use std::collections::BTreeMap;
use std::time::Instant;

use super::*;
use crate::history::Output;
use crate::model::Model;
use crate::workload::Xorshift;

const MS: u64 = 1_000_000;

fn ok(output: Output) -> Outcome {
    Outcome::Ok(output)
}
fn unknown() -> Outcome {
    Outcome::Indeterminate("deadline exceeded".into())
}
fn op(client: usize, input: Input, call: u64, ret: u64, outcome: Outcome) -> Operation {
    Operation { client, input, call: call * MS, ret: ret * MS, outcome }
}
fn put(key: &str, value: &str) -> Input {
    Input::Put { key: key.into(), value: value.into(), lease: None }
}
fn put_lease(key: &str, value: &str, lease: i64) -> Input {
    Input::Put { key: key.into(), value: value.into(), lease: Some(lease) }
}
fn get(key: &str) -> Input {
    Input::Get { key: key.into() }
}
fn cas(key: &str, expected: Option<&str>, value: &str) -> Input {
    Input::Cas { key: key.into(), expected: expected.map(Into::into), value: value.into() }
}
fn read(v: Option<&str>) -> Outcome {
    ok(Output::Value(v.map(Into::into)))
}

fn accepted(ops: &[Operation]) -> Summary {
    match check(ops, Limits::default()) {
        Ok(summary) => summary,
        Err(e) => panic!("expected linearizable, got: {e}"),
    }
}

fn rejected(ops: &[Operation]) -> String {
    match check(ops, Limits::default()) {
        Err(CheckError::Violation(text)) => text,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn overlapping_ops_may_take_effect_in_either_order() {
    let ops = [
        op(1, put("a", "1"), 0, 10, ok(Output::Done)),
        op(2, get("a"), 1, 2, read(None)),
        op(3, get("a"), 3, 4, read(Some("1"))),
        op(2, put("a", "2"), 5, 20, ok(Output::Done)),
        op(3, get("a"), 6, 7, read(Some("2"))),
        op(1, get("a"), 12, 13, read(Some("2"))),
        op(1, cas("a", Some("2"), "3"), 21, 22, ok(Output::Swapped(true))),
        op(2, cas("a", Some("2"), "4"), 21, 23, ok(Output::Swapped(false))),
        op(3, Input::Delete { key: "a".into() }, 24, 25, ok(Output::Deleted(true))),
        op(1, cas("a", None, "5"), 26, 27, ok(Output::Swapped(true))),
    ];
    let summary = accepted(&ops);
    assert_eq!((summary.partitions, summary.checked), (1, 10));
}

#[test]
fn indeterminate_writes_may_or_may_not_take_effect() {
    let seen = [
        op(1, put("a", "1"), 0, 1, unknown()),
        op(2, get("a"), 2, 3, read(None)),
        op(2, get("a"), 5, 6, read(Some("1"))),
        op(3, get("a"), 7, 8, read(Some("1"))),
    ];
    assert_eq!(accepted(&seen).indeterminate, 1);
    let never_seen = [op(1, put("a", "1"), 0, 1, unknown()), op(2, get("a"), 50, 51, read(None))];
    accepted(&never_seen);
    // Once seen, it stays: it took effect once.
    let flickers = [op(1, put("a", "1"), 0, 1, unknown()), op(2, get("a"), 5, 6, read(Some("1"))), op(2, get("a"), 7, 8, read(None))];
    rejected(&flickers);
}

#[test]
fn failed_ops_and_indeterminate_reads_have_no_effect() {
    let ops = [
        op(1, put("a", "1"), 0, 1, Outcome::Failed("connection refused".into())),
        op(2, get("a"), 2, 3, unknown()),
        op(2, get("a"), 4, 5, read(None)),
    ];
    assert_eq!(accepted(&ops).checked, 1);
}

#[test]
fn a_stale_read_after_a_completed_write_is_rejected() {
    let ops = [
        op(1, put("a", "1"), 0, 1, ok(Output::Done)),
        op(1, put("a", "2"), 2, 3, ok(Output::Done)),
        op(2, get("a"), 4, 5, read(Some("1"))),
    ];
    let text = rejected(&ops);
    assert!(text.contains("get(a) -> \"1\""), "{text}");
    assert!(text.contains("model state after it: {a=\"2\"}"), "{text}");
}

#[test]
fn reads_going_back_in_time_are_rejected() {
    let ops = [op(1, put("a", "1"), 0, 10, ok(Output::Done)), op(2, get("a"), 1, 2, read(Some("1"))), op(3, get("a"), 3, 4, read(None))];
    rejected(&ops);
}

#[test]
fn a_cas_that_succeeds_for_two_clients_is_rejected() {
    let ops = [
        op(0, put("a", "0"), 0, 1, ok(Output::Done)),
        op(1, cas("a", Some("0"), "x"), 2, 5, ok(Output::Swapped(true))),
        op(2, cas("a", Some("0"), "y"), 3, 6, ok(Output::Swapped(true))),
    ];
    rejected(&ops);
}

#[test]
fn a_lost_write_is_rejected() {
    let ops = [op(1, put("a", "1"), 0, 1, ok(Output::Done)), op(2, get("b"), 0, 1, read(None)), op(2, get("a"), 2, 3, read(None))];
    rejected(&ops);
}

#[test]
fn revoking_a_lease_deletes_its_keys() {
    let mut ops = vec![
        op(1, Input::Grant { lease: 7 }, 0, 1, ok(Output::Granted(true))),
        op(2, put_lease("l", "v", 7), 2, 3, ok(Output::Done)),
        op(3, put_lease("m", "w", 8), 2, 3, ok(Output::NoLease)),
        op(3, get("l"), 4, 5, read(Some("v"))),
        op(1, Input::Revoke { lease: 7 }, 6, 7, ok(Output::Revoked(true))),
        op(2, get("l"), 8, 9, read(None)),
        op(3, put_lease("l", "u", 7), 8, 9, ok(Output::NoLease)),
        op(1, Input::Revoke { lease: 7 }, 10, 11, ok(Output::Revoked(false))),
    ];
    let summary = accepted(&ops);
    assert_eq!(summary.partitions, 2, "lease 7 with key l, lease 8 with key m");
    ops[5].outcome = read(Some("v"));
    rejected(&ops);
    ops[5].outcome = read(None);
    ops[6].outcome = ok(Output::Done);
    rejected(&ops);
}

#[test]
fn keys_are_checked_independently_unless_a_lease_joins_them() {
    let ops = [
        op(1, put("a", "1"), 0, 1, ok(Output::Done)),
        op(1, put("b", "1"), 0, 1, ok(Output::Done)),
        op(1, put_lease("c", "1", 5), 0, 1, ok(Output::NoLease)),
        op(1, put_lease("d", "1", 5), 0, 1, ok(Output::NoLease)),
    ];
    assert_eq!(accepted(&ops).partitions, 3);
}

#[test]
fn a_search_over_its_step_limit_is_inconclusive_not_a_pass() {
    let ops: Vec<Operation> = (0..20).map(|i| op(i, put("a", &i.to_string()), 0, 100, ok(Output::Done))).collect();
    match check(&ops, Limits { max_steps: 5 }) {
        Err(CheckError::Inconclusive(text)) => assert!(text.contains("gave up after 5 steps"), "{text}"),
        other => panic!("expected inconclusive, got {other:?}"),
    }
}

/// A random history that is linearizable by construction: each op takes effect at a
/// random instant inside its window, and its answer is the model's at that instant.
/// One write in `unknown_in` is indeterminate (half of those take effect).
fn random_history(seed: u64, clients: usize, per_client: usize, keys: &[&str], unknown_in: u64) -> Vec<Operation> {
    const US: u64 = 1_000;
    let mut rng = Xorshift::new(seed);
    let mut timed = Vec::new();
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for client in 0..clients {
        let mut t = 0;
        for n in 0..per_client {
            let key = keys[rng.below(keys.len() as u64) as usize].to_string();
            let value = format!("c{client}-{n}");
            let written = values.entry(key.clone()).or_default();
            let input = match rng.below(10) {
                0..=3 => Input::Get { key },
                4..=6 => Input::Put { key, value: value.clone(), lease: None },
                7 | 8 => {
                    let expected = match written.len() as u64 {
                        0 => None,
                        len => written.get(rng.below(len + 1) as usize).cloned(),
                    };
                    Input::Cas { key, expected, value: value.clone() }
                }
                _ => Input::Delete { key },
            };
            written.push(value);
            let call = t + rng.below(50) * US;
            let ret = call + (10 + rng.below(300)) * US;
            let at = call + rng.below(ret - call);
            let indeterminate = !matches!(input, Input::Get { .. }) && rng.below(unknown_in) == 0;
            let applies = !indeterminate || rng.below(2) == 0;
            timed.push((at, applies, indeterminate, Operation { client, input, call, ret, outcome: unknown() }));
            t = ret;
        }
    }
    timed.sort_by_key(|(at, ..)| *at);
    let mut model = Model::default();
    let mut ops = Vec::new();
    for (_, applies, indeterminate, mut op) in timed {
        if applies {
            let (output, next) = model.apply(&op.input);
            model = next;
            if !indeterminate {
                op.outcome = Outcome::Ok(output);
            }
        }
        ops.push(op);
    }
    ops.sort_by_key(|op| op.call);
    ops
}

#[test]
fn random_linearizable_histories_pass() {
    for seed in 1..=20 {
        let ops = random_history(seed, 4, 50, &["a", "b"], 50);
        if let Err(e) = check(&ops, Limits::default()) {
            panic!("seed {seed}: {e}");
        }
    }
}

/// 5 clients × 200 ops on 3 keys, one write in `unknown_in` indeterminate: passes
/// within a second.
fn checks_quickly(seed: u64, unknown_in: u64) -> Summary {
    let ops = random_history(seed, 5, 200, &["a", "b", "c"], unknown_in);
    let start = Instant::now();
    let summary = accepted(&ops);
    let took = start.elapsed();
    assert_eq!(summary.partitions, 3);
    assert!(took < std::time::Duration::from_secs(1), "took {took:?} for {summary:?}");
    summary
}

#[test]
fn five_clients_times_two_hundred_ops_on_three_keys_check_quickly() {
    let summary = checks_quickly(42, 50);
    assert!(summary.checked >= 950, "{summary:?}");
}

#[test]
fn many_indeterminate_writes_still_check_quickly() {
    let summary = checks_quickly(9, 5);
    assert!(summary.indeterminate >= 50, "{summary:?}");
}

fn delete(key: &str) -> Input {
    Input::Delete { key: key.into() }
}

/// Thirty writes time out during a fault and nobody ever reads their values: the whole
/// history has 2^30 subsets of them to try; without them it is a handful of reads.
#[test]
fn writes_that_timed_out_unseen_are_left_out_of_the_search() {
    let mut ops = vec![op(0, put("a", "v0"), 0, 1, ok(Output::Done))];
    for c in 1..=30 {
        ops.push(op(c, put("a", &format!("lost-{c}")), 2 + c as u64, 0, unknown()));
    }
    for i in 0..200 {
        ops.push(op(31, get("a"), 40 + 2 * i, 41 + 2 * i, read(Some("v0"))));
    }
    let tight = Limits { max_steps: 100_000 };
    assert!(
        matches!(check_without(&ops, &HashSet::new(), tight), Err(CheckError::Inconclusive(_))),
        "the whole history is beyond this budget"
    );
    let summary = check(&ops, tight).expect("linearizable with the unseen writes never taking effect");
    assert_eq!((summary.unobserved, summary.indeterminate), (30, 0));
}

/// A delete that found the key needs a timed-out put's effect although no read saw its
/// value: the check without it fails, the whole history passes.
#[test]
fn an_unseen_write_whose_effect_was_needed_is_searched_with_the_rest() {
    let ops = [
        op(1, put("a", "1"), 0, 1, ok(Output::Done)),
        op(1, delete("a"), 2, 3, ok(Output::Deleted(true))),
        op(2, put("a", "2"), 4, 0, unknown()),
        op(1, delete("a"), 5, 6, ok(Output::Deleted(true))),
    ];
    assert_eq!(unobserved_writes(&ops), HashSet::from([2]));
    assert!(matches!(check_without(&ops, &unobserved_writes(&ops), Limits::default()), Err(CheckError::Violation(_))));
    let summary = accepted(&ops);
    assert_eq!((summary.unobserved, summary.indeterminate), (0, 1));
}

/// A timed-out write is kept when a get read its value or a CAS expected it.
#[test]
fn writes_someone_saw_are_kept() {
    let ops = [
        op(1, put("a", "read"), 0, 0, unknown()),
        op(2, put("a", "expected"), 0, 0, unknown()),
        op(3, cas("a", Some("expected"), "x"), 1, 0, unknown()),
        op(4, get("a"), 2, 3, read(Some("read"))),
    ];
    assert_eq!(unobserved_writes(&ops), HashSet::from([2]), "only the CAS's own value x went unseen");
}
