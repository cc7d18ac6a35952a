//! Running callbacks in the background, as Patroni's `CallbackExecutor` does: one at a
//! time, a new callback killing the one still running (`on_reload` apart: a new
//! `on_reload` kills only a still-running `on_reload`), so the HA loop never waits for a
//! script. Unlike Patroni, a callback still running after [`TIMEOUT`] is killed. Each
//! runs in a process group of its own, killed whole (its children too). How it ended is
//! logged: its exit code when it failed.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::task::JoinHandle;

use super::CallbackAction;

/// How long a callback may run before it is killed with its children.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// How a callback ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code (0: success).
    Exited(i32),
    /// A signal from outside the agent ended it.
    Signaled(i32),
    /// Still running at the timeout: killed.
    TimedOut,
    /// Killed because a newer callback of its kind started.
    Replaced,
    /// It could not be started or waited for.
    Failed(String),
}

/// Starts callbacks; clones share the running ones.
#[derive(Clone)]
pub struct Runner {
    /// Every callback but `on_reload`.
    main: Slot,
    reload: Slot,
    timeout: Duration,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new(TIMEOUT)
    }
}

/// The callback an executor runs now (if any), by its number.
#[derive(Clone, Default)]
struct Slot(Arc<Mutex<SlotState>>);

#[derive(Default)]
struct SlotState {
    /// The number of the newest callback started here.
    newest: u64,
    /// The newest one's number and process group while it runs.
    running: Option<(u64, i32)>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Runner {
    pub fn new(timeout: Duration) -> Self {
        Self { main: Slot::default(), reload: Slot::default(), timeout }
    }

    /// Kills the callback of `action`'s executor still running, starts `argv` (the
    /// command's words, then its three arguments) and returns at once; the handle says
    /// how it ended (the agent drops it: the outcome is logged).
    pub fn start(&self, action: CallbackAction, argv: Vec<String>) -> JoinHandle<Outcome> {
        let slot = if action == CallbackAction::OnReload { self.reload.clone() } else { self.main.clone() };
        let label = argv.join(" ");
        let mut state = slot.lock();
        state.newest += 1;
        let number = state.newest;
        if let Some((_, group)) = state.running.take() {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
        tracing::info!("callback: {label}");
        let spawned = argv.split_first().ok_or_else(|| "no command".to_string()).and_then(|(program, args)| {
            tokio::process::Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| format!("cannot run {program}: {e}"))
        });
        let timeout = self.timeout;
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                drop(state);
                return tokio::spawn(async move { logged(&label, Outcome::Failed(e), timeout) });
            }
        };
        // Its own process group, numbered by its pid (never 0: that would be ours).
        let group = child.id().and_then(|id| i32::try_from(id).ok()).filter(|&g| g > 0);
        state.running = group.map(|g| (number, g));
        drop(state);
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(timeout, child.wait()).await {
                Ok(Ok(status)) => match (status.code(), status.signal()) {
                    (Some(code), _) => Outcome::Exited(code),
                    (None, _) if slot.lock().newest != number => Outcome::Replaced,
                    (None, signal) => Outcome::Signaled(signal.unwrap_or(0)),
                },
                Ok(Err(e)) => Outcome::Failed(format!("cannot wait for it: {e}")),
                Err(_) => {
                    if let Some(group) = group {
                        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
                    }
                    let _ = child.wait().await;
                    Outcome::TimedOut
                }
            };
            let mut state = slot.lock();
            if state.running.is_some_and(|(n, _)| n == number) {
                state.running = None;
            }
            drop(state);
            logged(&label, outcome, timeout)
        })
    }
}

/// Logs how the callback `label` ended (`timeout`: the runner's); returns `outcome`.
fn logged(label: &str, outcome: Outcome, timeout: Duration) -> Outcome {
    match &outcome {
        Outcome::Exited(0) => tracing::info!("callback done: {label}"),
        Outcome::Exited(code) => tracing::warn!("callback failed with exit code {code}: {label}"),
        Outcome::Signaled(signal) => tracing::warn!("callback killed by signal {signal}: {label}"),
        Outcome::TimedOut => {
            tracing::warn!("callback still running after {:.1} s: killed it and its children: {label}", timeout.as_secs_f64())
        }
        Outcome::Replaced => tracing::info!("callback killed, a newer one started: {label}"),
        Outcome::Failed(e) => tracing::warn!("callback failed: {e}: {label}"),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::process_alive;

    fn sh(script: &str, action: &str) -> Vec<String> {
        ["sh", "-c", script, "callback", action, "replica", "demo"].map(String::from).to_vec()
    }

    #[tokio::test]
    async fn a_callback_gets_patronis_arguments_and_its_exit_code_is_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("calls");
        let script = format!("echo \"$@\" >> {}", out.display());
        let runner = Runner::default();
        assert_eq!(runner.start(CallbackAction::OnStart, sh(&script, "on_start")).await.expect("joined"), Outcome::Exited(0));
        assert_eq!(std::fs::read_to_string(&out).expect("written"), "on_start replica demo\n");
        assert_eq!(runner.start(CallbackAction::OnStop, sh("exit 3", "on_stop")).await.expect("joined"), Outcome::Exited(3));
        let missing = vec!["/nonexistent/cb".to_string(), "on_stop".into()];
        let failed = runner.start(CallbackAction::OnStop, missing).await.expect("joined");
        assert!(matches!(&failed, Outcome::Failed(e) if e.starts_with("cannot run /nonexistent/cb")), "{failed:?}");
    }

    #[tokio::test]
    async fn a_slow_callback_is_killed_with_its_children_at_the_timeout() {
        let dir = tempfile::tempdir().expect("dir");
        let pid_file = dir.path().join("child");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let runner = Runner::new(Duration::from_millis(300));
        let started = std::time::Instant::now();
        assert_eq!(runner.start(CallbackAction::OnRoleChange, sh(&script, "on_role_change")).await.expect("joined"), Outcome::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5), "killed at the timeout");
        let child: i32 = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("a pid");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while process_alive(child) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!process_alive(child), "the callback's child {child} was killed too");
    }

    #[tokio::test]
    async fn a_new_callback_kills_the_running_one_but_on_reload_runs_apart() {
        let runner = Runner::default();
        let reload = runner.start(CallbackAction::OnReload, sh("sleep 0.5", "on_reload"));
        let stop = runner.start(CallbackAction::OnStop, sh("sleep 30", "on_stop"));
        let role_change = runner.start(CallbackAction::OnRoleChange, sh("true", "on_role_change"));
        assert_eq!(stop.await.expect("joined"), Outcome::Replaced);
        assert_eq!(role_change.await.expect("joined"), Outcome::Exited(0));
        assert_eq!(reload.await.expect("joined"), Outcome::Exited(0), "on_reload has its own executor");
        let first = runner.start(CallbackAction::OnReload, sh("sleep 30", "on_reload"));
        let second = runner.start(CallbackAction::OnReload, sh("true", "on_reload"));
        assert_eq!((first.await.expect("joined"), second.await.expect("joined")), (Outcome::Replaced, Outcome::Exited(0)));
    }
}
