//! The explicit-state checker: breadth-first search over every state a [`Model`] can
//! reach, checking its invariant in each one. States are stored in a model-given
//! canonical form (symmetry reduction); the first violation found is reported with the
//! shortest trace that reaches it (breadth-first order), replayed from the initial state
//! so its states are the model's own, not canonical ones.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::{Duration, Instant};

/// A transition system with an invariant.
pub trait Model {
    /// One global state; small and `Copy` so that millions fit in memory.
    type State: Copy + Eq + Hash + Debug;
    /// What happened between two states, for traces.
    type Action: Copy + Debug;

    fn initial(&self) -> Vec<Self::State>;
    /// Every action enabled in `state`, with the state it leads to.
    fn successors(&self, state: &Self::State, out: &mut Vec<(Self::Action, Self::State)>);
    /// `Some(why)` when `state` breaks the invariant.
    fn violation(&self, state: &Self::State) -> Option<&'static str>;
    /// One representative of the states that behave alike (e.g. the same up to renaming
    /// nodes); the invariant must not tell them apart.
    fn canonical(&self, state: &Self::State) -> Self::State {
        *state
    }
}

/// FxHash (as in rustc): one multiply per word, fast enough in debug builds for the
/// millions of small states a check stores.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, b: u8) {
        self.write_u64(u64::from(b));
    }
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type Index<S> = HashMap<S, usize, BuildHasherDefault<Fx>>;

/// A reached state, the state and action it was first reached from, and its depth.
type Seen<M> = (<M as Model>::State, Option<(usize, <M as Model>::Action)>, usize);

/// A path from an initial state to a violating one.
#[derive(Debug)]
pub struct Counterexample<M: Model> {
    pub why: &'static str,
    pub initial: M::State,
    pub steps: Vec<(M::Action, M::State)>,
}

impl<M: Model> std::fmt::Display for Counterexample<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "violation: {} after {} steps", self.why, self.steps.len())?;
        writeln!(f, "  initial: {:?}", self.initial)?;
        for (i, (action, state)) in self.steps.iter().enumerate() {
            writeln!(f, "  {:>3}. {action:?}\n       {state:?}", i + 1)?;
        }
        Ok(())
    }
}

/// What one search found.
#[derive(Debug)]
pub struct Report<M: Model> {
    /// Distinct states reached (all of them when there is no violation).
    pub states: usize,
    /// Transitions explored (including those to already known states).
    pub transitions: usize,
    /// The longest shortest path from an initial state, in steps.
    pub depth: usize,
    pub elapsed: Duration,
    pub counterexample: Option<Counterexample<M>>,
}

impl<M: Model> Report<M> {
    /// One line for test output: states, transitions, depth, time.
    pub fn summary(&self) -> String {
        format!(
            "{} states, {} transitions, depth {}, {:.2} s, {}",
            self.states,
            self.transitions,
            self.depth,
            self.elapsed.as_secs_f64(),
            self.counterexample.as_ref().map_or("no violation".to_string(), |c| format!("violation after {} steps", c.steps.len()))
        )
    }
}

/// The search gave up: more than `max_states` states are reachable.
#[derive(Debug, PartialEq)]
pub struct TooManyStates(pub usize);

impl std::fmt::Display for TooManyStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} states are reachable: tighten the model's bounds", self.0)
    }
}

/// Explores every state reachable in `model`, stopping at the first violation or after
/// `max_states` distinct states.
pub fn check<M: Model>(model: &M, max_states: usize) -> Result<Report<M>, TooManyStates> {
    let started = Instant::now();
    // Every state once, with the state it was first reached from and how.
    let mut states: Vec<Seen<M>> = Vec::new();
    let mut index: Index<M::State> = Index::default();
    for s in model.initial().iter().map(|s| model.canonical(s)) {
        if let std::collections::hash_map::Entry::Vacant(e) = index.entry(s) {
            e.insert(states.len());
            states.push((s, None, 0));
        }
    }
    let mut transitions = 0;
    let mut next = Vec::new();
    let mut cursor = 0;
    while cursor < states.len() {
        let (state, _, depth) = states[cursor];
        if let Some(why) = model.violation(&state) {
            let counterexample = Some(trace(model, &states, cursor, why));
            return Ok(Report { states: states.len(), transitions, depth, elapsed: started.elapsed(), counterexample });
        }
        next.clear();
        model.successors(&state, &mut next);
        for &(action, successor) in &next {
            transitions += 1;
            let successor = model.canonical(&successor);
            if let std::collections::hash_map::Entry::Vacant(e) = index.entry(successor) {
                if states.len() >= max_states {
                    return Err(TooManyStates(max_states));
                }
                e.insert(states.len());
                states.push((successor, Some((cursor, action)), depth + 1));
            }
        }
        cursor += 1;
    }
    let depth = states.last().map_or(0, |s| s.2);
    Ok(Report { states: states.len(), transitions, depth, elapsed: started.elapsed(), counterexample: None })
}

/// The path to `states[last]`, replayed from its initial state: each step is the
/// successor whose canonical form is the next state on the path.
fn trace<M: Model>(model: &M, states: &[Seen<M>], last: usize, why: &'static str) -> Counterexample<M> {
    let mut path = Vec::new();
    let mut at = last;
    while let Some((parent, _)) = states[at].1 {
        path.push(states[at].0);
        at = parent;
    }
    path.reverse();
    let first = states[at].0;
    let initial = model.initial().into_iter().find(|s| model.canonical(s) == first).unwrap_or(first);
    let mut steps = Vec::new();
    let mut current = initial;
    let mut next = Vec::new();
    for wanted in path {
        next.clear();
        model.successors(&current, &mut next);
        let Some(&(action, state)) = next.iter().find(|(_, s)| model.canonical(s) == wanted) else { break };
        steps.push((action, state));
        current = state;
    }
    Counterexample { why, initial, steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that may step by 1 or 2 and must never reach `bad`.
    struct Counter {
        limit: u8,
        bad: u8,
    }

    impl Model for Counter {
        type State = u8;
        type Action = u8;
        fn initial(&self) -> Vec<u8> {
            vec![0]
        }
        fn successors(&self, s: &u8, out: &mut Vec<(u8, u8)>) {
            for step in [1, 2] {
                if s + step <= self.limit {
                    out.push((step, s + step));
                }
            }
        }
        fn violation(&self, s: &u8) -> Option<&'static str> {
            (*s == self.bad).then_some("reached the bad value")
        }
    }

    #[test]
    fn finds_the_shortest_trace_and_counts_states() {
        let report = check(&Counter { limit: 10, bad: 5 }, 100).expect("small");
        let c = report.counterexample.expect("5 is reachable");
        assert_eq!(c.steps.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1, 3, 5]);
        let report = check(&Counter { limit: 10, bad: 11 }, 100).expect("small");
        assert!(report.counterexample.is_none());
        assert_eq!((report.states, report.transitions, report.depth), (11, 19, 5));
        assert_eq!(check(&Counter { limit: 10, bad: 11 }, 5).err(), Some(TooManyStates(5)));
    }
}
