//! The linearizability checker for histories of etcd KV and lease operations (see
//! [`crate::history`]), in the style of Wing & Gong, Lowe and Porcupine.
//!
//! **Model** (`model.rs`). A sequential KV store with leases ([`Input`] lists the
//! operations): a map key → (value, lease) and a set of live leases. `put(k, v)` detaches k from any lease;
//! `put(k, v, lease)` answers "no such lease" without effect when the lease is not live;
//! `cas(k, expected, v)` is an etcd Txn comparing the value (or `create_revision == 0`
//! for "absent") and putting v when it holds; `delete(k)` says whether k existed;
//! `revoke(l)` deletes l's keys. Lease *expiry* is not modelled: workloads use TTLs far
//! longer than they run (a Raft leader change refreshes leases, never expires them).
//!
//! **Partitions (P-compositionality).** Linearizability is local: a history is
//! linearizable iff its sub-history on each independent object is. Operations are
//! grouped by the resources they touch (a key, a lease id) with a union-find, so each
//! plain key is its own partition and a lease's ops share one with every key ever put
//! with that lease. Each partition is checked separately.
//!
//! **Search.** Lowe's just-in-time variant of Wing & Gong: the partition's call and
//! return events in time order form a doubly linked list; the search repeatedly picks a
//! call that precedes the first remaining return, applies it to the model, and if the
//! model's answer matches the recorded one it *lifts* the operation out of the list and
//! starts again from the head; meeting a return means the operation that returned was
//! never linearized, so the search backtracks. A cache of (set of linearized ops, model
//! state) pairs already explored prunes the search (two paths that linearized the same
//! ops into the same state have the same future; the cache keeps 128-bit fingerprints
//! of the pairs). The search stops after
//! [`Limits::max_steps`] steps per partition and reports the history as
//! *inconclusive*: an error, never a pass.
//!
//! **Unobserved indeterminate writes.** An op whose outcome is indeterminate may also
//! never take effect, so dropping such ops from a history can only turn a
//! non-linearizable history into a linearizable one if some op *needed* a dropped
//! write's effect; it never makes a check pass that should fail *for the ops kept*. The
//! workloads write unique values, so a put or CAS whose value no get answered and no CAS
//! expected was seen by nobody. [`check`] therefore first checks the history without
//! the indeterminate puts and CASes whose values nobody saw: a linearization of the
//! rest is a linearization of the whole, with those writes never taking effect. Only
//! if that fails does it search the whole history (where a dropped write's effect may
//! have been needed, e.g. by a delete that found the key). Under long faults, where
//! hundreds of writes time out, this keeps the search from exploring every subset of
//! them.
//!
//! On a violation the error renders the partition's history around the point where the
//! search got stuck (the longest linearization found, the model state after it and the
//! operations that could not follow); callers save the whole history as JSON with
//! [`save_history`](crate::save_history).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::history::{Input, Operation, Outcome, Output};
use crate::model::Model;

/// How far the search may go before giving up as inconclusive.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Search steps (a try to linearize one op, or a backtrack) per partition.
    pub max_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_steps: 2_000_000 }
    }
}

/// What a successful check looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Partitions (independent objects) checked.
    pub partitions: usize,
    /// Operations that took part (neither failed nor indeterminate reads).
    pub checked: usize,
    /// Of those, operations with an indeterminate outcome.
    pub indeterminate: usize,
    /// Search steps over all partitions.
    pub steps: u64,
    /// Indeterminate writes whose values nobody saw, left out (see the module doc);
    /// 0 when the check needed the whole history.
    pub unobserved: usize,
}

/// Why a history did not pass.
#[derive(Debug)]
pub enum CheckError {
    /// No linearization exists; the text renders the partition where the search failed.
    Violation(String),
    /// The search hit [`Limits::max_steps`] before deciding; the text says where.
    Inconclusive(String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Violation(text) => write!(f, "the history is not linearizable: {text}"),
            CheckError::Inconclusive(text) => write!(f, "the linearizability check is inconclusive: {text}"),
        }
    }
}

impl std::error::Error for CheckError {}

