//! Linux `/dev/watchdog` (Patroni's `watchdog:` section), driven by the fencer: opened
//! and set to `timeout` seconds when the fencer is armed for a primary, written to
//! ("petted") while the write deadline is more than `timeout` away, and closed with the
//! magic character `V` (which stops the timer) when PostgreSQL stops being a primary or
//! once the fencer has killed it. If the fencer itself cannot act (the machine hangs),
//! the device resets the machine by the write deadline: a frozen primary node is gone
//! before any other node can take the leader key.
//!
//! Modes: `off` (the default: the lab runs three nodes on one machine), `automatic`
//! (use the device if it works), `required` (a node without a working device never
//! takes the leader key). A regular file works as a fake device for tests (its timeout
//! cannot be set; everything else behaves the same).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why the watchdog cannot be used as asked.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// The timeout does not fit the device's `int`.
    #[error("timeout too large")]
    TimeoutTooLarge,
    /// The device (or a fake file) refused the timeout.
    #[error("{0}")]
    SetTimeout(#[from] nix::Error),
    #[error("cannot open {}: {source}", .device.display())]
    Open { device: PathBuf, source: std::io::Error },
    /// The magic close failed.
    #[error("cannot write to {}: {source}", .device.display())]
    Write { device: PathBuf, source: std::io::Error },
}

/// An open watchdog device.
pub struct Watchdog {
    file: File,
}

#[allow(unsafe_code)]
mod ioctl {
    // WDIOC_SETTIMEOUT from <linux/watchdog.h>: _IOWR('W', 6, int).
    nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, nix::libc::c_int);

    /// Sets the device's timeout; the kernel may round it (it writes back what it set).
    pub fn set_timeout(fd: std::os::fd::RawFd, seconds: i32) -> nix::Result<i32> {
        let mut value: nix::libc::c_int = seconds;
        // SAFETY: `fd` is an open file descriptor owned by the caller for the whole call,
        // and `value` is a live, properly aligned c_int the kernel reads and writes.
        unsafe { wdioc_settimeout(fd, &mut value) }?;
        Ok(value)
    }
}

impl Watchdog {
    /// Opens `device` (this starts the timer of a real device).
    pub fn open(device: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().append(true).open(device)?;
        Ok(Self { file })
    }

    /// Sets the timeout; Err on a device (or fake file) that does not support it.
    pub fn set_timeout(&self, seconds: u64) -> Result<i32, WatchdogError> {
        let seconds = i32::try_from(seconds).map_err(|_| WatchdogError::TimeoutTooLarge)?;
        Ok(ioctl::set_timeout(self.file.as_raw_fd(), seconds)?)
    }

    /// Keeps the machine alive for another timeout.
    pub fn pet(&mut self) -> std::io::Result<()> {
        self.file.write_all(b"1")?;
        self.file.flush()
    }

    /// Stops the timer (magic close) and closes the device.
    pub fn close(mut self) -> std::io::Result<()> {
        self.file.write_all(b"V")?;
        self.file.flush()
    }
}

/// True when `device` can be opened and closed cleanly (the probe Patroni does at start).
pub fn probe(device: &Path) -> Result<(), WatchdogError> {
    let w = Watchdog::open(device).map_err(|source| WatchdogError::Open { device: device.to_path_buf(), source })?;
    w.close().map_err(|source| WatchdogError::Write { device: device.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_device_gets_pets_and_the_magic_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("watchdog");
        std::fs::write(&path, "").expect("fake device");
        probe(&path).expect("probe");
        let mut w = Watchdog::open(&path).expect("open");
        assert!(w.set_timeout(5).is_err(), "a regular file has no timeout");
        w.pet().expect("pet");
        w.pet().expect("pet");
        w.close().expect("close");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "V11V");
        assert!(probe(&dir.path().join("missing")).is_err());
    }
}
