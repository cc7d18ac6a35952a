//! etcd's grpc-gateway JSON API on the client port of a 3-node store-only cluster, driven
//! with curl as scripts and Patroni's `etcd3` driver use it: keys and values in base64,
//! 64-bit integers as strings, enums by name, zero fields left out, errors as
//! `{"error","message","code"}` with grpc-gateway's HTTP statuses, and `/v3/watch` and
//! `/v3/lease/keepalive` answering one `{"result":...}` line per message.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use raftgres_proto::etcdserverpb::auth_client::AuthClient;
use raftgres_proto::etcdserverpb::AuthenticateRequest;
use raftgres_tests::client::Client;
use raftgres_tests::Cluster;
use serde_json::{json, Value};

use crate::client_http::curl_with;
use crate::wait_leader;

/// `POST {base}{path}` with `body`: the answer's JSON (or its text as a JSON string when
/// it is not JSON) and its HTTP status.
pub fn post(base: &str, path: &str, body: &str) -> anyhow::Result<(Value, u16)> {
    let (text, code) = curl_with(&["-X", "POST", "--data-binary", body], &format!("{base}{path}"))?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((value, code))
}

/// [`post`] that must answer 200.
fn ok(base: &str, path: &str, body: Value) -> anyhow::Result<Value> {
    let (value, code) = post(base, path, &body.to_string())?;
    anyhow::ensure!(code == 200, "{path} {body}: {code} {value}");
    Ok(value)
}

/// A JSON string holding an int64 or uint64 (etcd writes them as strings), parsed.
fn int(value: &Value) -> anyhow::Result<i128> {
    value.as_str().ok_or_else(|| anyhow::anyhow!("not an int64 string: {value}"))?.parse().map_err(Into::into)
}

fn base(cluster: &Cluster, i: usize) -> String {
    format!("http://{}", cluster.nodes[i].client_addr())
}

