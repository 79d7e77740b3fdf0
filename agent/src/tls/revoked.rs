//! A configured list of revoked certificate serials (`tls.revoked_serials`),
//! checked at the handshake after the CA's own verification.

use std::{collections::HashSet, sync::Arc};

use rustls::{
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
};

pub use bolt_formats::config::normalize_serial as normalize;

#[derive(Debug)]
pub struct RevokedSerials {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: HashSet<String>,
}

impl RevokedSerials {
    pub fn wrap(inner: Arc<dyn ClientCertVerifier>, serials: &[String]) -> Arc<dyn ClientCertVerifier> {
        if serials.is_empty() {
            return inner;
        }
        Arc::new(Self { inner, revoked: serials.iter().filter_map(|s| normalize(s)).collect() })
    }
}

fn serial_of(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).ok()?;
    normalize(&hex::encode(x509.tbs_certificate.raw_serial()))
}

impl ClientCertVerifier for RevokedSerials {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        match serial_of(end_entity) {
            Some(s) if self.revoked.contains(&s) => {
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked))
            }
            Some(_) => Ok(verified),
            None => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn serials_are_normalized() {
        assert_eq!(normalize("0A:1B:ff").as_deref(), Some("a1bff"));
        assert_eq!(normalize("0x00a1").as_deref(), Some("a1"));
        assert_eq!(normalize("zz"), None);
        assert_eq!(normalize(""), None);
    }
}
