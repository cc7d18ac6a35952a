//! What the fencer stops and how. A [`Target`] is a process named by its pid *and* its
//! start time, so a pid the kernel has handed to another process since the fencer was
//! armed is never signalled. Fencing freezes the postmaster first (SIGSTOP: it can no
//! longer start backends, nor reap the ones that exit, so their pids stay theirs), then
//! kills every child of it and itself (SIGKILL).

use std::fmt;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Fields of /proc/PID/stat, numbered as in proc(5).
const STATE: usize = 3;
const PPID: usize = 4;
const START_TIME: usize = 22;

/// /proc/PID/stat split into the command name (field 2) and the fields from [`STATE`]
/// on. The name is in parentheses and may hold spaces and parentheses itself, so the
/// fields start after the last `)`.
fn stat(pid: i32) -> Option<(String, Vec<String>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = text.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    Some((name.to_owned(), rest.split_whitespace().map(str::to_owned).collect()))
}

/// Field `n` (from [`STATE`] on) of /proc/PID/stat.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    stat(pid)?.1.into_iter().nth(n.checked_sub(STATE)?)
}

/// The state letter of process `pid` (R, S, D, T, t, Z, ...), if it exists.
pub fn state(pid: i32) -> Option<char> {
    stat_field(pid, STATE)?.chars().next()
}

/// One process: its pid and its start time (clock ticks after boot), which together
/// name it for as long as the machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub pid: i32,
    pub start: u64,
}

impl Target {
    /// The process that has `pid` now, if any.
    pub fn of(pid: i32) -> Option<Self> {
        Self::named(pid).map(|(t, _)| t)
    }

    /// The process that has `pid` now and whether it runs PostgreSQL (its command name
    /// is `postgres`, or `postmaster` on old versions).
    pub fn named(pid: i32) -> Option<(Self, bool)> {
        let (name, fields) = stat(pid)?;
        let start = fields.get(START_TIME - STATE)?.parse().ok()?;
        Some((Self { pid, start }, name == "postgres" || name == "postmaster"))
    }
}

/// What [`fence_target`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// The target was frozen, its children and then itself killed.
    Killed(Target),
    /// No process has the target's pid any more: nothing to stop.
    Gone(Target),
    /// The pid now belongs to another process (started at `now`): not signalled.
    Reused { target: Target, now: u64 },
}

impl fmt::Display for Fenced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fenced::Killed(t) => write!(f, "postmaster {} and its backends killed", t.pid),
            Fenced::Gone(t) => write!(f, "postmaster {} was already gone", t.pid),
            Fenced::Reused { target, now } => write!(
                f,
                "pid {} now belongs to another process (started at tick {now}, the postmaster at tick {}): not signalled",
                target.pid, target.start
            ),
        }
    }
}

/// Fences `target` if the process with its pid is still that one (see [`Fenced`]). The
/// check and the SIGSTOP are two steps: the pid would have to be freed and reused in
/// between, microseconds, for another process to be stopped.
pub fn fence_target(target: Target) -> Fenced {
    match Target::of(target.pid) {
        None => Fenced::Gone(target),
        Some(now) if now != target => Fenced::Reused { target, now: now.start },
        Some(_) => {
            fence(target.pid);
            Fenced::Killed(target)
        }
    }
}

/// Stops the postmaster `pid` and every backend it started, at once, without checking
/// who `pid` is (the caller just read it; the fencer uses [`fence_target`]). Returns the
/// processes it killed (see [`running_state`]).
pub fn fence(pid: i32) -> Vec<Target> {
    let postmaster = Pid::from_raw(pid);
    let _ = kill(postmaster, Signal::SIGSTOP);
    let mut killed = Vec::new();
    for child in children_of(pid) {
        killed.extend(Target::of(child));
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
    killed.extend(Target::of(pid));
    let _ = kill(postmaster, Signal::SIGKILL);
    killed
}

/// The state letter of `target` while it still runs: None once it is gone, a zombie
/// (it will never run again) or its pid names another process.
pub fn running_state(target: Target) -> Option<char> {
    let (_, fields) = stat(target.pid)?;
    let start: u64 = fields.get(START_TIME - STATE)?.parse().ok()?;
    let state = fields.first()?.chars().next()?;
    (start == target.start && !matches!(state, 'Z' | 'X')).then_some(state)
}

/// Pids whose parent is `pid` (from /proc).
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_field(p, PPID).and_then(|s| s.parse::<i32>().ok()) == Some(pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use super::*;

    fn sleeper() -> (Child, i32) {
        let child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        (child, pid)
    }

    #[test]
    fn fence_kills_a_process_tree() {
        let mut parent = Command::new("sh").args(["-c", "sleep 30 & sleep 30 & wait"]).spawn().expect("sh");
        let pid = i32::try_from(parent.id()).expect("pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        while children_of(pid).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let children = children_of(pid);
        assert_eq!(children.len(), 2);
        let target = Target::of(pid).expect("the shell runs");
        assert_eq!(fence_target(target), Fenced::Killed(target));
        let status = parent.wait().expect("wait");
        assert!(!status.success());
        std::thread::sleep(Duration::from_millis(100));
        for c in children {
            assert!(!crate::postgres::process_alive(c), "child {c} survived");
        }
    }

    #[test]
    fn a_pid_that_names_another_process_is_not_signalled() {
        let (mut child, pid) = sleeper();
        let now = Target::of(pid).expect("sleep runs");
        // The same pid as recorded for a process that started earlier: what the fencer
        // holds when its postmaster died and the kernel gave the pid to `sleep`.
        let earlier = Target { pid, start: now.start - 1 };
        assert_eq!(fence_target(earlier), Fenced::Reused { target: earlier, now: now.start });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(child.try_wait().expect("try_wait"), None, "the other process was left alone");
        assert_ne!(state(pid), Some('T'), "not even stopped");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    #[test]
    fn a_dead_target_is_not_signalled() {
        let (mut child, pid) = sleeper();
        let target = Target::of(pid).expect("sleep runs");
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert_eq!(Target::of(pid).filter(|t| *t == target), None, "reaped: the pid names nothing or someone else");
        assert!(matches!(fence_target(target), Fenced::Gone(_) | Fenced::Reused { .. }));
    }
}
