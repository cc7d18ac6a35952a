//! The KV half of `raftctl chaos`: the etcd API client workload of
//! [`raftgres_linearizability`] runs against every node's client endpoint for the whole
//! run, alongside the PostgreSQL writers, on keys under [`PREFIX`] (never the agents'
//! `/service/` keys), with leases far longer than the run. At the end its history is
//! checked for linearizability: one line says how it went; a violation or an
//! inconclusive check saves the history as JSON in the run's logs directory and fails
//! the run.
//!
//! The clients run on a tokio runtime of their own (one worker thread): the runner's
//! own runtime is a current-thread one that blocks in `psql` and in its waits, and the
//! clients' channels must live where they are polled.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use raftgres_linearizability::{check, save_history, CheckError, Config, Limits, Operation, Outcome, Workload};
use tokio::runtime::Runtime;

use raftgres_client::connect_one;
use raftgres_lab::Lab;

/// Every key the KV clients touch starts with this.
pub const PREFIX: &str = "/chaos/kv/";
/// A client's pause between two ops: with 5 clients, a few hundred ops a second at
/// most, so the load does not starve a 2-core machine running three nodes.
const THINK: Duration = Duration::from_millis(20);

/// The KV clients, running until [`KvLoad::finish`].
pub struct KvLoad {
    clients: usize,
    /// `Some` until finished.
    workload: Option<Workload>,
    /// `Some` until dropped (a runtime may not be dropped in async code: it is shut
    /// down in the background).
    runtime: Option<Runtime>,
}

impl KvLoad {
    /// Connects to every node of `lab` and starts `clients` clients, which stop by
    /// themselves after `limit`.
    pub async fn start(lab: &Lab, clients: usize, limit: Duration) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("chaos-kv")
            .enable_all()
            .build()
            .context("cannot start the KV clients' runtime")?;
        let (endpoints, security) = (lab.endpoints(), lab.security()?);
        let channels = runtime
            .spawn(async move {
                let mut channels = Vec::new();
                for endpoint in &endpoints {
                    channels.push(connect_one(endpoint, &security).await?);
                }
                anyhow::Ok(channels)
            })
            .await
            .context("the KV clients' connections")??;
        let config = Config {
            clients,
            seed: std::process::id().into(),
            prefix: PREFIX.into(),
            max_ops_per_client: 1_000_000,
            max_duration: limit,
            think: THINK,
            lease_ttl: i64::try_from(limit.as_secs()).unwrap_or(i64::MAX / 2).saturating_add(3600),
        };
        let workload = {
            let _inside = runtime.enter();
            Workload::start(channels, &config)?
        };
        Ok(Self { clients, workload: Some(workload), runtime: Some(runtime) })
    }

    /// Stops the clients and checks their history. Prints one line (and, when the check
    /// fails, where the history was saved in `logs` and the checker's account); returns
    /// why the run must fail, if it must.
    pub async fn finish(mut self, logs: &Path) -> Option<String> {
        let finished = match self.workload.take() {
            Some(workload) => workload.finish().await,
            None => Ok(Vec::new()),
        };
        let ops = match finished {
            Ok(ops) => ops,
            Err(e) => return Some(format!("the KV workload: {e:#}")),
        };
        verdict(&ops, self.clients, logs)
    }
}

impl Drop for KvLoad {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Checks `ops`, prints the `kv:` line and returns a failure, if any.
fn verdict(ops: &[Operation], clients: usize, logs: &Path) -> Option<String> {
    let answered = ops.iter().filter(|op| matches!(op.outcome, Outcome::Ok(_))).count();
    let what = format!("kv: {} operations ({answered} answered) by {clients} clients through every fault", ops.len());
    let started = Instant::now();
    let result = check(ops, Limits::default());
    let took = started.elapsed().as_secs_f64();
    let failure = match result {
        Ok(_) if answered == 0 => {
            println!("{what}: none answered");
            return Some("no KV operation was answered".into());
        }
        Ok(summary) => {
            let unseen = match summary.unobserved {
                0 => String::new(),
                n => format!("; {n} timed-out writes nobody saw taken as never applied"),
            };
            println!("{what}: linearizable (checked in {took:.2} s{unseen})");
            return None;
        }
        Err(e @ CheckError::Violation(_)) => (e, "the KV history is not linearizable"),
        Err(e @ CheckError::Inconclusive(_)) => (e, "the KV linearizability check is inconclusive"),
    };
    let saved = match save_history(logs, "kv-history", ops) {
        Ok(path) => format!("the history is in {}", path.display()),
        Err(e) => format!("the history could not be saved: {e:#}"),
    };
    println!("{what}: {} (checked in {took:.2} s); {saved}\n{}", failure.1, failure.0);
    Some(failure.1.to_string())
}

#[cfg(test)]
mod tests {
    use raftgres_linearizability::{Input, Output};

    use super::*;

    fn op(client: usize, input: Input, call: u64, outcome: Outcome) -> Operation {
        Operation { client, input, call, ret: call + 1, outcome }
    }

    #[test]
    fn a_stale_read_fails_the_run_and_saves_the_history() {
        let put = |v: &str| Input::Put { key: "/chaos/kv/a".into(), value: v.into(), lease: None };
        let mut ops = vec![
            op(0, put("1"), 0, Outcome::Ok(Output::Done)),
            op(1, put("2"), 2, Outcome::Ok(Output::Done)),
            op(2, Input::Get { key: "/chaos/kv/a".into() }, 4, Outcome::Ok(Output::Value(Some("2".into())))),
        ];
        let logs = tempfile::tempdir().expect("a temporary directory");
        assert_eq!(verdict(&ops, 3, logs.path()), None);
        ops[2].outcome = Outcome::Ok(Output::Value(Some("1".into())));
        assert_eq!(verdict(&ops, 3, logs.path()).as_deref(), Some("the KV history is not linearizable"));
        let saved: Vec<_> = std::fs::read_dir(logs.path()).expect("the logs").collect();
        assert_eq!(saved.len(), 1, "one history saved");
    }
}