#[tokio::test]
async fn the_json_api_serves_kv_txn_lease_and_cluster_calls_in_etcds_encoding() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let (a, b) = (base(&cluster, 0), base(&cluster, 1));

    // put foo=bar on one node, read it on another ("Zm9v" is foo, "YmFy" bar, "YmF6" baz).
    let put = ok(&a, "/v3/kv/put", json!({"key": "Zm9v", "value": "YmFy"}))?;
    let revision = int(&put["header"]["revision"])?;
    assert!(int(&put["header"]["cluster_id"])? != 0 && put["header"]["raft_term"].is_string(), "{put}");
    let range = ok(&b, "/v3/kv/range", json!({"key": "Zm9v"}))?;
    assert_eq!(
        range["kvs"],
        json!([{"key": "Zm9v", "create_revision": revision.to_string(), "mod_revision": revision.to_string(), "version": "1", "value": "YmFy"}])
    );
    assert_eq!(range["count"], "1");
    assert_eq!(range.get("more"), None, "false is left out: {range}");

    // A txn whose compare holds: a range (camelCase field name accepted) and a put.
    let txn = ok(
        &a,
        "/v3/kv/txn",
        json!({
            "compare": [{"key": "Zm9v", "result": "EQUAL", "target": "VALUE", "value": "YmFy"}],
            "success": [{"requestRange": {"key": "Zm9v"}}, {"request_put": {"key": "Zm9v", "value": "YmF6", "prev_kv": true}}],
        }),
    )?;
    assert_eq!(txn["succeeded"], true, "{txn}");
    assert_eq!(txn["responses"][0]["response_range"]["kvs"][0]["value"], "YmFy");
    assert_eq!(txn["responses"][1]["response_put"]["prev_kv"]["value"], "YmFy");
    // One that fails (the key exists): `succeeded` false is left out, no responses.
    let txn = ok(&b, "/v3/kv/txn", json!({"compare": [{"key": "Zm9v", "target": "CREATE", "create_revision": "0"}]}))?;
    assert_eq!((txn.get("succeeded"), txn.get("responses")), (None, None), "{txn}");

    let deleted = ok(&b, "/v3/kv/deleterange", json!({"key": "Zm9v", "prev_kv": true}))?;
    assert_eq!(deleted["deleted"], "1");
    assert_eq!(deleted["prev_kvs"][0]["value"], "YmF6");
    let range = ok(&a, "/v3beta/kv/range", json!({"key": "Zm9v"}))?;
    assert_eq!((range.get("kvs"), range.get("count")), (None, None), "{range}");

    // A lease: grant, a key on it, keepalive (one line on the stream), timetolive,
    // leases, revoke through etcd's alias.
    let grant = ok(&a, "/v3/lease/grant", json!({"TTL": 30}))?;
    let id = grant["ID"].as_str().ok_or_else(|| anyhow::anyhow!("no lease ID: {grant}"))?.to_string();
    assert_eq!(grant["TTL"], "30");
    ok(&a, "/v3/kv/put", json!({"key": "YQ==", "value": "Yg==", "lease": id}))?;
    let (alive, code) = curl_with(&["-X", "POST", "--data-binary", &json!({"ID": id}).to_string()], &format!("{b}/v3/lease/keepalive"))?;
    assert_eq!(code, 200);
    let line: Value = serde_json::from_str(alive.trim_end_matches('\n'))?;
    assert_eq!((&line["result"]["ID"], &line["result"]["TTL"]), (&json!(id), &json!("30")), "{alive}");
    let ttl = ok(&b, "/v3/lease/timetolive", json!({"ID": id, "keys": true}))?;
    assert_eq!((&ttl["grantedTTL"], &ttl["keys"]), (&json!("30"), &json!(["YQ=="])), "{ttl}");
    assert!((1..=30).contains(&int(&ttl["TTL"])?), "{ttl}");
    let leases = ok(&a, "/v3/lease/leases", json!({}))?;
    assert_eq!(leases["leases"], json!([{"ID": id}]));
    ok(&a, "/v3/kv/lease/revoke", json!({"ID": id}))?;
    let ttl = ok(&b, "/v3/kv/lease/timetolive", json!({"ID": id}))?;
    assert_eq!(ttl["TTL"], "-1", "{ttl}");
    let range = ok(&b, "/v3/kv/range", json!({"key": "YQ=="}))?;
    assert_eq!(range.get("kvs"), None, "the lease's key went with it: {range}");

    // Cluster and maintenance.
    let members = ok(&b, "/v3/cluster/member/list", json!({}))?;
    let members = members["members"].as_array().ok_or_else(|| anyhow::anyhow!("no members: {members}"))?;
    assert_eq!(members.len(), 3);
    let mut names: Vec<_> = members.iter().map(|m| m["name"].as_str().unwrap_or_default()).collect();
    names.sort_unstable();
    assert_eq!(names, ["node1", "node2", "node3"]);
    for member in members {
        assert!(int(&member["ID"])? != 0, "{member}");
        assert!(member["peerURLs"][0].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")), "{member}");
        assert!(member["clientURLs"][0].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")), "{member}");
    }
    let status = ok(&a, "/v3/maintenance/status", json!({}))?;
    assert_eq!(status["version"], "3.5.0");
    assert!(int(&status["leader"])? != 0 && int(&status["raftIndex"])? > 0, "{status}");

    // Auth: status answers; authenticate answers what gRPC answers (the same service).
    let auth = ok(&a, "/v3/auth/status", json!({}))?;
    assert!(auth["header"]["revision"].is_string(), "{auth}");
    let request = AuthenticateRequest { name: "root".into(), password: "pw".into() };
    let grpc = AuthClient::new(Client::connect(&cluster.nodes[0].client_addr()).await?.channel).authenticate(request).await;
    let (json, code) = post(&a, "/v3/auth/authenticate", r#"{"name":"root","password":"pw"}"#)?;
    match grpc {
        Ok(answer) => assert_eq!((code, json["token"].as_str()), (200, Some(answer.get_ref().token.as_str()))),
        Err(status) => {
            assert_eq!((json["code"].as_i64(), json["error"].as_str()), (Some(status.code() as i64), Some(status.message())), "{json}");
            assert!(code >= 400, "{code}");
        }
    }
    Ok(())
}

/// `curl -N` streaming `path` with `body`; its lines arrive on the receiver.
fn stream(base: &str, path: &str, body: &str) -> anyhow::Result<(Child, mpsc::Receiver<String>)> {
    let mut child = Command::new("curl")
        .args(["-s", "-N", "-m", "60", "-X", "POST", "--data-binary", body, &format!("{base}{path}")])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("curl has no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok((child, rx))
}

fn next_line(lines: &mpsc::Receiver<String>) -> anyhow::Result<Value> {
    let line = lines.recv_timeout(Duration::from_secs(10)).map_err(|e| anyhow::anyhow!("no watch line within 10 s: {e}"))?;
    Ok(serde_json::from_str(&line)?)
}

#[tokio::test]
async fn the_json_watch_streams_events_as_lines() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let (a, b) = (base(&cluster, 0), base(&cluster, 2));
    // Keys with prefix "w" ("dw==" is w, "eA==" is x, the prefix's end).
    let (mut curl, lines) = stream(&a, "/v3/watch", r#"{"create_request":{"key":"dw==","range_end":"eA==","prev_kv":true}}"#)?;
    let created = next_line(&lines)?;
    assert_eq!(created["result"]["created"], true, "{created}");
    assert_eq!(created["result"].get("watch_id"), None, "watch 0 leaves its id out: {created}");

    let put = ok(&b, "/v3/kv/put", json!({"key": "dw==", "value": "MQ=="}))?;
    ok(&b, "/v3/kv/deleterange", json!({"key": "dw=="}))?;
    let first = next_line(&lines)?;
    let event = &first["result"]["events"][0];
    assert_eq!(event.get("type"), None, "PUT, the zero value, is left out: {first}");
    assert_eq!((&event["kv"]["key"], &event["kv"]["value"]), (&json!("dw=="), &json!("MQ==")), "{first}");
    assert_eq!(event["kv"]["mod_revision"], put["header"]["revision"]);
    let second = next_line(&lines)?;
    let event = &second["result"]["events"][0];
    assert_eq!(event["type"], "DELETE", "{second}");
    assert_eq!(event["prev_kv"]["value"], "MQ==", "{second}");
    curl.kill()?;
    curl.wait()?;
    Ok(())
}

#[tokio::test]
async fn the_json_api_answers_bad_requests_with_one_clear_error() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let a = base(&cluster, 0);

    // A range on a compacted revision: OutOfRange (11) as 400, etcd's message.
    ok(&a, "/v3/kv/put", json!({"key": "Yw==", "value": "MQ=="}))?;
    let put = ok(&a, "/v3/kv/put", json!({"key": "Yw==", "value": "Mg=="}))?;
    ok(&a, "/v3/kv/compaction", json!({"revision": put["header"]["revision"], "physical": true}))?;
    let (error, code) = post(&a, "/v3/kv/range", r#"{"key":"Yw==","revision":"1"}"#)?;
    let message = "etcdserver: mvcc: required revision has been compacted";
    assert_eq!((error, code), (json!({"error": message, "message": message, "code": 11}), 400));

    // Bodies that are not the request: InvalidArgument (3) as 400, naming the problem.
    for body in [r#"{"key":"#, r#"{"key":"!!"}"#, r#"{"key":"Yw==","limit":"ten"}"#, "[]"] {
        let (error, code) = post(&a, "/v3/kv/range", body)?;
        assert_eq!((code, error["code"].as_i64()), (400, Some(3)), "{body}: {error}");
        assert!(error["error"].as_str().is_some_and(|e| e.starts_with("invalid JSON request: ")), "{body}: {error}");
    }
    // The service's own checks apply: an empty body is an empty request, without a key.
    let (error, code) = post(&a, "/v3/kv/range", "")?;
    assert_eq!((error["error"].as_str(), code), (Some("etcdserver: key is not provided"), 400));
    // A lease that does not exist: NotFound (5) as 404.
    let (error, code) = post(&a, "/v3/lease/revoke", r#"{"ID":"12345"}"#)?;
    assert_eq!((error["error"].as_str(), error["code"].as_i64(), code), (Some("etcdserver: requested lease not found"), Some(5), 404));
    // Not POST, and no such method: Go's mux answers.
    assert_eq!(curl_with(&[], &format!("{a}/v3/kv/range"))?, ("Method Not Allowed".to_string(), 405));
    assert_eq!(curl_with(&["-X", "POST", "-d", "{}"], &format!("{a}/v3/kv/nothing"))?, ("Not Found".to_string(), 404));
    Ok(())
}
