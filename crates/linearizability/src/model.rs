//! The sequential specification the checker compares histories with: a KV map whose
//! keys may be attached to leases, and the set of live leases. Lease expiry is not
//! modelled: workloads use TTLs far longer than they run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::history::{Input, Output};

/// The sequential specification: the KV map with leases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Model {
    /// key → (value, lease).
    keys: BTreeMap<String, (String, Option<i64>)>,
    leases: BTreeSet<i64>,
}

impl Model {
    /// The answer `input` gets in this state, and the state after it.
    pub(crate) fn apply(&self, input: &Input) -> (Output, Model) {
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
