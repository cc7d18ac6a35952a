//! The fencer: a small child process that stops PostgreSQL when the primary's write
//! deadline passes, even when the agent itself is frozen (SIGSTOP), hung or dead.
//!
//! The agent arms it with the postmaster and an absolute CLOCK_MONOTONIC deadline
//! (`timing`: last successful keep-alive sent + ttl − safety_margin), re-arms it after
//! every renewal and disarms it when PostgreSQL stops being a primary. The fencer sleeps
//! until its deadline or the agent's next command; past the deadline it freezes the postmaster (SIGSTOP, so it cannot start
//! new backends), kills every child of it and then the postmaster (SIGKILL). If the
//! agent's end of the pipe closes while armed (the agent died), it fences at once.
//!
//! What keeps the fencer able to act:
//! - it runs in a process group of its own, so a stop of the agent's group (Ctrl-Z in a
//!   terminal, `kill -STOP -PGID`) does not freeze it, and it ignores the terminal's
//!   signals (`process`);
//! - the agent checks on it at every arm and disarm and at [`Fencer::check`], and
//!   replaces one that exited, lost its pipe or is stopped, re-sending the armed state;
//! - the postmaster is named by pid and start time ([`Target`]): a pid reused by another
//!   process is never signalled;
//! - commands go through a writer thread ([`pipe`]), so a fencer that stops reading
//!   never blocks the agent's async workers.
//!
//! With a hardware watchdog (`--watchdog DEVICE --watchdog-timeout SECONDS`, see
//! `watchdog`), the fencer opens the device while armed, pets it until the deadline is
//! closer than the device's timeout, and fences then, that much earlier; so if the
//! fencer cannot act, the device resets the machine by the deadline.
//!
//! The protocol is one line per command on the fencer's stdin, each replacing the whole
//! state: `arm <postmaster pid> <deadline, ns of CLOCK_MONOTONIC> <postmaster start
//! time, clock ticks after boot>` or `disarm`.

mod pipe;
mod process;
mod target;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

use pipe::Pipe;
pub use process::run_fencer;
pub use target::{children_of, fence, fence_target, running_state, Fenced, Target};

/// Why PostgreSQL may still write after [`kill_and_confirm`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    /// These processes (`pid (state)`) of the `killed` ones still ran `within` after SIGKILL.
    #[error("{} of {killed} PostgreSQL processes still run {:.1} s after SIGKILL: {}", .running.len(), .within.as_secs_f64(), .running.join(", "))]
    StillRunning { running: Vec<String>, killed: usize, within: Duration },
}

/// Kills postmaster `pid` and every backend of it ([`fence`]: SIGKILL, which ends
/// stopped processes too) and waits up to `within` for all of them to be gone or
/// zombies. Err names those still running after that (a process in uninterruptible I/O,
/// state D, dies only when its I/O returns): until they are gone PostgreSQL might still
/// write, so the caller must not let another node take over.
pub async fn kill_and_confirm(pid: i32, within: Duration) -> Result<(), FenceError> {
    let killed = fence(pid);
    let deadline = Instant::now() + within;
    loop {
        let running: Vec<String> = killed.iter().filter_map(|t| running_state(*t).map(|s| format!("{} ({s})", t.pid))).collect();
        if running.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(FenceError::StillRunning { running, killed: killed.len(), within });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first argument that turns the `raftgres` binary into a fencer.
pub const FENCER_ARG: &str = "__fencer";

/// CLOCK_MONOTONIC now, in ns (the same clock `Instant` uses on Linux, shared by all
/// processes of the machine).
fn monotonic_ns() -> u128 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| Duration::from(t).as_nanos())
}

/// `deadline` as an absolute CLOCK_MONOTONIC time in ns.
fn deadline_ns(deadline: Instant) -> u128 {
    let now = Instant::now();
    let now_ns = monotonic_ns();
    if deadline >= now {
        now_ns + (deadline - now).as_nanos()
    } else {
        now_ns.saturating_sub((now - deadline).as_nanos())
    }
}

/// What the fencer was last told to stop, and by when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Armed {
    target: Target,
    deadline: Instant,
}

