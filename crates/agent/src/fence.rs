//! The fencer: a small child process that stops PostgreSQL when the primary's write
//! deadline passes, even when the agent itself is frozen (SIGSTOP), hung or dead.
//!
//! The agent arms it with the postmaster's pid and an absolute CLOCK_MONOTONIC deadline
//! (`timing`: last successful keep-alive sent + ttl − safety_margin), re-arms it after
//! every renewal and disarms it when PostgreSQL stops being a primary. The fencer polls
//! every 20 ms; past the deadline it freezes the postmaster (SIGSTOP, so it cannot start
//! new backends), kills every child of it and then the postmaster (SIGKILL). If the
//! agent's end of the pipe closes while armed (the agent died), it fences at once.
//!
//! With a hardware watchdog (`--watchdog DEVICE --watchdog-timeout SECONDS`, see
//! `watchdog`), the fencer opens the device while armed, pets it until the deadline is
//! closer than the device's timeout, and fences then, that much earlier; so if the
//! fencer cannot act, the device resets the machine by the deadline.
//!
//! The protocol is one line per command on the fencer's stdin:
//! `arm <postmaster pid> <deadline, ns of CLOCK_MONOTONIC>` or `disarm`.

use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;

use crate::watchdog::Watchdog;

/// Writes one line to stderr (the node's log). Not `eprintln!`, which panics when the
/// line cannot be written: on a full disk that would kill the fencer before it fences.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// The first argument that turns the `raftgres` binary into a fencer.
pub const FENCER_ARG: &str = "__fencer";

const POLL: Duration = Duration::from_millis(20);

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

/// The agent's handle on its fencer.
pub struct Fencer {
    child: Child,
    stdin: ChildStdin,
    armed: Option<(i32, Instant)>,
}

impl Fencer {
    /// Starts `exe __fencer` (normally the running `raftgres` binary), with a watchdog
    /// device and its timeout in seconds if one is used.
    pub fn spawn(exe: &std::path::Path, watchdog: Option<(&std::path::Path, u64)>) -> std::io::Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.arg(FENCER_ARG);
        if let Some((device, timeout)) = watchdog {
            cmd.arg("--watchdog").arg(device).arg("--watchdog-timeout").arg(timeout.to_string());
        }
        let mut child = cmd.stdin(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("fencer has no stdin"))?;
        Ok(Self { child, stdin, armed: None })
    }

    fn send(&mut self, line: &str) {
        if let Err(e) = writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush()) {
            tracing::error!("cannot reach the fencer ({e}); PostgreSQL will be stopped if it was armed");
        }
    }

    /// Arms (or re-arms) the fencer: `postmaster` must not accept writes after `deadline`.
    pub fn arm(&mut self, postmaster: i32, deadline: Instant) {
        if self.armed == Some((postmaster, deadline)) {
            return;
        }
        self.armed = Some((postmaster, deadline));
        self.send(&format!("arm {postmaster} {}", deadline_ns(deadline)));
    }

    pub fn disarm(&mut self) {
        if self.armed.take().is_some() {
            self.send("disarm");
        }
    }

    /// (postmaster pid, deadline) while armed.
    pub fn armed_target(&self) -> Option<(i32, Instant)> {
        self.armed
    }
}

impl Drop for Fencer {
    fn drop(&mut self) {
        self.disarm();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The watchdog device and timeout the fencer was started with (`--watchdog DEVICE
/// --watchdog-timeout SECONDS`).
fn watchdog_args() -> Option<(std::path::PathBuf, u64)> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    Some((value("--watchdog")?.into(), value("--watchdog-timeout")?.parse().ok()?))
}

/// The hardware watchdog while the fencer is armed.
struct Device {
    path: std::path::PathBuf,
    timeout: u64,
    open: Option<(Watchdog, Instant)>,
}

impl Device {
    /// Opens the device if needed and pets it at most every 100 ms.
    fn keep_alive(&mut self) {
        if self.open.is_none() {
            match Watchdog::open(&self.path) {
                Ok(w) => {
                    if let Err(e) = w.set_timeout(self.timeout) {
                        say!("fencer: cannot set the timeout of {} ({e}); using the device's own", self.path.display());
                    }
                    self.open = Some((w, Instant::now() - Duration::from_secs(1)));
                }
                Err(e) => {
                    say!("fencer: cannot open the watchdog {}: {e}", self.path.display());
                    return;
                }
            }
        }
        if let Some((w, last)) = &mut self.open {
            if last.elapsed() >= Duration::from_millis(100) {
                if let Err(e) = w.pet() {
                    say!("fencer: cannot keep the watchdog alive: {e}");
                }
                *last = Instant::now();
            }
        }
    }

