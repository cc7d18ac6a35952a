//! A lab with TLS everywhere (`raftctl lab up --tls`): raftctl, the real etcdctl (with
//! `https://` endpoints, `endpoint status|hashkv` too) and curl (the REST API, and the
//! client port's `/health` and `/metrics`) work with the lab's certificates, and every
//! port refuses what lacks one: etcdctl without a client certificate, a plaintext gRPC
//! client, plain HTTP on the REST API, a REST write without a client certificate, and a
//! peer-port client without one. No private key shows in the REST API's answers or the
//! log.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context};
use raftgres_tests::client::Client;
use raftgres_tests::lab::Lab;

use crate::writes::with_logs;

fn run(program: &str, args: &[String]) -> anyhow::Result<Output> {
    Command::new(program)
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program} (bash deploy/setup.sh installs it)"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_tls_lab_serves_certified_clients_and_refuses_the_others() -> anyhow::Result<()> {
    let lab = Lab::up_with(3, &["--tls"])?;
    with_logs(&lab, || {
        let file = |name: &str| lab.tls_file(name).display().to_string();
        let (ca, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
        for node in ["node1.key", "node2.key", "node3.key", "client.key"] {
            let mode = std::fs::metadata(lab.tls_file(node))?.permissions().mode() & 0o777;
            ensure!(mode == 0o600, "{node} has mode {mode:o}, not 600");
        }

        // raftctl finds the certificates through the lab (`--lab`, added by the harness).
        let list = lab.ctl(&["list"])?;
        ensure!(list.contains("Leader") && list.matches("streaming").count() == 2, "raftctl list:\n{list}");
        let members = lab.ctl(&["members"])?;
        ensure!(members.matches("yes").count() == 3, "every member answers its Status over TLS:\n{members}");

        // etcdctl over https with the client certificate.
        let https = format!("https://127.0.0.1:{}", lab.client_port(1));
        let certified = |args: &[&str]| {
            let mut all = strings(&["--endpoints", &https, "--cacert", &ca, "--cert", &cert, "--key", &key]);
            all.extend(strings(args));
            run("etcdctl", &all)
        };
        let put = certified(&["put", "/tls/key", "secret-value"])?;
        ensure!(put.status.success() && text(&put).trim() == "OK", "etcdctl put: {}", text(&put));
        let get = certified(&["get", "--print-value-only", "/tls/key"])?;
        ensure!(String::from_utf8_lossy(&get.stdout) == "secret-value\n", "etcdctl get: {}", text(&get));
        let members = certified(&["member", "list"])?;
        ensure!(text(&members).matches("https://").count() == 6, "peer and client URLs are https:\n{}", text(&members));
        // Commands etcdctl dials with the raw endpoint as the HTTP/2 :authority.
        let status = certified(&["endpoint", "status"])?;
        ensure!(status.status.success() && text(&status).starts_with(&https), "etcdctl endpoint status: {}", text(&status));
        let hashkv = certified(&["endpoint", "hashkv"])?;
        ensure!(hashkv.status.success() && text(&hashkv).starts_with(&https), "etcdctl endpoint hashkv: {}", text(&hashkv));
        // etcd's HTTP endpoints on the client port, over the same TLS.
        let client_port = |path: &str| {
            run("curl", &strings(&["-s", "-m", "10", "--cacert", &ca, "--cert", &cert, "--key", &key, &format!("{https}{path}")]))
        };
        let health = client_port("/health")?;
        ensure!(text(&health) == r#"{"health":"true","reason":""}"#, "GET /health on the client port over https: {}", text(&health));
        let metrics = client_port("/metrics")?;
        ensure!(text(&metrics).contains("etcd_server_has_leader 1"), "GET /metrics on the client port over https: {}", text(&metrics));

        // Refused: no client certificate, and plaintext.
        let timeouts = ["--dial-timeout", "2s", "--command-timeout", "3s"];
        let mut no_cert = strings(&["--endpoints", &https, "--cacert", &ca]);
        no_cert.extend(strings(&timeouts));
        no_cert.extend(strings(&["get", "/tls/key"]));
        let out = run("etcdctl", &no_cert)?;
        ensure!(!out.status.success() && !text(&out).contains("secret-value"), "etcdctl without a certificate: {}", text(&out));
        let mut plain = strings(&["--endpoints", &lab.endpoints()[1]]);
        plain.extend(strings(&timeouts));
        plain.extend(strings(&["get", "/tls/key"]));
        let out = run("etcdctl", &plain)?;
        ensure!(!out.status.success() && !text(&out).contains("secret-value"), "plaintext etcdctl: {}", text(&out));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let plaintext = runtime.block_on(async {
            let client = Client::connect(&lab.endpoints()[1]).await?;
            tokio::time::timeout(Duration::from_secs(5), client.status()).await?
        });
        ensure!(plaintext.is_err(), "a plaintext gRPC client got an answer");

        // The REST API: HTTPS with the CA; writes need a client certificate.
        let rest = format!("https://127.0.0.1:{}", lab.rest_port(0));
        let curl = |args: &[&str]| {
            let mut all = strings(&["-s", "-m", "10", "-w", "\n%{http_code}", "--cacert", &ca]);
            all.extend(strings(args));
            run("curl", &all)
        };
        let patroni = curl(&[&format!("{rest}/patroni")])?;
        let body = String::from_utf8_lossy(&patroni.stdout).into_owned();
        ensure!(body.ends_with("\n200") && body.contains("\"state\":\"running\""), "GET /patroni over https: {body}");
        let reload = curl(&["-X", "POST", &format!("{rest}/reload")])?;
        ensure!(String::from_utf8_lossy(&reload.stdout).ends_with("\n403"), "POST without a certificate: {}", text(&reload));
        let reload = curl(&["--cert", &cert, "--key", &key, "-X", "POST", &format!("{rest}/reload")])?;
        ensure!(
            String::from_utf8_lossy(&reload.stdout).ends_with("\n202") || String::from_utf8_lossy(&reload.stdout).ends_with("\n200"),
            "POST with a certificate: {}",
            text(&reload)
        );
        let key_pem = std::fs::read_to_string(lab.tls_file("node1.key"))?;
        let key_body = key_pem.lines().find(|l| !l.starts_with("-----")).context("an empty key file")?;
        for path in ["patroni", "config", "cluster", "metrics"] {
            let out = curl(&[&format!("{rest}/{path}")])?;
            ensure!(!String::from_utf8_lossy(&out.stdout).contains(key_body), "node1's private key appears in /{path}");
        }
        ensure!(!lab.log(0).contains(key_body), "node1's private key appears in its log");
        let plain = run("curl", &strings(&["-s", "-m", "5", &format!("http://127.0.0.1:{}/patroni", lab.rest_port(0))]))?;
        ensure!(!String::from_utf8_lossy(&plain.stdout).contains("running"), "plain HTTP on the REST port: {}", text(&plain));

        // The peer port: a client without a certificate is refused; with one it gets an answer.
        let peer = format!("https://127.0.0.1:{}/", lab.peer_port(2));
        let anonymous = curl(&[&peer])?;
        ensure!(!anonymous.status.success() && anonymous.status.code() != Some(7), "peer port without a certificate: {}", text(&anonymous));
        let certified = curl(&["--cert", &cert, "--key", &key, &peer])?;
        ensure!(certified.status.success(), "peer port with a certificate: {}", text(&certified));
        Ok(())
    })
}
