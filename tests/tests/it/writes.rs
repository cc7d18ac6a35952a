//! What the PostgreSQL fault tests share: the seeded start ([`seed`]), a writer that inserts unique rows into every
//! node in turn and records each acknowledged insert, the split-brain check over those
//! records, and a wrapper that prints the nodes' logs when a test fails.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raftgres_tests::lab::Lab;

/// The writer stops by itself after this, whatever happens to the test.
const WRITER_LIMIT: Duration = Duration::from_secs(120);

pub fn create_table(lab: &Lab, primary: usize) -> anyhow::Result<()> {
    lab.psql(primary, "create table if not exists t (v text primary key, at timestamptz default now())")?;
    Ok(())
}

/// The start most lab tests share: table `t` on the primary, with row `marker`
/// replayed by every replica (one primary, every replica streaming). Returns the primary.
pub fn seed(lab: &Lab, marker: &str, heal: Duration) -> anyhow::Result<usize> {
    let primary = lab.primary()?;
    create_table(lab, primary)?;
    lab.psql(primary, &format!("insert into t(v) values ('{marker}')"))?;
    lab.wait_healthy(heal, marker)
}

/// Runs `body`; on failure prints every node's log tail (a returned error does not
/// unwind, so `Lab`'s drop would not print them).
pub fn with_logs<T>(lab: &Lab, body: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let result = body();
    if result.is_err() {
        eprintln!("{}", lab.logs());
    }
    result
}

/// One acknowledged write: which node took it, when it was sent and when it was acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    pub node: usize,
    pub row: u64,
    pub sent: Instant,
    pub acked: Instant,
}

/// A background writer; [`Writer::finish`] stops it and returns what it recorded.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    /// Inserts that failed, with the error of each.
    failures: Arc<Mutex<Vec<(usize, u64, String)>>>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Inserts `w<n>` rows into every node in turn until finished (or [`WRITER_LIMIT`]).
    pub fn start(lab: Arc<Lab>) -> Self {
        let nodes = (0..lab.nodes).collect();
        Self::start_on(lab, nodes, Duration::ZERO)
    }

    /// Inserts `w<n>` rows into `nodes` in turn, `gap` apart, until finished (or
    /// [`WRITER_LIMIT`]).
    pub fn start_on(lab: Arc<Lab>, nodes: Vec<usize>, gap: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, acks, failures) = (stop.clone(), acks.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut row = 0u64;
                let deadline = Instant::now() + WRITER_LIMIT;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for &node in &nodes {
                        row += 1;
                        let sent = Instant::now();
                        match lab.psql(node, &format!("insert into t(v) values ('w{row}')")) {
                            Ok(_) => {
                                let ack = Ack { node, row, sent, acked: Instant::now() };
                                acks.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
                            }
                            Err(e) => failures.lock().unwrap_or_else(|e| e.into_inner()).push((node, row, format!("{e:#}"))),
                        }
                        std::thread::sleep(gap);
                    }
                }
            })
        };
        Self { stop, acks, failures, thread }
    }

    /// The inserts that failed so far: (node, row, error).
    pub fn failures(&self) -> Vec<(usize, u64, String)> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first node other than `old` that acknowledged a write, if any yet.
    pub fn other_writer(&self, old: usize) -> Option<usize> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|a| a.node != old).map(|a| a.node)
    }

    pub fn finish(self) -> anyhow::Result<Vec<Ack>> {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            anyhow::bail!("the writer thread panicked");
        }
        Ok(self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Acks per node and the edges of each node's write window, relative to `t0`, for
/// failure messages.
pub fn timeline(acks: &[Ack], t0: Instant) -> String {
    let nodes: BTreeSet<usize> = acks.iter().map(|a| a.node).collect();
    let ms = |t: Instant| t.saturating_duration_since(t0).as_millis();
    nodes
        .iter()
        .map(|&n| {
            let mine: Vec<&Ack> = acks.iter().filter(|a| a.node == n).collect();
            let first = mine.iter().map(|a| a.sent).min().map_or(0, ms);
            let last = mine.iter().map(|a| a.acked).max().map_or(0, ms);
            format!("node{}: {} acks, first sent at {first} ms, last acked at {last} ms", n + 1, mine.len())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Only `old` and `new` ever acknowledged writes, and `old` acknowledged none after the
/// first write `new` acknowledged was sent: never two writable primaries.
pub fn assert_one_writer_at_a_time(acks: &[Ack], old: usize, new: usize, t0: Instant) {
    let story = timeline(acks, t0);
    let writers: BTreeSet<usize> = acks.iter().map(|a| a.node).collect();
    assert!(writers.is_subset(&BTreeSet::from([old, new])), "only the old and the new primary ever acknowledged writes ({story})");
    assert!(writers.contains(&new), "the new primary acknowledged writes ({story})");
    let first_new = acks.iter().filter(|a| a.node == new).min_by_key(|a| a.sent).map(|a| (a.sent, a.row));
    if let Some((first_new_sent, first_row)) = first_new {
        let late: Vec<u64> = acks.iter().filter(|a| a.node == old && a.acked > first_new_sent).map(|a| a.row).collect();
        assert!(
            late.is_empty(),
            "node{} acknowledged rows {late:?} after w{first_row}, the first write node{} acknowledged, was sent: \
             two writable primaries ({story})",
            old + 1,
            new + 1
        );
    }
}
