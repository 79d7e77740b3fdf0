//! The packs installed from S3, on disk under the sync folder:
//! `packs/<name>/<version>/` (each with `.bolt-archive`, the sha256 it came
//! from), `dev/<id>/` for dev builds, `tmp/` for unpacking, and the
//! virtualenvs. Distribution hands over archives it has verified
//! ([`VerifiedArchive`]); what becomes of them on disk, and when they go,
//! is decided here.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    archive::{self, sha256_hex, Limits},
    manifest::{valid_name, valid_version},
    registry::{check_unpacked, Installed, Snapshot},
    venv::Venvs,
};

/// Written into each installed version: the sha256 of its archive.
const ARCHIVE_MARKER: &str = ".bolt-archive";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("invalid entry {name:?} {version:?} {sha256:?}")]
    Invalid { name: String, version: String, sha256: String },
    #[error("{name} {version}: the archive's sha256 is {actual}, the signed index says {expected}")]
    Sha256 { name: String, version: String, actual: String, expected: String },
    #[error("{name} {version}: {message}")]
    Archive { name: String, version: String, message: String },
    #[error("{name} {version}: virtualenv: {message}")]
    Venv { name: String, version: String, message: String },
    #[error("{name} {version}: {message}")]
    Manifest { name: String, version: String, message: String },
    #[error("{name} {version}: installed with sha256 {installed}, and the index now names sha256 {wanted} for the same version; refused (publish a new version)")]
    VersionReused { name: String, version: String, installed: String, wanted: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl InstallError {
    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "index",
            Self::Sha256 { .. } => "sha256",
            Self::Archive { .. } => "archive",
            Self::Venv { .. } => "venv",
            Self::Manifest { .. } => "manifest",
            Self::VersionReused { .. } => "version_reused",
            Self::Io { .. } => "io",
        }
    }
}

/// A sha256 in lower-case hex.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io { path: path.to_owned(), source }
}

/// Archive bytes whose sha256 is the one a signed statement names, for a
/// valid pack name and version. The only way to one is [`Self::check`].
pub struct VerifiedArchive {
    name: String,
    version: String,
    sha256: String,
    bytes: Vec<u8>,
}

