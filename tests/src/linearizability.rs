//! A linearizability checker for histories of etcd KV and lease operations, in the
//! style of Wing & Gong, Lowe and Porcupine.
//!
//! **History.** Clients record every [`Operation`] they issue: who (client id), what
//! ([`Input`]), when it was invoked and when it returned (nanoseconds since the
//! [`History`] started) and how it ended ([`Outcome`]). An operation that *failed* is
//! one the store definitely did not apply (e.g. the connection was refused before the
//! request was sent); it has no effect and is left out of the check. An operation whose
//! outcome is *indeterminate* (a timeout, `Unavailable`, a connection lost mid-call)
//! may or may not have taken effect, at any time after its invocation: as in
//! Porcupine its return time is +∞, so the search may linearize it anywhere after its
//! call or never. An indeterminate read has no effect and is dropped too.
//!
//! **Model.** A sequential KV store with leases ([`Input`] lists the operations): a map
//! key → (value, lease) and a set of live leases. `put(k, v)` detaches k from any lease;
//! `put(k, v, lease)` answers "no such lease" without effect when the lease is not live;
//! `cas(k, expected, v)` is an etcd Txn comparing the value (or `create_revision == 0`
//! for "absent") and putting v when it holds; `delete(k)` says whether k existed;
//! `revoke(l)` deletes l's keys. Lease *expiry* is not modelled: tests use TTLs far
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
//! On a violation the error renders the partition's history around the point where the
//! search got stuck (the longest linearization found, the model state after it and the
//! operations that could not follow); tests save the whole history as JSON with
//! [`save_history`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What a client asked the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Input {
    /// Put `value` at `key`, attached to `lease` if any (detached otherwise).
    Put { key: String, value: String, lease: Option<i64> },
    /// Linearizable read of one key.
    Get { key: String },
    /// Put `value` if the key's value is `expected` (`None`: the key is absent).
    Cas { key: String, expected: Option<String>, value: String },
    /// Delete one key.
    Delete { key: String },
    /// Grant a lease with this id.
    Grant { lease: i64 },
    /// Revoke a lease, deleting its keys.
    Revoke { lease: i64 },
}

/// What the store answered to an operation that completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// A put done.
    Done,
    /// What a get read.
    Value(Option<String>),
    /// Whether a CAS swapped.
    Swapped(bool),
    /// Whether a delete removed a key.
    Deleted(bool),
    /// Whether a grant created the lease (false: it existed already).
    Granted(bool),
    /// Whether a revoke found the lease.
    Revoked(bool),
    /// A put with a lease the store does not know ("requested lease not found").
    NoLease,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It took effect (once, between call and return) and answered this.
    Ok(Output),
    /// It definitely took no effect (the error says why).
    Failed(String),
    /// It may or may not take effect, at any time after its call (the error says why).
    Indeterminate(String),
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub client: usize,
    pub input: Input,
    /// Invocation time, ns since the history began.
    pub call: u64,
    /// Return time, ns since the history began (+∞ for the checker when indeterminate).
    pub ret: u64,
    pub outcome: Outcome,
}

/// A history being recorded by concurrent clients.
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl Default for History {
    fn default() -> Self {
        Self { start: Instant::now(), ops: Mutex::new(Vec::new()) }
    }
}

