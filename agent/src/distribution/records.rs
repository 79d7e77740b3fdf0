//! What lives in the bucket: object keys and the signed payloads.

use std::collections::BTreeMap;

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
            packs: BTreeMap::new(),
        }
    }
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

/// A sha256 in lower-case hex.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub use crate::packs::manifest::valid_version;

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
