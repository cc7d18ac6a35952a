//! Waiting for a process to end without polling. A pidfd (`pidfd_open`, Linux ≥ 5.3)
//! becomes readable when its process exits, whoever its parent is: the postmaster
//! `pg_ctl` started (init's child, not the agent's) or one the agent adopted. The HA
//! loop learns of a postmaster's death the moment it happens, and sleeps until then.
//!
//! Where pidfds are not available (an older kernel, a seccomp filter that refuses the
//! call), [`ProcessExit::watch`] says so and the caller polls instead.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A watch on one process's exit.
pub struct ProcessExit {
    fd: AsyncFd<OwnedFd>,
}

#[allow(unsafe_code)]
fn pidfd_open(pid: i32) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open(2) takes a pid and flags by value and returns a new file
    // descriptor or -1; no memory is shared with the kernel.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other(format!("pidfd_open returned {fd}")))?;
    // SAFETY: `fd` was just returned by the kernel (close-on-exec) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the `OwnedFd` keeps the descriptor open, and the same, for as long as the
    // `AsyncFd` that owns it lives.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

impl ProcessExit {
    /// Watches process `pid`. Fails with `ESRCH` when no such process exists (it may
    /// have ended already), and with another error when pidfds are not available.
    pub fn watch(pid: i32) -> io::Result<Self> {
        Ok(Self { fd: pidfd_open(pid)? })
    }

    /// Returns once the process has exited (a zombie not yet reaped has exited).
    pub async fn exited(&self) -> io::Result<()> {
        self.fd.readable().await.map(|_| ())
    }
}

/// True when `e` says the process does not exist (rather than that pidfds do not work).
pub fn no_such_process(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    #[tokio::test]
    async fn reports_a_killed_process_and_not_a_running_one() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        let exit = ProcessExit::watch(pid).expect("pidfd_open works on Linux >= 5.3");
        assert!(tokio::time::timeout(Duration::from_millis(200), exit.exited()).await.is_err(), "sleep still runs");
        child.kill().expect("kill");
        // Not reaped yet: a zombie has exited all the same.
        tokio::time::timeout(Duration::from_secs(2), exit.exited()).await.expect("seen within 2 s").expect("readable");
        child.wait().expect("wait");
        let gone = ProcessExit::watch(pid).err().expect("a reaped process cannot be watched");
        assert!(no_such_process(&gone), "{gone}");
    }
}
