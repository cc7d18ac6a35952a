//! The Raft log's flusher: one OS thread that makes appended entries durable.
//!
//! Appends hand their flush callback to the thread and return at once. The thread takes
//! every callback waiting at that moment, runs one sync for all of them (group commit)
//! and acknowledges them. A dedicated thread rather than a task plus `spawn_blocking`:
//! each acknowledgement is one thread wake-up fewer, which is most of a single client's
//! write latency on a small machine.
//!
//! A disk that stops answering must not leave Raft waiting forever: a watchdog task
//! fails the batch in flight once a sync has taken longer than the I/O timeout, so the
//! node stops (to be restarted) instead of hanging. The backend is dropped on the
//! flusher thread, never on an async worker (sled's drop can block after a disk error).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::storage::IOFlushed;

use crate::backend::LogBackend;
use crate::metrics::StoreMetrics;
use crate::types::TypeConfig;

type Callback = IOFlushed<TypeConfig>;

/// The batch being synced and when its sync began.
type InFlight = Arc<Mutex<Option<(Instant, Vec<Callback>)>>>;

/// Hands flush callbacks to the flusher thread.
#[derive(Clone)]
pub struct Flusher {
    queue: mpsc::Sender<Callback>,
}

impl Flusher {
    /// Starts the flusher thread for `backend` and its watchdog (needs a tokio
    /// runtime); each sync's duration goes to `metrics`.
    pub fn start<B: LogBackend>(backend: B, metrics: Arc<StoreMetrics>, io_timeout: Duration) -> std::io::Result<Self> {
        let (queue, pending) = mpsc::channel();
        let in_flight: InFlight = Arc::default();
        let thread_in_flight = in_flight.clone();
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_thread(backend, pending, thread_in_flight, metrics))?;
        tokio::spawn(watchdog(in_flight, io_timeout));
        Ok(Self { queue })
    }

    /// Acknowledges `callback` once everything appended before this call is durable.
    pub fn flush(&self, callback: Callback) {
        if let Err(mpsc::SendError(callback)) = self.queue.send(callback) {
            callback.io_completed(Err(std::io::Error::other("the log flusher stopped")));
        }
    }
}

fn flush_thread<B: LogBackend>(backend: B, pending: mpsc::Receiver<Callback>, in_flight: InFlight, metrics: Arc<StoreMetrics>) {
    while let Ok(first) = pending.recv() {
        let mut batch = vec![first];
        batch.extend(pending.try_iter());
        let started = Instant::now();
        *in_flight.lock().unwrap_or_else(|p| p.into_inner()) = Some((started, batch));
        let result = backend.sync().map_err(|e| e.to_string());
        metrics.fsync.observe(started.elapsed());
        // Gone if the watchdog already failed them.
        let Some((_, batch)) = in_flight.lock().unwrap_or_else(|p| p.into_inner()).take() else { continue };
        for callback in batch {
            callback.io_completed(result.clone().map_err(std::io::Error::other));
        }
    }
}

/// Fails the batch in flight when its sync has not returned within `io_timeout`.
async fn watchdog(in_flight: InFlight, io_timeout: Duration) {
    let mut tick = tokio::time::interval((io_timeout / 10).max(Duration::from_millis(10)));
    loop {
        tick.tick().await;
        if Arc::strong_count(&in_flight) == 1 {
            return; // the flusher thread ended
        }
        let stuck = {
            let mut slot = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some((started, _)) if started.elapsed() > io_timeout => slot.take(),
                _ => None,
            }
        };
        if let Some((_, batch)) = stuck {
            tracing::error!("the disk did not answer a log sync within {io_timeout:?}: failing the write");
            for callback in batch {
                callback.io_completed(Err(std::io::Error::other(format!("the disk did not answer within {io_timeout:?}"))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;
    use openraft::type_config::TypeConfigExt;

    /// A backend whose sync blocks until released.
    #[derive(Clone)]
    struct StuckDisk(Arc<(Mutex<bool>, std::sync::Condvar)>);

    impl LogBackend for StuckDisk {
        fn append(&self, _: Vec<(u64, Vec<u8>)>) -> Result<(), BackendError> {
            Ok(())
        }
        fn sync(&self) -> Result<(), BackendError> {
            let (released, cv) = &*self.0;
            let mut r = released.lock().unwrap_or_else(|p| p.into_inner());
            while !*r {
                r = cv.wait(r).unwrap_or_else(|p| p.into_inner());
            }
            Ok(())
        }
        fn range(&self, _: u64, _: u64) -> Result<Vec<(u64, Vec<u8>)>, BackendError> {
            Ok(Vec::new())
        }
        fn last(&self) -> Result<Option<(u64, Vec<u8>)>, BackendError> {
            Ok(None)
        }
        fn truncate_from(&self, _: u64) -> Result<(), BackendError> {
            Ok(())
        }
        fn purge_upto(&self, _: u64) -> Result<(), BackendError> {
            Ok(())
        }
        fn put_meta(&self, _: &str, _: Vec<u8>) -> Result<(), BackendError> {
            Ok(())
        }
        fn get_meta(&self, _: &str) -> Result<Option<Vec<u8>>, BackendError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn a_sync_that_never_returns_fails_the_write() {
        let disk = StuckDisk(Arc::default());
        let flusher = Flusher::start(disk.clone(), Arc::default(), Duration::from_millis(200)).expect("start");
        let (tx, rx) = TypeConfig::oneshot();
        flusher.flush(IOFlushed::signal(tx));
        let result = tokio::time::timeout(Duration::from_secs(5), rx).await.expect("answered in time").expect("sent");
        let err = result.expect_err("a stuck disk fails the write");
        assert!(err.to_string().contains("did not answer"), "{err}");
        // Released, the thread goes on serving later flushes.
        *disk.0 .0.lock().expect("lock") = true;
        disk.0 .1.notify_all();
        let (tx, rx) = TypeConfig::oneshot();
        flusher.flush(IOFlushed::signal(tx));
        let result = tokio::time::timeout(Duration::from_secs(5), rx).await.expect("answered").expect("sent");
        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn flushes_are_acknowledged_after_the_sync() {
        let disk = StuckDisk(Arc::new((Mutex::new(true), std::sync::Condvar::new())));
        let metrics: Arc<StoreMetrics> = Arc::default();
        let flusher = Flusher::start(disk, metrics, Duration::from_secs(10)).expect("start");
        let mut waiting = Vec::new();
        for _ in 0..20 {
            let (tx, rx) = TypeConfig::oneshot();
            flusher.flush(IOFlushed::signal(tx));
            waiting.push(rx);
        }
        for rx in waiting {
            let result = tokio::time::timeout(Duration::from_secs(5), rx).await.expect("in time").expect("sent");
            assert!(result.is_ok(), "{result:?}");
        }
    }
}
