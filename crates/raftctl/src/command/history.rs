//! `raftctl history`: the promotions recorded in `/history`, as `patronictl history`.

use clap::Args;

use crate::command::cluster::{open, ClusterArgs};
use crate::table::render;
use crate::table::Output;
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub async fn run(api: &Api, args: HistoryArgs, output: Output) -> anyhow::Result<()> {
    let (_, view) = open(api, &args.cluster).await?;
    if let Output::Json = output {
        println!("{}", serde_json::to_string_pretty(&view.history)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = view
        .history
        .iter()
        .map(|h| vec![h.0.to_string(), raftgres_agent::cluster::format_lsn(h.1), h.2.clone(), h.3.clone(), h.4.clone()])
        .collect();
    print!("{}", render(&["TL", "LSN", "Reason", "Timestamp", "New Leader"], &rows));
    Ok(())
}
