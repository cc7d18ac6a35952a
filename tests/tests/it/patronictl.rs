//! patronictl's surface in `raftctl` (issue 18 item 6), driven as a Patroni user would:
//! `list -f json|yaml|tsv -e -t`, the CLUSTER argument and `-c/--config-file`, `query`,
//! `dsn --role`, `topology`, `edit-config --apply/--replace`, `restart --role
//! /--pg-version`, `reinit --wait`, `switchover --primary/--master`, `history -f json`
//! on a three-node lab; `flush restart|switchover`, `resume` refused while an agent is
//! away; `remove` on a store-only cluster, through a terminal.

use std::process::{Command, Stdio};
use std::time::Duration;

use raftgres_tests::client::Client;
use raftgres_tests::lab::{wait_for, Lab};
use raftgres_tests::Cluster;
use serde_json::Value;

use crate::writes::with_logs;

const HEAL: Duration = Duration::from_secs(60);

/// `raftctl query ARGS` as the lab's superuser (its password file, as libpq reads it).
fn query(lab: &Lab, args: &[&str]) -> anyhow::Result<String> {
    let pgpass = lab.pgpass();
    let pgpass = pgpass.to_str().ok_or_else(|| anyhow::anyhow!("lab path is not UTF-8"))?;
    let mut all = vec!["query", "-U", "postgres", "-d", "postgres"];
    all.extend_from_slice(args);
    lab.ctl_with(&all, &[("PGPASSFILE", pgpass)], None)
}

#[test]
fn list_query_and_the_cluster_argument_as_patronictl() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        let json: Value = serde_json::from_str(&lab.ctl(&["list", "-f", "json"])?)?;
        let rows = json.as_array().ok_or_else(|| anyhow::anyhow!("not a list: {json}"))?;
        assert_eq!(rows.len(), 3, "{json}");
        assert!(rows.iter().all(|r| r["Cluster"] == "demo" && r["State"].is_string() && r["TL"].is_u64()), "{json}");
        let leaders: Vec<&Value> = rows.iter().filter(|r| r["Role"] == "Leader").collect();
        assert_eq!(leaders.len(), 1, "{json}");
        assert_eq!(leaders[0]["Member"], lab.name(primary));
        assert!(leaders[0].get("Receive Lag").is_none(), "empty cells are left out, as patronictl: {json}");
        let yaml = lab.ctl(&["-o", "yaml", "list", "demo"])?;
        assert!(yaml.starts_with("- Cluster: demo\n  Host: 127.0.0.1:"), "{yaml}");
        let tsv = lab.ctl(&["list", "-f", "tsv", "-e"])?;
        let header = tsv.lines().next().unwrap_or_default();
        assert_eq!(
            header,
            "Cluster\tMember\tHost\tRole\tState\tTL\tReceive LSN\tReceive Lag\tReplay LSN\tReplay Lag\tRaft\tPending restart\tTags"
        );
        assert_eq!(tsv.lines().count(), 4, "{tsv}");
        let stamped = lab.ctl(&["list", "-t"])?;
        let first = stamped.lines().next().unwrap_or_default();
        assert!(first.len() == 19 && first.as_bytes()[4] == b'-' && first.as_bytes()[13] == b':', "a timestamp first: {stamped}");
        assert!(stamped.lines().nth(1).is_some_and(|l| l.starts_with("+ Cluster: demo (")), "{stamped}");

        // CLUSTER is checked: a name that is not the -c file's scope is one clear error.
        let config = lab.dir.path().join(lab.name(primary)).join("raftgres.yml");
        let config = config.to_str().ok_or_else(|| anyhow::anyhow!("lab path is not UTF-8"))?;
        assert!(lab.ctl(&["--config-file", config, "list", "demo"])?.contains("| Leader"));
        let err = lab.ctl(&["-c", config, "history", "prod"]).expect_err("another cluster");
        assert!(err.to_string().contains("cluster prod is not this configuration's cluster demo"), "{err}");
        let err = lab.ctl(&["topology", "prod"]).expect_err("no such cluster");
        assert!(err.to_string().contains("no cluster prod under /service/ (clusters there: demo)"), "{err}");

        let topology = lab.ctl(&["topology", "demo"])?;
        let lines: Vec<&str> = topology.lines().collect();
        assert!(lines[3].starts_with(&format!("| {} ", lab.name(primary))) && lines[3].contains("| Leader"), "{topology}");
        assert_eq!(lines.iter().filter(|l| l.starts_with("| + node")).count(), 2, "{topology}");

        let replica = (primary + 1) % 3;
        let dsn = lab.ctl(&["dsn", "demo", "--role", "replica"])?;
        assert!(dsn.trim() != format!("host=127.0.0.1 port={}", lab.pg_port(primary)) && dsn.starts_with("host=127.0.0.1 port="), "{dsn}");
        assert_eq!(lab.ctl(&["dsn", "-m", &lab.name(replica)])?.trim(), format!("host=127.0.0.1 port={}", lab.pg_port(replica)));

        // query: the leader by default, tsv with a header; a replica; a file of statements.
        assert_eq!(query(&lab, &["-c", "select 1 as one, null as nothing"])?, "one\tnothing\n1\tNone\n");
        let json = query(&lab, &["demo", "-r", "replica", "-c", "select pg_is_in_recovery() as r", "--format", "json"])?;
        assert_eq!(json, "[{\"r\": \"t\"}]\n");
        let sql = lab.dir.path().join("q.sql");
        std::fs::write(&sql, "create table q(v int); insert into q values (1), (2); select v, v * 10 as x from q order by v;")?;
        let sql = sql.to_str().ok_or_else(|| anyhow::anyhow!("lab path is not UTF-8"))?;
        let out = query(&lab, &["-f", sql, "--delimiter", ";", "--format", "tsv"])?;
        assert_eq!(out, "v;x\n1;10\n2;20\n", "the last statement's rows");
        let pretty = query(&lab, &["-m", &lab.name(primary), "-c", "select count(*) from q", "--format", "pretty"])?;
        assert!(pretty.contains("| count |") && pretty.contains("| 2     |"), "{pretty}");
        let err = query(&lab, &["-c", "select * from nowhere"]).expect_err("no such table");
        assert!(err.to_string().contains("ERROR, SQLSTATE: 42P01: relation \"nowhere\" does not exist"), "{err}");
        let err = query(&lab, &["-c", "select 1", "--password"]).expect_err("no terminal");
        assert!(err.to_string().contains("\"Password\" needs an answer and there is no terminal to ask on"), "{err}");
        let err = lab.ctl(&["query", "-c", "select 1", "-U", "postgres", "-d", "postgres"]).expect_err("no password");
        assert!(err.to_string().contains("password missing (PGPASSWORD, a password file, or --password)"), "{err}");
        Ok(())
    })
}

