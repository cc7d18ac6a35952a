//! The fencer process (`raftgres __fencer`): waits for the agent's next command or its
//! deadline, whichever comes first ([`next_wake`]), and fences its target once the
//! deadline (minus the watchdog's timeout, when it drives one) passes, or at once when
//! the agent's end of the pipe closes while armed. Disarmed, it sleeps until the next
//! command: an idle fencer never wakes on its own.
//!
//! It runs in a process group of its own (see `Fencer::spawn`) and blocks the signals a
//! terminal sends its foreground job or a whole session (SIGINT, SIGQUIT, SIGTSTP,
//! SIGHUP) and a background job that touches it (SIGTTIN, SIGTTOU): none of them may
//! stop it or end it while PostgreSQL is a primary. When they end the agent instead,
//! the pipe closes and the fencer fences.
//!
//! It is one thread that waits in ppoll(2) on its stdin ([`Inbox`]): no reader thread,
//! channel or second malloc arena, so an idle fencer keeps fewer pages resident (it runs
//! beside every node for the node's whole life).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::time::TimeSpec;

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

/// How often an armed fencer pets the hardware watchdog.
const PET_INTERVAL: Duration = Duration::from_millis(100);

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
    /// Opens the device if needed and pets it at most every [`PET_INTERVAL`].
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
            if last.elapsed() >= PET_INTERVAL {
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

/// The agent's commands on a pipe (the fencer's stdin), with the part of a line read so far.
#[derive(Default)]
struct Inbox {
    partial: Vec<u8>,
}

impl Inbox {
    /// Waits up to `timeout` (None: without end) for what the agent writes to `pipe`:
    /// the complete lines that came (none when the wait timed out, only half a line came
    /// or a signal woke us), or None once the agent's end closed or the pipe cannot be
    /// read. A line the closing pipe cut short is no command: `arm 12 3456 789` cut to
    /// `arm 12 3456 78` would name another process.
    fn wait(&mut self, pipe: BorrowedFd<'_>, timeout: Option<Duration>) -> Option<Vec<String>> {
        let mut fds = [PollFd::new(pipe, PollFlags::POLLIN)];
        match ppoll(&mut fds, timeout.map(TimeSpec::from_duration), None) {
            Ok(0) | Err(Errno::EINTR) => return Some(Vec::new()),
            Ok(_) => {}
            Err(e) => {
                say!("fencer: cannot wait for the agent's commands: {e}");
                return None;
            }
        }
        let mut chunk = [0u8; 4096];
        match nix::unistd::read(pipe.as_raw_fd(), &mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                self.partial.extend_from_slice(&chunk[..n]);
                Some(complete_lines(&mut self.partial))
            }
            Err(Errno::EINTR | Errno::EAGAIN) => Some(Vec::new()),
            Err(e) => {
                say!("fencer: cannot read the agent's commands: {e}");
                None
            }
        }
    }
}

/// Takes the complete lines (without their newlines) off the front of `buf`, leaving
/// the start of a line not complete yet. Bytes that are not UTF-8 become U+FFFD, which no
/// command parses.
fn complete_lines(buf: &mut Vec<u8>) -> Vec<String> {
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else { return Vec::new() };
    let lines = buf[..end].split(|b| *b == b'\n').map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    buf.drain(..=end);
    lines
}

