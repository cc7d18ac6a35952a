//! Where raftctl connects and to which cluster. Endpoints come from `--endpoints`, then
//! a node's own config file (`-c raftgres.yml`: its `advertise-client`, or
//! `listen-client`), then `RAFTCTL_ENDPOINTS`, then `ETCDCTL_ENDPOINTS`, then
//! `127.0.0.1:2379`. The same file gives the cluster's `scope` and `namespace` when the
//! command does not name them, and the TLS of the etcd API (`client-transport-security`)
//! when no `--cacert` is given: patronictl's `-c patroni.yml` habit.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use raftgres_client::TlsFiles;
use serde::Deserialize;

/// The endpoint when nothing names one (etcd's default).
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";

/// What raftctl reads from a node's config file (the rest of the file is the node's).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct NodeFile {
    listen_client: Option<String>,
    advertise_client: Option<String>,
    pub scope: Option<String>,
    pub namespace: Option<String>,
    client_transport_security: Option<ClientPortTls>,
}

/// `client-transport-security:` as the node reads it (the keys raftctl needs).
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
struct ClientPortTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    trusted_ca_file: Option<PathBuf>,
    client_cert_auth: Option<bool>,
}

impl NodeFile {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("-c {}: cannot read it", path.display()))?;
        Self::parse(&text).with_context(|| format!("-c {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        let file: Option<Self> = serde_norway::from_str(text).context("not a raftgres config file")?;
        Ok(file.unwrap_or_default())
    }

    /// The node's etcd API address as a client on this machine reaches it (a wildcard
    /// listen address becomes the loopback one).
    fn endpoint(&self) -> Option<String> {
        let address = self.advertise_client.as_deref().or(self.listen_client.as_deref())?;
        let (host, port) = address.rsplit_once(':')?;
        let host = match host {
            "0.0.0.0" | "" => "127.0.0.1",
            "[::]" => "[::1]",
            other => other,
        };
        Some(format!("{host}:{port}"))
    }

    /// The CA (and, with `client-cert-auth`, this node's certificate as the client one)
    /// when the node's etcd API uses TLS.
    pub fn tls_files(&self) -> anyhow::Result<Option<TlsFiles>> {
        let Some(tls) = &self.client_transport_security else { return Ok(None) };
        let Some(cacert) = &tls.trusted_ca_file else {
            bail!("the node's client-transport-security has no trusted-ca-file: give the CA with --cacert");
        };
        let identity = tls.client_cert_auth.unwrap_or(false).then(|| (tls.cert_file.clone(), tls.key_file.clone()));
        Ok(Some(TlsFiles { cacert: cacert.clone(), identity }))
    }
}

/// The endpoints to try, by the order in the module doc; `env` reads a variable.
pub fn resolve(flag: &[String], file: Option<&NodeFile>, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    if !flag.is_empty() {
        return flag.to_vec();
    }
    if let Some(endpoint) = file.and_then(NodeFile::endpoint) {
        return vec![endpoint];
    }
    for variable in ["RAFTCTL_ENDPOINTS", "ETCDCTL_ENDPOINTS"] {
        let listed: Vec<String> =
            env(variable).unwrap_or_default().split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect();
        if !listed.is_empty() {
            return listed;
        }
    }
    vec![DEFAULT_ENDPOINT.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "name: node1\nlisten-client: 0.0.0.0:2379\nadvertise-client: 10.0.0.11:2379\nscope: pg-main\n\
        client-transport-security: {cert-file: /etc/r/n1.crt, key-file: /etc/r/n1.key, trusted-ca-file: /etc/r/ca.crt, client-cert-auth: true}\n\
        postgresql: {listen: 0.0.0.0:5432}\n";

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_flag_then_the_file_then_the_variables_then_the_default() {
        let file = NodeFile::parse(NODE).expect("node file");
        let both = env(&[("RAFTCTL_ENDPOINTS", "a:1, b:2"), ("ETCDCTL_ENDPOINTS", "http://c:3")]);
        assert_eq!(resolve(&["x:9".into()], Some(&file), &both), ["x:9"]);
        assert_eq!(resolve(&[], Some(&file), &both), ["10.0.0.11:2379"]);
        assert_eq!(resolve(&[], None, &both), ["a:1", "b:2"]);
        assert_eq!(resolve(&[], None, env(&[("RAFTCTL_ENDPOINTS", " "), ("ETCDCTL_ENDPOINTS", "http://c:3,d:4")])), ["http://c:3", "d:4"]);
        assert_eq!(resolve(&[], None, env(&[])), [DEFAULT_ENDPOINT]);
    }

    #[test]
    fn a_node_file_gives_scope_tls_and_a_reachable_endpoint() {
        let file = NodeFile::parse(NODE).expect("node file");
        assert_eq!((file.scope.as_deref(), file.namespace.as_deref()), (Some("pg-main"), None));
        let tls = file.tls_files().expect("tls").expect("configured");
        assert_eq!(tls, TlsFiles { cacert: "/etc/r/ca.crt".into(), identity: Some(("/etc/r/n1.crt".into(), "/etc/r/n1.key".into())) });
        let local = NodeFile::parse("listen-client: 0.0.0.0:2381\n").expect("node file");
        assert_eq!(local.endpoint().as_deref(), Some("127.0.0.1:2381"));
        assert_eq!(local.tls_files().expect("no tls"), None);
        let no_ca = NodeFile::parse("client-transport-security: {cert-file: /a, key-file: /b}\n").expect("node file");
        assert!(no_ca.tls_files().expect_err("no CA").to_string().contains("give the CA with --cacert"));
        assert!(NodeFile::parse("- a list\n").is_err());
        assert_eq!(NodeFile::parse("").expect("empty"), NodeFile::default());
    }

    #[test]
    fn clap_takes_c_anywhere_and_endpoints_without_a_default() {
        use clap::Parser;
        let mut cli =
            crate::Cli::parse_from(["raftctl", "switchover", "-c", "/etc/raftgres/raftgres.yml", "--scheduled", "2026-12-05T10:00+02:00"]);
        assert_eq!(cli.config.as_deref(), Some(Path::new("/etc/raftgres/raftgres.yml")));
        assert!(cli.endpoints.is_empty(), "no default: resolve picks one");
        let (scope, namespace) = cli.command.cluster_mut().expect("switchover names a cluster");
        assert_eq!((scope.as_deref(), namespace.as_deref()), (None, None));
        let cli = crate::Cli::parse_from(["raftctl", "--endpoints", "a:1,b:2", "list", "demo"]);
        assert_eq!(cli.endpoints, ["a:1", "b:2"]);
        let mut cli = crate::Cli::parse_from(["raftctl", "members"]);
        assert!(cli.command.cluster_mut().is_none());
    }
}