impl VerifiedArchive {
    pub fn check(name: &str, version: &str, sha256: &str, bytes: Vec<u8>) -> Result<Self, InstallError> {
        Self::check_names(name, version, sha256)?;
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(InstallError::Sha256 {
                name: name.into(),
                version: version.into(),
                actual,
                expected: sha256.into(),
            });
        }
        Ok(Self { name: name.into(), version: version.into(), sha256: sha256.into(), bytes })
    }

    /// The names alone, before anything is downloaded.
    pub fn check_names(name: &str, version: &str, sha256: &str) -> Result<(), InstallError> {
        if valid_name(name) && valid_version(version) && valid_sha256(sha256) {
            Ok(())
        } else {
            Err(InstallError::Invalid { name: name.into(), version: version.into(), sha256: sha256.into() })
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// The installed-version tree and its virtualenvs.
#[derive(Debug)]
pub struct InstalledTree {
    root: PathBuf,
    venvs: Arc<Venvs>,
    limits: Limits,
}

impl InstalledTree {
    pub fn new(root: PathBuf, venvs: Arc<Venvs>, limits: Limits) -> Self {
        Self { root, venvs, limits }
    }

    pub fn venvs(&self) -> &Arc<Venvs> {
        &self.venvs
    }

    fn packs_root(&self) -> PathBuf {
        self.root.join("packs")
    }

    fn dev_root(&self) -> PathBuf {
        self.root.join("dev")
    }

    fn tmp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn version_dir(&self, name: &str, version: &str) -> PathBuf {
        self.packs_root().join(name).join(version)
    }

    /// Refuses, before any download, other bytes under a version already
    /// installed: they would swap the folder of executions running it.
    pub fn check_not_reused(&self, name: &str, version: &str, sha256: &str) -> Result<(), InstallError> {
        match std::fs::read_to_string(self.version_dir(name, version).join(ARCHIVE_MARKER)) {
            Ok(installed) if installed != sha256 => Err(InstallError::VersionReused {
                name: name.into(),
                version: version.into(),
                installed: installed.chars().take(80).collect(),
                wanted: sha256.into(),
            }),
            _ => Ok(()),
        }
    }

    /// Unpacks into a new folder under `parent`, checks the tree and the
    /// manifest and builds the virtualenv; the folder is removed on failure.
    async fn unpack(&self, archive: VerifiedArchive, parent: &Path) -> Result<PathBuf, InstallError> {
        std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        let dir = parent.join(uuid::Uuid::now_v7().simple().to_string());
        std::fs::create_dir(&dir).map_err(io_at(&dir))?;
        let VerifiedArchive { name, version, sha256, bytes } = archive;
        let fail = |message: String| InstallError::Archive { name: name.clone(), version: version.clone(), message };
        let (target, limits) = (dir.clone(), self.limits);
        let checked = match tokio::task::spawn_blocking(move || archive::extract(&bytes, &target, &limits)).await {
            Err(e) => Err(fail(e.to_string())),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Ok(Ok(())) => match self.venvs.ensure(&dir).await {
                Err(e) => Err(InstallError::Venv { name: name.clone(), version: version.clone(), message: e.to_string() }),
                Ok(_) => check_unpacked(&dir, &name, &version, &self.venvs).map(drop).map_err(|message| {
                    InstallError::Manifest { name: name.clone(), version: version.clone(), message }
                }),
            },
        };
        if let Err(e) = checked {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let _ = std::fs::write(dir.join(ARCHIVE_MARKER), &sha256);
        Ok(dir)
    }

    /// Installs as `packs/<name>/<version>/`, unless that version is there
    /// already from the same archive.
    pub async fn install(&self, archive: VerifiedArchive) -> Result<Installed, InstallError> {
        let (name, version, sha256) = (archive.name.clone(), archive.version.clone(), archive.sha256.clone());
        self.check_not_reused(&name, &version, &sha256)?;
        let fin = self.version_dir(&name, &version);
        let tmp = self.unpack(archive, &self.tmp_root()).await?;
        if std::fs::read_to_string(fin.join(ARCHIVE_MARKER)).is_ok_and(|s| s == sha256) {
            let _ = std::fs::remove_dir_all(&tmp);
        } else {
            if fin.exists() {
                // A leftover that is not this archive (an interrupted install).
                let aside = self.tmp_root().join(format!("old-{}", uuid::Uuid::now_v7().simple()));
                std::fs::rename(&fin, &aside).map_err(io_at(&fin))?;
                let _ = std::fs::remove_dir_all(&aside);
            }
            if let Some(parent) = fin.parent() {
                std::fs::create_dir_all(parent).map_err(io_at(parent))?;
            }
            std::fs::rename(&tmp, &fin).map_err(io_at(&fin))?;
        }
        Ok(Installed { name, version, sha256, dir: fin })
    }

    /// Unpacks a dev build under `dev/`: the folder is the execution's.
    pub async fn unpack_dev(&self, archive: VerifiedArchive) -> Result<PathBuf, InstallError> {
        self.unpack(archive, &self.dev_root()).await
    }

    /// Removes installed versions and virtualenvs that nothing uses: not in
    /// `keep`, not the version of a live execution, not needed by a served
    /// pack, a dev build or a local pack still waiting for its virtualenv.
    pub async fn collect_garbage(&self, keep: &[Installed], live: &HashSet<(String, String)>, served: &Snapshot) {
        let mut keep_dirs: HashSet<PathBuf> = keep.iter().map(|p| p.dir.clone()).collect();
        if let Ok(packs) = std::fs::read_dir(self.packs_root()) {
            for pack in packs.filter_map(Result::ok) {
                let name = pack.file_name().to_string_lossy().into_owned();
                let Ok(versions) = std::fs::read_dir(pack.path()) else { continue };
                for v in versions.filter_map(Result::ok) {
                    let version = v.file_name().to_string_lossy().into_owned();
                    let path = v.path();
                    if keep_dirs.contains(&path) || live.contains(&(name.clone(), version.clone())) {
                        keep_dirs.insert(path);
                        continue;
                    }
                    match std::fs::remove_dir_all(&path) {
                        Ok(()) => tracing::info!(pack = %name, version = %version, "unused version removed"),
                        Err(e) => {
                            tracing::warn!(pack = %name, version = %version, error = %e, "cannot remove an unused version")
                        }
                    }
                }
                let _ = std::fs::remove_dir(pack.path());
            }
        }
        // Leftovers of interrupted downloads.
        if let Ok(tmp) = std::fs::read_dir(self.tmp_root()) {
            for e in tmp.filter_map(Result::ok) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dev = std::fs::read_dir(self.dev_root())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut keys: HashSet<String> = HashSet::new();
        let waiting = served.errors.iter().map(|e| &e.source);
        for dir in keep_dirs.iter().chain(served.packs.values().map(|p| &p.dir)).chain(dev.iter()).chain(waiting) {
            if let Ok(Some(k)) = Venvs::key(dir) {
                keys.insert(k);
            }
        }
        self.venvs.prune(&keys).await;
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt, time::Duration};

    use super::*;

    /// A built archive of pack `p` at `version`, its entrypoint printing `body`.
    fn built(root: &Path, version: &str, body: &str) -> archive::Built {
        let dir = root.join("src").join(version).join("p");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("pack.toml"), "name = \"p\"\n[[actions]]\nname = \"a\"\nentrypoint = \"run.sh\"\n")
            .expect("manifest");
        std::fs::write(dir.join("run.sh"), format!("#!/bin/sh\necho {body}\n")).expect("entrypoint");
        std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        archive::build(&dir, Some(version)).expect("build")
    }

    fn tree(root: &Path) -> InstalledTree {
        let venvs = Arc::new(Venvs::new(root.join("venvs"), "python3".into(), Duration::from_secs(30)));
        InstalledTree::new(root.join("sync"), venvs, Limits::default())
    }

    fn verified(b: &archive::Built) -> VerifiedArchive {
        VerifiedArchive::check(&b.name, &b.version, &b.sha256, b.bytes.clone()).expect("verifies")
    }

    #[test]
    fn only_bytes_matching_the_signed_sha256_verify() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = built(d.path(), "1.0.0", "one");
        let mut other = b.bytes.clone();
        other.push(0);
        let err = VerifiedArchive::check(&b.name, &b.version, &b.sha256, other).err().expect("refused");
        assert_eq!(err.reason(), "sha256");
        for (name, version, sha) in [("../p", "1", b.sha256.as_str()), ("p", "../1", &b.sha256), ("p", "1", "ABC")] {
            let err = VerifiedArchive::check_names(name, version, sha).expect_err("invalid");
            assert_eq!(err.reason(), "index");
        }
    }

    #[tokio::test]
    async fn a_version_installs_once_and_its_name_is_never_reused_for_other_bytes() {
        let d = tempfile::tempdir().expect("tempdir");
        let t = tree(d.path());
        let one = built(d.path(), "1.0.0", "one");
        let inst = t.install(verified(&one)).await.expect("installs");
        assert_eq!(inst.dir, d.path().join("sync/packs/p/1.0.0"));
        assert_eq!(std::fs::read_to_string(inst.dir.join(ARCHIVE_MARKER)).expect("marker"), one.sha256);
        assert_eq!(t.install(verified(&one)).await.expect("again").dir, inst.dir);
        let impostor = built(d.path(), "1.0.0", "other");
        assert_ne!(impostor.sha256, one.sha256);
        let err = t.install(verified(&impostor)).await.expect_err("reused");
        assert_eq!(err.reason(), "version_reused");
        assert!(std::fs::read_to_string(inst.dir.join("run.sh")).expect("kept").contains("one"));
        assert!(std::fs::read_dir(d.path().join("sync/tmp")).expect("tmp").next().is_none(), "nothing left in tmp");
    }

    #[tokio::test]
    async fn garbage_collection_keeps_what_is_served_or_running() {
        let d = tempfile::tempdir().expect("tempdir");
        let t = tree(d.path());
        let mut installed = Vec::new();
        for v in ["1.0.0", "2.0.0", "3.0.0"] {
            installed.push(t.install(verified(&built(d.path(), v, v))).await.expect("installs"));
        }
        std::fs::create_dir_all(d.path().join("sync/tmp/leftover")).expect("leftover");
        let live = HashSet::from([("p".to_owned(), "2.0.0".to_owned())]);
        t.collect_garbage(&installed[2..], &live, &Snapshot::default()).await;
        assert!(!installed[0].dir.exists(), "unused: removed");
        assert!(installed[1].dir.exists(), "running: kept");
        assert!(installed[2].dir.exists(), "served: kept");
        assert!(!d.path().join("sync/tmp/leftover").exists());
    }
}
