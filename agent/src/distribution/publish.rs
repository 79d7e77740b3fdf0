//! The publisher's side: `pack publish`, `pack promote`, `pack list` and
//! `pack audit`. Every change is signed and leaves an audit record.

use std::path::Path;

use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use super::{
    records::{
        now_rfc3339, AuditRecord, Release, Stage, StageEntry, StageIndex, KIND_AUDIT, KIND_RELEASE,
        KIND_STAGE,
    },
    remote::{Fetched, Put, Remote, RemoteError},
};
use crate::{
    packs::archive::{self, ArchiveError},
    signing::{Envelope, SigningError, SigningKey, TrustedKeys},
};

/// Largest stage index or statement read.
const MAX_RECORD_BYTES: u64 = 16 << 20;
/// Attempts at moving a stage index that others are moving too.
const STAGE_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("packs are published to dev or test; {0} is reached by `pack promote`")]
    PublishStage(Stage),
    #[error("promotion goes dev → test → prod; nothing is promoted to {0}")]
    PromoteStage(Stage),
    #[error("{pack} {version} was already published with other content (sha256 {existing}); publish a new version")]
    VersionTaken { pack: String, version: String, existing: String },
    #[error("{pack} {version} was never published")]
    NoRelease { pack: String, version: String },
    #[error("the archive of {pack} {version} (sha256 {sha256}) is missing from the bucket")]
    NoArchive { pack: String, version: String, sha256: String },
    #[error("{pack} {version} has not been in {stage}; promote it there first")]
    NotInPreviousStage { pack: String, version: String, stage: Stage },
    #[error("stage {0} changed under us {STAGE_ATTEMPTS} times in a row; try again")]
    Contended(Stage),
    #[error("invalid pack name {0:?}")]
    BadName(String),
    #[error("invalid version {0:?}")]
    BadVersion(String),
    #[error("{key}: {message}")]
    Corrupt { key: String, message: String },
}

/// Who is publishing: their key and the name the audit trail records.
pub struct Publisher<'a> {
    pub remote: &'a Remote,
    pub key: &'a SigningKey,
    pub identity: String,
}

#[derive(Debug, Serialize)]
pub struct Published {
    pub pack: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub stage: Stage,
    /// False when the archive was already in the bucket.
    pub uploaded: bool,
    /// False when the stage already pointed to this version.
    pub moved: bool,
}