#[test]
fn edit_config_restart_reinit_and_switchover_as_patronictl() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        let file = lab.dir.path().join("change.yml");
        std::fs::write(&file, "maximum_lag_on_failover: 4194304\npostgresql:\n  parameters:\n    work_mem: 6MB\n")?;
        let file = file.to_str().ok_or_else(|| anyhow::anyhow!("lab path is not UTF-8"))?;
        let shown_before = lab.ctl(&["show-config"])?;
        assert!(shown_before.contains("ttl:"), "{shown_before}");
        lab.ctl(&["edit-config", "demo", "--apply", file, "--force"])?;
        let shown = lab.ctl(&["show-config"])?;
        assert!(shown.contains("maximum_lag_on_failover: 4194304") && shown.contains("work_mem: 6MB") && shown.contains("ttl:"), "{shown}");
        let err = lab.ctl_with(&["edit-config", "--apply", "-"], &[], Some("ttl: 40\n")).expect_err("stdin needs --force");
        assert!(err.to_string().contains("add --force"), "{err}");
        // --replace: the file is the whole configuration (validated as every change is).
        let whole = shown.replace("work_mem: 6MB", "work_mem: 7MB").replace("maximum_lag_on_failover: 4194304\n", "");
        lab.ctl_with(&["edit-config", "--replace", "-", "--force", "-q"], &[], Some(&whole))?;
        let replaced = lab.ctl(&["show-config"])?;
        assert!(replaced.contains("work_mem: 7MB") && !replaced.contains("maximum_lag_on_failover: 4194304"), "{replaced}");
        let err = lab.ctl_with(&["edit-config", "--replace", "-", "--force"], &[], Some("loop_wiat: 2\n")).expect_err("typo");
        assert!(err.to_string().contains("loop_wiat is not a known setting"), "{err}");

        // restart --role replica: every replica, not the leader.
        let replicas: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
        let before: Vec<i32> = (0..3).map(|i| lab.postmaster_pid(i)).collect::<anyhow::Result<_>>()?;
        let out = lab.ctl(&["restart", "demo", "--role", "replica", "--force"])?;
        assert_eq!(out.matches("restarted PostgreSQL").count(), 2, "{out}");
        for (i, pid) in before.iter().enumerate() {
            assert_eq!(lab.postmaster_pid(i)? == *pid, i == primary, "{} restarted: {}", lab.name(i), i != primary);
        }
        let out = lab.ctl(&["restart", &lab.name(replicas[0]), "--pg-version", "9.6.24", "--force"])?;
        assert!(out.contains("is not older than --pg-version: not restarted"), "{out}");
        let err = lab.ctl(&["restart", "demo", &lab.name(primary), "--role", "replica", "--force"]).expect_err("not a replica");
        assert!(err.to_string().contains(&format!("no replica among {}", lab.name(primary))), "{err}");
        let err = lab.ctl(&["restart", "prod", "--force"]).expect_err("not a cluster nor a member");
        assert!(err.to_string().contains("prod is neither a cluster here nor a member of this one"), "{err}");

        // reinit --wait returns once the member runs again.
        let out = lab.ctl(&["reinit", "demo", &lab.name(replicas[1]), "--force", "--wait"])?;
        assert!(out.contains(&format!("Reinitialize is completed on: {}", lab.name(replicas[1]))), "{out}");
        assert_eq!(lab.psql(replicas[1], "select pg_is_in_recovery()")?, "t");

        // switchover --primary (and the old --master) check the current leader (read
        // again: the lab's 2 s ttl may have moved it on a loaded machine).
        let leader = lab.primary()?;
        let candidate = (leader + 1) % 3;
        lab.psql(leader, "create table if not exists s(v int); insert into s values (1)")?;
        wait_for(HEAL, "the candidate streaming", || {
            anyhow::ensure!(lab.psql(candidate, "select count(*) from s")? == "1", "not replayed yet");
            Ok(())
        })?;
        let err = lab.ctl(&["switchover", "--master", &lab.name(candidate), "--force"]).expect_err("not the leader");
        assert!(err.to_string().contains(&lab.name(candidate)), "{err}");
        wait_for(HEAL, "a switchover with --primary", || {
            lab.ctl(&["switchover", "demo", "--primary", &lab.name(leader), "--candidate", &lab.name(candidate), "--force"])
        })?;
        assert_eq!(lab.primary()?, candidate);
        let history: Value = serde_json::from_str(&lab.ctl(&["history", "-f", "json"])?)?;
        let last = history.as_array().and_then(|h| h.last()).cloned().unwrap_or_default();
        assert!(last["TL"].is_u64() && last["LSN"].is_u64() && last["New Leader"] == lab.name(candidate), "{history}");
        Ok(())
    })
}

