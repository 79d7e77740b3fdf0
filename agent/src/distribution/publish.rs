//! The publisher's side: `pack publish`, `pack promote`, `pack list` and
//! `pack audit`. Every change is signed and leaves an audit record.

use std::{collections::BTreeMap, path::Path};

use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use super::{
    records::{
        expiry_from, now_rfc3339, valid_sha256, AuditRecord, Release, Stage, StageEntry, StageIndex, KIND_AUDIT,
        KIND_RELEASE, KIND_STAGE,
    },
    remote::{Fetched, Put, Remote, RemoteError},
};
use super::signing::{Envelope, SigningError, SigningKey, TrustedKeys};
use crate::packs::archive::{self, ArchiveError};

/// Largest stage index or statement read.
const MAX_RECORD_BYTES: u64 = 16 << 20;
/// Attempts at moving a stage index that others are moving too.
const STAGE_ATTEMPTS: usize = 8;
/// How long a stage index stays valid unless the publisher says otherwise.
pub const DEFAULT_INDEX_VALIDITY: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

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
    #[error(
        "{key}: {source}. The publisher builds only on what it can verify: if the signer is yours, \
         pass its public key with --trusted-key; otherwise someone wrote to the bucket without a \
         trusted key, and the object must be restored from a trusted copy"
    )]
    Unverified { key: String, source: SigningError },
    #[error("the archive of {pack} {version} in the bucket is not the one its release statement signs: {problem}")]
    ArchiveMismatch { pack: String, version: String, problem: String },
    #[error("{key}: generation {generation} cannot be raised; the index must be re-created by hand")]
    GenerationExhausted { key: String, generation: u64 },
}

/// Who is publishing: their key, the name the audit trail records, and the
/// keys whose statements in the bucket they build on.
pub struct Publisher<'a> {
    remote: &'a Remote,
    key: &'a SigningKey,
    identity: String,
    trusted: TrustedKeys,
    valid_for: std::time::Duration,
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

impl<'a> Publisher<'a> {
    /// A publisher trusts its own key and `trusted`; nothing it reads from the
    /// bucket is used before its signature checks out against one of them.
    pub fn new(remote: &'a Remote, key: &'a SigningKey, identity: String, trusted: TrustedKeys) -> Self {
        let trusted = trusted.with(key.public_key());
        Self { remote, key, identity, trusted, valid_for: DEFAULT_INDEX_VALIDITY }
    }

    /// How long each index this publisher signs stays valid.
    #[must_use]
    pub fn valid_for(mut self, valid_for: std::time::Duration) -> Self {
        self.valid_for = valid_for;
        self
    }

    /// Re-signs `stage`'s index, unchanged but for a new generation and
    /// expiry; returns the new expiry. Run on a schedule shorter than the
    /// validity, so agents never see an expired index.
    pub async fn refresh(&self, stage: Stage) -> Result<String, PublishError> {
        let first = read_stage(self.remote, stage, &self.trusted).await?;
        let written = self.update_stage(stage, Some(first), |_, _| true).await?;
        Ok(written.and_then(|index| index.expires_at).unwrap_or_default())
    }

    /// Read-modify-write of `stage`'s index under If-Match, retried when
    /// another publisher wrote in between. `change` edits the index read
    /// (rebuilt from the audit trail when missing; its second argument says
    /// whether it existed) and says whether to write it. Returns the written
    /// index, or None when there was nothing to change.
    async fn update_stage(
        &self,
        stage: Stage,
        mut first: Option<(StageIndex, Option<String>)>,
        mut change: impl FnMut(&mut StageIndex, bool) -> bool,
    ) -> Result<Option<StageIndex>, PublishError> {
        for _ in 0..STAGE_ATTEMPTS {
            let (mut index, etag) = match first.take() {
                Some(read) => read,
                None => read_stage(self.remote, stage, &self.trusted).await?,
            };
            if etag.is_none() {
                index = self.rebuild_stage(stage).await?;
            }
            if !change(&mut index, etag.is_some()) {
                return Ok(None);
            }
            let bytes = self.seal_next(stage, &mut index)?;
            let key = self.remote.layout.stage(stage);
            if self.remote.put(&key, bytes, JSON, etag.as_deref()).await? == Put::Written {
                return Ok(Some(index));
            }
        }
        Err(PublishError::Contended(stage))
    }

