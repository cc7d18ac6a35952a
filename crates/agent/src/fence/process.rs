//! The fencer process (`raftgres __fencer`): reads the agent's commands, polls every
//! 20 ms, and fences its target once the deadline (minus the watchdog's timeout, when it
//! drives one) passes, or at once when the agent's end of the pipe closes while armed.
//!
//! It runs in a process group of its own (see `Fencer::spawn`) and blocks the signals a
//! terminal sends its foreground job or a whole session (SIGINT, SIGQUIT, SIGTSTP,
//! SIGHUP) and a background job that touches it (SIGTTIN, SIGTTOU): none of them may
//! stop it or end it while PostgreSQL is a primary. When they end the agent instead,
//! the pipe closes and the fencer fences.

use std::io::{BufRead, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use super::monotonic_ns;
use super::target::{fence_target, Target};
use crate::watchdog::Watchdog;

/// Writes one line to stderr (the node's log), timestamped like the agent's lines. Not
/// `eprintln!`, which panics when the line cannot be written: on a full disk that would
/// kill the fencer before it fences.
macro_rules! say {
    ($($arg:tt)*) => {{
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        let _ = writeln!(std::io::stderr(), "{now}  WARN {}", format_args!($($arg)*));
    }};
}

const POLL: Duration = Duration::from_millis(20);

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

/// Blocks the terminal's job-control and hang-up signals in this thread and every
/// thread started after it (see the module doc).
fn shield_from_terminal() {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTSTP, Signal::SIGHUP, Signal::SIGTTIN, Signal::SIGTTOU] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        say!("fencer: cannot block the terminal's signals ({e}); a Ctrl-C may stop me");
    }
}

/// Fences `target`, logging why and what happened.
fn fence_now(target: Target, why: &str) {
    say!("fencer: {why}: stopping postmaster {}", target.pid);
    say!("fencer: {}", fence_target(target));
}

/// The fencer process's main loop. Returns when the agent closes the pipe.
pub fn run_fencer() {
    shield_from_terminal();
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
    let mut armed: Option<(Target, u128)> = None;
    loop {
        match rx.recv_timeout(POLL) {
            Ok(line) => armed = parse_command(&line).unwrap_or(armed),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if let Some((target, _)) = armed {
                    fence_now(target, "the agent is gone while PostgreSQL is primary");
                }
                if let Some(d) = &mut device {
                    d.stop();
                }
                return;
            }
        }
        match armed {
            Some((target, deadline)) if monotonic_ns() + lead >= deadline => {
                fence_now(target, "lease not renewed in time");
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

/// `arm PID NS START` → Some(Some((target, ns))), `disarm` → Some(None), garbage → None.
pub(super) fn parse_command(line: &str) -> Option<Option<(Target, u128)>> {
    let mut words = line.split_whitespace();
    match words.next()? {
        "arm" => {
            let pid = words.next()?.parse().ok()?;
            let ns = words.next()?.parse().ok()?;
            let start = words.next()?.parse().ok()?;
            Some(Some((Target { pid, start }, ns)))
        }
        "disarm" => Some(None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse_command("arm 12 345 678"), Some(Some((Target { pid: 12, start: 678 }, 345))));
        assert_eq!(parse_command("disarm"), Some(None));
        assert_eq!(parse_command("arm 12 345"), None, "an arm without the start time names no process");
        assert_eq!(parse_command("arm x 1 2"), None);
        assert_eq!(parse_command(""), None);
    }
}