/// `raftctl ARGS` on a pseudo-terminal (`script`), typing `answers`; (success, output).
fn on_a_terminal(endpoint: &str, args: &str, answers: &str) -> anyhow::Result<(bool, String)> {
    use std::io::Write;
    let raftctl = raftgres_tests::bin("raftctl");
    let command = format!("{} --endpoints {endpoint} {args}", raftctl.display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(answers.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok((out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))))
}

#[tokio::test]
async fn remove_wipes_a_stopped_cluster_after_two_confirmations() -> anyhow::Result<()> {
    let cluster = Cluster::start(1)?;
    let endpoint = cluster.nodes[0].client_addr();
    let client = raftgres_tests::eventually(Duration::from_secs(15), "the store answers", || async {
        let c = Client::connect(&endpoint).await?;
        c.put("/service/other/config", "{}").await?;
        Ok(c)
    })
    .await?;
    let member = r#"{"conn_url": "postgres://127.0.0.1:5432/postgres", "api_url": "http://127.0.0.1:8008/patroni", "state": "stopped", "role": "replica"}"#;
    for (key, value) in [("initialize", "7301234567890123456"), ("config", "{\"ttl\": 30}"), ("members/old1", member)] {
        client.put(&format!("/service/ghost/{key}"), value).await?;
        client.put(&format!("/service/live/{key}"), value).await?;
    }
    client.put("/service/live/leader", "old1").await?;
    let endpoint = endpoint.as_str();
    let remaining = |scope: &'static str| {
        let client = client.clone();
        async move {
            let mut found = 0;
            for key in ["initialize", "config", "members/old1", "leader"] {
                found += usize::from(client.get(&format!("/service/{scope}/{key}")).await?.is_some());
            }
            anyhow::Ok(found)
        }
    };

    let out =
        Command::new(raftgres_tests::bin("raftctl")).args(["--endpoints", endpoint, "remove", "ghost"]).stdin(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("there is no terminal to ask on"), "{text}");
    assert!(text.contains("has no --force"), "{text}");
    let (ok, text) = on_a_terminal(endpoint, "remove ghost", "Ghost\n")?;
    assert!(!ok && text.contains("cluster names specified do not match"), "{text}");
    let (ok, text) = on_a_terminal(endpoint, "remove ghost", "ghost\nyes\n")?;
    assert!(!ok && text.contains("you did not exactly type \"Yes I am aware\""), "{text}");
    assert_eq!(remaining("ghost").await?, 3, "nothing removed yet");
    let (ok, text) = on_a_terminal(endpoint, "remove live", "live\nYes I am aware\n")?;
    assert!(!ok && text.contains("old1 holds the leader key of live"), "{text}");
    let (ok, text) = on_a_terminal(endpoint, "remove ghost -f tsv", "ghost\nYes I am aware\n")?;
    assert!(ok && text.contains("removed cluster ghost: 3 keys under /service/ghost/"), "{text}");
    assert!(text.contains("Cluster\tMember\tHost"), "the members first: {text}");
    assert_eq!(remaining("ghost").await?, 0);
    assert_eq!(remaining("live").await?, 4, "another cluster is left alone");
    assert!(client.get("/service/other/config").await?.is_some());
    Ok(())
}

