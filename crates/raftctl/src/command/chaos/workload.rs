//! The chaos client workload: one writer per node, each inserting unique ids through
//! its node with `psql` (a new connection per write, bounded in time), and recording
//! every acknowledged insert with the node, the timeline and WAL position it was
//! written at, and when it was sent and acknowledged. Writes to a replica fail (it is
//! read-only) and are not recorded; so are writes that time out, whose outcome is
//! unknown.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::verdict::{parse_lsn, timeline_of_walfile, Ack};
use raftgres_lab::Lab;

/// The table the writers insert into.
pub const TABLE: &str = "chaos_writes";
/// One write (connect + insert) may take this long before it is abandoned.
const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
/// The pause between two writes of one writer.
const PACE: Duration = Duration::from_millis(25);

/// How to reach every node with psql.
#[derive(Clone)]
pub struct Psql {
    bin: PathBuf,
    pgpass: PathBuf,
    targets: Vec<(String, u16)>,
}

impl Psql {
    pub fn new(lab: &Lab) -> Self {
        Self {
            bin: lab.psql_bin(),
            pgpass: lab.pgpass_path(),
            targets: lab.nodes.iter().map(|n| (n.host.clone(), n.ports.postgres)).collect(),
        }
    }

    /// `psql -Atc SQL` as `postgres` on node `node`; its trimmed output, or an error
    /// (also when it took longer than [`WRITE_TIMEOUT`]).
    pub fn run(&self, node: usize, sql: &str) -> anyhow::Result<String> {
        let (host, port) = &self.targets[node];
        let mut child = Command::new(&self.bin)
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-h", host])
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg(sql)
            .env("PGPASSFILE", &self.pgpass)
            .env("PGCONNECT_TIMEOUT", "2")
            .env("PGOPTIONS", "-c statement_timeout=3000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        // Read while it runs: a long answer must not block psql on a full pipe.
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("psql on node{} timed out", node + 1);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let collect = |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        let out = collect(stdout);
        if !status.success() {
            bail!("psql on node{}: {}", node + 1, collect(stderr).trim());
        }
        Ok(out.trim().to_string())
    }

    pub fn nodes(&self) -> usize {
        self.targets.len()
    }
}

/// Reads a pipe to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The writers; [`Workload::finish`] stops them and returns what they recorded.
pub struct Workload {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workload {
    /// One writer per node, until finished or `limit` passes; times count from `t0`.
    pub fn start(psql: &Psql, t0: Instant, limit: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let next_id = Arc::new(AtomicU64::new(1));
        let deadline = Instant::now() + limit;
        let threads = (0..psql.nodes())
            .map(|node| {
                let (stop, acks, next_id, psql) = (stop.clone(), acks.clone(), next_id.clone(), psql.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        let sent = t0.elapsed();
                        let sql = format!(
                            "insert into {TABLE} (id, node) values ({id}, 'node{}') \
                             returning pg_walfile_name(pg_current_wal_lsn()), pg_current_wal_lsn()",
                            node + 1
                        );
                        if let Ok(out) = psql.run(node, &sql) {
                            let acked = t0.elapsed();
                            if let Some((timeline, lsn)) = parse_position(&out) {
                                let ack = Ack { id, node, timeline, lsn, sent, acked };
                                acks.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
                            }
                        }
                        std::thread::sleep(PACE);
                    }
                })
            })
            .collect();
        Self { stop, acks, threads }
    }

    /// The node of the earliest acknowledged write recorded so far that passes `test`
    /// (looked at in place, not copied).
    pub fn first_node(&self, test: impl Fn(&Ack) -> bool) -> Option<usize> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|a| test(a)).min_by_key(|a| a.acked).map(|a| a.node)
    }

    /// What the writers recorded so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn finish(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// `000000020000000000000003|0/3000148` → (2, 0x3000148).
fn parse_position(out: &str) -> Option<(u32, u64)> {
    let (walfile, lsn) = out.lines().next()?.split_once('|')?;
    Some((timeline_of_walfile(walfile)?, parse_lsn(lsn)?))
}

/// Creates the writers' table on `primary`.
pub fn create_table(psql: &Psql, primary: usize) -> anyhow::Result<()> {
    psql.run(primary, &format!("create table if not exists {TABLE} (id bigint primary key, node text, at timestamptz default now())"))?;
    Ok(())
}

/// Lets PostgreSQL drop the WAL segments of old timelines from the lab's small disks.
///
/// Every promotion starts a new timeline, and its first WAL segment is a fresh 16 MB file
/// on every node; PostgreSQL removes a segment only once the write position has moved
/// `wal_keep_size` (128 MB) past it. The workload writes little, so a long run piles up
/// one segment per failover (44 timelines filled the 768 MB disks within 60 rounds). A
/// switch to the next segment on `primary` moves the position on by up to 16 MB, so a
/// segment falls out of the window within 8 rounds, and a checkpoint on every node (a
/// restartpoint on replicas) removes what fell out.
pub fn recycle_wal(psql: &Psql, primary: usize) -> anyhow::Result<()> {
    psql.run(primary, "select pg_switch_wal()").context("pg_switch_wal() on the primary")?;
    psql.run(primary, "checkpoint").context("checkpoint on the primary")?;
    for node in (0..psql.nodes()).filter(|&n| n != primary) {
        psql.run(node, "checkpoint").with_context(|| format!("checkpoint (restartpoint) on replica {}", node + 1))?;
    }
    Ok(())
}

/// Every id the table holds on `node`.
pub fn ids_on(psql: &Psql, node: usize) -> anyhow::Result<std::collections::BTreeSet<u64>> {
    let out = psql.run(node, &format!("select id from {TABLE}"))?;
    out.lines().map(|l| l.trim().parse::<u64>().with_context(|| format!("unexpected id {l:?}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(parse_position("000000020000000000000003|0/3000148\n"), Some((2, 0x300_0148)));
        assert_eq!(parse_position("ERROR"), None);
    }
}