/// Which process an `arm` of a pid names, from the target already armed with that pid
/// (`recorded`) and the process that has the pid now (`now`, and whether it runs
/// PostgreSQL):
/// - the recorded process while it still has the pid: re-arms keep their identity (the
///   lease task re-arms with the pid it reads back from [`Fencer::armed_target`]);
/// - a PostgreSQL process that has the pid instead: a postmaster restarted in place that
///   got the same pid back;
/// - still the recorded one when a stranger or nothing has the pid: the fencer then
///   finds it reused or gone, and signals nothing;
/// - with nothing recorded, whatever has the pid (the caller just read it from
///   postmaster.pid); None when nothing has it.
fn identify(recorded: Option<Target>, now: Option<(Target, bool)>) -> Option<Target> {
    match (recorded, now) {
        (Some(r), Some((n, true))) if n != r => Some(n),
        (Some(r), _) => Some(r),
        (None, now) => now.map(|(n, _)| n),
    }
}

/// How to start a fencer: `exe __fencer [--watchdog DEVICE --watchdog-timeout SECONDS]`.
struct Recipe {
    exe: PathBuf,
    watchdog: Option<(PathBuf, u64)>,
}

impl Recipe {
    /// Starts a fencer in a process group of its own, with a writer on its stdin.
    fn start(&self) -> std::io::Result<(Child, Pipe)> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(FENCER_ARG);
        if let Some((device, timeout)) = &self.watchdog {
            cmd.arg("--watchdog").arg(device).arg("--watchdog-timeout").arg(timeout.to_string());
        }
        let mut child = cmd.stdin(Stdio::piped()).process_group(0).spawn()?;
        let pipe = child.stdin.take().ok_or_else(|| std::io::Error::other("the fencer has no stdin")).and_then(Pipe::new);
        match pipe {
            Ok(pipe) => Ok((child, pipe)),
            Err(e) => {
                stop(&mut child);
                Err(e)
            }
        }
    }

    /// Stops the watchdog's timer, which a fencer killed while armed leaves running
    /// (closed without the magic `V`): the new fencer reopens it if it is armed, and
    /// otherwise the machine would be reset for a primary that no longer is one.
    fn release_watchdog(&self) {
        if let Some((device, _)) = &self.watchdog {
            if let Err(e) = crate::watchdog::probe(device) {
                tracing::warn!("cannot stop the watchdog's timer after the fencer was replaced: {e}");
            }
        }
    }
}

/// Kills a fencer (SIGKILL: it does not fence) and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The agent's handle on its fencer.
pub struct Fencer {
    recipe: Recipe,
    child: Child,
    pipe: Pipe,
    armed: Option<Armed>,
}

impl Fencer {
    /// Starts `exe __fencer` (normally the running `raftgres` binary), with a watchdog
    /// device and its timeout in seconds if one is used.
    pub fn spawn(exe: &Path, watchdog: Option<(&Path, u64)>) -> std::io::Result<Self> {
        let recipe = Recipe { exe: exe.to_path_buf(), watchdog: watchdog.map(|(d, t)| (d.to_path_buf(), t)) };
        let (child, pipe) = recipe.start()?;
        Ok(Self { recipe, child, pipe, armed: None })
    }

