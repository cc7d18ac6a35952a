//! The Raft core's own tokio runtime, apart from client work.
//!
//! On the process's one runtime, a heartbeat is a chain of task wake-ups (openraft's
//! core, the replication stream, the peer channel's and connection's tasks, the peer
//! server on the follower, its core, and back), and each queued behind every runnable
//! client task: with 500 `etcdctl check perf` clients, heartbeats arrived 0.4–0.9 s
//! late and followers started elections (38 in 60 s on a busy 2-core machine). Here
//! openraft's tasks (they are spawned on the runtime `Raft::new` runs in), its log
//! flusher's watchdog, the peer server and the peer channels Raft uses run on a
//! runtime of their own, so client load delays them only by the OS's share of the CPU,
//! not by the length of a task queue. Forwarded client requests are client work: their
//! channels and their handling stay on the client runtime (`network`, `peer_service`).
//!
//! One worker thread: on the small machines raftgres targets, a second one would only
//! compete with the client runtime for the same cores. Its nice value is lowered where
//! the process may (root, CAP_SYS_NICE, or RLIMIT_NICE such as systemd's `LimitNICE=`):
//! on a CPU-bound machine the OS then runs it ahead of client work, whose threads
//! otherwise outnumber it. Where it may not, it runs at normal priority (logged once).
//! A probe task on it (every 50 ms) logs each time the thread ran 100 ms or more late (as etcd warns
//! that a leader failed to send a heartbeat on time), so a stall shows in the log with
//! its time and length.

use std::sync::Mutex;

use tokio::runtime::{Handle, Runtime};

const WORKER_THREADS: usize = 1;

/// The worker thread's nice value when the process may raise it.
const RAFT_NICE: i32 = -10;

/// Most bytes of log entries encoded or decoded on the Raft runtime's thread (a
/// heartbeat, a vote, a few writes); bigger work (thousands of client writes) goes to
/// the blocking pool, so the thread answers heartbeats meanwhile.
pub(crate) const IN_PLACE_MAX_BYTES: usize = 64 * 1024;

/// The runtime; stopped when the store stops (or is dropped), without waiting.
pub(crate) struct RaftRuntime {
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
}

impl RaftRuntime {
    pub(crate) fn start() -> std::io::Result<Self> {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(WORKER_THREADS).thread_name("raft").enable_all().build()?;
        // Spawned tasks run on the worker thread only.
        runtime.spawn(async { raise_priority() });
        runtime.spawn(watch_lag());
        Ok(Self { handle: runtime.handle().clone(), runtime: Mutex::new(Some(runtime)) })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stops every task on it. Never blocks, so it may run inside any runtime (dropping
    /// a `Runtime` there would panic).
    pub(crate) fn stop(&self) {
        if let Some(runtime) = self.runtime.lock().unwrap_or_else(|p| p.into_inner()).take() {
            runtime.shutdown_background();
        }
    }
}

/// How often the lag probe wakes up, and how late it must be to be reported. A stall
/// that begins while the probe sleeps shows shortened by the part of the sleep before
/// it: every stall of `LATE + PROBE_EVERY` (150 ms) or more is reported, and most of
/// those from `LATE` up. The probe is the thread's most frequent wake-up besides
/// openraft's tick: every 10 ms it cost an idle node ~100 wake-ups a second.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
const LATE: std::time::Duration = std::time::Duration::from_millis(100);

/// Reports each time the thread could not run a timer for [`LATE`] or longer:
/// heartbeats were held back as long (etcd logs the same as "leader failed to send out
/// heartbeat on time").
async fn watch_lag() {
    loop {
        let asked = std::time::Instant::now();
        tokio::time::sleep(PROBE_EVERY).await;
        let late = asked.elapsed().saturating_sub(PROBE_EVERY);
        if late >= LATE {
            tracing::warn!("the Raft thread ran {} ms late: heartbeats were held back as long", late.as_millis());
        }
    }
}

/// Lowers the calling thread's nice value to [`RAFT_NICE`] if allowed.
fn raise_priority() {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), RAFT_NICE) {
        tracing::info!(
            "the Raft thread keeps normal priority ({e} setting nice {RAFT_NICE}): under CPU overload its heartbeats may be late (allow it with CAP_SYS_NICE or LimitNICE={RAFT_NICE})"
        );
    }
}

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}
