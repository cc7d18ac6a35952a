//! The subject's CommonName of an X.509 certificate (DER), which etcd takes as the
//! user of a gRPC call that carries no token when `client-cert-auth` is on. Only the
//! path to the subject is read (Certificate → TBSCertificate → version, serial,
//! signature, issuer, validity → subject), with DER's tag-length framing checked at
//! each step, so a malformed certificate gives None, never a panic. The handshake
//! verified the certificate before this reads it.

/// DER tags on the path.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT Version` of TBSCertificate.
const VERSION: u8 = 0xa0;
/// The OID 2.5.4.3 (id-at-commonName), its value bytes.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// String types a name may use: UTF8String, PrintableString, TeletexString, IA5String.
const STRINGS: [u8; 4] = [0x0c, 0x13, 0x14, 0x16];

/// One DER element: (tag, content) and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > std::mem::size_of::<usize>() || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        (bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// The content of the element at the start of `input`, which must have `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = element(input)?;
    (found == tag).then_some((content, rest))
}

/// The first CommonName of the certificate's subject.
pub fn common_name(certificate: &[u8]) -> Option<String> {
    let (cert, _) = expect(certificate, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut fields = tbs;
    if fields.first() == Some(&VERSION) {
        fields = element(fields)?.2;
    }
    // serialNumber, signature, issuer, validity: skipped.
    for _ in 0..4 {
        fields = element(fields)?.2;
    }
    let (mut names, _) = expect(fields, SEQUENCE)?;
    while !names.is_empty() {
        let (set, rest) = expect(names, SET)?;
        names = rest;
        let mut attributes = set;
        while !attributes.is_empty() {
            let (attribute, rest) = expect(attributes, SEQUENCE)?;
            attributes = rest;
            let (oid, value) = expect(attribute, OID)?;
            if oid == COMMON_NAME {
                let (tag, text, _) = element(value)?;
                return STRINGS.contains(&tag).then(|| String::from_utf8(text.to_vec()).ok()).flatten();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(name: Option<&str>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "raftgres");
        if let Some(name) = name {
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("certificate").der().to_vec()
    }

    #[test]
    fn the_subjects_common_name_is_read() {
        assert_eq!(common_name(&certificate(Some("alice"))).as_deref(), Some("alice"));
        assert_eq!(common_name(&certificate(Some("ünïcode user"))).as_deref(), Some("ünïcode user"));
        assert_eq!(common_name(&certificate(None)), None);
    }

    #[test]
    fn malformed_input_gives_none() {
        let der = certificate(Some("alice"));
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(common_name(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(common_name(b"not a certificate"), None);
        assert_eq!(common_name(&[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9]), None, "a length wider than usize");
    }
}