    /// The fencer process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Why the fencer cannot act now, if it cannot.
    fn trouble(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => return Some(format!("it exited ({status})")),
            Ok(None) => {}
            Err(e) => return Some(format!("cannot check on it: {e}")),
        }
        if let Some(e) = self.pipe.broken() {
            return Some(format!("its pipe broke: {e}"));
        }
        // A killed multi-threaded process shows `Z` for its main thread while the others
        // are still exiting, and `waitpid` finds nothing to reap until they are gone: a
        // fencer in that state is dead all the same.
        let pid = i32::try_from(self.pid()).ok()?;
        match target::state(pid) {
            Some('T' | 't') => Some("it is stopped".to_string()),
            Some('Z' | 'X') | None => Some("it is exiting".to_string()),
            Some(_) => None,
        }
    }

    /// Makes sure a working fencer holds the armed state: one that exited, whose pipe
    /// broke or that is stopped is killed and replaced (stopping the watchdog timer it
    /// may have left running), and the new one is sent the armed state at once. If no
    /// fencer can be started while armed, the agent fences the postmaster itself, now: a
    /// primary must not run unfenced, or nothing stops it once the agent freezes. Costs a
    /// `waitpid` and a read of /proc: `arm` and `disarm` call it, and the HA loop may call
    /// it every cycle.
    pub fn check(&mut self) {
        let Some(trouble) = self.trouble() else { return };
        tracing::error!("the fencer (pid {}) cannot act: {trouble}; starting a new one", self.pid());
        // Killed before its pipe closes, or it would fence on seeing the pipe close; and
        // before the new one starts, which needs the watchdog device it may hold.
        stop(&mut self.child);
        self.recipe.release_watchdog();
        match self.recipe.start() {
            Ok((child, pipe)) => {
                self.child = child;
                self.pipe = pipe;
                self.send_state();
                tracing::warn!("a new fencer (pid {}) holds the armed state", self.pid());
            }
            Err(e) => {
                tracing::error!("cannot start a new fencer: {e}");
                if let Some(armed) = self.armed.take() {
                    tracing::error!("stopping postmaster {} now: PostgreSQL must not run as a primary without a fencer", armed.target.pid);
                    tracing::error!("{}", fence_target(armed.target));
                }
            }
        }
    }

    fn send_state(&self) {
        self.pipe.send(match self.armed {
            Some(a) => format!("arm {} {} {}", a.target.pid, deadline_ns(a.deadline), a.target.start),
            None => "disarm".to_string(),
        });
    }

    /// Arms (or re-arms) the fencer: `postmaster` must not accept writes after `deadline`.
    /// The process is identified when its pid is first armed (see [`identify`]); if no
    /// process has that pid, there is nothing to stop and the fencer is disarmed.
    pub fn arm(&mut self, postmaster: i32, deadline: Instant) {
        self.check();
        let recorded = self.armed.map(|a| a.target).filter(|t| t.pid == postmaster);
        let Some(target) = identify(recorded, Target::named(postmaster)) else {
            tracing::warn!("not arming the fencer: postmaster {postmaster} is not running");
            self.disarm();
            return;
        };
        let armed = Some(Armed { target, deadline });
        if self.armed != armed {
            self.armed = armed;
            self.send_state();
        }
    }

    pub fn disarm(&mut self) {
        let was_armed = self.armed.take().is_some();
        self.check();
        if was_armed {
            self.send_state();
        }
    }

    /// (postmaster pid, deadline) while armed.
    pub fn armed_target(&self) -> Option<(i32, Instant)> {
        self.armed.map(|a| (a.target.pid, a.deadline))
    }
}

impl Drop for Fencer {
    fn drop(&mut self) {
        // Killed before the pipe closes (after this), so it does not fence.
        stop(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arm_names_the_recorded_process_unless_a_postmaster_took_its_pid() {
        let old = Target { pid: 7, start: 100 };
        let new = Target { pid: 7, start: 200 };
        let table = [
            (Some(old), Some((old, true)), Some(old), "a re-arm keeps its process"),
            (Some(old), Some((new, true)), Some(new), "a postmaster restarted with the same pid"),
            (Some(old), Some((new, false)), Some(old), "a stranger with the pid is never the target"),
            (Some(old), None, Some(old), "gone: the fencer will find nothing to stop"),
            (None, Some((new, false)), Some(new), "a first arm trusts the caller"),
            (None, None, None, "nothing to arm"),
        ];
        for (recorded, now, expected, why) in table {
            assert_eq!(identify(recorded, now), expected, "{why}");
        }
    }

    #[tokio::test]
    async fn a_stopped_process_tree_is_killed_and_confirmed_dead() {
        let mut parent = Command::new("sh").args(["-c", "sleep 30 & sleep 30 & wait"]).spawn().expect("sh");
        let pid = i32::try_from(parent.id()).expect("pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        while children_of(pid).len() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let children = children_of(pid);
        assert_eq!(children.len(), 2);
        // Frozen, as a hung PostgreSQL may be: SIGKILL must still end every process.
        for p in children.iter().chain([&pid]) {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), nix::sys::signal::Signal::SIGSTOP).expect("stop");
        }
        let targets: Vec<Target> = children.iter().chain([&pid]).filter_map(|p| Target::of(*p)).collect();
        assert_eq!(kill_and_confirm(pid, Duration::from_secs(2)).await, Ok(()));
        assert!(targets.iter().all(|t| running_state(*t).is_none()), "{targets:?}");
        assert!(!parent.wait().expect("wait").success());
    }

    #[test]
    fn a_running_process_is_not_confirmed_dead() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let target = Target::of(i32::try_from(child.id()).expect("pid")).expect("sleep runs");
        assert!(running_state(target).is_some());
        assert_eq!(running_state(Target { start: target.start + 1, ..target }), None, "another process with its pid");
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert_eq!(running_state(target), None);
    }

    #[test]
    fn deadlines_map_to_the_monotonic_clock() {
        let now = monotonic_ns();
        let later = deadline_ns(Instant::now() + Duration::from_secs(1));
        assert!(later >= now + 990_000_000 && later < now + 1_100_000_000, "{now} {later}");
    }
}
