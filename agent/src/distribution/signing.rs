//! ed25519 signing of pack releases, stage indexes and audit records.
//!
//! A signed object is an [`Envelope`]: the payload as JSON text, the signer's
//! key id and the signature of the payload's bytes. Signing the text rather
//! than a re-serialised value means no canonical JSON is needed: what was
//! signed is exactly what is parsed.

use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ring::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519},
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// DER prefix of an ed25519 PKCS#8 v1 private key; the seed follows.
const PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// DER prefix of an ed25519 SubjectPublicKeyInfo; the raw key follows.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot read key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} already exists; keys are never overwritten")]
    Exists { path: PathBuf },
    #[error("{path} is not an ed25519 {what} in PEM: {reason}")]
    BadKey { path: PathBuf, what: &'static str, reason: String },
    #[error("{path} is readable by others (mode {mode:o}); chmod 600 it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("invalid key name {0:?}: names are [a-z0-9][a-z0-9-]*")]
    BadName(String),
    #[error("key generation failed")]
    Generate,
    #[error("not a signed envelope: {0}")]
    Malformed(String),
    #[error("signed by key {key_id}, which is not trusted here")]
    UntrustedKey { key_id: String },
    #[error("the signature by key {key_id} does not match the content")]
    BadSignature { key_id: String },
}

