//! What an operator scrapes and reads on a running lab: every node's `/metrics` parses
//! as Prometheus text format and agrees on one primary and one Raft leader, the store's
//! latency histograms and watch gauges are live, and the lab's passwords appear in none
//! of `/metrics`, `/patroni`, `/config`, `/cluster` and the nodes' logs.

use prometheus_parse::{Scrape, Value};
use raftgres_tests::lab::Lab;

use crate::writes::with_logs;

fn scrape(lab: &Lab, i: usize) -> anyhow::Result<Scrape> {
    let (code, body) = lab.rest(i, "GET", "/metrics", "")?;
    anyhow::ensure!(code == 200, "/metrics of node{} answered {code}", i + 1);
    Ok(Scrape::parse(body.lines().map(|l| Ok(l.to_string())))?)
}

pub(crate) fn gauge(s: &Scrape, name: &str) -> anyhow::Result<f64> {
    match s.samples.iter().find(|x| x.metric == name).map(|x| &x.value) {
        Some(Value::Gauge(v)) => Ok(*v),
        other => anyhow::bail!("{name}: {other:?}"),
    }
}

/// The total count of a histogram (its `+Inf` bucket).
pub(crate) fn observations(s: &Scrape, name: &str) -> anyhow::Result<f64> {
    match s.samples.iter().find(|x| x.metric == name).map(|x| &x.value) {
        Some(Value::Histogram(b)) => Ok(b.iter().find(|c| c.less_than.is_infinite()).map_or(0.0, |c| c.count)),
        other => anyhow::bail!("{name}: {other:?}"),
    }
}

#[test]
fn metrics_parse_and_secrets_stay_out_of_sight() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let scrapes: Vec<Scrape> = (0..lab.nodes).map(|i| scrape(&lab, i)).collect::<anyhow::Result<_>>()?;
        let sum = |name: &str| scrapes.iter().map(|s| gauge(s, name)).sum::<anyhow::Result<f64>>();
        anyhow::ensure!(sum("patroni_primary")? == 1.0, "not exactly one patroni_primary");
        anyhow::ensure!(sum("raftgres_raft_is_leader")? == 1.0, "not exactly one Raft leader");
        for (i, s) in scrapes.iter().enumerate() {
            anyhow::ensure!(observations(s, "raftgres_log_fsync_duration_seconds")? > 0.0, "node{} saw no fsync", i + 1);
            // Each agent watches its cluster's keys through its node's etcd API.
            anyhow::ensure!(gauge(s, "raftgres_watches")? >= 1.0, "node{} counts no watch", i + 1);
        }
        let leader = scrapes.iter().position(|s| gauge(s, "raftgres_raft_is_leader").ok() == Some(1.0)).unwrap_or(0);
        anyhow::ensure!(
            observations(&scrapes[leader], "raftgres_proposal_duration_seconds")? > 0.0,
            "the Raft leader measured no proposal"
        );

        let pgpass = std::fs::read_to_string(lab.pgpass())?;
        let secrets: Vec<&str> = pgpass.lines().filter_map(|l| l.rsplit(':').next()).filter(|p| p.len() >= 8).collect();
        anyhow::ensure!(!secrets.is_empty(), "no password found in {}", lab.pgpass().display());
        for i in 0..lab.nodes {
            for path in ["/metrics", "/patroni", "/config", "/cluster"] {
                let (_, body) = lab.rest(i, "GET", path, "")?;
                anyhow::ensure!(!secrets.iter().any(|s| body.contains(s)), "a password appears in {path} of node{}", i + 1);
            }
            anyhow::ensure!(!secrets.iter().any(|s| lab.log(i).contains(s)), "a password appears in node{}'s log", i + 1);
        }
        Ok(())
    })
}
