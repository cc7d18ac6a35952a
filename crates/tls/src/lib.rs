//! TLS configured by file paths, as etcd does it: a section such as
//! `peer-transport-security: {cert-file, key-file, trusted-ca-file, client-cert-auth}`
//! is read into [`TransportSecurity`], and its files into checked PEM material
//! ([`Identity`], [`Certs`]) at startup, so a missing, unreadable or malformed file is
//! one clear error naming the setting, never a panic later.
//!
//! Owns: reading and checking PEM files, and turning them into tonic's server and client
//! TLS configs and rustls server and client configs (rustls with the ring provider). The private
//! key's bytes are never printed: [`Key`]'s `Debug` shows only where it came from. Also
//! a peer certificate's subject CommonName ([`common_name`], `subject`).
//!
//! A leaf crate on purpose: the store (peer port), the etcd API (client port), the agent
//! (REST HTTPS and its calls to other members) and `raftctl` each use it directly.

mod subject;

use std::path::{Path, PathBuf};

use std::sync::Arc;

pub use subject::common_name;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::rustls;
use tonic::transport::{Certificate, ClientTlsConfig, ServerTlsConfig};

/// The one crypto provider: ring (tonic 0.12's `tls` feature uses it too).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS material could not be loaded; each message names the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting} {path}: cannot read it: {source}")]
    Read { setting: String, path: PathBuf, source: std::io::Error },
    #[error("{setting} {path}: {why}")]
    Invalid { setting: String, path: PathBuf, why: String },
    #[error("{0}")]
    Config(String),
}

/// One etcd-style `*-transport-security` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TransportSecurity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub trusted_ca_file: Option<PathBuf>,
    /// Require clients to present a certificate signed by `trusted-ca-file`.
    pub client_cert_auth: Option<bool>,
}

/// A checked PEM file of one or more certificates.
#[derive(Clone)]
pub struct Certs {
    pem: Vec<u8>,
    der: Vec<CertificateDer<'static>>,
    path: PathBuf,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Certs({})", self.path.display())
    }
}

impl Certs {
    /// Reads `path` (the value of `setting`); it must hold at least one certificate.
    pub fn read(setting: &str, path: &Path) -> Result<Self, TlsError> {
        let pem = read(setting, path)?;
        let der = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(setting, path, format!("not a PEM certificate file: {e}")))?;
        if der.is_empty() {
            return Err(invalid(setting, path, "holds no certificate (expected -----BEGIN CERTIFICATE-----)".into()));
        }
        Ok(Self { pem, der, path: path.to_path_buf() })
    }

    pub fn der(&self) -> &[CertificateDer<'static>] {
        &self.der
    }

    /// The file the certificates were read from (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tonic(&self) -> Certificate {
        Certificate::from_pem(&self.pem)
    }
}

/// A checked PEM private key. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct Key {
    pem: Vec<u8>,
    path: PathBuf,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}, contents hidden)", self.path.display())
    }
}

impl Key {
    /// Reads `path` (the value of `setting`); it must hold a PKCS#8, PKCS#1 or SEC1 key.
    pub fn read(setting: &str, path: &Path) -> Result<Self, TlsError> {
        let pem = read(setting, path)?;
        match PrivateKeyDer::from_pem_slice(&pem) {
            Ok(_) => Ok(Self { pem, path: path.to_path_buf() }),
            Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                Err(invalid(setting, path, "holds no private key (expected -----BEGIN PRIVATE KEY-----)".into()))
            }
            Err(e) => Err(invalid(setting, path, format!("not a PEM private key: {e}"))),
        }
    }

    /// The key in DER form (checked by [`Key::read`]).
    pub fn der(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.pem).map_err(|_| invalid("key", &self.path, "holds no private key".into()))
    }
}

/// A certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct Identity {
    pub certs: Certs,
    pub key: Key,
}

impl Identity {
    /// Reads the pair and checks that rustls accepts it (a usable key that matches the
    /// certificate); each setting names where its path came from.
    pub fn read(cert_setting: &str, cert: &Path, key_setting: &str, key: &Path) -> Result<Self, TlsError> {
        let identity = Self { certs: Certs::read(cert_setting, cert)?, key: Key::read(key_setting, key)? };
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(identity.certs.der.clone(), identity.key.der()?)
            .map_err(|e| invalid(key_setting, key, format!("cannot be used with {cert_setting} {}: {e}", cert.display())))?;
        Ok(identity)
    }

    fn tonic(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.certs.pem, &self.key.pem)
    }
}

/// What a TLS server presents, and the CA its clients' certificates must chain to when
/// client certificates are required.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub identity: Identity,
    pub client_ca: Option<Certs>,
}

impl ServerTls {
    /// A rustls server config offering `alpn` (e.g. `h2` and `http/1.1`): client
    /// certificates required when `client_ca` is set.
    pub fn rustls(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca)?), provider())
                    .build()
                    .map_err(|e| TlsError::Config(format!("{}: {e}", ca.path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(self.identity.certs.der.clone(), self.identity.key.der()?)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.identity.certs.path.display())))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// tonic's server config: client certificates required when `client_ca` is set.
    pub fn tonic(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(self.identity.tonic());
        match &self.client_ca {
            Some(ca) => config.client_ca_root(ca.tonic()),
            None => config,
        }
    }
}

/// What a TLS client trusts, and the certificate it presents when it has one.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: Certs,
    pub identity: Option<Identity>,
}