#[test]
fn flush_drops_schedules_and_resume_waits_for_every_agent() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        // Every replica caught up first: a switchover to a replica still cloning is
        // refused for its lag, even a scheduled one.
        let primary = crate::writes::seed(&lab, "start", HEAL)?;
        let replica = (primary + 1) % 3;
        let name = lab.name(replica);
        let later = "2099-01-01T00:00:00+01:00";
        assert!(lab.ctl(&["restart", &name, "--scheduled", later, "--force"])?.contains("scheduled"));
        assert_eq!(lab.ctl(&["flush", "demo", &name, "restart"])?, format!("{name}: scheduled restart cancelled\n"));
        let out = lab.ctl(&["flush", "demo", "restart", "--force"])?;
        assert_eq!(out.lines().filter(|l| l.ends_with(": no scheduled restart")).count(), 3, "every member, none scheduled: {out}");
        lab.ctl(&["switchover", "--scheduled", later, "--candidate", &name, "--force"])?;
        assert_eq!(lab.ctl(&["flush", "switchover"])?, "scheduled switchover cancelled\n");
        assert_eq!(lab.ctl(&["flush", "demo", "switchover"])?, "no scheduled switchover\n");
        let err = lab.ctl(&["flush", "demo", "restrat"]).expect_err("not a target");
        assert!(err.to_string().contains("restart or switchover, not \"restrat\""), "{err}");

        // Paused, an agent stopped: resume is refused, naming it, until it is back.
        assert!(lab.ctl(&["pause", "--wait"])?.contains("paused"));
        lab.stop(replica)?;
        let err = lab.ctl(&["resume"]).expect_err("an agent is away");
        assert!(err.to_string().contains(&format!("not resuming: the agent of {name} does not answer")), "{err}");
        assert!(lab.ctl(&["show-config"])?.contains("pause: true"), "still paused");
        lab.start(replica)?;
        lab.wait_agent(replica, HEAL)?;
        assert!(lab.ctl(&["resume", "--wait"])?.contains("every member resumed"));
        Ok(())
    })
}
