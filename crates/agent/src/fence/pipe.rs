//! The agent's end of the fencer's stdin, written by a thread of its own, so the caller
//! (the HA loop and the lease task, on async workers, holding the fencer's lock) never
//! blocks on a fencer that stopped reading with a full pipe (frozen, or stuck writing
//! its log to a hung disk). Each command replaces the fencer's whole state, so a command
//! not written yet is replaced by a newer one rather than queued: memory stays bounded
//! however long the fencer is stuck, and it reads the latest state once it reads again.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Hands lines to the writer thread; closing (drop) lets it write the last one and end.
pub struct Pipe {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
}

#[derive(Default)]
struct Slot {
    next: Option<String>,
    closed: bool,
    /// The write error that ended the writer.
    broken: Option<String>,
}

impl Pipe {
    /// Starts the writer thread on `out`.
    pub fn new(out: impl Write + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        std::thread::Builder::new().name("fencer-pipe".into()).spawn(move || writer.run(out))?;
        Ok(Self { shared })
    }

    /// Queues `line` (without its newline), replacing any line not written yet.
    pub fn send(&self, line: String) {
        self.shared.lock().next = Some(line);
        self.shared.wake.notify_one();
    }

    /// Why the last write failed, once one did (the writer has ended then).
    pub fn broken(&self) -> Option<String> {
        self.shared.lock().broken.clone()
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next line to write; None once closed with nothing left.
    fn next(&self) -> Option<String> {
        let mut slot = self.lock();
        loop {
            if let Some(line) = slot.next.take() {
                return Some(line);
            }
            if slot.closed {
                return None;
            }
            slot = self.wake.wait(slot).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Writes lines until closed or a write fails; `out` closes when this returns.
    fn run(&self, mut out: impl Write) {
        while let Some(line) = self.next() {
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                self.lock().broken = Some(e.to_string());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn sends_never_wait_for_a_reader_and_the_latest_line_arrives() {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let pipe = Pipe::new(writer).expect("writer thread");
        let started = Instant::now();
        // ~1 MB, many times what a pipe buffers, while nobody reads.
        for i in 0..50_000 {
            pipe.send(format!("arm 1 {i:020} 2"));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "sending took {:?}", started.elapsed());
        drop(pipe);
        let lines: Vec<String> = BufReader::new(reader).lines().map(|l| l.expect("line")).collect();
        assert_eq!(lines.last().map(String::as_str), Some(format!("arm 1 {:020} 2", 49_999).as_str()));
        assert!(lines.len() < 50_000, "lines not written yet were replaced, not queued ({} written)", lines.len());
    }

    #[test]
    fn a_closed_reader_is_reported() {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let pipe = Pipe::new(writer).expect("writer thread");
        pipe.send("disarm".into());
        let deadline = Instant::now() + Duration::from_secs(5);
        while pipe.broken().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(pipe.broken().is_some_and(|e| e.contains("pipe")), "{:?}", pipe.broken());
    }
}
