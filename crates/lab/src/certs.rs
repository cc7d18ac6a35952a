//! `raftctl lab up --tls`: a throw-away CA and its certificates in `DIR/tls/`, made with
//! rcgen (ECDSA P-256): one per node (server and client use; SANs `localhost`,
//! `127.0.0.1` and the node's own address, so one certificate serves its peer port,
//! client port and REST API and authenticates it to the other nodes) and one client
//! certificate for `raftctl`, `etcdctl` and `curl`. Keys are written with mode 0600
//! (the lab's user owns them once `up` hands it the directory). The CA's key is not kept.

use std::path::Path;

use crate::config::write_private;
use crate::description::{LabNode, LabTls, LOOPBACK};
use anyhow::Context;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

/// Makes the CA, every node's certificate and the client certificate in `DIR/tls/`.
pub fn create(lab_dir: &Path, nodes: &[LabNode]) -> anyhow::Result<LabTls> {
    let dir = LabTls::dir(lab_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (ca_cert, ca_key) = ca().context("cannot make the lab's CA")?;
    let tls = LabTls { ca: dir.join("ca.crt"), client_cert: dir.join("client.crt"), client_key: dir.join("client.key") };
    write(&tls.ca, &ca_cert.pem())?;
    for node in nodes {
        let mut names = vec!["localhost".to_string(), LOOPBACK.to_string(), node.name.clone()];
        if node.host != LOOPBACK {
            names.push(node.host.clone());
        }
        let (cert, key) = leaf(&node.name, names, &ca_cert, &ca_key).with_context(|| format!("cannot make {}'s certificate", node.name))?;
        let (cert_file, key_file) = tls.node_files(&node.name);
        write(&cert_file, &cert)?;
        write_private(&key_file, &key)?;
    }
    let (cert, key) = leaf("raftctl", vec!["localhost".into()], &ca_cert, &ca_key).context("cannot make the client certificate")?;
    write(&tls.client_cert, &cert)?;
    write_private(&tls.client_key, &key)?;
    Ok(tls)
}

fn ca() -> Result<(Certificate, KeyPair), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "raftgres lab CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    Ok((params.self_signed(&key)?, key))
}

/// A certificate for `name` valid for server and client use: (cert PEM, key PEM).
fn leaf(name: &str, sans: Vec<String>, ca: &Certificate, ca_key: &KeyPair) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca, ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(file: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_chain_to_the_ca_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = LabNode::all(dir.path(), crate::ports::layout(2, 5432).expect("layout"), None);
        let tls = create(dir.path(), &nodes).expect("certs");
        let (cert, key) = tls.node_files("node2");
        let identity = raftgres_tls::Identity::read("cert", &cert, "key", &key).expect("a usable pair");
        let ca = raftgres_tls::Certs::read("ca", &tls.ca).expect("ca");
        assert_eq!((identity.certs.der().len(), ca.der().len()), (1, 1));
        assert!(!format!("{identity:?}").contains("PRIVATE KEY"), "a key's Debug shows its contents");
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(std::fs::read_to_string(&tls.client_key).expect("client key").contains("PRIVATE KEY"));
    }
}
