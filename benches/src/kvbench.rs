//! `kvbench`: one etcd v3 load generator, pointed at etcd or at raftgres alike.
//!
//! For each concurrency level it runs `--seconds` of puts (each client waits for its
//! answer before sending the next, like etcd's own `benchmark put`), then linearizable
//! and serializable single-key ranges, and prints one JSON line per phase:
//! `{"phase":"put","clients":16,"ops":..,"errors":..,"leader_changed":..,"ops_per_sec":..,"p50_ms":..,"p99_ms":..}`.
//! A failed request is counted (`errors`; those refused with etcd's `leader changed`
//! also in `leader_changed`) and the phase goes on: a benchmark reports what happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::{PutRequest, RangeRequest};
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
struct Args {
    /// Comma-separated endpoints; clients are spread over them.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Concurrency levels to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    clients: Vec<usize>,
    /// Duration of each phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Upper bound on operations per phase (keeps every run bounded).
    #[arg(long, default_value_t = 2_000_000)]
    max_ops: usize,
    /// gRPC connections shared by the clients (etcd's benchmark defaults to 1 per endpoint).
    #[arg(long, default_value_t = 8)]
    conns: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Phases to run.
    #[arg(long, value_delimiter = ',', default_value = "put,range-linearizable,range-serializable")]
    phases: Vec<String>,
}

#[derive(Serialize)]
struct PhaseResult {
    phase: String,
    clients: usize,
    ops: usize,
    errors: usize,
    /// Errors that were etcd's `etcdserver: leader changed`.
    leader_changed: usize,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn channels(args: &Args) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for i in 0..args.conns.max(1) {
        let ep = &args.endpoints[i % args.endpoints.len()];
        let url = if ep.contains("://") { ep.clone() } else { format!("http://{ep}") };
        out.push(Endpoint::from_shared(url)?.timeout(Duration::from_secs(10)).connect().await?);
    }
    Ok(out)
}

async fn run_phase(phase: &str, clients: usize, chans: &[Channel], args: &Args) -> anyhow::Result<PhaseResult> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let budget = Arc::new(std::sync::atomic::AtomicUsize::new(args.max_ops));
    let value = vec![b'x'; args.value_size];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut kv = KvClient::new(chans[c % chans.len()].clone());
        let (phase, value, budget) = (phase.to_string(), value.clone(), budget.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = Failures::default();
            let mut i = 0u64;
            while Instant::now() < deadline
                && budget
                    .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |b| b.checked_sub(1))
                    .is_ok()
            {
                i += 1;
                let key = format!("/bench/{c}/{}", i % 1000).into_bytes();
                let t = Instant::now();
                let result = match phase.as_str() {
                    "put" => kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await.map(drop),
                    "range-linearizable" | "range-serializable" => {
                        let serializable = phase == "range-serializable";
                        let key = format!("/bench/{c}/0").into_bytes();
                        kv.range(RangeRequest { key, serializable, ..Default::default() }).await.map(drop)
                    }
                    other => unreachable!("phase {other} is checked before the run"),
                };
                match result {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(status) => failed.count(&status),
                }
            }
            (lat, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed = Failures::default();
    for t in tasks {
        let (lat, f) = t.await?;
        all.extend(lat);
        failed.errors += f.errors;
        failed.leader_changed += f.leader_changed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[idx].as_secs_f64() * 1000.0
    };
    Ok(PhaseResult {
        phase: phase.to_string(),
        clients,
        ops: all.len(),
        errors: failed.errors,
        leader_changed: failed.leader_changed,
        ops_per_sec: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

/// Failed requests of one phase.
#[derive(Default)]
struct Failures {
    errors: usize,
    leader_changed: usize,
}

impl Failures {
    fn count(&mut self, status: &tonic::Status) {
        self.errors += 1;
        if is_leader_changed(status) {
            self.leader_changed += 1;
        }
    }
}

/// etcd's answer to a request whose leader lost its term before the request committed.
fn is_leader_changed(status: &tonic::Status) -> bool {
    status.message().contains("leader changed")
}

const PHASES: [&str; 3] = ["put", "range-linearizable", "range-serializable"];

/// How often a seed put refused with `leader changed` is sent again (it is idempotent).
const SEED_ATTEMPTS: usize = 10;

/// Puts the keys the range phases read; a put refused with `leader changed` is sent
/// again, so one election does not end the benchmark.
async fn seed(chan: &Channel, clients: usize) -> anyhow::Result<()> {
    let mut kv = KvClient::new(chan.clone());
    for c in 0..clients {
        let put = PutRequest { key: format!("/bench/{c}/0").into_bytes(), value: b"seed".to_vec(), ..Default::default() };
        let mut attempt = 1;
        while let Err(status) = kv.put(put.clone()).await {
            anyhow::ensure!(is_leader_changed(&status) && attempt < SEED_ATTEMPTS, "seeding /bench/{c}/0: {status}");
            eprintln!("kvbench: seeding /bench/{c}/0: {}: sending it again", status.message());
            attempt += 1;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(!args.endpoints.is_empty(), "--endpoints is required");
    if let Some(unknown) = args.phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
        anyhow::bail!("unknown phase '{unknown}' (expected {})", PHASES.join(", "));
    }
    let chans = channels(&args).await?;
    if args.phases.iter().any(|p| p.starts_with("range")) {
        seed(&chans[0], args.clients.iter().copied().max().unwrap_or(1)).await?;
    }
    for phase in &args.phases {
        for &clients in &args.clients {
            let result = run_phase(phase, clients, &chans, &args).await?;
            println!("{}", serde_json::to_string(&result)?);
        }
    }
    Ok(())
}