impl ClientTls {
    /// tonic's client config.
    pub fn tonic(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(self.ca.tonic());
        match &self.identity {
            Some(identity) => config.identity(identity.tonic()),
            None => config,
        }
    }
}

/// Peer TLS, always mutual: the server side requires certificates signed by the CA, the
/// client side presents the node's own certificate.
#[derive(Debug, Clone)]
pub struct PeerTls {
    pub server: ServerTls,
    pub client: ClientTls,
}

impl TransportSecurity {
    fn identity(&self, section: &str) -> Result<Identity, TlsError> {
        Identity::read(&format!("{section}.cert-file"), &self.cert_file, &format!("{section}.key-file"), &self.key_file)
    }

    fn ca(&self, section: &str, why: &str) -> Result<Certs, TlsError> {
        let setting = format!("{section}.trusted-ca-file");
        let path = self.trusted_ca_file.as_deref().ok_or_else(|| TlsError::Config(format!("{setting} is required {why}")))?;
        Certs::read(&setting, path)
    }

    /// The client port's TLS (`client-transport-security`): client certificates are
    /// required when `client-cert-auth: true`, which needs `trusted-ca-file`.
    pub fn client_port(&self, section: &str) -> Result<ServerTls, TlsError> {
        let identity = self.identity(section)?;
        let client_ca = match self.client_cert_auth {
            Some(true) => Some(self.ca(section, "with client-cert-auth: true")?),
            _ => None,
        };
        Ok(ServerTls { identity, client_ca })
    }

    /// The peer port's TLS (`peer-transport-security`), always mutual.
    pub fn peer(&self, section: &str) -> Result<PeerTls, TlsError> {
        if self.client_cert_auth == Some(false) {
            return Err(TlsError::Config(format!(
                "{section}.client-cert-auth: false is not supported: peer TLS is always mutual (remove the key)"
            )));
        }
        let ca = self.ca(section, "(peers authenticate each other with certificates signed by it)")?;
        let identity = self.identity(section)?;
        Ok(PeerTls {
            server: ServerTls { identity: identity.clone(), client_ca: Some(ca.clone()) },
            client: ClientTls { ca, identity: Some(identity) },
        })
    }
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { setting: setting.to_string(), path: path.to_path_buf(), source })
}

fn invalid(setting: &str, path: &Path, why: String) -> TlsError {
    TlsError::Invalid { setting: setting.to_string(), path: path.to_path_buf(), why }
}

fn roots(ca: &Certs) -> Result<rustls::RootCertStore, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca.der() {
        roots.add(cert.clone())?;
    }
    Ok(roots)
}

/// The trust anchors of `ca`, for a rustls verifier.
pub fn root_store(ca: &Certs) -> Result<rustls::RootCertStore, TlsError> {
    roots(ca).map_err(|e| TlsError::Config(format!("{}: {e}", ca.path.display())))
}

/// A rustls client config trusting `tls.ca`, presenting `tls.identity` when there is one
/// (for the REST calls of the agent and of `raftctl`).
pub fn client_config(tls: &ClientTls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(root_store(&tls.ca)?);
    let config = match &tls.identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.certs.der().to_vec(), identity.key.der()?)
            .map_err(|e| TlsError::Config(format!("{}: {e}", identity.certs.path.display())))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// An error with its causes (tonic's TLS errors say only "transport error" at the top).
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// `http` or `https`, for URLs of a server with or without TLS.
pub fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Well-formed PEM (its DER is not a real certificate: only the framing is checked here).
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    fn section(dir: &Path, ca: Option<&str>, auth: Option<bool>) -> TransportSecurity {
        TransportSecurity {
            cert_file: dir.join("node.crt"),
            key_file: dir.join("node.key"),
            trusted_ca_file: ca.map(|c| dir.join(c)),
            client_cert_auth: auth,
        }
    }

    #[test]
    fn missing_and_malformed_files_name_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = section(dir.path(), Some("ca.crt"), Some(true));
        let err = s.client_port("client-transport-security").expect_err("missing").to_string();
        assert!(err.starts_with("client-transport-security.cert-file ") && err.contains("cannot read it"), "{err}");
        std::fs::write(dir.path().join("node.crt"), "hello\n").expect("write");
        let err = s.client_port("client-transport-security").expect_err("not pem").to_string();
        assert!(err.contains("holds no certificate"), "{err}");
        std::fs::write(dir.path().join("node.crt"), CERT).expect("write");
        std::fs::write(dir.path().join("node.key"), CERT).expect("write");
        let err = s.client_port("client-transport-security").expect_err("cert as key").to_string();
        assert!(err.starts_with("client-transport-security.key-file") && err.contains("no private key"), "{err}");
    }

    #[test]
    fn peer_tls_needs_a_ca_and_is_always_mutual() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = section(dir.path(), None, None).peer("peer-transport-security").expect_err("no ca").to_string();
        assert!(err.contains("peer-transport-security.trusted-ca-file is required"), "{err}");
        let err = section(dir.path(), Some("ca.crt"), Some(false)).peer("p").expect_err("not mutual").to_string();
        assert!(err.contains("always mutual"), "{err}");
        let yaml = "cert-file: /a\nkey-file: /b\ncert_file: /c\n";
        assert!(serde_norway::from_str::<TransportSecurity>(yaml).is_err(), "unknown key accepted");
    }
}
