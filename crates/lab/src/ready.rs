//! Waiting for the lab to be usable: a primary and a streaming replica on every other
//! node, on the primary's timeline (a replica still on an older one has yet to rewind),
//! as the members' own keys say it, read through the etcd API. The judgement
//! ([`assess`]) is pure; [`wait`] polls it and reports each change on one line.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use raftgres_agent::cluster::{Keys, Member, Role};
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::RangeRequest;

use raftgres_client::{status_error, Api};

use crate::description::Lab;
use crate::process;

/// The namespace the agents use (Patroni's default).
const NAMESPACE: &str = "service";
/// How often to look again.
const POLL: Duration = Duration::from_millis(500);

/// What the store holds for the lab's cluster.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
}

/// `Ok(())` when ready, else one line saying what is still missing.
pub fn assess(snapshot: &Snapshot, nodes: &[String]) -> Result<(), String> {
    let Some(leader) = &snapshot.leader else {
        return Err(format!("no leader yet; members: {}", describe(snapshot, nodes)));
    };
    let mut waiting = Vec::new();
    let timeline = snapshot.members.get(leader).and_then(|m| m.timeline);
    for name in nodes {
        let ok = snapshot.members.get(name).is_some_and(|m| {
            if name == leader {
                m.role.leads() && m.state == "running"
            } else {
                // A replica tagged nostream never streams: running in recovery is its ready.
                let replaying = m.replication_state.as_deref() == Some("streaming") || (m.tags.nostream && m.state == "running");
                m.role == Role::Replica && replaying && (timeline.is_none() || m.timeline == timeline)
            }
        });
        if !ok {
            waiting.push(name.as_str());
        }
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(format!("leader {leader}; waiting for {}; members: {}", waiting.join(", "), describe(snapshot, nodes)))
    }
}

/// `node1 primary/running, node2 replica/streaming, node3 -`
fn describe(snapshot: &Snapshot, nodes: &[String]) -> String {
    let one = |name: &String| match snapshot.members.get(name) {
        None => format!("{name} -"),
        Some(m) => {
            let detail = m.replication_state.as_deref().unwrap_or(&m.state);
            format!("{name} {}/{detail}", m.role.as_str())
        }
    };
    nodes.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// One read of the cluster's prefix through the first node that answers.
pub async fn read(lab: &Lab) -> anyhow::Result<Snapshot> {
    let api = Api::connect(&lab.endpoints(), &lab.security()?, None).await?;
    let keys = Keys::new(NAMESPACE, &lab.scope);
    let prefix = keys.prefix.clone().into_bytes();
    let mut range_end = prefix.clone();
    if let Some(last) = range_end.last_mut() {
        *last += 1;
    }
    let req = RangeRequest { key: prefix, range_end, serializable: true, ..Default::default() };
    let resp = KvClient::new(api.channel.clone()).range(req).await.map_err(status_error)?.into_inner();
    let mut snapshot = Snapshot::default();
    let members_prefix = keys.members_prefix();
    for kv in resp.kvs {
        let key = String::from_utf8_lossy(&kv.key);
        if key == keys.leader() {
            snapshot.leader = Some(String::from_utf8_lossy(&kv.value).trim().to_string());
        } else if let Some(name) = key.strip_prefix(&members_prefix) {
            if let Ok(member) = serde_json::from_slice::<Member>(&kv.value) {
                snapshot.members.insert(name.to_string(), member);
            }
        }
    }
    Ok(snapshot)
}

/// Waits until [`assess`] says ready, printing each new state; fails when `timeout`
/// passes or a node's process is gone.
pub async fn wait(lab: &Lab, timeout: Duration) -> anyhow::Result<()> {
    let names: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Some(dead) = lab.nodes.iter().find(|n| process::agent(n).is_none()) {
            bail!("{} exited while the lab was starting (see its log: {})", dead.name, dead.log_path().display());
        }
        let line = match read(lab).await {
            Ok(snapshot) => match assess(&snapshot, &names) {
                Ok(()) => {
                    let leader = snapshot.leader.unwrap_or_default();
                    println!("ready: {leader} is the primary, {} streaming", names.len() - 1);
                    return Ok(());
                }
                Err(line) => line,
            },
            Err(_) => "no etcd API answers yet".to_string(),
        };
        if line != last {
            println!("  {line}");
            last = line;
        }
        if Instant::now() >= deadline {
            bail!("the lab was not ready after {} s: {last}", timeout.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: Role, state: &str, repl: Option<&str>) -> Member {
        Member { role, state: state.into(), replication_state: repl.map(str::to_string), ..Default::default() }
    }

    #[test]
    fn ready_needs_a_primary_and_streaming_replicas() {
        let names: Vec<String> = ["node1", "node2", "node3"].iter().map(|s| s.to_string()).collect();
        let mut s = Snapshot::default();
        assert!(assess(&s, &names).expect_err("empty").starts_with("no leader"));
        s.leader = Some("node2".into());
        s.members.insert("node2".into(), member(Role::Primary, "running", None));
        s.members.insert("node1".into(), member(Role::Replica, "running", Some("streaming")));
        s.members.insert("node3".into(), member(Role::Replica, "creating replica", None));
        let err = assess(&s, &names).expect_err("node3 not streaming");
        assert!(err.contains("waiting for node3") && err.contains("node3 replica/creating replica"), "{err}");
        s.members.insert("node3".into(), member(Role::Replica, "running", Some("streaming")));
        assert_eq!(assess(&s, &names), Ok(()));
        let on = |tl: u32, role, state, repl| Member { timeline: Some(tl), ..member(role, state, repl) };
        s.members.insert("node2".into(), on(3, Role::Primary, "running", None));
        s.members.insert("node1".into(), on(3, Role::Replica, "running", Some("streaming")));
        s.members.insert("node3".into(), on(2, Role::Replica, "running", Some("streaming")));
        assert!(assess(&s, &names).expect_err("node3 on an old timeline").contains("waiting for node3"));
        s.members.insert("node3".into(), on(3, Role::Replica, "running", Some("streaming")));
        assert_eq!(assess(&s, &names), Ok(()));
        s.members.insert("node2".into(), member(Role::Primary, "starting", None));
        assert!(assess(&s, &names).is_err());
    }

    #[test]
    fn a_nostream_replica_is_ready_replaying_the_archive() {
        let names: Vec<String> = ["node1", "node2"].iter().map(|s| s.to_string()).collect();
        let mut s = Snapshot { leader: Some("node1".into()), ..Default::default() };
        s.members.insert("node1".into(), member(Role::Primary, "running", None));
        s.members.insert("node2".into(), member(Role::Replica, "running", Some("in archive recovery")));
        assert!(assess(&s, &names).expect_err("not streaming, not tagged").contains("waiting for node2"));
        let nostream = raftgres_agent::config::Tags { nostream: true, ..Default::default() };
        s.members.get_mut("node2").expect("node2").tags = nostream;
        assert_eq!(assess(&s, &names), Ok(()));
    }
}
