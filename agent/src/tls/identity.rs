//! The caller's identity, from the leaf of its verified certificate chain:
//! the first URI SAN (SPIFFE style), else the first DNS SAN, else the
//! subject's common name.

use rustls::pki_types::CertificateDer;
use x509_parser::{extensions::GeneralName, prelude::FromDer};

/// Who is calling, as recorded on executions and matched by authz rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub name: String,
    /// Hex serial of the client certificate.
    pub serial: String,
}

pub fn identity_of(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).ok()?;
    let mut uri = None;
    let mut dns = None;
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) if uri.is_none() => uri = Some(u.to_string()),
                GeneralName::DNSName(d) if dns.is_none() => dns = Some(d.to_string()),
                _ => {}
            }
        }
    }
    let cn = x509.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    let name = uri.or(dns).or(cn)?;
    Some(PeerIdentity { name, serial: x509.raw_serial_as_string() })
}
