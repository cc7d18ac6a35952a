//! How a client reaches a raftgres cluster: plaintext, or TLS with a CA and an optional
//! client certificate, for gRPC (the etcd API) and the members' REST APIs alike. Owns
//! the file paths ([`TlsFiles`]) and the checked, loaded settings ([`Security`]).

use std::path::PathBuf;

use raftgres_agent::http;
use raftgres_tls::{client_config, Certs, ClientTls, Identity};
use tonic::transport::ClientTlsConfig;

/// The CA and client certificate files of one connection setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cacert: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// How a client connects: plaintext, or TLS for gRPC and REST alike.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_flag() {
        let files = TlsFiles { cacert: "/ca".into(), identity: Some(("/c".into(), "/k".into())) };
        let err = Security::load(Some(&files)).err().expect("missing files").to_string();
        assert!(err.starts_with("--cacert /ca: cannot read it"), "{err}");
        assert!(Security::load(None).expect("plaintext").grpc.is_none());
    }
}
