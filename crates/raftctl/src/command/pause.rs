//! `raftctl pause` / `raftctl resume`: maintenance mode (`pause` in `/config`). With
//! `--wait`, until every member's REST API reports the new mode.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use raftgres_agent::ops;

use crate::command::cluster::{open, ClusterArgs};
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Wait until every member has seen the change.
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(api: &Api, args: PauseArgs, pause: bool) -> anyhow::Result<()> {
    let (dcs, view) = open(api, &args.cluster).await?;
    println!("{}", ops::set_pause(&dcs, pause).await?);
    if !args.wait {
        return Ok(());
    }
    let started = Instant::now();
    let urls: Vec<(String, String)> = view.members.iter().map(|(n, m)| (n.clone(), m.api_url.clone())).collect();
    let mut waiting: Vec<String> = urls.iter().map(|(n, _)| n.clone()).collect();
    while !waiting.is_empty() && started.elapsed() < Duration::from_secs(30) {
        let mut still = Vec::new();
        for (name, url) in urls.iter().filter(|(n, _)| waiting.contains(n)) {
            let body = api.rest().get(url).await.unwrap_or_default();
            let paused = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("pause").and_then(serde_json::Value::as_bool))
                .unwrap_or(false);
            if paused != pause {
                still.push(name.clone());
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if !waiting.is_empty() {
        bail!("{} did not report the change within 30 s", waiting.join(", "));
    }
    println!("every member {} ({:.1} s)", if pause { "is paused" } else { "resumed" }, started.elapsed().as_secs_f64());
    Ok(())
}
