//! HTTPS for the REST API, configured as Patroni does it: `restapi.certfile`,
//! `keyfile` (default: the key is in `certfile`), `cafile` and `verify_client`
//! (`none`, `optional`: a client certificate is needed only for the mutating endpoints,
//! `required`: for every request). The same CA and certificate serve the agent's own
//! calls to the other members' REST APIs ([`crate::http::Client`]).
//!
//! Owns: turning the checked PEM material (`raftgres_tls`) into the REST API's rustls
//! server config and its client config, with the ring provider. Must not touch: the files' contents
//! beyond that; keys are never printed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use raftgres_tls::{client_config, provider, root_store, TlsError};
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{VerifierBuilderError, WebPkiClientVerifier};

use raftgres_tls::{Certs, ClientTls, Identity};

/// Why the REST API's HTTPS could not be set up; each message names the `restapi` key
/// (and, once one is given, its file) to fix.
#[derive(Debug, thiserror::Error)]
pub enum RestTlsError {
    /// `keyfile`, `cafile` or `verify_client` without `certfile`.
    #[error("restapi.keyfile, cafile and verify_client need restapi.certfile (the server certificate)")]
    NoCertfile,
    /// `certfile` without `cafile`.
    #[error("restapi.cafile is required with restapi.certfile: the agent verifies the other members' certificates with it")]
    NoCafile,
    /// `certfile`, `keyfile` or `cafile` cannot be read, holds no PEM of the right kind,
    /// or the key does not match the certificate (the message names the key and the file).
    #[error(transparent)]
    File(#[from] TlsError),
    /// The ring provider offers no safe protocol version (no file is at fault).
    #[error("restapi: {0}")]
    Protocols(#[source] rustls::Error),
    /// `cafile` cannot verify the clients' certificates that `verify_client` asks for.
    #[error("restapi: restapi.cafile {cafile} cannot verify client certificates: {source}")]
    ClientVerifier { cafile: PathBuf, source: VerifierBuilderError },
    /// `certfile` and its key make no server certificate rustls accepts.
    #[error("restapi: restapi.certfile {certfile}: {source}")]
    ServerCert { certfile: PathBuf, source: rustls::Error },
    /// rustls refuses the CA or the certificate in a config (the message names the file).
    #[error("restapi: {0}")]
    Material(#[source] TlsError),
}

/// Patroni's `restapi.verify_client`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyClient {
    /// No client certificates are asked for.
    #[default]
    None,
    /// Asked for; verified when presented; needed for the mutating endpoints.
    Optional,
    /// Every connection must present a certificate signed by `cafile`.
    Required,
}

/// The REST API's HTTPS: what it serves with, and what the agent calls others with.
#[derive(Clone)]
pub struct RestTls {
    pub server: Arc<rustls::ServerConfig>,
    pub verify_client: VerifyClient,
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for RestTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RestTls {{ verify_client: {:?} }}", self.verify_client)
    }
}

/// The `restapi` TLS keys as given in the file.
pub struct RestTlsFiles<'a> {
    pub certfile: Option<&'a Path>,
    pub keyfile: Option<&'a Path>,
    pub cafile: Option<&'a Path>,
    pub verify_client: VerifyClient,
}

impl RestTlsFiles<'_> {
    /// `None` without `certfile` (plain HTTP); each error names the key to fix.
    pub fn load(&self) -> Result<Option<RestTls>, RestTlsError> {
        let Some(certfile) = self.certfile else {
            if self.keyfile.is_some() || self.cafile.is_some() || self.verify_client != VerifyClient::None {
                return Err(RestTlsError::NoCertfile);
            }
            return Ok(None);
        };
        let keyfile = self.keyfile.unwrap_or(certfile);
        let identity = Identity::read("restapi.certfile", certfile, "restapi.keyfile", keyfile)?;
        let cafile = self.cafile.ok_or(RestTlsError::NoCafile)?;
        let ca = Certs::read("restapi.cafile", cafile)?;
        let server = server_config(&identity, &ca, self.verify_client)?;
        let client = client_config(&ClientTls { ca, identity: Some(identity) }).map_err(RestTlsError::Material)?;
        Ok(Some(RestTls { server, verify_client: self.verify_client, client }))
    }
}

/// The REST API's server config, HTTP/1.1 only (what axum serves here).
fn server_config(identity: &Identity, ca: &Certs, verify: VerifyClient) -> Result<Arc<rustls::ServerConfig>, RestTlsError> {
    let builder =
        rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(RestTlsError::Protocols)?;
    let builder = match verify {
        VerifyClient::None => builder.with_no_client_auth(),
        VerifyClient::Optional | VerifyClient::Required => {
            let roots = root_store(ca).map_err(RestTlsError::Material)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if verify == VerifyClient::Optional { verifier.allow_unauthenticated() } else { verifier };
            let verifier = verifier.build().map_err(|source| RestTlsError::ClientVerifier { cafile: ca.path().to_path_buf(), source })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = identity.key.der().map_err(RestTlsError::Material)?;
    let mut config = builder
        .with_single_cert(identity.certs.der().to_vec(), key)
        .map_err(|source| RestTlsError::ServerCert { certfile: identity.certs.path().to_path_buf(), source })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_keys_need_a_certificate_and_a_ca() {
        let files = |cert: Option<&'static str>, ca: Option<&'static str>, verify| RestTlsFiles {
            certfile: cert.map(Path::new),
            keyfile: None,
            cafile: ca.map(Path::new),
            verify_client: verify,
        };
        assert!(files(None, None, VerifyClient::None).load().expect("plain").is_none());
        let err = files(None, Some("/ca.crt"), VerifyClient::None).load().expect_err("no cert");
        assert!(matches!(err, RestTlsError::NoCertfile) && err.to_string().contains("need restapi.certfile"), "{err}");
        let err = files(None, None, VerifyClient::Required).load().expect_err("no cert");
        assert!(matches!(err, RestTlsError::NoCertfile), "{err}");
        let err = files(Some("/nonexistent/node.crt"), Some("/ca.crt"), VerifyClient::None).load().expect_err("missing");
        assert!(matches!(err, RestTlsError::File(TlsError::Read { .. })), "{err}");
        assert!(err.to_string().starts_with("restapi.certfile /nonexistent/node.crt: cannot read it"), "{err}");
        let parsed: VerifyClient = serde_norway::from_str("optional").expect("yaml");
        assert_eq!(parsed, VerifyClient::Optional);
        assert!(serde_norway::from_str::<VerifyClient>("sometimes").is_err());
    }
}
