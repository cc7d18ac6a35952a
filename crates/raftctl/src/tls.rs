//! TLS flags for `raftctl`'s connections, as etcdctl takes them: `--cacert` (the CA that
//! signed the servers' certificates), `--cert` and `--key` (the client certificate a
//! node with `client-cert-auth` requires), or the `RAFTCTL_CACERT`, `RAFTCTL_CERT`,
//! `RAFTCTL_KEY` variables. Without them, the certificates of a lab made with
//! `raftctl lab up --tls` are used (`raftgres_lab::tls_files_for`: the lab named by
//! `--lab DIR` (`RAFTCTL_LAB`), or the default lab when it serves one of `--endpoints`).
//! The same settings serve gRPC (`https://` endpoints) and the REST calls to the members
//! (`raftgres_client::Security`).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use raftgres_client::TlsFiles;

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
    }
}
