//! etcd authentication driven by the real `etcdctl` (3.4) against a 3-node cluster:
//! users, roles, a prefix permission, `auth enable` (etcdctl adds the root role
//! itself), refusals with etcd's messages, watch refusal, the state surviving a
//! restart and reaching a member that joins later by snapshot, then `auth disable`.

use std::process::Command;
use std::time::Duration;

use raftgres_proto::etcdserverpb::auth_client::AuthClient;
use raftgres_proto::etcdserverpb::{AuthStatusRequest, AuthenticateRequest, PutRequest};
use raftgres_tests::client::Client;
use raftgres_tests::{eventually, Cluster};

use crate::etcdctl::{etcdctl, ok};
use crate::wait_leader;

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

/// etcdctl's error output for `args`, which must fail.
fn refused(endpoint: &str, args: &[&str]) -> String {
    let (success, out, err) = etcdctl(endpoint, args, None);
    assert!(!success, "etcdctl {args:?} should be refused, printed {out}");
    err
}

/// `count` puts as root through a token (enough log entries for a snapshot).
async fn root_puts(endpoint: &str, count: usize) -> anyhow::Result<()> {
    let c = Client::connect(endpoint).await?;
    let auth = AuthenticateRequest { name: "root".into(), password: "rootpw".into() };
    let token = AuthClient::new(c.channel.clone()).authenticate(auth).await?.into_inner().token;
    for i in 0..count {
        let mut req = tonic::Request::new(PutRequest { key: format!("/fill/{i:04}").into(), value: b"v".to_vec(), ..Default::default() });
        req.metadata_mut().insert("token", token.parse()?);
        c.kv().put(req).await?;
    }
    Ok(())
}

