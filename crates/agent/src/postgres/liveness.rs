//! The liveness probe: is the local PostgreSQL serving anyone? Every `liveness.interval`
//! it reads (`pg_is_in_recovery()`) and on a primary commits a tiny write, on a
//! connection of its own that it keeps for [`PROBES_PER_CONNECTION`] probes and then
//! replaces with a fresh one, so a postmaster that no longer forks backends fails a
//! probe within that many intervals (then every probe connects afresh until one
//! answers), while an idle node forks one backend per that many intervals rather than
//! one per interval. A failed probe drops its connection: the next one connects anew.
//! Each step (connect, read, write) has its own `liveness.timeout`.
//!
//! The write is a transactional `pg_logical_emit_message` (no table, no change to the
//! user's schema, no replication slot touched): it gives the transaction an xid, so its
//! COMMIT writes a commit record and waits for the local WAL flush, and a primary that
//! cannot write or flush its WAL (unwritable or full pg_wal, a stuck disk) fails it.
//! `synchronous_commit = local` for that one transaction keeps a missing synchronous
//! standby from looking like a hung primary.
//!
//! The probe runs in its own task and never blocks the HA loop: it records each result
//! in a [`History`] that the loop judges ([`crate::ha::hung::judge`]), wakes the loop
//! after every failure and tells [`Liveness::until_hung`] waiters when the verdict may
//! have changed. "The database system is starting up / in recovery mode" (57P03) is no
//! result at all: PostgreSQL answered, it is recovering, and `primary_start_timeout`
//! governs that.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use super::{PgError, PgResult, Postgres};
use crate::config::LivenessConfig;
use crate::ha::hung::{judge, History, ProbeFailed, Verdict};

/// The primary's write probe (see the module doc).
const WRITE_PROBE: &str = "BEGIN READ WRITE; SET LOCAL synchronous_commit = local; \
    SELECT pg_logical_emit_message(true, 'raftgres-liveness', ''); COMMIT";

/// How many probes one connection serves before a fresh one replaces it (see the module
/// doc): with the default 1 s interval, a fork every 10 s.
const PROBES_PER_CONNECTION: u32 = 10;

/// How one probe ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Answered,
    /// PostgreSQL said it is starting up, shutting down or recovering.
    Recovering,
    Failed(String),
}

/// The probe's settings and history, shared by the probe task and the HA loop.
#[derive(Clone)]
pub struct Liveness {
    shared: Arc<Shared>,
}

struct Shared {
    config: Mutex<LivenessConfig>,
    history: Mutex<History>,
    /// Signalled after every failed probe.
    failed: Notify,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Liveness {
    pub fn new(config: LivenessConfig) -> Self {
        Self { shared: Arc::new(Shared { config: Mutex::new(config), history: Mutex::default(), failed: Notify::new() }) }
    }

    /// New settings from `/config`.
    pub fn configure(&self, config: LivenessConfig) {
        *locked(&self.shared.config) = config;
    }

    fn config(&self) -> LivenessConfig {
        locked(&self.shared.config).clone()
    }

    pub fn history(&self) -> History {
        locked(&self.shared.history).clone()
    }

    /// The verdict now.
    pub fn verdict(&self) -> Verdict {
        judge(&locked(&self.shared.history), &self.config(), Instant::now())
    }

    /// Returns once the verdict is [`Verdict::Hung`] (at once if it is). Callers race it
    /// against a query to the same PostgreSQL, which has a timeout of its own.
    pub async fn until_hung(&self) {
        loop {
            let failed = self.shared.failed.notified();
            tokio::pin!(failed);
            failed.as_mut().enable();
            if matches!(self.verdict(), Verdict::Hung { .. }) {
                return;
            }
            failed.await;
        }
    }

    /// `query` to this PostgreSQL, abandoned as soon as the verdict is hung.
    pub async fn unless_hung<T>(&self, query: impl std::future::Future<Output = PgResult<T>>) -> PgResult<T> {
        tokio::select! {
            result = query => result,
            () = self.until_hung() => Err(PgError::Sql("abandoned: PostgreSQL failed every liveness probe (hung)".into())),
        }
    }

    /// Starts the probe task for `pg`; it ends when `wake` (the HA loop's) closes.
    pub fn spawn(&self, pg: Postgres, wake: mpsc::Sender<()>) {
        tokio::spawn(self.clone().run(pg, wake));
    }

    async fn run(self, pg: Postgres, wake: mpsc::Sender<()>) {
        let connect = super::sql::local_config(&pg.config, "raftgres-liveness");
        let mut probed = None;
        let mut kept = None;
        while !wake.is_closed() {
            let started = Instant::now();
            let config = self.config();
            let postmaster = pg.postmaster_pid();
            if postmaster != probed {
                // Stopped, or another postmaster: its failures are not this one's.
                locked(&self.shared.history).restart();
                probed = postmaster;
                kept = None;
            }
            if !config.enabled {
                kept = None;
            }
            if config.enabled && postmaster.is_some() {
                let result = match probe(&connect, config.timeout(), &mut kept).await {
                    Outcome::Answered => Some(Ok(())),
                    Outcome::Recovering => None,
                    Outcome::Failed(why) => Some(Err(ProbeFailed(why))),
                };
                if let Some(result) = result {
                    let failed = result.is_err();
                    if let Err(e) = &result {
                        tracing::warn!("liveness probe failed: {e}");
                    }
                    locked(&self.shared.history).record(started, result);
                    if failed {
                        self.shared.failed.notify_waiters();
                        let _ = wake.try_send(());
                    }
                }
            }
            tokio::time::sleep(config.interval().saturating_sub(started.elapsed())).await;
        }
    }
}

/// `what` within `timeout`, or a failure naming the step.
async fn step<T>(
    what: &str,
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Outcome> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.code() == Some(&SqlState::CANNOT_CONNECT_NOW) => Err(Outcome::Recovering),
        Ok(Err(e)) => {
            Err(Outcome::Failed(format!("{what}: {}", e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string()))))
        }
        Err(_) => Err(Outcome::Failed(format!("{what}: no answer within {:.1} s", timeout.as_secs_f64()))),
    }
}

/// The probe's own connection and how many probes it served.
struct Kept {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
    probes: u32,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// One probe: on the kept connection while it is open and has served fewer than
/// [`PROBES_PER_CONNECTION`] probes, else on a fresh one; then the read, and on a
/// primary the write. A failure drops the connection.
async fn probe(config: &tokio_postgres::Config, timeout: Duration, kept: &mut Option<Kept>) -> Outcome {
    if kept.as_ref().is_some_and(|k| k.client.is_closed() || k.probes >= PROBES_PER_CONNECTION) {
        *kept = None;
    }
    let conn = match kept {
        Some(k) => k,
        None => match step("connect", timeout, config.connect(NoTls)).await {
            Ok((client, connection)) => {
                let connection = tokio::spawn(async move {
                    let _ = connection.await;
                });
                kept.insert(Kept { client, connection, probes: 0 })
            }
            Err(outcome) => return outcome,
        },
    };
    conn.probes += 1;
    let client = &conn.client;
    let result = async {
        let in_recovery: bool = step("read", timeout, client.query_one("SELECT pg_is_in_recovery()", &[])).await?.get(0);
        if !in_recovery {
            step("write", timeout, client.batch_execute(WRITE_PROBE)).await?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Outcome::Answered,
        Err(outcome) => {
            *kept = None;
            outcome
        }
    }
}