impl Publisher<'_> {
    /// Builds `dir`, uploads it and points `stage` at it.
    pub async fn publish(
        &self,
        dir: &Path,
        stage: Stage,
        version: Option<&str>,
    ) -> Result<Published, PublishError> {
        if stage == Stage::Prod {
            return Err(PublishError::PublishStage(stage));
        }
        let built = archive::build(dir, version)?;
        let layout = &self.remote.layout;
        let size = built.bytes.len() as u64;
        if let Some(existing) = self.release(&built.name, &built.version).await? {
            if existing.sha256 != built.sha256 {
                return Err(PublishError::VersionTaken {
                    pack: built.name,
                    version: built.version,
                    existing: existing.sha256,
                });
            }
        }
        let uploaded = self
            .remote
            .put_new(&layout.archive(&built.name, &built.sha256), built.bytes, "application/gzip")
            .await?
            == Put::Written;
        let release = Release {
            kind: KIND_RELEASE.into(),
            pack: built.name.clone(),
            version: built.version.clone(),
            sha256: built.sha256.clone(),
            size,
            targets: built.targets.clone(),
            published_by: self.identity.clone(),
            at: now_rfc3339(),
        };
        let statement = self.key.seal(&release).to_vec();
        self.remote
            .put_new(&layout.archive_statement(&built.name, &built.sha256), statement.clone(), JSON)
            .await?;
        if self.remote.put_new(&layout.release(&built.name, &built.version), statement, JSON).await?
            == Put::Conflict
        {
            // Someone published the same version at the same moment.
            let existing = self.release(&built.name, &built.version).await?;
            if let Some(e) = existing.filter(|e| e.sha256 != built.sha256) {
                return Err(PublishError::VersionTaken {
                    pack: built.name,
                    version: built.version,
                    existing: e.sha256,
                });
            }
        }
        let entry = StageEntry {
            version: built.version.clone(),
            sha256: built.sha256.clone(),
            size,
            targets: built.targets,
        };
        let moved = self.move_stage(stage, &built.name, entry).await?;
        if moved || uploaded {
            self.audit("publish", &release, stage, None).await?;
        }
        Ok(Published {
            pack: built.name,
            version: built.version,
            sha256: built.sha256,
            size,
            stage,
            uploaded,
            moved,
        })
    }

    /// Points `to` at `pack` `version`, which must be, or have been, in the
    /// stage before it.
    pub async fn promote(&self, pack: &str, version: &str, to: Stage) -> Result<Published, PublishError> {
        check_names(pack, version)?;
        let from = to.previous().ok_or(PublishError::PromoteStage(to))?;
        let release = self
            .release(pack, version)
            .await?
            .ok_or_else(|| PublishError::NoRelease { pack: pack.into(), version: version.into() })?;
        if !self.remote.exists(&self.remote.layout.archive(pack, &release.sha256)).await? {
            return Err(PublishError::NoArchive {
                pack: pack.into(),
                version: version.into(),
                sha256: release.sha256,
            });
        }
        let (current, _) = read_stage(self.remote, from).await?;
        let in_previous =
            current.packs.get(pack).is_some_and(|e| e.version == version && e.sha256 == release.sha256)
                || audit(self.remote, Some(pack), &TrustedKeys::default())
                    .await?
                    .iter()
                    .any(|r| r.record.sha256 == release.sha256 && r.record.stage == from);
        if !in_previous {
            return Err(PublishError::NotInPreviousStage {
                pack: pack.into(),
                version: version.into(),
                stage: from,
            });
        }
        let entry = StageEntry {
            version: release.version.clone(),
            sha256: release.sha256.clone(),
            size: release.size,
            targets: release.targets.clone(),
        };
        let moved = self.move_stage(to, pack, entry).await?;
        if moved {
            self.audit("promote", &release, to, Some(from)).await?;
        }
        Ok(Published {
            pack: pack.into(),
            version: version.into(),
            sha256: release.sha256,
            size: release.size,
            stage: to,
            uploaded: false,
            moved,
        })
    }

    async fn release(&self, pack: &str, version: &str) -> Result<Option<Release>, PublishError> {
        let key = self.remote.layout.release(pack, version);
        match self.remote.get(&key, None, MAX_RECORD_BYTES).await? {
            Fetched::Found { bytes, .. } => {
                let release: Release = Envelope::from_slice(&bytes)
                    .and_then(|e| e.peek())
                    .map_err(|e| PublishError::Corrupt { key, message: e.to_string() })?;
                Ok(Some(release))
            }
            Fetched::NotFound | Fetched::NotModified => Ok(None),
        }
    }

    /// Read-modify-write of a stage index, guarded by its ETag; false if it
    /// already pointed to `entry`.
    async fn move_stage(&self, stage: Stage, pack: &str, entry: StageEntry) -> Result<bool, PublishError> {
        for _ in 0..STAGE_ATTEMPTS {
            let (mut index, etag) = read_stage(self.remote, stage).await?;
            if index.packs.get(pack) == Some(&entry) {
                return Ok(false);
            }
            index.packs.insert(pack.into(), entry.clone());
            index.kind = KIND_STAGE.into();
            index.generation += 1;
            index.updated_at = now_rfc3339();
            index.updated_by = self.identity.clone();
            let bytes = self.key.seal(&index).to_vec();
            let key = self.remote.layout.stage(stage);
            if self.remote.put(&key, bytes, JSON, etag.as_deref()).await? == Put::Written {
                return Ok(true);
            }
        }
        Err(PublishError::Contended(stage))
    }

    async fn audit(
        &self,
        event: &str,
        release: &Release,
        stage: Stage,
        from: Option<Stage>,
    ) -> Result<(), PublishError> {
        let at = now_rfc3339();
        let record = AuditRecord {
            kind: KIND_AUDIT.into(),
            event: event.into(),
            pack: release.pack.clone(),
            version: release.version.clone(),
            sha256: release.sha256.clone(),
            stage,
            from_stage: from,
            identity: self.identity.clone(),
            key_id: self.key.id().into(),
            host: crate::hostname(),
            at: at.clone(),
        };
        let key = self.remote.layout.audit(&at.replace(':', ""), &uuid::Uuid::now_v7().simple().to_string());
        self.remote.put_new(&key, self.key.seal(&record).to_vec(), JSON).await?;
        Ok(())
    }
}