#[tokio::test]
async fn etcdctl_auth_users_roles_prefix_permissions_restart_join_and_disable() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_with(3, &["--snapshot-count", "100"])?;
    wait_leader(&cluster, &[]).await?;
    let one = cluster.nodes[0].client_addr();
    let two = cluster.nodes[1].client_addr();

    assert_eq!(ok(&one, &["user", "add", "root:rootpw"]), "User root created\n");
    assert_eq!(ok(&one, &["user", "add", "alice:alicepw"]), "User alice created\n");
    assert_eq!(ok(&one, &["role", "add", "app"]), "Role app created\n");
    ok(&one, &["role", "grant-permission", "--prefix=true", "app", "readwrite", "/app/"]);
    ok(&one, &["user", "grant-role", "alice", "app"]);
    ok(&one, &["put", "/app/a", "1"]);
    ok(&one, &["put", "/other", "x"]);
    let err = refused(&one, &["user", "add", "alice:again"]);
    assert!(err.contains("etcdserver: user name already exists"), "{err}");
    assert_eq!(ok(&one, &["auth", "enable"]), "Authentication Enabled\n");

    // Without a user: refused everywhere, with etcd's message.
    for endpoint in [&one, &two] {
        let err = refused(endpoint, &["get", "/app/a"]);
        assert!(err.contains("etcdserver: user name is empty"), "{err}");
    }
    let err = refused(&two, &["put", "/app/a", "2"]);
    assert!(err.contains("etcdserver: user name is empty"), "{err}");

    // alice: inside her prefix yes, outside no, on any member.
    assert_eq!(ok(&two, &[ALICE, "get", "/app/a"]), "/app/a\n1\n");
    assert_eq!(ok(&two, &[ALICE, "put", "/app/b", "2"]), "OK\n");
    assert_eq!(ok(&one, &[ALICE, "get", "--prefix", "/app/"]), "/app/a\n1\n/app/b\n2\n");
    for args in [&[ALICE, "get", "/other"][..], &[ALICE, "put", "/other", "y"], &[ALICE, "del", "--prefix", "/"], &[ALICE, "user", "list"]]
    {
        let err = refused(&one, args);
        assert!(err.contains("etcdserver: permission denied"), "{args:?}: {err}");
    }
    let err = refused(&one, &["--user=alice:wrong", "get", "/app/a"]);
    assert!(err.contains("etcdserver: authentication failed, invalid user ID or password"), "{err}");
    let err = refused(&one, &["--user=nobody:pw", "get", "/app/a"]);
    assert!(err.contains("etcdserver: authentication failed, invalid user ID or password"), "{err}");

    // A watch outside the permission is cancelled with etcd's reason.
    let watch = Command::new("timeout")
        .args(["4", "etcdctl", &format!("--endpoints={two}"), ALICE, "watch", "/other"])
        .env("ETCDCTL_API", "3")
        .output()?;
    let printed = format!("{}{}", String::from_utf8_lossy(&watch.stdout), String::from_utf8_lossy(&watch.stderr));
    assert!(printed.contains("permission denied"), "{printed}");

    // root sees everything and the users.
    assert_eq!(ok(&two, &[ROOT, "get", "/other"]), "/other\nx\n");
    assert_eq!(ok(&two, &[ROOT, "user", "list"]), "alice\nroot\n");
    // etcdctl 3.4 has no `auth status`: asked directly (open to anyone, as AuthStatus is).
    let status = AuthClient::new(Client::connect(&two).await?.channel).auth_status(AuthStatusRequest {}).await?.into_inner();
    assert!(status.enabled && status.auth_revision > 1, "{status:?}");

    // Survives a restart (snapshot plus log replay).
    root_puts(&one, 120).await?;
    cluster.kill(1);
    cluster.restart(1)?;
    wait_leader(&cluster, &[]).await?;
    eventually(Duration::from_secs(10), "the restarted member serves alice", || async {
        let (success, out, err) = etcdctl(&two, &[ALICE, "get", "/app/b"], None);
        anyhow::ensure!(success && out == "/app/b\n2\n", "{out}{err}");
        Ok(())
    })
    .await?;
    let err = refused(&two, &["get", "/app/a"]);
    assert!(err.contains("etcdserver: user name is empty"), "{err}");

    // A member added later receives the auth state in the leader's snapshot.
    let n = cluster.add_node("n4");
    let peer = format!("--peer-urls=http://{}", cluster.nodes[n].peer_addr());
    let err = refused(&one, &["member", "add", "n4", &peer, "--learner"]);
    assert!(err.contains("etcdserver: user name is empty"), "membership changes need root: {err}");
    ok(&one, &[ROOT, "member", "add", "n4", &peer, "--learner"]);
    cluster.spawn(n, "existing")?;
    let four = cluster.nodes[n].client_addr();
    eventually(Duration::from_secs(30), "the new member serves alice", || async {
        let (success, out, err) = etcdctl(&four, &[ALICE, "get", "--consistency=s", "/app/b"], None);
        anyhow::ensure!(success && out == "/app/b\n2\n", "{out}{err}");
        Ok(())
    })
    .await
    .map_err(|e| e.context(cluster.logs()))?;
    let err = refused(&four, &[ALICE, "get", "--consistency=s", "/other"]);
    assert!(err.contains("etcdserver: permission denied"), "{err}");
    let snapshot = std::path::Path::new(&cluster.nodes[n].data_dir).join("snapshot/snapshot.bin");
    assert!(snapshot.exists(), "the new member started from a snapshot");

    // Disabled again: no user needed.
    assert_eq!(ok(&two, &[ROOT, "auth", "disable"]), "Authentication Disabled\n");
    assert_eq!(ok(&one, &["get", "/other"]), "/other\nx\n");
    // etcdctl ignores "authentication is not enabled" and goes on without a token.
    assert_eq!(ok(&one, &[ALICE, "get", "/other"]), "/other\nx\n");
    let auth = AuthenticateRequest { name: "alice".into(), password: "alicepw".into() };
    let err = AuthClient::new(Client::connect(&one).await?.channel).authenticate(auth).await.expect_err("auth is disabled");
    assert_eq!(err.message(), "etcdserver: authentication is not enabled");
    Ok(())
}

