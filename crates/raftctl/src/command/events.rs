//! `raftctl events [--follow]`: the HA timeline every agent records in `events/` (each
//! change of decision, with its reason), merged in time order, with times relative to
//! the first event shown: "T+0.00 node1 ..., T+2.61 node3 promoted ...".

use std::collections::HashSet;
use std::time::Duration;

use clap::Args;
use raftgres_agent::cluster::Event;

use crate::command::cluster::{open, ClusterArgs};
use crate::table::{self, Output};
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Only the last N events.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub last: usize,
    /// Keep printing new events (Ctrl-C to stop).
    #[arg(short, long)]
    pub follow: bool,
}

/// One line: wall-clock time, offset from `t0`, member, event.
pub fn line(e: &Event, t0: u64) -> String {
    let time = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(e.at_ms));
    let offset = e.at_ms.saturating_sub(t0) as f64 / 1000.0;
    format!("{time} T+{offset:<7.2} {:<8} {}", e.member, e.event)
}

pub async fn run(api: &Api, args: EventsArgs, output: Output) -> anyhow::Result<()> {
    if output == Output::Tsv {
        anyhow::bail!("events prints a timeline, not a table: -o pretty, json or yaml");
    }
    let (dcs, _) = open(api, &args.cluster).await?;
    let events = dcs.events().await?;
    let shown = &events[events.len().saturating_sub(args.last)..];
    if let Some(text) = table::structured(output, &shown)? {
        print!("{text}");
        return Ok(());
    }
    let t0 = shown.first().map_or(0, |e| e.at_ms);
    let mut seen: HashSet<(u64, String)> = HashSet::new();
    for e in shown {
        println!("{}", line(e, t0));
        seen.insert((e.at_ms, e.member.clone()));
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(events) = dcs.events().await else { continue };
        let t0 = if t0 == 0 { events.first().map_or(0, |e| e.at_ms) } else { t0 };
        for e in events {
            if seen.insert((e.at_ms, e.member.clone())) {
                println!("{}", line(&e, t0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_relative_to_the_first_event() {
        let e = Event { at_ms: 1_700_000_002_610, member: "node3".into(), event: "promoted".into() };
        let l = line(&e, 1_700_000_000_000);
        assert!(l.contains("T+2.61") && l.contains("node3") && l.ends_with("promoted"), "{l}");
        assert!(l.starts_with("2023-11-14T22:13:22.610Z"), "{l}");
    }
}
