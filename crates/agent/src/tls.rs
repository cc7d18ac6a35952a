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

use raftgres_tls::{client_config, provider, root_store};
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::WebPkiClientVerifier;

use raftgres_tls::{Certs, ClientTls, Identity};

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
    pub fn load(&self) -> Result<Option<RestTls>, String> {
        let Some(certfile) = self.certfile else {
            if self.keyfile.is_some() || self.cafile.is_some() || self.verify_client != VerifyClient::None {
                return Err("restapi.keyfile, cafile and verify_client need restapi.certfile (the server certificate)".into());
            }
            return Ok(None);
        };
        let keyfile = self.keyfile.unwrap_or(certfile);
        let identity = Identity::read("restapi.certfile", certfile, "restapi.keyfile", keyfile).map_err(|e| e.to_string())?;
        let cafile: PathBuf = self
            .cafile
            .ok_or("restapi.cafile is required with restapi.certfile: the agent verifies the other members' certificates with it")?
            .to_path_buf();
        let ca = Certs::read("restapi.cafile", &cafile).map_err(|e| e.to_string())?;
        let server = server_config(&identity, &ca, self.verify_client).map_err(|e| format!("restapi: {e}"))?;
        let client = client_config(&ClientTls { ca, identity: Some(identity) }).map_err(|e| format!("restapi: {e}"))?;
        Ok(Some(RestTls { server, verify_client: self.verify_client, client }))
    }
}

/// The REST API's server config, HTTP/1.1 only (what axum serves here).
fn server_config(identity: &Identity, ca: &Certs, verify: VerifyClient) -> Result<Arc<rustls::ServerConfig>, String> {
    let builder =
        rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    let builder = match verify {
        VerifyClient::None => builder.with_no_client_auth(),
        VerifyClient::Optional | VerifyClient::Required => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca).map_err(|e| e.to_string())?), provider());
            let verifier = if verify == VerifyClient::Optional { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let key = identity.key.der().map_err(|e| e.to_string())?;
    let mut config = builder.with_single_cert(identity.certs.der().to_vec(), key).map_err(|e| e.to_string())?;
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
        assert!(err.contains("need restapi.certfile"), "{err}");
        let err = files(None, None, VerifyClient::Required).load().expect_err("no cert");
        assert!(err.contains("need restapi.certfile"), "{err}");
        let err = files(Some("/nonexistent/node.crt"), Some("/ca.crt"), VerifyClient::None).load().expect_err("missing");
        assert!(err.starts_with("restapi.certfile /nonexistent/node.crt: cannot read it"), "{err}");
        let parsed: VerifyClient = serde_norway::from_str("optional").expect("yaml");
        assert_eq!(parsed, VerifyClient::Optional);
        assert!(serde_norway::from_str::<VerifyClient>("sometimes").is_err());
    }
}