/// First 16 hex digits of the sha256 of the raw public key.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// A private signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM key, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, SigningError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(|source| SigningError::Read { path: path.into(), source })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SigningError::Permissions { path: path.into(), mode });
        }
        let text = fs::read(path).map_err(|source| SigningError::Read { path: path.into(), source })?;
        let bad = |reason: String| SigningError::BadKey { path: path.into(), what: "private key", reason };
        let pem = pem::parse(&text).map_err(|e| bad(e.to_string()))?;
        if pem.tag() != "PRIVATE KEY" {
            return Err(bad(format!("found {:?}", pem.tag())));
        }
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(pem.contents()).map_err(|e| bad(e.to_string()))?;
        let id = key_id(pair.public_key().as_ref());
        Ok(Self { pair, id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public half, which the holder of this key always trusts.
    pub fn public_key(&self) -> PublicKey {
        PublicKey { raw: self.pair.public_key().as_ref().to_vec(), id: self.id.clone() }
    }

    /// Serialises `payload` and signs the text.
    pub fn seal<T: Serialize>(&self, payload: &T) -> Envelope {
        let text = serde_json::to_string(payload).unwrap_or_else(|_| unreachable!("plain structs serialise"));
        let signature = B64.encode(self.pair.sign(text.as_bytes()).as_ref());
        Envelope { payload: text, key_id: self.id.clone(), signature }
    }
}

/// A public key trusted to sign.
#[derive(Debug, Clone)]
pub struct PublicKey {
    raw: Vec<u8>,
    id: String,
}

impl PublicKey {
    pub fn load(path: &Path) -> Result<Self, SigningError> {
        let text = fs::read(path).map_err(|source| SigningError::Read { path: path.into(), source })?;
        let bad = |reason: String| SigningError::BadKey { path: path.into(), what: "public key", reason };
        let pem = pem::parse(&text).map_err(|e| bad(e.to_string()))?;
        let der = pem.contents();
        if pem.tag() != "PUBLIC KEY" || der.len() != 44 || der[..12] != SPKI_PREFIX {
            return Err(bad("expected an ed25519 SubjectPublicKeyInfo".into()));
        }
        let raw = der[12..].to_vec();
        Ok(Self { id: key_id(&raw), raw })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keys an agent or an auditor trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    pub fn load(paths: &[PathBuf]) -> Result<Self, SigningError> {
        paths.iter().map(|p| PublicKey::load(p)).collect::<Result<_, _>>().map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These keys and `key` (once).
    pub fn with(mut self, key: PublicKey) -> Self {
        if !self.0.iter().any(|k| k.id == key.id) {
            self.0.push(key);
        }
        self
    }

    /// The ids of the keys trusted, for messages.
    pub fn ids(&self) -> Vec<&str> {
        self.0.iter().map(|k| k.id.as_str()).collect()
    }

    /// Checks the envelope's signature and parses its payload.
    pub fn open<T: DeserializeOwned>(&self, envelope: &Envelope) -> Result<T, SigningError> {
        let key = self
            .0
            .iter()
            .find(|k| k.id == envelope.key_id)
            .ok_or_else(|| SigningError::UntrustedKey { key_id: clip(&envelope.key_id) })?;
        let bad = || SigningError::BadSignature { key_id: key.id.clone() };
        let signature = B64.decode(&envelope.signature).map_err(|_| bad())?;
        UnparsedPublicKey::new(&ED25519, &key.raw)
            .verify(envelope.payload.as_bytes(), &signature)
            .map_err(|_| bad())?;
        serde_json::from_str(&envelope.payload).map_err(|e| SigningError::Malformed(e.to_string()))
    }
}

fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

/// A signed payload as stored in S3.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub payload: String,
    pub key_id: String,
    pub signature: String,
}

impl Envelope {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SigningError> {
        serde_json::from_slice(bytes).map_err(|e| SigningError::Malformed(e.to_string()))
    }

    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_else(|_| unreachable!("strings serialise"))
    }

    /// The payload without checking the signature, for display only.
    pub fn peek<T: DeserializeOwned>(&self) -> Result<T, SigningError> {
        serde_json::from_str(&self.payload).map_err(|e| SigningError::Malformed(e.to_string()))
    }
}

/// `keys gen`: writes `DIR/NAME.key` (0600) and `DIR/NAME.pub`; returns the
/// files and the key id.
pub fn generate(dir: &Path, name: &str) -> Result<(Vec<PathBuf>, String), SigningError> {
    if !crate::packs::manifest::valid_name(name) {
        return Err(SigningError::BadName(name.chars().take(80).collect()));
    }
    fs::create_dir_all(dir).map_err(|source| SigningError::Write { path: dir.into(), source })?;
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| SigningError::Generate)?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| SigningError::Generate)?;
    // ring writes PKCS#8 v2 (with the public key); v1 (RFC 8410, the seed
    // alone) is what OpenSSL and Python's cryptography read everywhere.
    let v2 = doc.as_ref();
    const SEED_TAG: [u8; 4] = [0x04, 0x22, 0x04, 0x20];
    let at = v2.windows(4).position(|w| w == SEED_TAG).ok_or(SigningError::Generate)? + 4;
    let seed = v2.get(at..at + 32).ok_or(SigningError::Generate)?;
    let mut v1 = PKCS8_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    let again = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&v1).map_err(|_| SigningError::Generate)?;
    if again.public_key().as_ref() != pair.public_key().as_ref() {
        return Err(SigningError::Generate);
    }
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", v1));
    let public = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
    let key_path = dir.join(format!("{name}.key"));
    let pub_path = dir.join(format!("{name}.pub"));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(SigningError::Exists { path: p.clone() });
        }
    }
    write_new(&key_path, private.as_bytes(), 0o600)?;
    write_new(&pub_path, public.as_bytes(), 0o644)?;
    Ok((vec![key_path, pub_path], key_id(pair.public_key().as_ref())))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SigningError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| SigningError::Write { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct P {
        a: u32,
    }

    #[test]
    fn seal_open_and_tamper() {
        let d = tempfile::tempdir().expect("tempdir");
        let (files, id) = generate(d.path(), "release").expect("gen");
        let key = SigningKey::load(&files[0]).expect("private");
        assert_eq!(key.id(), id);
        let trusted = TrustedKeys::load(&[files[1].clone()]).expect("public");
        let env = key.seal(&P { a: 7 });
        let back: P = trusted.open(&Envelope::from_slice(&env.to_vec()).expect("parse")).expect("verifies");
        assert_eq!(back, P { a: 7 });

        let mut tampered = env.clone();
        tampered.payload = tampered.payload.replace('7', "8");
        assert!(matches!(trusted.open::<P>(&tampered), Err(SigningError::BadSignature { .. })));

        let (other, _) = generate(d.path(), "mallory").expect("gen");
        let foreign = SigningKey::load(&other[0]).expect("private").seal(&P { a: 7 });
        assert!(matches!(trusted.open::<P>(&foreign), Err(SigningError::UntrustedKey { .. })));
        assert!(matches!(generate(d.path(), "release"), Err(SigningError::Exists { .. })));
    }

    #[test]
    fn a_private_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let (files, _) = generate(d.path(), "k").expect("gen");
        fs::set_permissions(&files[0], fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(SigningKey::load(&files[0]), Err(SigningError::Permissions { .. })));
        assert!(matches!(PublicKey::load(&files[0]), Err(SigningError::BadKey { .. })));
    }
}