    /// Stops the timer (PostgreSQL is no longer a primary).
    fn stop(&mut self) {
        if let Some((w, _)) = self.open.take() {
            if let Err(e) = w.close() {
                say!("fencer: cannot stop the watchdog cleanly: {e}");
            }
        }
    }
}

/// The fencer process's main loop. Returns when the agent closes the pipe.
pub fn run_fencer() {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut device = watchdog_args().map(|(path, timeout)| Device { path, timeout, open: None });
    let lead = device.as_ref().map_or(0, |d| u128::from(d.timeout) * 1_000_000_000);
    let mut armed: Option<(i32, u128)> = None;
    loop {
        match rx.recv_timeout(POLL) {
            Ok(line) => armed = parse_command(&line).unwrap_or(armed),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if let Some((pid, _)) = armed {
                    say!("fencer: the agent is gone while PostgreSQL is primary: stopping postmaster {pid}");
                    fence(pid);
                }
                if let Some(d) = &mut device {
                    d.stop();
                }
                return;
            }
        }
        match armed {
            Some((pid, deadline)) if monotonic_ns() + lead >= deadline => {
                say!("fencer: lease not renewed in time: stopping postmaster {pid} before another node can take the leader key");
                fence(pid);
                armed = None;
                if let Some(d) = &mut device {
                    d.stop();
                }
            }
            Some(_) => {
                if let Some(d) = &mut device {
                    d.keep_alive();
                }
            }
            None => {
                if let Some(d) = &mut device {
                    d.stop();
                }
            }
        }
    }
}

/// `arm PID NS` → Some(Some((pid, ns))), `disarm` → Some(None), garbage → None.
fn parse_command(line: &str) -> Option<Option<(i32, u128)>> {
    let mut words = line.split_whitespace();
    match words.next()? {
        "arm" => {
            let pid = words.next()?.parse().ok()?;
            let ns = words.next()?.parse().ok()?;
            Some(Some((pid, ns)))
        }
        "disarm" => Some(None),
        _ => None,
    }
}

/// Stops the postmaster `pid` and every backend it started, at once.
pub fn fence(pid: i32) {
    let postmaster = Pid::from_raw(pid);
    let _ = kill(postmaster, Signal::SIGSTOP);
    for child in children_of(pid) {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
    let _ = kill(postmaster, Signal::SIGKILL);
}

/// Pids whose parent is `pid` (from /proc).
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).ok().and_then(|s| {
                let (_, rest) = s.rsplit_once(')')?;
                rest.split_whitespace().nth(1)?.parse::<i32>().ok()
            }) == Some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse_command("arm 12 345"), Some(Some((12, 345))));
        assert_eq!(parse_command("disarm"), Some(None));
        assert_eq!(parse_command("arm x 1"), None);
        assert_eq!(parse_command(""), None);
    }

    #[test]
    fn deadlines_map_to_the_monotonic_clock() {
        let now = monotonic_ns();
        let later = deadline_ns(Instant::now() + Duration::from_secs(1));
        assert!(later >= now + 990_000_000 && later < now + 1_100_000_000, "{now} {later}");
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
        fence(pid);
        let status = parent.wait().expect("wait");
        assert!(!status.success());
        std::thread::sleep(Duration::from_millis(100));
        for c in children {
            assert!(!crate::postgres::process_alive(c), "child {c} survived");
        }
    }
}
