//! The leader key freed under a healthy primary (an operator's `etcdctl del`, or any path
//! that frees the key while the primary's lease lives): a primary that leaves the free key
//! to another node must stop being primary first. Before, it went on as a writable
//! primary without the key ("… is healthier than me; letting it take over") while the
//! healthier replica would not race against a running primary: no key holder at all, a
//! primary outside the protocol, and two writers once the replica's probe of it failed.

use std::process::Command;
use std::time::Duration;

use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::{seed, with_logs};

const HEAL: Duration = Duration::from_secs(60);

/// `etcdctl ARGS` against the lab; its standard output.
fn etcdctl(lab: &Lab, args: &[&str]) -> anyhow::Result<String> {
    let out =
        Command::new("etcdctl").env("ETCDCTL_API", "3").arg(format!("--endpoints={}", lab.endpoints().join(","))).args(args).output()?;
    anyhow::ensure!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The leader key's name, and the member holding it (None when the key is free).
fn leader_key(lab: &Lab) -> anyhow::Result<(String, Option<String>)> {
    let keys = etcdctl(lab, &["get", "--prefix", "--keys-only", "/"])?;
    let key = keys.lines().find(|k| k.ends_with("/leader")).map(str::to_string);
    match key {
        Some(key) => {
            let holder = etcdctl(lab, &["get", "--print-value-only", &key])?.trim().to_string();
            Ok((key, Some(holder).filter(|h| !h.is_empty())))
        }
        None => Ok((String::new(), None)),
    }
}

#[test]
fn a_primary_that_leaves_the_free_key_to_another_stops_being_primary() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        // The liveness probe writes WAL on the primary every second: off, so an idle
        // primary and its replicas sit at the same WAL position.
        let (code, body) = lab.rest(primary, "PATCH", "/config", r#"{"liveness": {"enabled": false}}"#)?;
        anyhow::ensure!(code == 200, "PATCH /config: {code} {body}");
        // At the same position, a higher failover_priority makes a replica the healthier.
        let favourite = (primary + 1) % 3;
        let config = lab.dir.path().join(lab.name(favourite)).join("raftgres.yml");
        let text = std::fs::read_to_string(&config)?;
        std::fs::write(&config, format!("{text}\ntags: {{failover_priority: 10}}\n"))?;
        lab.kill(favourite)?;
        lab.start(favourite)?;
        seed(&lab, "back", HEAL)?;
        let (key, holder) = wait_for(Duration::from_secs(10), "the leader key", || {
            let (key, holder) = leader_key(&lab)?;
            anyhow::ensure!(holder.is_some(), "no holder yet");
            Ok((key, holder))
        })?;
        anyhow::ensure!(holder.as_deref() == Some(lab.name(primary).as_str()), "{holder:?} holds the key, not the primary");
        std::thread::sleep(Duration::from_secs(2));
        etcdctl(&lab, &["del", &key])?;
        // Whoever takes the key is the only writer: the old primary writes only while
        // it holds the key again.
        wait_for(Duration::from_secs(30), "one primary, holding the leader key", || {
            let (_, holder) = leader_key(&lab)?;
            let holder = holder.ok_or_else(|| anyhow::anyhow!("nobody holds the leader key"))?;
            let writer = lab.primary()?;
            anyhow::ensure!(lab.name(writer) == holder, "{} writes but {holder} holds the key", lab.name(writer));
            Ok(())
        })
    })
}