/// Checks that `ops` is linearizable with respect to the KV model, partition by
/// partition: first without the indeterminate writes nobody saw, then, if that fails,
/// with every op (see the module doc).
pub fn check(ops: &[Operation], limits: Limits) -> Result<Summary, CheckError> {
    let unobserved = unobserved_writes(ops);
    if !unobserved.is_empty() {
        if let Ok(summary) = check_without(ops, &unobserved, limits) {
            return Ok(Summary { unobserved: unobserved.len(), ..summary });
        }
    }
    check_without(ops, &HashSet::new(), limits)
}

/// The indices of indeterminate puts and CASes whose value no op saw: no successful get
/// answered it and no CAS expected it.
fn unobserved_writes(ops: &[Operation]) -> HashSet<usize> {
    let mut seen: HashSet<&str> = HashSet::new();
    for op in ops {
        match (&op.input, &op.outcome) {
            (_, Outcome::Ok(Output::Value(Some(value)))) => {
                seen.insert(value);
            }
            (Input::Cas { expected: Some(expected), .. }, _) => {
                seen.insert(expected);
            }
            _ => {}
        }
    }
    let unseen = |op: &Operation| {
        op.is_indeterminate()
            && match &op.input {
                Input::Put { value, .. } | Input::Cas { value, .. } => !seen.contains(value.as_str()),
                _ => false,
            }
    };
    ops.iter().enumerate().filter(|(_, op)| unseen(op)).map(|(i, _)| i).collect()
}

/// [`check`] of `ops` with the ops at `dropped` left out.
fn check_without(ops: &[Operation], dropped: &HashSet<usize>, limits: Limits) -> Result<Summary, CheckError> {
    let mut summary = Summary { partitions: 0, checked: 0, indeterminate: 0, steps: 0, unobserved: 0 };
    for part in partitions(ops, dropped) {
        let search = Search::new(ops, part);
        summary.partitions += 1;
        summary.checked += search.ops.len();
        summary.indeterminate += search.ops.iter().filter(|&&i| ops[i].is_indeterminate()).count();
        summary.steps += search.run(limits)?;
    }
    Ok(summary)
}

impl Operation {
    fn is_indeterminate(&self) -> bool {
        matches!(self.outcome, Outcome::Indeterminate(_))
    }

    /// Whether the op can matter to the check: not failed, and not an indeterminate read.
    fn counts(&self) -> bool {
        match self.outcome {
            Outcome::Ok(_) => true,
            Outcome::Failed(_) => false,
            Outcome::Indeterminate(_) => !matches!(self.input, Input::Get { .. }),
        }
    }
}

/// A thing operations share: a key or a lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Resource<'a> {
    Key(&'a str),
    Lease(i64),
}

impl Input {
    fn resources(&self) -> Vec<Resource<'_>> {
        match self {
            Input::Put { key, lease: Some(lease), .. } => vec![Resource::Key(key), Resource::Lease(*lease)],
            Input::Put { key, .. } | Input::Get { key } | Input::Cas { key, .. } | Input::Delete { key } => {
                vec![Resource::Key(key)]
            }
            Input::Grant { lease } | Input::Revoke { lease } => vec![Resource::Lease(*lease)],
        }
    }
}