const JSON: &str = "application/json";

fn check_names(pack: &str, version: &str) -> Result<(), PublishError> {
    if !crate::packs::manifest::valid_name(pack) {
        return Err(PublishError::BadName(pack.chars().take(80).collect()));
    }
    if !super::records::valid_version(version) {
        return Err(PublishError::BadVersion(version.chars().take(80).collect()));
    }
    Ok(())
}

/// A stage's index and its ETag; an empty index if there is none yet. The
/// signature is not checked here: the publisher only builds on it, and the
/// agents check what they install.
pub async fn read_stage(remote: &Remote, stage: Stage) -> Result<(StageIndex, Option<String>), PublishError> {
    let key = remote.layout.stage(stage);
    match remote.get(&key, None, MAX_RECORD_BYTES).await? {
        Fetched::Found { bytes, etag } => {
            let index: StageIndex = Envelope::from_slice(&bytes)
                .and_then(|e| e.peek())
                .map_err(|e| PublishError::Corrupt { key, message: e.to_string() })?;
            Ok((index, etag))
        }
        Fetched::NotFound | Fetched::NotModified => Ok((StageIndex::empty(stage), None)),
    }
}

/// One row of `pack list`.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub stage: Stage,
    pub pack: String,
    pub version: String,
    pub sha256: String,
    pub targets: Option<Vec<String>>,
    pub generation: u64,
    pub updated_at: String,
    pub updated_by: String,
}

/// What each stage (or the one given) points to.
pub async fn list(remote: &Remote, only: Option<Stage>) -> Result<Vec<Listed>, PublishError> {
    let mut out = Vec::new();
    for stage in Stage::ALL.into_iter().filter(|s| only.is_none_or(|o| o == *s)) {
        let (index, _) = read_stage(remote, stage).await?;
        for (pack, e) in index.packs {
            out.push(Listed {
                stage,
                pack,
                version: e.version,
                sha256: e.sha256,
                targets: e.targets,
                generation: index.generation,
                updated_at: index.updated_at.clone(),
                updated_by: index.updated_by.clone(),
            });
        }
    }
    Ok(out)
}

/// One audit record and whether its signature checks out against the keys
/// given (`None` when no keys were given).
#[derive(Debug, Serialize)]
pub struct Audited {
    #[serde(flatten)]
    pub record: AuditRecord,
    pub verified: Option<bool>,
    pub object: String,
}

/// The audit trail, oldest first, optionally of one pack.
pub async fn audit(
    remote: &Remote,
    pack: Option<&str>,
    trusted: &TrustedKeys,
) -> Result<Vec<Audited>, PublishError> {
    let keys = remote.list(&remote.layout.audit_prefix()).await?;
    let fetched: Vec<(String, Fetched)> = stream::iter(keys)
        .map(|key| async move { remote.get(&key, None, MAX_RECORD_BYTES).await.map(|f| (key, f)) })
        .buffered(16)
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for (key, f) in fetched {
        let Fetched::Found { bytes, .. } = f else { continue };
        let corrupt = |e: SigningError| PublishError::Corrupt { key: key.clone(), message: e.to_string() };
        let envelope = Envelope::from_slice(&bytes).map_err(corrupt)?;
        let record: AuditRecord = envelope.peek().map_err(corrupt)?;
        if pack.is_some_and(|p| record.pack != p) {
            continue;
        }
        let verified =
            (!trusted.is_empty()).then(|| trusted.open::<AuditRecord>(&envelope).is_ok_and(|r| r == record));
        out.push(Audited { record, verified, object: key });
    }
    Ok(out)
}
