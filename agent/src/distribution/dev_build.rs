//! Dev builds: a published release fetched, verified and unpacked for one
//! execution, then removed when it ends.

use super::{
    records::{valid_sha256, valid_version, Release, KIND_RELEASE},
    sync::Distribution,
};
use crate::packs::{LoadedPack, Registry};

#[derive(Debug, thiserror::Error)]
pub enum DevBuildError {
    #[error("dev builds need pack sync from S3, which is not configured on this agent")]
    NotConfigured,
    #[error("a dev build names a version, a sha256 or both")]
    Unnamed,
    #[error("invalid dev build version {0:?}")]
    BadVersion(String),
    #[error("invalid dev build sha256 {0:?}: 64 lower-case hex digits")]
    BadSha256(String),
    #[error("no published release of {pack} {what}")]
    NotFound { pack: String, what: String },
    #[error("dev build of {pack} refused: {reason}")]
    Refused { pack: String, reason: String },
}

/// Fetches and unpacks the release; the returned pack's folder is the
/// execution's to remove.
pub async fn fetch(
    dist: &Distribution,
    registry: &Registry,
    pack: &str,
    version: &str,
    sha256: &str,
) -> Result<LoadedPack, DevBuildError> {
    let remote = dist.remote.as_ref().ok_or(DevBuildError::NotConfigured)?;
    if version.is_empty() && sha256.is_empty() {
        return Err(DevBuildError::Unnamed);
    }
    if !version.is_empty() && !valid_version(version) {
        return Err(DevBuildError::BadVersion(version.chars().take(80).collect()));
    }
    if !sha256.is_empty() && !valid_sha256(sha256) {
        return Err(DevBuildError::BadSha256(sha256.chars().take(80).collect()));
    }
    let (key, what) = if version.is_empty() {
        (remote.layout.archive_statement(pack, sha256), format!("with sha256 {sha256}"))
    } else {
        (remote.layout.release(pack, version), format!("version {version}"))
    };
    let refused = |reason: String| DevBuildError::Refused { pack: pack.into(), reason };
    let release: Release = dist
        .fetch_signed(remote, &key)
        .await
        .map_err(refused)?
        .ok_or_else(|| DevBuildError::NotFound { pack: pack.into(), what })?;
    if release.kind != KIND_RELEASE
        || release.pack != pack
        || (!version.is_empty() && release.version != version)
        || (!sha256.is_empty() && release.sha256 != sha256)
    {
        return Err(refused(format!(
            "the signed statement describes {} {} ({}), not what was asked",
            release.pack, release.version, release.sha256
        )));
    }
    let archive =
        dist.fetch_archive(remote, pack, &release.version, &release.sha256).await.map_err(|f| refused(f.message))?;
    registry.load_dev_build(archive, pack).await.map_err(|e| refused(e.to_string()))
}
