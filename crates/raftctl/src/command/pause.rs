//! `raftctl pause` / `raftctl resume`: maintenance mode (`pause` in `/config`). With
//! `--wait`, until every member's REST API reports the new mode.
//!
//! `resume` first checks that it is safe ([`resume_blockers`]): while paused, a stopped
//! agent leaves its PostgreSQL running without a fencer, and once resumed another node
//! may take the key of a primary whose agent is away while it still runs
//! (`crates/agent/SAFETY.md`, "Pause across an agent restart"). So `resume` refuses,
//! naming them, while an agent is away: its last event on the HA timeline says it
//! stopped while paused (a stopping replica's member key goes at once, so the keys
//! alone cannot tell), or its member's REST API does not answer; and while no member
//! holds the leader key. `--force` resumes anyway.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use raftgres_agent::cluster::{ClusterView, Event, AWAY_WHILE_PAUSED};
use raftgres_agent::ops;

use crate::command::cluster::{open, ClusterArgs};
use raftgres_client::Api;

/// How long a member's REST API may take to answer `resume`'s check.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Wait until every member has seen the change.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub pause: PauseArgs,
    /// Resume even while a member's agent does not answer or no member holds the leader key.
    #[arg(long)]
    pub force: bool,
}

pub async fn pause(api: &Api, args: PauseArgs) -> anyhow::Result<()> {
    let (dcs, view) = open(api, &args.cluster).await?;
    println!("{}", ops::set_pause(&dcs, true).await?);
    wait(api, &view, &args, true).await
}

pub async fn resume(api: &Api, args: ResumeArgs) -> anyhow::Result<()> {
    let (dcs, view) = open(api, &args.pause.cluster).await?;
    if view.paused() && !args.force {
        let mut silent = away(&dcs.events().await?);
        for (name, member) in &view.members {
            let answer = tokio::time::timeout(ANSWER_TIMEOUT, api.rest().request("GET", &member.api_url, None, None)).await;
            if !matches!(answer, Ok(Ok(_))) && !silent.contains(name) {
                silent.push(name.clone());
            }
        }
        if let Some(why) = resume_blockers(&view, &silent) {
            bail!("not resuming: {why}; start the agents first (raftgres on each node), or resume anyway with --force");
        }
    }
    println!("{}", ops::set_pause(&dcs, false).await?);
    wait(api, &view, &args.pause, false).await
}

/// The members whose last event on the HA timeline says their agent stopped while
/// paused (`events` oldest first, as the store returns them).
pub fn away(events: &[Event]) -> Vec<String> {
    let mut last = std::collections::BTreeMap::new();
    for e in events {
        last.insert(e.member.as_str(), e.event.as_str());
    }
    last.into_iter().filter(|(_, event)| event.starts_with(AWAY_WHILE_PAUSED)).map(|(member, _)| member.to_string()).collect()
}

/// Why resuming `view` now is unsafe (None: it is safe), given the members whose
/// agent did not answer (`silent`).
pub fn resume_blockers(view: &ClusterView, silent: &[String]) -> Option<String> {
    let mut why = Vec::new();
    if !silent.is_empty() {
        let (verb, whose) = if silent.len() == 1 { ("does", "its") } else { ("do", "their") };
        why.push(format!(
            "the agent of {} {verb} not answer (REST API): {whose} PostgreSQL runs unmanaged and unfenced",
            silent.join(", ")
        ));
    }
    if view.leader.is_none() {
        why.push("no member holds the leader key: a primary whose agent is stopped would be replaced while it still runs".into());
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// With `--wait`: until every member of `view` reports `pause` as wanted.
async fn wait(api: &Api, view: &ClusterView, args: &PauseArgs, pause: bool) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use raftgres_agent::cluster::LeaderKey;

    #[test]
    fn resume_is_refused_while_an_agent_is_away_or_the_key_is_free() {
        let leader = Some(LeaderKey { name: "node1".into(), lease: 1, mod_revision: 1 });
        let held = ClusterView { leader, ..Default::default() };
        assert_eq!(resume_blockers(&held, &[]), None, "every agent answers and the key is held");
        let one = resume_blockers(&held, &["node2".to_string()]).expect("node2 away");
        assert_eq!(one, "the agent of node2 does not answer (REST API): its PostgreSQL runs unmanaged and unfenced");
        let two = resume_blockers(&held, &["node2".to_string(), "node3".to_string()]).expect("two away");
        assert!(two.starts_with("the agent of node2, node3 do not answer"), "{two}");
        let free = resume_blockers(&ClusterView::default(), &[]).expect("no leader key");
        assert!(free.starts_with("no member holds the leader key"), "{free}");
    }

    #[test]
    fn an_agent_is_away_until_it_records_another_event() {
        let event = |at_ms, member: &str, event: &str| Event { at_ms, member: member.into(), event: event.into() };
        let stopped = format!("{AWAY_WHILE_PAUSED}: leaving PostgreSQL running; the next run of this node adopts it");
        let events = [
            event(1, "node1", "paused: not managing PostgreSQL (I am node1, running)"),
            event(2, "node2", &stopped),
            event(3, "node3", &stopped),
            event(4, "node3", "paused: not managing PostgreSQL (I am node3, running)"),
        ];
        assert_eq!(away(&events), ["node2"], "node3 is back");
        assert!(away(&[]).is_empty());
    }

    #[test]
    fn only_resume_takes_force() {
        use clap::Parser;
        let cli = crate::Cli::parse_from(["raftctl", "resume", "demo", "--wait", "--force"]);
        let crate::Command::Resume(a) = cli.command else { panic!("not resume") };
        assert!(a.force && a.pause.wait);
        assert!(crate::Cli::try_parse_from(["raftctl", "pause", "--force"]).is_err());
    }
}
