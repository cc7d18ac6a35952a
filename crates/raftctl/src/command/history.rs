//! `raftctl history`: the promotions recorded in `/history`, as `patronictl history`
//! prints them (`-f pretty|tsv|json|yaml`; the LSN as the byte position, as Patroni
//! stores it).

use clap::Args;
use raftgres_agent::cluster::HistoryEntry;

use crate::command::cluster::{open, ClusterArgs};
use crate::table::{format, Output, Table};
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format (pretty, tsv, json, yaml); overrides -o.
    #[arg(short = 'f', long, value_enum)]
    pub format: Option<Output>,
}

/// patronictl's history table.
pub fn table(history: &[HistoryEntry]) -> Table {
    let rows = history.iter().map(|h| vec![h.0.into(), h.1.into(), h.2.clone().into(), h.3.clone().into(), h.4.clone().into()]);
    Table {
        title: None,
        columns: ["TL", "LSN", "Reason", "Timestamp", "New Leader"].map(str::to_string).to_vec(),
        rows: rows.collect(),
        omit_empty: false,
    }
}

pub async fn run(api: &Api, args: HistoryArgs, global: Option<Output>) -> anyhow::Result<()> {
    let (_, view) = open(api, &args.cluster).await?;
    print!("{}", format(Output::pick(args.format, global, Output::Pretty), &table(&view.history), "\t")?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn history_rows_keep_numbers() {
        let entry =
            super::HistoryEntry(1, 50_331_808, "no recovery target specified".into(), "2026-12-06T20:00:00+00:00".into(), "node2".into());
        let json = super::format(super::Output::Json, &super::table(&[entry]), "\t").expect("json");
        assert_eq!(
            json,
            "[{\"TL\": 1, \"LSN\": 50331808, \"Reason\": \"no recovery target specified\", \"Timestamp\": \"2026-12-06T20:00:00+00:00\", \"New Leader\": \"node2\"}]\n"
        );
    }
}