    /// Stamps `index` as the next generation, signed by us now, valid for
    /// `valid_for`; returns the envelope's bytes.
    fn seal_next(&self, stage: Stage, index: &mut StageIndex) -> Result<Vec<u8>, PublishError> {
        index.kind = KIND_STAGE.into();
        index.generation = next_generation(index.generation).ok_or_else(|| {
            PublishError::GenerationExhausted { key: self.remote.layout.stage(stage), generation: index.generation }
        })?;
        index.updated_at = now_rfc3339();
        index.updated_by = self.identity.clone();
        index.expires_at = Some(expiry_from(std::time::SystemTime::now(), self.valid_for));
        Ok(self.key.seal(index).to_vec())
    }

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
        // Nothing is written before the stage's index checks out; the first
        // attempt at moving it builds on this read.
        let first = read_stage(self.remote, stage, &self.trusted).await?;
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
        if self.remote.put_new(&layout.release(&built.name, &built.version), statement.clone(), JSON).await?
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
        // Only once the version is ours: a statement by sha256 is what a dev
        // build by sha256 runs, so a publish that lost the race leaves none.
        self.remote.put_new(&layout.archive_statement(&built.name, &built.sha256), statement, JSON).await?;
        let entry = StageEntry {
            version: built.version.clone(),
            sha256: built.sha256.clone(),
            size,
            targets: built.targets,
        };
        let moved = self.move_stage(stage, &built.name, entry, Some(first)).await?;
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
        self.check_archive(&release).await?;
        let (current, _) = read_stage(self.remote, from, &self.trusted).await?;
        let in_previous =
            current.packs.get(pack).is_some_and(|e| e.version == version && e.sha256 == release.sha256)
                || audit(self.remote, Some(pack), &self.trusted).await?.records.iter().any(|r| {
                    r.verified == Some(true)
                        && r.record.version == version
                        && r.record.sha256 == release.sha256
                        && r.record.stage == from
                });
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
        let moved = self.move_stage(to, pack, entry, None).await?;
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

    /// The release statement of `pack` `version`, verified.
    async fn release(&self, pack: &str, version: &str) -> Result<Option<Release>, PublishError> {
        let key = self.remote.layout.release(pack, version);
        let Some((envelope, _)) = fetch_envelope(self.remote, &key).await? else { return Ok(None) };
        let release: Release = self
            .trusted
            .open(&envelope)
            .map_err(|source| PublishError::Unverified { key: key.clone(), source })?;
        if release.kind != KIND_RELEASE
            || release.pack != pack
            || release.version != version
            || !valid_sha256(&release.sha256)
        {
            return Err(PublishError::Corrupt {
                key,
                message: format!(
                    "the signed statement describes {:?} {:?} {:?} ({:?}), not {pack} {version}",
                    release.kind, release.pack, release.version, release.sha256
                ),
            });
        }
        Ok(Some(release))
    }

