//! `bolt-agent certs`: a development CA and the agent and client
//! certificates signed by it, so that mTLS works in one command.

use std::{
    fs,
    io::Write,
    net::IpAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use bolt_agent::tls::{AGENT_CERT, AGENT_KEY, CA_CERT};

pub const CA_KEY: &str = "ca.key";
pub const CLIENT_CERT: &str = "client.crt";
pub const CLIENT_KEY: &str = "client.key";
/// Identity of the client certificate that `certs init` writes.
pub const DEV_CLIENT_NAME: &str = "bolt-client";

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{0} already exists; pass --force to replace the whole set")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid name {0:?}: use letters, digits, '.', '-' and '_'")]
    BadName(String),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// `certs init`: CA, agent and client certificates in `dir`.
/// Default validity of the agent and client certificates, in days.
pub const LEAF_DAYS: i64 = 825;

pub fn init(dir: &Path, extra_sans: &[String], force: bool, days: i64) -> Result<Vec<PathBuf>, CertsError> {
    let files = [CA_CERT, CA_KEY, AGENT_CERT, AGENT_KEY, CLIENT_CERT, CLIENT_KEY];
    if !force {
        if let Some(existing) = files.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
            return Err(CertsError::Exists(existing));
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertsError::Write { path: dir.to_owned(), source })?;

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = name("Bolt development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut ca, 3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let host = bolt_agent::hostname();
    if !host.is_empty() && !sans.contains(&host) {
        sans.push(host);
    }
    sans.extend(extra_sans.iter().cloned());
    let agent_key = KeyPair::generate()?;
    let mut agent = leaf("bolt-agent", &sans, days)?;
    agent.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let agent_cert = agent.signed_by(&agent_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client = leaf(DEV_CLIENT_NAME, &[DEV_CLIENT_NAME.to_owned()], days)?;
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer)?;

    let written = vec![
        write(dir, CA_CERT, &ca_cert.pem(), false)?,
        write(dir, CA_KEY, &ca_key.serialize_pem(), true)?,
        write(dir, AGENT_CERT, &agent_cert.pem(), false)?,
        write(dir, AGENT_KEY, &agent_key.serialize_pem(), true)?,
        write(dir, CLIENT_CERT, &client_cert.pem(), false)?,
        write(dir, CLIENT_KEY, &client_key.serialize_pem(), true)?,
    ];
    Ok(written)
}

/// `certs issue`: a further client certificate from the CA in `dir`,
/// written as `<name>.crt` and `<name>.key`. Negative `days` gives an
/// already expired certificate (for tests).
pub fn issue(dir: &Path, client_name: &str, days: i64) -> Result<Vec<PathBuf>, CertsError> {
    let ok = !client_name.is_empty()
        && client_name.len() <= 128
        && !client_name.starts_with('.')
        && client_name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(CertsError::BadName(client_name.to_owned()));
    }
    let read = |f: &str| {
        let path = dir.join(f);
        fs::read_to_string(&path).map_err(|source| CertsError::Read { path, source })
    };
    let ca_key = KeyPair::from_pem(&read(CA_KEY)?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(CA_CERT)?, &ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = leaf(client_name, &[client_name.to_owned()], days)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok(vec![
        write(dir, &format!("{client_name}.crt"), &cert.pem(), false)?,
        write(dir, &format!("{client_name}.key"), &key.serialize_pem(), true)?,
    ])
}

/// Serials revoked so far, one hex serial a line; `crl.pem` is rebuilt from it.
pub const REVOKED: &str = "revoked.txt";
pub const CRL: &str = "crl.pem";

/// `certs revoke`: adds `<name>.crt` to the CA's revocation list and writes
/// `crl.pem`, which an agent using this folder loads with its certificates.
pub fn revoke(dir: &Path, client_name: &str) -> Result<Vec<PathBuf>, CertsError> {
    let read = |f: &str| {
        let path = dir.join(f);
        fs::read_to_string(&path).map_err(|source| CertsError::Read { path, source })
    };
    let cert_path = dir.join(format!("{client_name}.crt"));
    let der = bolt_agent::tls::load_certs(&cert_path).map_err(|e| CertsError::BadName(e.to_string()))?;
    let serial = bolt_agent::tls::identity_of(&der[0])
        .map(|i| i.serial)
        .ok_or_else(|| CertsError::BadName(client_name.into()))?;
    let mut serials: Vec<String> = read(REVOKED).unwrap_or_default().lines().map(str::to_owned).collect();
    if !serials.contains(&serial) {
        serials.push(serial);
    }
    let ca_key = KeyPair::from_pem(&read(CA_KEY)?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(CA_CERT)?, &ca_key)?;
    let now = OffsetDateTime::now_utc();
    let revoked_certs = serials
        .iter()
        .filter_map(|s| hex_serial(s))
        .map(|serial_number| rcgen::RevokedCertParams {
            serial_number,
            revocation_time: now,
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        })
        .collect();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(30),
        crl_number: rcgen::SerialNumber::from(now.unix_timestamp().to_be_bytes().to_vec()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)?;
    Ok(vec![write(dir, REVOKED, &(serials.join("\n") + "\n"), false)?, write(dir, CRL, &crl.pem()?, false)?])
}

/// "0a:1b:..." (x509-parser's form) or plain hex → serial bytes.
fn hex_serial(s: &str) -> Option<rcgen::SerialNumber> {
    hex::decode(s.replace(':', "")).ok().map(rcgen::SerialNumber::from)
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Bolt");
    dn
}

fn leaf(cn: &str, sans: &[String], days: i64) -> Result<CertificateParams, CertsError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = name(cn);
    for s in sans {
        p.subject_alt_names.push(match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(s.as_str().try_into()?),
        });
    }
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut p, days);
    Ok(p)
}