/// The JSON gateway speaks for remote clients: with auth enabled its calls are checked by
/// the token in their `Authorization` header exactly as gRPC calls are (it must not borrow
/// the trust of the agent's in-process channel, which it also goes through).
#[tokio::test]
async fn json_clients_are_checked_by_their_token_as_grpc_clients_are() -> anyhow::Result<()> {
    use crate::client_http::curl_with;
    use serde_json::{json, Value};

    let cluster = Cluster::start(1)?;
    wait_leader(&cluster, &[]).await?;
    let endpoint = cluster.nodes[0].client_addr();
    ok(&endpoint, &["user", "add", "root:rootpw"]);
    ok(&endpoint, &["user", "add", "alice:alicepw"]);
    ok(&endpoint, &["role", "add", "app"]);
    ok(&endpoint, &["role", "grant-permission", "--prefix=true", "app", "readwrite", "/app/"]);
    ok(&endpoint, &["user", "grant-role", "alice", "app"]);
    assert_eq!(ok(&endpoint, &["auth", "enable"]), "Authentication Enabled\n");

    let post = |path: &str, body: Value, token: Option<&str>| -> anyhow::Result<(Value, u16)> {
        let header = token.map(|t| format!("Authorization: {t}"));
        let mut args = vec!["-X", "POST", "--data-binary"];
        let body = body.to_string();
        args.push(&body);
        if let Some(h) = &header {
            args.extend(["-H", h.as_str()]);
        }
        let (text, code) = curl_with(&args, &format!("http://{endpoint}{path}"))?;
        Ok((serde_json::from_str(&text).unwrap_or(Value::String(text)), code))
    };
    // "/app/x" is L2FwcC94, "/other" L290aGVy, "1" MQ==.
    let (answer, code) = post("/v3/kv/range", json!({"key": "L2FwcC94"}), None)?;
    assert!(code != 200 && answer["message"] == "etcdserver: user name is empty", "{code} {answer}");
    let (answer, code) = post("/v3/kv/put", json!({"key": "L2FwcC94", "value": "MQ=="}), None)?;
    assert!(code != 200 && answer["message"] == "etcdserver: user name is empty", "{code} {answer}");
    let (answer, code) = post("/v3/auth/authenticate", json!({"name": "alice", "password": "wrong"}), None)?;
    assert!(code != 200 && answer["message"].as_str().is_some_and(|m| m.contains("authentication failed")), "{code} {answer}");

    let (answer, code) = post("/v3/auth/authenticate", json!({"name": "alice", "password": "alicepw"}), None)?;
    let token = answer["token"].as_str().filter(|_| code == 200).ok_or_else(|| anyhow::anyhow!("{code} {answer}"))?.to_string();
    let (answer, code) = post("/v3/kv/put", json!({"key": "L2FwcC94", "value": "MQ=="}), Some(&token))?;
    assert_eq!(code, 200, "{answer}");
    let (answer, code) = post("/v3/kv/range", json!({"key": "L2FwcC94"}), Some(&token))?;
    assert!(code == 200 && answer["kvs"][0]["value"] == "MQ==", "{code} {answer}");
    let (answer, code) = post("/v3/kv/put", json!({"key": "L290aGVy", "value": "MQ=="}), Some(&token))?;
    assert!(code != 200 && answer["message"] == "etcdserver: permission denied", "{code} {answer}");
    let (answer, code) = post("/v3/kv/range", json!({"key": "L2FwcC94"}), Some("not-a-token"))?;
    assert!(code != 200 && answer["message"] == "etcdserver: invalid auth token", "{code} {answer}");
    Ok(())
}