impl History {
    /// Nanoseconds since the history began: take it just before invoking an operation.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records an operation invoked at `call` that just ended with `outcome`.
    pub fn record(&self, client: usize, input: Input, call: u64, outcome: Outcome) {
        let ret = self.now();
        let op = Operation { client, input, call, ret, outcome };
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// Every operation recorded so far.
    pub fn operations(&self) -> Vec<Operation> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Writes `ops` as JSON to `target/linearizability/<name>-<unix ms>.json` (next to the
/// test binaries) and returns the path.
pub fn save_history(name: &str, ops: &[Operation]) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    // target/debug/deps/<test> → target/linearizability
    let target = exe.ancestors().nth(3).context("the test binary is not under target/<profile>/deps")?;
    let dir = target.join("linearizability");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let path = dir.join(format!("{name}-{ms}.json"));
    let json = serde_json::to_vec_pretty(ops).context("serializing the history")?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A small deterministic random generator (xorshift64) for workloads that must be
/// reproducible from a seed.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point.
        Self(seed | 1)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

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

/// Checks that `ops` is linearizable with respect to the KV model, partition by partition.
pub fn check(ops: &[Operation], limits: Limits) -> Result<Summary, CheckError> {
    let mut summary = Summary { partitions: 0, checked: 0, indeterminate: 0, steps: 0 };
    for part in partitions(ops) {
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

/// The indices of `ops` that count, grouped into independent partitions (union-find
/// over the resources each op touches), each in index order.
fn partitions(ops: &[Operation]) -> Vec<Vec<usize>> {
    let mut ids: HashMap<Resource<'_>, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first_resource = Vec::new();
    for op in ops.iter().filter(|op| op.counts()) {
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
    let counted = ops.iter().enumerate().filter(|(_, op)| op.counts()).map(|(i, _)| i);
    for (i, r) in counted.zip(first_resource) {
        groups.entry(root(&mut parent, r)).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().collect();
    out.sort_by_key(|g| g[0]);
    out
}

/// The sequential specification: the KV map with leases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Model {
    /// key → (value, lease).
    keys: BTreeMap<String, (String, Option<i64>)>,
    leases: BTreeSet<i64>,
}

impl Model {
    /// The answer `input` gets in this state, and the state after it.
    fn apply(&self, input: &Input) -> (Output, Model) {
        let mut next = self.clone();
        let output = match input {
            Input::Put { lease: Some(lease), .. } if !self.leases.contains(lease) => Output::NoLease,
            Input::Put { key, value, lease } => {
                next.keys.insert(key.clone(), (value.clone(), *lease));
                Output::Done
            }
            Input::Get { key } => Output::Value(self.keys.get(key).map(|(v, _)| v.clone())),
            Input::Cas { key, expected, value } => {
                let swap = self.keys.get(key).map(|(v, _)| v) == expected.as_ref();
                if swap {
                    next.keys.insert(key.clone(), (value.clone(), None));
                }
                Output::Swapped(swap)
            }
            Input::Delete { key } => Output::Deleted(next.keys.remove(key).is_some()),
            Input::Grant { lease } => Output::Granted(next.leases.insert(*lease)),
            Input::Revoke { lease } => {
                next.keys.retain(|_, (_, l)| *l != Some(*lease));
                Output::Revoked(next.leases.remove(lease))
            }
        };
        (output, next)
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(k, (v, l))| match l {
                Some(l) => format!("{k}={v:?} (lease {l})"),
                None => format!("{k}={v:?}"),
            })
            .collect();
        write!(f, "{{{}}}", keys.join(", "))?;
        if !self.leases.is_empty() {
            write!(f, " leases {:?}", self.leases)?;
        }
        Ok(())
    }
}

/// A 128-bit fingerprint of a (linearized set, model state) pair, for the search's
/// cache: 16 bytes per entry instead of a copy of both. Two pairs sharing one (odds
/// about steps² / 2^128) would make the search skip a path: at worst a false
/// violation, never a false pass.
fn fingerprint(linearized: &BitSet, state: &Model) -> (u64, u64) {
    let hash = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        (salt, linearized, state).hash(&mut h);
        h.finish()
    };
    (hash(0), hash(1))
}

/// A set of op positions (within a partition).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize, on: bool) {
        let bit = 1u64 << (i % 64);
        if on {
            self.0[i / 64] |= bit;
        } else {
            self.0[i / 64] &= !bit;
        }
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
        let mut linearized = BitSet::new(self.ops.len());
        let mut state = Model::default();
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        let mut stack: Vec<(usize, Model)> = Vec::new();
        let mut best = Stuck::default();
        let mut node = self.next[HEAD];
        let mut steps = 0u64;
        while remaining > 0 {
            steps += 1;
            if steps > limits.max_steps {
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
                    linearized.set(p, true);
                    if seen.insert(fingerprint(&linearized, &after)) {
                        if !op.is_indeterminate() {
                            remaining -= 1;
                        }
                        stack.push((p, std::mem::replace(&mut state, after)));
                        self.lift(p);
                        if stack.len() > best.order.len() {
                            best = Stuck {
                                order: stack.iter().map(|&(p, _)| p).collect(),
                                state: state.clone(),
                                next: self.candidates(),
                            };
                        }
                        node = self.next[HEAD];
                        continue;
                    }
                    linearized.set(p, false);
                }
                node = self.next[node];
                continue;
            }
            // A return (or the end): the op that returned was not linearized in time.
            let Some((p, before)) = stack.pop() else {
                return Err(CheckError::Violation(self.render(&best)));
            };
            if !self.op(p).is_indeterminate() {
                remaining += 1;
            }
            linearized.set(p, false);
            state = before;
            self.unlift(p);
            node = self.next[self.call_node[p]];
        }
        Ok(steps)
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

/// The deepest point the search reached.
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

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Put { key, value, lease: None } => write!(f, "put({key}, {value:?})"),
            Input::Put { key, value, lease: Some(l) } => write!(f, "put({key}, {value:?}, lease {l})"),
            Input::Get { key } => write!(f, "get({key})"),
            Input::Cas { key, expected: Some(e), value } => write!(f, "cas({key}, {e:?} -> {value:?})"),
            Input::Cas { key, expected: None, value } => write!(f, "cas({key}, absent -> {value:?})"),
            Input::Delete { key } => write!(f, "delete({key})"),
            Input::Grant { lease } => write!(f, "grant(lease {lease})"),
            Input::Revoke { lease } => write!(f, "revoke(lease {lease})"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(Output::Done) => write!(f, "ok"),
            Outcome::Ok(Output::Value(Some(v))) => write!(f, "{v:?}"),
            Outcome::Ok(Output::Value(None)) => write!(f, "absent"),
            Outcome::Ok(Output::Swapped(s)) => write!(f, "{}", if *s { "swapped" } else { "not swapped" }),
            Outcome::Ok(Output::Deleted(d)) => write!(f, "{}", if *d { "deleted" } else { "was absent" }),
            Outcome::Ok(Output::Granted(g)) => write!(f, "{}", if *g { "granted" } else { "already exists" }),
            Outcome::Ok(Output::Revoked(r)) => write!(f, "{}", if *r { "revoked" } else { "no such lease" }),
            Outcome::Ok(Output::NoLease) => write!(f, "no such lease"),
            Outcome::Failed(e) => write!(f, "failed ({e})"),
            Outcome::Indeterminate(e) => write!(f, "? ({e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let flickers = [
            op(1, put("a", "1"), 0, 1, unknown()),
            op(2, get("a"), 5, 6, read(Some("1"))),
            op(2, get("a"), 7, 8, read(None)),
        ];
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
        let ops = [
            op(1, put("a", "1"), 0, 10, ok(Output::Done)),
            op(2, get("a"), 1, 2, read(Some("1"))),
            op(3, get("a"), 3, 4, read(None)),
        ];
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
        let ops = [
            op(1, put("a", "1"), 0, 1, ok(Output::Done)),
            op(2, get("b"), 0, 1, read(None)),
            op(2, get("a"), 2, 3, read(None)),
        ];
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
        let ops: Vec<Operation> =
            (0..20).map(|i| op(i, put("a", &i.to_string()), 0, 100, ok(Output::Done))).collect();
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

    #[test]
    fn a_history_round_trips_through_json() {
        let ops = random_history(7, 2, 20, &["a"], 50);
        let path = save_history("unit-round-trip", &ops).expect("saved");
        let back: Vec<Operation> =
            serde_json::from_slice(&std::fs::read(&path).expect("read back")).expect("parses");
        std::fs::remove_file(&path).expect("removed");
        assert_eq!(back, ops);
    }
}
