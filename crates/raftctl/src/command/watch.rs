//! `raftctl watch`: a refreshing terminal view of the cluster — the `raftctl list`
//! table (members, roles, states, lag, Raft roles and terms) and the latest HA events —
//! what learners otherwise do with `watch -n1 patronictl list`.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use crate::command::cluster::{open, scope_name, ClusterArgs};
use crate::command::events::line;
use crate::command::list::{raft_roles, render, rows, Shape};
use crate::table::Output;
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Stop after this many refreshes (default: until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// How many of the latest events to show.
    #[arg(long, default_value_t = 8)]
    pub events: usize,
}

/// One screen: the table, then the latest events.
async fn screen(api: &Api, args: &WatchArgs) -> anyhow::Result<String> {
    let (dcs, view) = open(api, &args.cluster).await?;
    let names: Vec<String> = view.members.keys().cloned().collect();
    let raft = raft_roles(api, &names).await;
    let mut out = render(scope_name(&dcs), &view, rows(&view, &raft), false, Shape::Formatted(Output::Pretty))?;
    let events = dcs.events().await.unwrap_or_default();
    let shown = &events[events.len().saturating_sub(args.events)..];
    if !shown.is_empty() {
        out.push_str("\nLatest events:\n");
        let t0 = shown[0].at_ms;
        for e in shown {
            out.push_str(&line(e, t0));
            out.push('\n');
        }
    }
    Ok(out)
}

pub async fn run(api: &Api, args: WatchArgs) -> anyhow::Result<()> {
    let interval = Duration::try_from_secs_f64(args.interval.max(0.1)).unwrap_or(Duration::from_secs(1));
    let clear = std::io::stdout().is_terminal();
    let mut shown = 0u64;
    loop {
        let body = match screen(api, &args).await {
            Ok(s) => s,
            Err(e) => format!("raftctl: {e:#}\n"),
        };
        if clear {
            print!("\x1b[2J\x1b[H");
        }
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        print!("Every {:.1}s: raftctl watch    {now}\n\n{body}", args.interval);
        shown += 1;
        if args.count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}