/// The fencer process's main loop. Returns when the agent closes the pipe.
pub fn run_fencer() {
    shield_from_terminal();
    let stdin = std::io::stdin();
    let mut inbox = Inbox::default();
    let mut device = watchdog_args().map(|(path, timeout)| Device { path, timeout, open: None });
    let lead = device.as_ref().map_or(0, |d| u128::from(d.timeout) * 1_000_000_000);
    let mut armed: Option<(Target, u128)> = None;
    loop {
        let wait = next_wake(armed.map(|(_, deadline)| deadline), lead, monotonic_ns(), device.is_some());
        match inbox.wait(stdin.as_fd(), wait) {
            Some(lines) => {
                for line in lines {
                    armed = parse_command(&line).unwrap_or(armed);
                }
            }
            None => {
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

/// How long the fencer may wait for a command before it must act, from the armed
/// deadline (ns of CLOCK_MONOTONIC, the clock ppoll(2) times out on), the watchdog's
/// `lead` and the time `now`: until the deadline less the lead (zero once it passed), at
/// most [`PET_INTERVAL`] while a watchdog is to be petted, and without end (None) while
/// disarmed.
fn next_wake(deadline: Option<u128>, lead: u128, now: u128, watchdog: bool) -> Option<Duration> {
    let left = deadline?.saturating_sub(lead).saturating_sub(now);
    let wait = Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX));
    Some(if watchdog { wait.min(PET_INTERVAL) } else { wait })
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
    fn sleeps_until_the_deadline_or_the_next_pet_and_without_end_when_disarmed() {
        const S: u128 = 1_000_000_000;
        assert_eq!(next_wake(None, 0, 5 * S, false), None, "disarmed: only a command wakes it");
        assert_eq!(next_wake(None, 3 * S, 5 * S, true), None, "disarmed, the watchdog is closed");
        assert_eq!(next_wake(Some(7 * S), 0, 5 * S, false), Some(Duration::from_secs(2)));
        assert_eq!(next_wake(Some(7 * S + 1), 0, 7 * S, false), Some(Duration::from_nanos(1)), "to the nanosecond");
        assert_eq!(next_wake(Some(5 * S), 0, 6 * S, false), Some(Duration::ZERO), "past the deadline: act now");
        assert_eq!(next_wake(Some(9 * S), 3 * S, 5 * S, true), Some(PET_INTERVAL), "petting the watchdog");
        assert_eq!(
            next_wake(Some(9 * S), 3 * S, 5 * S + S / 100 * 99, true),
            Some(Duration::from_millis(10)),
            "the watchdog's lead comes off"
        );
    }

    #[test]
    fn complete_lines_are_taken_and_the_rest_kept() {
        let mut buf = b"arm 1 2 3\ndisarm\narm 4".to_vec();
        assert_eq!(complete_lines(&mut buf), ["arm 1 2 3", "disarm"]);
        assert_eq!(buf, b"arm 4");
        assert!(complete_lines(&mut buf).is_empty(), "half a line is no line yet");
        buf.extend_from_slice(b" 5 6\n\xff\n");
        assert_eq!(complete_lines(&mut buf), ["arm 4 5 6", "\u{fffd}"], "not UTF-8: a line no command parses");
        assert!(buf.is_empty());
    }

    #[test]
    fn the_inbox_returns_lines_as_they_come_and_none_once_the_pipe_closes() {
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        let mut inbox = Inbox::default();
        let short = Some(Duration::from_millis(20));
        assert_eq!(inbox.wait(reader.as_fd(), short), Some(Vec::new()), "timed out");
        writer.write_all(b"disarm\narm 12 3456 7").expect("write");
        assert_eq!(inbox.wait(reader.as_fd(), None), Some(vec!["disarm".to_string()]));
        writer.write_all(b"89\narm 12 3456 78").expect("write");
        assert_eq!(inbox.wait(reader.as_fd(), None), Some(vec!["arm 12 3456 789".to_string()]), "a line split over two reads");
        drop(writer);
        assert_eq!(inbox.wait(reader.as_fd(), None), None, "closed: the line cut short is dropped");
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse_command("arm 12 345 678"), Some(Some((Target { pid: 12, start: 678 }, 345))));
        assert_eq!(parse_command("disarm"), Some(None));
        assert_eq!(parse_command("arm 12 345"), None, "an arm without the start time names no process");
        assert_eq!(parse_command("arm x 1 2"), None);
        assert_eq!(parse_command(""), None);
    }
}