/// The indices of `ops` that count and are not `dropped`, grouped into independent
/// partitions (union-find over the resources each op touches), each in index order.
fn partitions(ops: &[Operation], dropped: &HashSet<usize>) -> Vec<Vec<usize>> {
    let mut ids: HashMap<Resource<'_>, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let counts = |(i, op): &(usize, &Operation)| op.counts() && !dropped.contains(i);
    let mut first_resource = Vec::new();
    for (_, op) in ops.iter().enumerate().filter(counts) {
        let mut roots = Vec::new();
        for r in op.input.resources() {
            let id = *ids.entry(r).or_insert_with(|| {
                parent.push(parent.len());
                parent.len() - 1
            });
            roots.push(root(&mut parent, id));
        }
        for &r in &roots[1..] {
            let (a, b) = (root(&mut parent, roots[0]), root(&mut parent, r));
            parent[b] = a;
        }
        first_resource.push(roots[0]);
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let counted = ops.iter().enumerate().filter(counts).map(|(i, _)| i);
    for (i, r) in counted.zip(first_resource) {
        groups.entry(root(&mut parent, r)).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().collect();
    out.sort_by_key(|g| g[0]);
    out
}

/// A 128-bit fingerprint of a (linearized set, model state) pair, for the search's
/// cache: 16 bytes per entry instead of a copy of both. Two pairs sharing one (odds
/// about steps² / 2^128) would make the search skip a path: at worst a false
/// violation, never a false pass.
fn fingerprint(linearized: SetHash, state: &Model) -> (u64, u64) {
    let hash = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        (salt, linearized, state).hash(&mut h);
        h.finish()
    };
    (hash(0), hash(1))
}

/// A 128-bit hash of a set of op positions (within a partition), kept up to date in
/// O(1) as ops join and leave it (Zobrist hashing: the wrapping sum of a pseudo-random
/// 128-bit key per member). Hashing the set itself at every step would make the search
/// quadratic in the partition's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct SetHash(u128);

impl SetHash {
    fn insert(&mut self, p: usize) {
        self.0 = self.0.wrapping_add(Self::key(p));
    }

    fn remove(&mut self, p: usize) {
        self.0 = self.0.wrapping_sub(Self::key(p));
    }

    /// Member `p`'s key: two rounds of splitmix64.
    fn key(p: usize) -> u128 {
        let mix = |x: u64| {
            let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let p = p as u64;
        (u128::from(mix(2 * p)) << 64) | u128::from(mix(2 * p + 1))
    }
}

const NIL: usize = usize::MAX;
/// The list's head sentinel; event `e` is node `e + 1`.
const HEAD: usize = 0;

/// One partition's search state.
struct Search<'a> {
    history: &'a [Operation],
    /// The partition's ops (indices into `history`), in index order.
    ops: Vec<usize>,
    /// Events in time order: (position in `ops`, is a return).
    events: Vec<(usize, bool)>,
    /// The list node of each op's call and return (NIL when indeterminate).
    call_node: Vec<usize>,
    return_node: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl<'a> Search<'a> {
    fn new(history: &'a [Operation], ops: Vec<usize>) -> Self {
        let mut events = Vec::new();
        for (p, &i) in ops.iter().enumerate() {
            events.push((history[i].call, false, p));
            if !history[i].is_indeterminate() {
                events.push((history[i].ret, true, p));
            }
        }
        // Calls before returns at the same instant: overlapping, the lenient reading.
        events.sort();
        let mut call_node = vec![NIL; ops.len()];
        let mut return_node = vec![NIL; ops.len()];
        for (e, &(_, is_return, p)) in events.iter().enumerate() {
            if is_return {
                return_node[p] = e + 1;
            } else {
                call_node[p] = e + 1;
            }
        }
        let n = events.len() + 1;
        let next = (1..=n).map(|i| if i == n { NIL } else { i }).collect();
        let prev = (0..n).map(|i| if i == 0 { NIL } else { i - 1 }).collect();
        let events = events.into_iter().map(|(_, r, p)| (p, r)).collect();
        Self { history, ops, events, call_node, return_node, next, prev }
    }

    fn op(&self, p: usize) -> &'a Operation {
        &self.history[self.ops[p]]
    }

    /// Unlinks `node` from its neighbours (`present` false) or links it back between
    /// them (dancing links: a removed node keeps its own pointers). NIL is left alone.
    fn link(&mut self, node: usize, present: bool) {
        if node == NIL {
            return;
        }
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = if present { node } else { n };
        if n != NIL {
            self.prev[n] = if present { node } else { p };
        }
    }

    /// Takes op `p`'s call and return out of the list.
    fn lift(&mut self, p: usize) {
        self.link(self.call_node[p], false);
        self.link(self.return_node[p], false);
    }

    /// Puts op `p` back (the reverse of [`Search::lift`]).
    fn unlift(&mut self, p: usize) {
        self.link(self.return_node[p], true);
        self.link(self.call_node[p], true);
    }

    /// The ops whose calls precede the first remaining return: those that may go next.
    fn candidates(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut node = self.next[HEAD];
        while node != NIL {
            let (p, is_return) = self.events[node - 1];
            if is_return {
                break;
            }
            out.push(p);
            node = self.next[node];
        }
        out
    }

    /// Searches for a linearization; the number of steps taken when one exists.
    fn run(mut self, limits: Limits) -> Result<u64, CheckError> {
        let mut remaining = (0..self.ops.len()).filter(|&p| !self.op(p).is_indeterminate()).count();
        let mut linearized = SetHash::default();
        let mut state = Model::default();
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        let mut stack: Vec<(usize, Model)> = Vec::new();
        let mut best = Stuck::default();
        let mut node = self.next[HEAD];
        let mut steps = 0u64;
        while remaining > 0 {
            steps += 1;
            if steps > limits.max_steps {
                if stack.len() > best.order.len() {
                    best = self.stuck(&stack, &state);
                }
                return Err(CheckError::Inconclusive(format!(
                    "gave up after {} steps on a partition of {} ops ({} linearized at most)\n{}",
                    limits.max_steps,
                    self.ops.len(),
                    best.order.len(),
                    self.render(&best)
                )));
            }
            let event = (node != NIL).then(|| self.events[node - 1]);
            if let Some((p, false)) = event {
                let op = self.op(p);
                let (output, after) = state.apply(&op.input);
                let matches = match &op.outcome {
                    Outcome::Ok(recorded) => *recorded == output,
                    _ => true,
                };
                if matches {
                    linearized.insert(p);
                    if seen.insert(fingerprint(linearized, &after)) {
                        if !op.is_indeterminate() {
                            remaining -= 1;
                        }
                        stack.push((p, std::mem::replace(&mut state, after)));
                        self.lift(p);
                        node = self.next[HEAD];
                        continue;
                    }
                    linearized.remove(p);
                }
                node = self.next[node];
                continue;
            }
            // A return (or the end): the op that returned was not linearized in time.
            // Remembered only here, where a deeper linearization got stuck: a copy of
            // the stack at every new depth would make the search quadratic.
            if stack.len() > best.order.len() || stack.is_empty() && best.order.is_empty() {
                best = self.stuck(&stack, &state);
            }
            let Some((p, before)) = stack.pop() else {
                return Err(CheckError::Violation(self.render(&best)));
            };
            if !self.op(p).is_indeterminate() {
                remaining += 1;
            }
            linearized.remove(p);
            state = before;
            self.unlift(p);
            node = self.next[self.call_node[p]];
        }
        Ok(steps)
    }

    /// Where the search stands: `stack` linearized into `state`, and what may go next.
    fn stuck(&self, stack: &[(usize, Model)], state: &Model) -> Stuck {
        Stuck { order: stack.iter().map(|&(p, _)| p).collect(), state: state.clone(), next: self.candidates() }
    }

    /// The partition's history around where the search got stuck.
    fn render(&self, stuck: &Stuck) -> String {
        const TAIL: usize = 20;
        const AROUND: usize = 40;
        let mut out = String::new();
        let line = |p: usize| format!("  {}\n", describe(self.ops[p], self.op(p)));
        if self.ops.len() <= TAIL + AROUND {
            out.push_str(&format!("partition of {} ops:\n", self.ops.len()));
            (0..self.ops.len()).for_each(|p| out.push_str(&line(p)));
        } else {
            out.push_str(&format!("partition of {} ops (the whole history is saved as JSON)\n", self.ops.len()));
        }
        let shown = stuck.order.len().saturating_sub(TAIL);
        out.push_str(&format!(
            "longest linearization found: {} of {} ops{}\n",
            stuck.order.len(),
            self.ops.len(),
            if shown > 0 { format!(", its last {TAIL}:") } else { ":".to_string() }
        ));
        stuck.order[shown..].iter().for_each(|&p| out.push_str(&line(p)));
        out.push_str(&format!("model state after it: {}\n", stuck.state));
        out.push_str("none of these could follow it (wrong answer, or a dead end later):\n");
        let mut next = stuck.next.clone();
        next.sort_by_key(|&p| self.op(p).call);
        next.iter().take(AROUND).for_each(|&p| out.push_str(&line(p)));
        out
    }
}

/// The deepest point where the search got stuck.
#[derive(Default)]
struct Stuck {
    /// Ops linearized, in order.
    order: Vec<usize>,
    /// The model after them.
    state: Model,
    /// The ops that could have gone next.
    next: Vec<usize>,
}

/// One op as a line: `#index c<client> [call .. return ms] input -> outcome`.
fn describe(index: usize, op: &Operation) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let ret = match op.outcome {
        Outcome::Indeterminate(_) => "∞".to_string(),
        _ => format!("{:.3}", ms(op.ret)),
    };
    format!("#{index:<5} c{:<2} [{:>10.3} .. {ret:>10} ms] {} -> {}", op.client, ms(op.call), op.input, op.outcome)
}

#[cfg(test)]
mod tests;
