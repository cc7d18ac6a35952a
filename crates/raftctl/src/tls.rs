//! TLS for `raftctl`'s connections, as etcdctl takes it: `--cacert` (the CA that
//! signed the servers' certificates), `--cert` and `--key` (the client certificate a
//! node with `client-cert-auth` requires), or the `RAFTCTL_CACERT`, `RAFTCTL_CERT`,
//! `RAFTCTL_KEY` variables. Without them, the certificates of a lab made with
//! `raftctl lab up --tls` are used (`command::lab::tls_files_for`: the lab named by
//! `--lab DIR` (`RAFTCTL_LAB`), or the default lab when it serves one of `--endpoints`).
//! The same settings serve gRPC (`https://` endpoints) and the REST calls to the members.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use raftgres_agent::http;
use raftgres_tls::{client_config, Certs, ClientTls, Identity};
use tonic::transport::ClientTlsConfig;

/// The global TLS flags.
#[derive(Debug, Default, Args)]
pub struct TlsArgs {
    /// CA certificate that signed the nodes' certificates; endpoints become https://.
    #[arg(long, global = true, env = "RAFTCTL_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (for nodes with client-cert-auth and REST verify_client).
    #[arg(long, global = true, env = "RAFTCTL_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long, global = true, env = "RAFTCTL_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// A lab directory whose certificates to use (labs made with `raftctl lab up --tls`).
    #[arg(long, global = true, env = "RAFTCTL_LAB")]
    pub lab: Option<PathBuf>,
}

/// The CA and client certificate files of one connection setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cacert: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// How `raftctl` connects: plaintext, or TLS for gRPC and REST alike.
#[derive(Clone, Default)]
pub struct Security {
    /// `None`: plaintext (`http://` endpoints).
    pub grpc: Option<ClientTlsConfig>,
    pub rest: http::Client,
}

impl Security {
    /// Reads and checks the files.
    pub fn load(files: Option<&TlsFiles>) -> anyhow::Result<Self> {
        let Some(files) = files else { return Ok(Self::default()) };
        let ca = Certs::read("--cacert", &files.cacert)?;
        let identity = match &files.identity {
            Some((cert, key)) => Some(Identity::read("--cert", cert, "--key", key)?),
            None => None,
        };
        let tls = ClientTls { ca, identity };
        let rest = http::Client::new(Some(client_config(&tls).map_err(anyhow::Error::msg)?));
        Ok(Self { grpc: Some(tls.tonic()), rest })
    }
}

impl TlsArgs {
    /// The files the flags name; None without `--cacert` (then a TLS lab's may serve).
    pub fn files(&self) -> anyhow::Result<Option<TlsFiles>> {
        if let Some(cacert) = &self.cacert {
            let identity = self.cert.clone().zip(self.key.clone());
            return Ok(Some(TlsFiles { cacert: cacert.clone(), identity }));
        }
        if self.cert.is_some() {
            bail!("--cert and --key need --cacert (the CA that signed the nodes' certificates)");
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_and_a_certificate_needs_a_ca() {
        let args = TlsArgs { cacert: Some("/ca".into()), cert: Some("/c".into()), key: Some("/k".into()), lab: None };
        let files = args.files().expect("files").expect("tls");
        assert_eq!(files, TlsFiles { cacert: "/ca".into(), identity: Some(("/c".into(), "/k".into())) });
        let args = TlsArgs { cacert: None, cert: Some("/c".into()), key: Some("/k".into()), lab: None };
        assert!(args.files().expect_err("no ca").to_string().contains("need --cacert"));
        let err = Security::load(Some(&files)).err().expect("missing files").to_string();
        assert!(err.starts_with("--cacert /ca: cannot read it"), "{err}");
    }
}
