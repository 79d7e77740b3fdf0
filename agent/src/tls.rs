//! mTLS for the gRPC listener: rustls (TLS 1.3 only) with client
//! certificates verified against the configured CA, the caller's identity
//! taken from its certificate, and the files re-read when they change.

mod identity;
pub mod incoming;
pub mod revoked;

use std::{
    fs,
    io::BufReader,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};

pub use identity::{identity_of, PeerIdentity};
pub use incoming::{serve_incoming, TlsConn};

pub const CA_CERT: &str = "ca.crt";
pub const AGENT_CERT: &str = "agent.crt";
pub const AGENT_KEY: &str = "agent.key";
/// Optional revocation list of client certificates.
pub const CRL: &str = "crl.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}")]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// The three files the listener needs, and their modification times.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub dir: PathBuf,
    /// Client certificate serials refused at the handshake (`tls.revoked_serials`).
    pub revoked_serials: Vec<String>,
}

impl TlsFiles {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), revoked_serials: Vec::new() }
    }

    pub fn with_revoked_serials(mut self, serials: &[String]) -> Self {
        self.revoked_serials = serials.to_vec();
        self
    }

    /// Latest modification time among the files (to notice rotation).
    pub fn stamp(&self) -> Option<SystemTime> {
        [CA_CERT, AGENT_CERT, AGENT_KEY, CRL]
            .iter()
            .filter_map(|f| fs::metadata(self.dir.join(f)).and_then(|m| m.modified()).ok())
            .max()
    }

    /// Builds the server config: TLS 1.3, h2, client certificates verified
    /// against the CA. A client without a certificate completes the
    /// handshake but every call it makes is refused as UNAUTHENTICATED.
    pub fn server_config(&self) -> Result<Arc<ServerTls>, TlsError> {
        let ca = load_certs(&self.dir.join(CA_CERT))?;
        let chain = load_certs(&self.dir.join(AGENT_CERT))?;
        let key = load_key(&self.dir.join(AGENT_KEY))?;
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        // A CRL beside the certificates (`bolt-agent certs revoke` writes one)
        // refuses revoked clients at the handshake.
        let crl_path = self.dir.join(CRL);
        if crl_path.exists() {
            let bytes = read(&crl_path)?;
            let crls = rustls_pemfile::crls(&mut BufReader::new(bytes.as_slice()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError::Pem { path: crl_path.clone(), message: e.to_string() })?;
            verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
        }
        let verifier =
            verifier.allow_unauthenticated().build().map_err(|e| TlsError::Verifier(e.to_string()))?;
        let verifier = revoked::RevokedSerials::wrap(verifier, &self.revoked_serials);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(ServerTls { config: Arc::new(config), verifier }))
    }
}

/// The server's TLS settings and the client verifier inside them, kept at
/// hand so that open connections can be checked again when a reload
/// (a new CRL, a new CA) changes what is trusted.
#[derive(Debug)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// When the agent's own certificate expires (unix seconds), if readable.
pub fn agent_cert_expiry(dir: &Path) -> Option<i64> {
    use x509_parser::prelude::FromDer;
    let certs = load_certs(&dir.join(AGENT_CERT)).ok()?;
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(certs.first()?.as_ref()).ok()?;
    Some(x509.validity().not_after.timestamp())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(bytes.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), message: "no certificate in the file".into() });
    }
    Ok(certs)
}

/// Loads a private key, refusing one that others can read.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| TlsError::Read { path: path.to_owned(), source })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions { path: path.to_owned(), mode: mode & 0o777 });
    }
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(bytes.as_slice()))
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: e.to_string() })?
        .ok_or_else(|| TlsError::Pem { path: path.to_owned(), message: "no private key in the file".into() })
}

/// Every `every`, reloads the certificates if their files changed; a set
/// that does not load keeps the previous one.
pub fn spawn_reload(
    files: std::sync::Arc<arc_swap::ArcSwap<TlsFiles>>,
    tls: std::sync::Arc<arc_swap::ArcSwap<ServerTls>>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut stamp = files.load().stamp();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = crate::shutdown::stopped(&mut stop) => return,
            }
            let files = files.load();
            let now = files.stamp();
            if now == stamp {
                continue;
            }
            match files.server_config() {
                Ok(cfg) => {
                    tls.store(cfg);
                    stamp = now;
                    tracing::info!("TLS certificates reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificates changed but cannot be loaded; keeping the previous ones")
                }
            }
        }
    });
}