/// `raftctl` as an authenticated etcd client of a lab with auth enabled: every command
/// reads the cluster through the etcd API, so it needs a user (`--user`, or the
/// variables); root may change the configuration, a read-only user may only look, and
/// without a user the error says what to give.
#[test]
fn raftctl_uses_an_etcd_user_when_auth_is_enabled() -> anyhow::Result<()> {
    use raftgres_tests::lab::Lab;

    let lab = Lab::up(1)?;
    crate::writes::with_logs(&lab, || {
        let endpoint = lab.endpoints()[0].clone();
        ok(&endpoint, &["user", "add", "root:rootpw"]);
        ok(&endpoint, &["user", "add", "viewer:viewpw"]);
        ok(&endpoint, &["role", "add", "viewer"]);
        ok(&endpoint, &["role", "grant-permission", "--prefix=true", "viewer", "read", "/"]);
        ok(&endpoint, &["user", "grant-role", "viewer", "viewer"]);
        assert_eq!(ok(&endpoint, &["auth", "enable"]), "Authentication Enabled\n");
        let node = lab.name(0);

        // No user: one error naming the problem and what to give; `members` needs none
        // (member list and status are open to anyone, as etcd's).
        assert!(lab.ctl(&["members"])?.contains(&node));
        for command in [&["list"][..], &["show-config"], &["edit-config", "-s", "ttl=20", "--force"]] {
            let err = lab.ctl(command).expect_err("no user").to_string();
            assert!(err.contains("etcdserver: user name is empty") && err.contains("--user USER[:PASSWORD]"), "{command:?}: {err}");
        }
        let err = lab.ctl(&["--user", "root:wrong", "list"]).expect_err("wrong password").to_string();
        assert!(err.contains("cannot authenticate as etcd user \"root\"") && err.contains("authentication failed"), "{err}");
        let err = lab.ctl(&["--user", "root", "list"]).expect_err("no terminal to ask on").to_string();
        assert!(err.contains("no terminal to ask on") && err.contains("--user root:PASSWORD"), "{err}");

        // root: reads and writes, by every way of giving the user.
        assert!(lab.ctl(&["--user", "root:rootpw", "list"])?.contains(&node));
        assert!(lab.ctl(&["members", "--user=root:rootpw"])?.contains(&node), "--user after the command");
        assert!(lab.ctl(&["--user", "root", "--password", "rootpw", "members"])?.contains(&node));
        lab.ctl(&["--user", "root:rootpw", "edit-config", "-s", "ttl=20", "--force"])?;
        let shown = lab.ctl_with(&["show-config"], &[("RAFTCTL_USER", "root"), ("RAFTCTL_PASSWORD", "rootpw")], None)?;
        assert!(shown.contains("ttl: 20"), "{shown}");
        assert!(lab.ctl_with(&["list"], &[("ETCDCTL_USER", "root:rootpw")], None)?.contains(&node));

        // viewer: reads, and a write is refused saying so.
        assert!(lab.ctl(&["--user", "viewer:viewpw", "list"])?.contains(&node));
        let err = lab.ctl(&["--user", "viewer:viewpw", "edit-config", "-s", "ttl=25", "--force"]).expect_err("read-only").to_string();
        assert!(err.contains("etcdserver: permission denied") && err.contains("lacks a permission"), "{err}");
        let shown = lab.ctl(&["--user", "viewer:viewpw", "show-config"])?;
        assert!(shown.contains("ttl: 20"), "the refused edit changed nothing: {shown}");
        Ok(())
    })
}

/// The client re-authenticates once when a member answers "invalid auth token" (here:
/// every token voided by `auth disable` and `auth enable`), as etcd's clientv3 does, and
/// goes on without a token when auth is disabled.
#[tokio::test]
async fn the_client_authenticates_again_when_its_token_is_voided() -> anyhow::Result<()> {
    use raftgres_client::{Api, Credentials, Security};
    use raftgres_proto::etcdserverpb::kv_client::KvClient;
    use raftgres_proto::etcdserverpb::RangeRequest;

    let cluster = Cluster::start(1)?;
    wait_leader(&cluster, &[]).await?;
    let endpoint = cluster.nodes[0].client_addr();
    let root = Credentials { user: "root".into(), password: "rootpw".into() };
    let read = |api: &Api| {
        let mut kv = KvClient::new(api.channel.clone());
        async move { kv.range(RangeRequest { key: b"/k".to_vec(), ..Default::default() }).await }
    };
    // Auth disabled: credentials are accepted and no token is sent.
    let before = Api::connect(std::slice::from_ref(&endpoint), &Security::default(), Some(&root)).await?;
    ok(&endpoint, &["user", "add", "root:rootpw"]);
    ok(&endpoint, &["put", "/k", "v"]);
    assert_eq!(read(&before).await?.into_inner().kvs.len(), 1);
    assert_eq!(ok(&endpoint, &["auth", "enable"]), "Authentication Enabled\n");

    let api = Api::connect(std::slice::from_ref(&endpoint), &Security::default(), Some(&root)).await?;
    assert_eq!(read(&api).await?.into_inner().kvs.len(), 1);
    ok(&endpoint, &[ROOT, "auth", "disable"]);
    ok(&endpoint, &["auth", "enable"]);
    assert_eq!(read(&api).await?.into_inner().kvs.len(), 1, "the voided token was replaced");

    let anonymous = Api::connect(std::slice::from_ref(&endpoint), &Security::default(), None).await?;
    assert_eq!(read(&anonymous).await.expect_err("no user").message(), "etcdserver: user name is empty");
    let wrong = Credentials { user: "root".into(), password: "nope".into() };
    let err = Api::connect(std::slice::from_ref(&endpoint), &Security::default(), Some(&wrong)).await.err().expect("wrong password");
    assert!(format!("{err:#}").contains("authentication failed, invalid user ID or password"), "{err:#}");
    Ok(())
}

