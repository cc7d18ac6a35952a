//! `kvbench`: one etcd v3 load generator, pointed at etcd or at raftgres alike.
//!
//! For each concurrency level it runs `--seconds` of puts (each client waits for its
//! answer before sending the next, like etcd's own `benchmark put`), then linearizable
//! and serializable single-key ranges, and prints one JSON line per phase:
//! `{"phase":"put","clients":16,"ops":..,"ops_per_sec":..,"p50_ms":..,"p99_ms":..}`.

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
            let mut errors = 0usize;
            let mut i = 0u64;
            while Instant::now() < deadline
                && budget
                    .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |b| b.checked_sub(1))
                    .is_ok()
            {
                i += 1;
                let key = format!("/bench/{c}/{}", i % 1000).into_bytes();
                let t = Instant::now();
                let ok = match phase.as_str() {
                    "put" => kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await.is_ok(),
                    "range-linearizable" | "range-serializable" => {
                        let serializable = phase == "range-serializable";
                        let key = format!("/bench/{c}/0").into_bytes();
                        kv.range(RangeRequest { key, serializable, ..Default::default() }).await.is_ok()
                    }
                    _ => false,
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
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
        errors,
        ops_per_sec: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(!args.endpoints.is_empty(), "--endpoints is required");
    let chans = channels(&args).await?;
    // Seed the keys the range phases read.
    let mut kv = KvClient::new(chans[0].clone());
    for c in 0..args.clients.iter().copied().max().unwrap_or(1) {
        kv.put(PutRequest { key: format!("/bench/{c}/0").into_bytes(), value: b"seed".to_vec(), ..Default::default() }).await?;
    }
    for phase in &args.phases {
        for &clients in &args.clients {
            let result = run_phase(phase, clients, &chans, &args).await?;
            println!("{}", serde_json::to_string(&result)?);
        }
    }
    Ok(())
}
