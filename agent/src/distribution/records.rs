//! What lives in the bucket: object keys and the signed payloads.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

/// Pack stages, in promotion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Dev,
    Test,
    Prod,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Dev, Stage::Test, Stage::Prod];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Test => "test",
            Self::Prod => "prod",
        }
    }

    /// The stage a version must be in before it can be promoted to `self`.
    pub fn previous(self) -> Option<Stage> {
        match self {
            Self::Dev => None,
            Self::Test => Some(Self::Dev),
            Self::Prod => Some(Self::Test),
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Object keys under the configured prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Self {
        let p = prefix.trim_matches('/');
        Self { prefix: if p.is_empty() { String::new() } else { format!("{p}/") } }
    }

    pub fn archive(&self, pack: &str, sha256: &str) -> String {
        format!("{}archives/{pack}/{sha256}.tar.gz", self.prefix)
    }

    pub fn archive_statement(&self, pack: &str, sha256: &str) -> String {
        format!("{}archives/{pack}/{sha256}.json", self.prefix)
    }

    pub fn release(&self, pack: &str, version: &str) -> String {
        format!("{}releases/{pack}/{version}.json", self.prefix)
    }

    pub fn stage(&self, stage: Stage) -> String {
        format!("{}stages/{stage}.json", self.prefix)
    }

    pub fn audit_prefix(&self) -> String {
        format!("{}audit/", self.prefix)
    }

    pub fn audit(&self, at: &str, id: &str) -> String {
        format!("{}audit/{at}-{id}.json", self.prefix)
    }
}

/// A published version: what its archive's sha256 is, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub kind: String,
    pub pack: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub targets: Option<Vec<String>>,
    pub published_by: String,
    pub at: String,
}

/// What one stage serves: a pack name to its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageIndex {
    pub kind: String,
    pub stage: Stage,
    /// One more on every change; agents refuse to go back.
    pub generation: u64,
    pub updated_at: String,
    pub updated_by: String,
    /// When agents stop trusting this index (RFC 3339), so that an old signed
    /// index replayed to a new agent is refused; the publisher re-signs it
    /// with `pack refresh` before then. None in indexes from before expiry
    /// existed, which agents treat as expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub packs: BTreeMap<String, StageEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageEntry {
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub targets: Option<Vec<String>>,
}

impl StageEntry {
    /// Whether instances of `app` get this pack.
    pub fn targets_app(&self, app: &str) -> bool {
        self.targets.as_ref().is_none_or(|t| t.iter().any(|a| a == app || a == "*"))
    }
}

impl StageIndex {
    pub fn empty(stage: Stage) -> Self {
        Self {
            kind: KIND_STAGE.into(),
            stage,
            generation: 0,
            updated_at: String::new(),
            updated_by: String::new(),
            expires_at: None,
            packs: BTreeMap::new(),
        }
    }
}

/// Why an index is no longer to be trusted at `now`; `Ok` with its expiry.
pub fn check_expiry(expires_at: Option<&str>, now: SystemTime) -> Result<SystemTime, String> {
    let Some(text) = expires_at else {
        return Err("has no expiry (signed by a publisher older than index expiry)".into());
    };
    let at = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("has an unreadable expiry {:?}: {e}", text.chars().take(40).collect::<String>()))?;
    if at <= now {
        let ago = now.duration_since(at).unwrap_or_default();
        return Err(format!(
            "expired at {text} ({} ago)",
            humantime::format_duration(Duration::from_secs(ago.as_secs()))
        ));
    }
    Ok(at)
}

/// RFC 3339 UTC of `now + valid_for`, to the second.
pub fn expiry_from(now: SystemTime, valid_for: Duration) -> String {
    humantime::format_rfc3339_seconds(now + valid_for).to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub kind: String,
    /// "publish" or "promote".
    pub event: String,
    pub pack: String,
    pub version: String,
    pub sha256: String,
    pub stage: Stage,
    pub from_stage: Option<Stage>,
    pub identity: String,
    pub key_id: String,
    pub host: String,
    pub at: String,
}

pub const KIND_RELEASE: &str = "release";
pub const KIND_STAGE: &str = "stage";
pub const KIND_AUDIT: &str = "audit";

pub use crate::packs::{installed::valid_sha256, manifest::valid_version};

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    #[test]
    fn an_index_is_trusted_until_its_expiry_and_never_without_one() {
        let now = SystemTime::now();
        let later = expiry_from(now, Duration::from_secs(3600));
        assert!(check_expiry(Some(&later), now).is_ok());
        let err = check_expiry(Some(&later), now + Duration::from_secs(7200)).expect_err("expired");
        assert!(err.starts_with(&format!("expired at {later}")), "{err}");
        assert!(check_expiry(None, now).expect_err("none").contains("no expiry"));
        assert!(check_expiry(Some("tomorrow"), now).expect_err("bad").contains("unreadable"));
    }

    #[test]
    fn an_index_without_expiry_still_parses_and_round_trips() {
        let mut index = StageIndex::empty(Stage::Dev);
        let text = serde_json::to_string(&index).expect("encode");
        assert!(!text.contains("expires_at"));
        index.expires_at = Some("2030-01-01T00:00:00Z".into());
        let text = serde_json::to_string(&index).expect("encode");
        let back: StageIndex = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, index);
    }
}