fn validity(p: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    if days >= 0 {
        p.not_before = now - Duration::minutes(5);
        p.not_after = now + Duration::days(days);
    } else {
        p.not_before = now + Duration::days(days * 2);
        p.not_after = now + Duration::days(days);
    }
}

fn write(dir: &Path, file: &str, pem: &str, secret: bool) -> Result<PathBuf, CertsError> {
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.tmp"));
    let result = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .and_then(|()| fs::rename(&tmp, &path));
    result.map_err(|source| CertsError::Write { path: path.clone(), source })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bolt_agent::tls::{identity_of, load_certs, load_key, TlsFiles};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_a_working_set() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("certs");
        let files = init(&dir, &["agent.example".into(), "10.1.2.3".into()], false, LEAF_DAYS).expect("init");
        assert_eq!(files.len(), 6);
        for f in [CA_KEY, AGENT_KEY, CLIENT_KEY] {
            let mode = fs::metadata(dir.join(f)).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        assert!(load_key(&dir.join(AGENT_KEY)).is_ok());
        TlsFiles::new(&dir).server_config().expect("server config builds");
        let client = load_certs(&dir.join(CLIENT_CERT)).expect("client cert");
        assert_eq!(identity_of(&client[0]).map(|i| i.name), Some(DEV_CLIENT_NAME.to_owned()));
        let agent_pem = fs::read_to_string(dir.join(AGENT_CERT)).expect("read");
        assert!(agent_pem.contains("BEGIN CERTIFICATE"));
        let err = init(&dir, &[], false, LEAF_DAYS).expect_err("refuses to overwrite");
        assert!(err.to_string().contains("--force"), "{err}");
        init(&dir, &[], true, LEAF_DAYS).expect("force");
    }

    #[test]
    fn issue_makes_named_clients() {
        let d = tempfile::tempdir().expect("tempdir");
        init(d.path(), &[], false, LEAF_DAYS).expect("init");
        issue(d.path(), "ops-alice", 30).expect("issue");
        let c = load_certs(&d.path().join("ops-alice.crt")).expect("cert");
        assert_eq!(identity_of(&c[0]).map(|i| i.name), Some("ops-alice".to_owned()));
        assert!(issue(d.path(), "../evil", 30).is_err());
    }

    #[test]
    fn revoke_writes_a_crl_the_agent_loads() {
        let d = tempfile::tempdir().expect("tempdir");
        init(d.path(), &[], false, LEAF_DAYS).expect("init");
        issue(d.path(), "mallory", 30).expect("issue");
        issue(d.path(), "eve", 30).expect("issue");
        revoke(d.path(), "mallory").expect("revoke");
        revoke(d.path(), "eve").expect("revoke");
        revoke(d.path(), "eve").expect("idempotent");
        let listed = fs::read_to_string(d.path().join(REVOKED)).expect("read");
        assert_eq!(listed.lines().count(), 2);
        assert!(fs::read_to_string(d.path().join(CRL)).expect("crl").contains("BEGIN X509 CRL"));
        TlsFiles::new(d.path()).server_config().expect("server config with the CRL");
        assert!(revoke(d.path(), "nobody").is_err());
    }

    #[test]
    fn readable_keys_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        init(d.path(), &[], false, LEAF_DAYS).expect("init");
        fs::set_permissions(d.path().join(AGENT_KEY), fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = TlsFiles::new(d.path()).server_config().expect_err("refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