/// etcd's `client-cert-auth` behaviour: a call without a token is made as the user the
/// client certificate's CommonName names (the lab's client certificate says "raftctl",
/// each node's its node name); a token, when sent, still wins.
#[tokio::test]
async fn a_client_certificates_common_name_is_the_user_of_calls_without_a_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nodes = raftgres_lab::LabNode::all(dir.path(), raftgres_lab::ports::layout(1, 5432)?, None);
    let tls = raftgres_lab::certs::create(dir.path(), &nodes)?;
    let (node_cert, node_key) = tls.node_files("node1");
    let config = dir.path().join("raftgres.yml");
    std::fs::write(
        &config,
        format!(
            "client-transport-security: {{cert-file: {}, key-file: {}, trusted-ca-file: {}, client-cert-auth: true}}\n",
            node_cert.display(),
            node_key.display(),
            tls.ca.display()
        ),
    )?;
    let cluster = Cluster::start_with(1, &["--config", &config.to_string_lossy()])?;
    let endpoint = format!("https://{}", cluster.nodes[0].client_addr());
    let ca = format!("--cacert={}", tls.ca.display());
    let (client_cert, client_key) = (format!("--cert={}", tls.client_cert.display()), format!("--key={}", tls.client_key.display()));
    let (node_cert, node_key) = (format!("--cert={}", node_cert.display()), format!("--key={}", node_key.display()));
    let as_raftctl =
        |args: &[&str]| etcdctl(&endpoint, &[&[ca.as_str(), client_cert.as_str(), client_key.as_str()][..], args].concat(), None);
    let as_node1 = |args: &[&str]| etcdctl(&endpoint, &[&[ca.as_str(), node_cert.as_str(), node_key.as_str()][..], args].concat(), None);
    eventually(Duration::from_secs(15), "the TLS node serves", || async {
        let (success, _, err) = as_raftctl(&["put", "/app/a", "1"]);
        anyhow::ensure!(success, "{err}");
        Ok(())
    })
    .await
    .map_err(|e| e.context(cluster.logs()))?;
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "raftctl:pw"],
        &["role", "add", "app"],
        &["role", "grant-permission", "--prefix=true", "app", "readwrite", "/app/"],
        &["user", "grant-role", "raftctl", "app"],
        &["auth", "enable"],
    ] {
        let (success, _, err) = as_raftctl(args);
        assert!(success, "{args:?}: {err}");
    }

    // No token: the certificate's user, with its permissions.
    let (success, out, err) = as_raftctl(&["get", "/app/a"]);
    assert!(success && out == "/app/a\n1\n", "{out}{err}");
    let (success, out, err) = as_raftctl(&["put", "/app/b", "2"]);
    assert!(success && out == "OK\n", "{out}{err}");
    let (success, _, err) = as_raftctl(&["put", "/other", "x"]);
    assert!(!success && err.contains("etcdserver: permission denied"), "outside the role: {err}");
    let (success, _, err) = as_raftctl(&["user", "list"]);
    assert!(!success && err.contains("etcdserver: permission denied"), "not root: {err}");
    // node1 is no user at all.
    let (success, _, err) = as_node1(&["get", "/app/a"]);
    assert!(!success && err.contains("etcdserver: permission denied"), "an unknown CN: {err}");
    // A token wins over the certificate: root may do what the CN's user may not.
    let (success, out, err) = as_node1(&[ROOT, "put", "/other", "x"]);
    assert!(success && out == "OK\n", "{out}{err}");
    let (success, _, err) = as_raftctl(&["--user=raftctl:wrong", "get", "/app/a"]);
    assert!(!success && err.contains("authentication failed"), "a wrong password is not replaced by the certificate: {err}");
    Ok(())
}
