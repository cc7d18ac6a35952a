//! The agent's handle on a real fencer process (`raftgres __fencer`), with this test as
//! the agent and a `sleep` as the postmaster: a fencer that was killed or stopped is
//! replaced at the next arm and fences on time; the terminal's signals do not end it; a
//! fencer that stops reading never blocks the agent.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raftgres_agent::fence::Fencer;
use raftgres_agent::timing::FENCE_LATENCY;
use raftgres_tests::bin;

/// A stand-in postmaster.
fn postmaster() -> (Child, i32) {
    let child = Command::new("sleep").arg("60").spawn().expect("sleep");
    let pid = i32::try_from(child.id()).expect("pid");
    (child, pid)
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args(["-s", signal, &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill -s {signal} {pid}");
}

/// `(state, process group)` of `pid` from /proc/PID/stat (`X` once it is gone), as soon
/// as `wanted` accepts the state (signals are asynchronous), or after 2 s.
fn await_state(pid: u32, wanted: impl Fn(char) -> bool) -> (char, u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = text.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let state = fields.first().and_then(|s| s.chars().next()).unwrap_or('X');
        if wanted(state) || Instant::now() >= deadline {
            return (state, fields.get(2).and_then(|g| g.parse().ok()).unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Arms `fencer` on a fresh stand-in postmaster with a deadline 300 ms away and checks
/// that it is killed after the deadline and within the fencer's latency of it.
fn fences_on_time(fencer: &mut Fencer) {
    let (mut victim, pid) = postmaster();
    let deadline = Instant::now() + Duration::from_millis(300);
    fencer.arm(pid, deadline);
    let limit = deadline + FENCE_LATENCY;
    while victim.try_wait().expect("try_wait").is_none() && Instant::now() < limit + Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = Instant::now();
    let _ = victim.kill();
    assert!(killed >= deadline, "fenced {:?} before the deadline", deadline - killed);
    assert!(killed <= limit, "fenced {:?} after the deadline (or never), more than the fencer's latency", killed - deadline);
}

/// The fencer is hit by `sig` (and thawed if stopped); the next arm must replace it.
fn replaced_after(sig: &str) {
    let mut fencer = Fencer::spawn(&bin("raftgres"), None).expect("fencer");
    let old = fencer.pid();
    signal(old, sig);
    let (state, _) = await_state(old, |s| matches!(s, 'Z' | 'T'));
    assert!(matches!(state, 'Z' | 'T'), "the fencer was hit by SIG{sig} (state {state})");
    fences_on_time(&mut fencer);
    assert_ne!(fencer.pid(), old, "a new fencer");
    assert_eq!(await_state(old, |s| s == 'X').0, 'X', "the old fencer is gone (killed and reaped)");
}

#[test]
fn a_killed_fencer_is_replaced_at_the_next_arm_and_fences_on_time() {
    replaced_after("KILL");
}

#[test]
fn a_stopped_fencer_is_replaced_at_the_next_arm_and_fences_on_time() {
    replaced_after("STOP");
}

#[test]
fn terminal_signals_neither_stop_nor_end_the_fencer() {
    let mut fencer = Fencer::spawn(&bin("raftgres"), None).expect("fencer");
    let pid = fencer.pid();
    assert_eq!(await_state(pid, |s| s == 'S').1, pid, "the fencer leads a process group of its own");
    for sig in ["INT", "QUIT", "HUP", "TSTP", "TTIN", "TTOU"] {
        signal(pid, sig);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (state, _) = await_state(pid, |s| s == 'S');
    assert!(!matches!(state, 'T' | 'Z' | 'X'), "the fencer still runs (state {state})");
    fences_on_time(&mut fencer);
    assert_eq!(fencer.pid(), pid, "the same fencer did it");
}

#[test]
fn a_fencer_that_stops_reading_never_blocks_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("deaf-fencer");
    std::fs::write(&exe, "#!/bin/sh\nexec sleep 60\n").expect("script");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (mut victim, pid) = postmaster();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let mut fencer = Fencer::spawn(&exe, None).expect("fencer");
        let far = Instant::now() + Duration::from_secs(3600);
        // ~400 kB of commands, six times what a pipe buffers.
        for ms in 0..10_000 {
            fencer.arm(pid, far + Duration::from_millis(ms));
        }
        let _ = done.send(fencer);
    });
    let fencer = finished.recv_timeout(Duration::from_secs(5));
    let _ = victim.kill();
    assert!(fencer.is_ok(), "arming blocked on a fencer that does not read its pipe");
}

#[test]
fn a_replaced_fencer_leaves_no_watchdog_timer_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = dir.path().join("fake-watchdog");
    std::fs::write(&device, "").expect("fake device");
    let petted = || std::fs::read_to_string(&device).unwrap_or_default();
    let mut fencer = Fencer::spawn(&bin("raftgres"), Some((&device, 1))).expect("fencer");
    let (mut victim, pid) = postmaster();
    fencer.arm(pid, Instant::now() + Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !petted().contains('1') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(petted().contains('1'), "the armed fencer keeps the watchdog alive");
    // Killed while armed: the device is closed without the magic `V`, its timer runs on.
    signal(fencer.pid(), "KILL");
    await_state(fencer.pid(), |s| s == 'Z');
    fencer.disarm();
    std::thread::sleep(Duration::from_millis(200));
    let _ = victim.kill();
    assert!(petted().ends_with('V'), "the timer was stopped once the fencer was replaced: {:?}", petted());
}
