//! A history of etcd KV and lease operations: what each client asked ([`Input`]), what
//! it was answered ([`Output`]) and how it ended ([`Outcome`]), with its invocation and
//! return times; [`History`] records one from concurrent clients, [`save_history`]
//! writes one as JSON.
//!
//! An operation that *failed* is one the store definitely did not apply (e.g. the
//! connection was refused before the request was sent); it has no effect and is left
//! out of the check. An operation whose outcome is *indeterminate* (a timeout,
//! `Unavailable`, a connection lost mid-call) may or may not have taken effect, at any
//! time after its invocation: as in Porcupine its return time is +∞, so the checker may
//! linearize it anywhere after its call or never. An indeterminate read has no effect
//! and is dropped too.

use std::fmt;
use std::path::{Path, PathBuf};
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

/// Writes `ops` as JSON to `dir/<name>-<unix ms>.json` (creating `dir`) and returns
/// the path.
pub fn save_history(dir: &Path, name: &str, ops: &[Operation]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let path = dir.join(format!("{name}-{ms}.json"));
    let json = serde_json::to_vec_pretty(ops).context("serializing the history")?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
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

    #[test]
    fn a_history_round_trips_through_json() {
        let history = History::default();
        let put = Input::Put { key: "a".into(), value: "1".into(), lease: Some(7) };
        history.record(1, put, history.now(), Outcome::Ok(Output::Done));
        history.record(2, Input::Get { key: "a".into() }, history.now(), Outcome::Indeterminate("timeout".into()));
        history.record(3, Input::Revoke { lease: 7 }, history.now(), Outcome::Failed("refused".into()));
        let ops = history.operations();
        let dir = std::env::temp_dir().join(format!("raftgres-linearizability-{}", std::process::id()));
        let path = save_history(&dir, "unit-round-trip", &ops).expect("saved");
        let back: Vec<Operation> = serde_json::from_slice(&std::fs::read(&path).expect("read back")).expect("parses");
        std::fs::remove_dir_all(&dir).expect("removed");
        assert_eq!(back, ops);
    }
}