    /// The archive in the bucket is the one the release statement signs.
    async fn check_archive(&self, release: &Release) -> Result<(), PublishError> {
        let key = self.remote.layout.archive(&release.pack, &release.sha256);
        let mismatch = |problem: String| PublishError::ArchiveMismatch {
            pack: release.pack.clone(),
            version: release.version.clone(),
            problem,
        };
        let bytes = match self.remote.get(&key, None, release.size).await {
            Ok(Fetched::Found { bytes, .. }) => bytes,
            Ok(Fetched::NotFound | Fetched::NotModified) => {
                return Err(PublishError::NoArchive {
                    pack: release.pack.clone(),
                    version: release.version.clone(),
                    sha256: release.sha256.clone(),
                })
            }
            Err(RemoteError::TooLarge { .. }) => {
                return Err(mismatch(format!(
                    "{key} is larger than the {} bytes its statement signs (sha256 {})",
                    release.size, release.sha256
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let actual = archive::sha256_hex(&bytes);
        if actual != release.sha256 || bytes.len() as u64 != release.size {
            return Err(mismatch(format!(
                "{key} has sha256 {actual} and {} bytes; the statement signs sha256 {} and {} bytes",
                bytes.len(),
                release.sha256,
                release.size
            )));
        }
        Ok(())
    }

    /// Read-modify-write of a stage index, guarded by its ETag, starting from
    /// `first` if the caller just read it; false if it already pointed to
    /// `entry`.
    async fn move_stage(
        &self,
        stage: Stage,
        pack: &str,
        entry: StageEntry,
        first: Option<(StageIndex, Option<String>)>,
    ) -> Result<bool, PublishError> {
        let written = self
            .update_stage(stage, first, |index, existed| {
                if existed && index.packs.get(pack) == Some(&entry) {
                    return false;
                }
                index.packs.insert(pack.into(), entry.clone());
                true
            })
            .await?;
        Ok(written.is_some())
    }

    /// A stage whose index is missing (deleted, or never written): what the
    /// verified audit trail says each pack of the stage was last moved to.
    /// Agents refuse an older generation, and the rebuilt index's generation
    /// (at least the time in milliseconds) is above any they hold.
    async fn rebuild_stage(&self, stage: Stage) -> Result<StageIndex, PublishError> {
        let mut index = StageIndex::empty(stage);
        let trail = audit(self.remote, None, &self.trusted).await?;
        let mut last: BTreeMap<String, AuditRecord> = BTreeMap::new();
        for a in trail.records.into_iter().filter(|a| a.verified == Some(true) && a.record.stage == stage) {
            last.insert(a.record.pack.clone(), a.record);
        }
        for (pack, record) in last {
            let Some(release) = self.release(&pack, &record.version).await? else { continue };
            if release.sha256 != record.sha256 {
                continue;
            }
            index.packs.insert(
                pack,
                StageEntry {
                    version: release.version,
                    sha256: release.sha256,
                    size: release.size,
                    targets: release.targets,
                },
            );
        }
        if !index.packs.is_empty() {
            tracing::warn!(
                stage = %stage,
                packs = index.packs.len(),
                "the stage index was missing; rebuilt from the verified audit trail"
            );
        }
        Ok(index)
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

/// The next generation of an index: one more, and at least the time in
/// milliseconds, so that an index re-created after a deletion is still newer
/// than every one agents have seen. None past the largest.
fn next_generation(current: u64) -> Option<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    current.checked_add(1).filter(|g| *g < u64::MAX).map(|g| g.max(now))
}

/// A signed object of the bucket, parsed as an envelope (signature not yet
/// checked), with its ETag; None if there is none.
async fn fetch_envelope(remote: &Remote, key: &str) -> Result<Option<(Envelope, Option<String>)>, PublishError> {
    let (bytes, etag) = match remote.get(key, None, MAX_RECORD_BYTES).await? {
        Fetched::Found { bytes, etag } => (bytes, etag),
        Fetched::NotFound | Fetched::NotModified => return Ok(None),
    };
    let envelope =
        Envelope::from_slice(&bytes).map_err(|e| PublishError::Corrupt { key: key.to_owned(), message: e.to_string() })?;
    Ok(Some((envelope, etag)))
}

/// A stage's index, verified against `trusted`, and its ETag; an empty index
/// and no ETag if there is none.
pub async fn read_stage(
    remote: &Remote,
    stage: Stage,
    trusted: &TrustedKeys,
) -> Result<(StageIndex, Option<String>), PublishError> {
    let key = remote.layout.stage(stage);
    let Some((envelope, etag)) = fetch_envelope(remote, &key).await? else {
        return Ok((StageIndex::empty(stage), None));
    };
    let index: StageIndex =
        trusted.open(&envelope).map_err(|source| PublishError::Unverified { key: key.clone(), source })?;
    if index.kind != KIND_STAGE || index.stage != stage {
        return Err(PublishError::Corrupt {
            key,
            message: format!("the signed payload is a {:?} of stage {}, not the index of {stage}", index.kind, index.stage),
        });
    }
    // An ETag is what the next write is conditional on; without one the
    // index would be treated as missing.
    Ok((index, Some(etag.unwrap_or_default())))
}

/// A stage's index as stored, without trusting it, and whether its signature
/// checks out against `trusted` (None when no key is given).
async fn peek_stage(
    remote: &Remote,
    stage: Stage,
    trusted: &TrustedKeys,
) -> Result<Option<(StageIndex, Option<bool>)>, PublishError> {
    let key = remote.layout.stage(stage);
    let Some((envelope, _)) = fetch_envelope(remote, &key).await? else { return Ok(None) };
    let index: StageIndex = envelope.peek().map_err(|e| PublishError::Corrupt { key, message: e.to_string() })?;
    let verified = (!trusted.is_empty()).then(|| trusted.open::<StageIndex>(&envelope).is_ok_and(|v| v == index));
    Ok(Some((index, verified)))
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
    pub expires_at: Option<String>,
    /// Whether the index's signature checks out against the keys given
    /// (None when no key was given).
    pub verified: Option<bool>,
}

/// What each stage (or the one given) points to.
pub async fn list(remote: &Remote, only: Option<Stage>, trusted: &TrustedKeys) -> Result<Vec<Listed>, PublishError> {
    let mut out = Vec::new();
    for stage in Stage::ALL.into_iter().filter(|s| only.is_none_or(|o| o == *s)) {
        let Some((index, verified)) = peek_stage(remote, stage, trusted).await? else { continue };
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
                expires_at: index.expires_at.clone(),
                verified,
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

/// The audit trail, oldest first, optionally of one pack, and the objects
/// under the audit prefix that are not audit records at all (key, reason):
/// reported, never trusted, and no reason to hide the rest.
pub async fn audit(
    remote: &Remote,
    pack: Option<&str>,
    trusted: &TrustedKeys,
) -> Result<AuditTrail, PublishError> {
    let keys = remote.list(&remote.layout.audit_prefix()).await?;
    let fetched: Vec<(String, Fetched)> = stream::iter(keys)
        .map(|key| async move { remote.get(&key, None, MAX_RECORD_BYTES).await.map(|f| (key, f)) })
        .buffered(16)
        .try_collect()
        .await?;
    let mut trail = AuditTrail::default();
    for (key, f) in fetched {
        let Fetched::Found { bytes, .. } = f else { continue };
        let parsed = Envelope::from_slice(&bytes)
            .and_then(|envelope| envelope.peek::<AuditRecord>().map(|record| (envelope, record)));
        let (envelope, record) = match parsed {
            Ok(p) => p,
            Err(e) => {
                trail.unreadable.push((key, e.to_string()));
                continue;
            }
        };
        if pack.is_some_and(|p| record.pack != p) {
            continue;
        }
        let verified = (!trusted.is_empty()).then(|| {
            trusted.open::<AuditRecord>(&envelope).is_ok_and(|r| r == record && r.key_id == envelope.key_id)
        });
        trail.records.push(Audited { record, verified, object: key });
    }
    Ok(trail)
}

/// What `audit` read.
#[derive(Debug, Default)]
pub struct AuditTrail {
    pub records: Vec<Audited>,
    pub unreadable: Vec<(String, String)>,
}
