//! The packs this agent serves: loaded from the packs folder, swapped in
//! whole on each rescan so a call always sees one consistent snapshot.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use regex::Regex;
use sha2::{Digest, Sha256};

use super::{
    installed::{InstallError, InstalledTree, VerifiedArchive},
    venv::Venvs,
};

use super::{
    files::Trusted,
    manifest::{self, ActionSpec, PackManifest},
    params::{self, ArgLimits, BoundArgs},
    ArgError,
};

/// Where a pack came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The packs folder, laid out by hand or by an image.
    Local,
    /// Installed by pack sync from S3.
    S3,
    /// A dev build fetched for one execution.
    DevBuild,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::S3 => "s3",
            Self::DevBuild => "dev",
        }
    }
}

/// A pack installed from S3, as pack sync records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub dir: PathBuf,
}

/// A pack ready to run.
#[derive(Debug)]
pub struct LoadedPack {
    pub manifest: PackManifest,
    pub dir: PathBuf,
    pub version: String,
    pub origin: Origin,
    /// sha256 of the archive it came from, if it came from one.
    pub sha256: Option<String>,
    pub actions: BTreeMap<String, Arc<LoadedAction>>,
}

/// An action with its compiled parameter patterns.
#[derive(Debug, Clone)]
pub struct LoadedAction {
    pub pack: String,
    pub pack_version: String,
    pub pack_dir: PathBuf,
    /// The pack's virtualenv, put first on the action's PATH.
    pub venv: Option<PathBuf>,
    pub spec: ActionSpec,
    pub entrypoint: PathBuf,
    patterns: HashMap<String, Regex>,
}

impl LoadedAction {
    /// Timeout of one execution: the requested one, capped by the action's.
    pub fn timeout(&self, requested: Option<Duration>, default: Duration) -> Duration {
        let max = self.spec.timeout.unwrap_or(default);
        requested.filter(|t| !t.is_zero()).map_or(max, |t| t.min(max))
    }

    pub fn bind(&self, args: &HashMap<String, String>, limits: ArgLimits) -> Result<BoundArgs, ArgError> {
        params::bind(&self.spec, &self.patterns, args, limits)
    }
}

/// A pack folder that could not be loaded.
#[derive(Debug, Clone, Default)]
pub struct PackLoadError {
    pub source: PathBuf,
    pub error: String,
    /// It failed while the agent could open no file (descriptors or memory
    /// exhausted): the pack is not broken, and its last good load serves.
    pub transient: bool,
}

/// All packs at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub packs: BTreeMap<String, Arc<LoadedPack>>,
    pub errors: Vec<PackLoadError>,
    pub loaded_at: Option<SystemTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid pack name {0:?}: names are [a-z0-9][a-z0-9-]*")]
    BadPackName(String),
    #[error("invalid action name {0:?}: names are [a-z0-9][a-z0-9-]*")]
    BadActionName(String),
    #[error("no pack {0:?} on this agent")]
    NoPack(String),
    #[error("pack {pack:?} has no action {action:?}")]
    NoAction { pack: String, action: String },
}

pub struct Registry {
    dir: PathBuf,
    venvs: Arc<Venvs>,
    tree: InstalledTree,
    installed: ArcSwap<Vec<Installed>>,
    /// Why a local pack's virtualenv could not be built, by pack folder.
    venv_errors: std::sync::Mutex<HashMap<PathBuf, String>>,
    current: ArcSwap<Snapshot>,
}

impl Registry {
    /// Every `every`, re-reads the packs folder; the first round also
    /// builds the virtualenvs its packs need, without holding up the start.
    pub fn spawn_rescan(self: &Arc<Self>, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                registry.build_local_venvs().await;
                let r = registry.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                tokio::select! {
                    _ = tick.tick() => {}
                    () = crate::shutdown::stopped(&mut stop) => return,
                }
            }
        });
    }

    /// Serves the packs folder `dir` and what is installed in `tree`.
    pub fn new(dir: PathBuf, tree: InstalledTree) -> Self {
        Self {
            dir,
            venvs: tree.venvs().clone(),
            tree,
            installed: ArcSwap::from_pointee(Vec::new()),
            venv_errors: std::sync::Mutex::new(HashMap::new()),
            current: ArcSwap::from_pointee(Snapshot::default()),
        }
    }

    pub fn venvs(&self) -> &Arc<Venvs> {
        &self.venvs
    }

    /// Installs a verified archive as `<name>/<version>` (see [`InstalledTree::install`]);
    /// served once named in [`Self::set_installed`].
    pub async fn install(&self, archive: VerifiedArchive) -> Result<Installed, InstallError> {
        self.tree.install(archive).await
    }

    /// Refuses, before any download, other bytes under a version already installed.
    pub fn check_not_reused(&self, name: &str, version: &str, sha256: &str) -> Result<(), InstallError> {
        self.tree.check_not_reused(name, version, sha256)
    }

    /// Unpacks a verified dev build for one execution, which removes it.
    pub async fn load_dev_build(&self, archive: VerifiedArchive, name: &str) -> Result<LoadedPack, InstallError> {
        let (version, sha256) = (archive.version().to_owned(), archive.sha256().to_owned());
        let dir = self.tree.unpack_dev(archive).await?;
        load_dev_build(&dir, name, &version, &sha256, &self.venvs).map_err(|message| {
            let _ = std::fs::remove_dir_all(&dir);
            InstallError::Manifest { name: name.to_owned(), version, message }
        })
    }

    /// Removes installed versions and virtualenvs nothing uses: not in
    /// `keep`, not the version of a live execution, not served now.
    pub async fn collect_garbage(&self, keep: &[Installed], live: &std::collections::HashSet<(String, String)>) {
        let served = self.snapshot();
        self.tree.collect_garbage(keep, live, &served).await;
    }

    /// Sets the packs installed from S3; takes effect at the next reload.
    pub fn set_installed(&self, installed: Vec<Installed>) {
        self.installed.store(Arc::new(installed));
    }

    pub fn installed(&self) -> Arc<Vec<Installed>> {
        self.installed.load_full()
    }

    /// Builds the virtualenvs that packs in the packs folder need; failures
    /// are kept to be reported by the next reload.
    pub async fn build_local_venvs(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        let dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join(crate::packs::venv::REQUIREMENTS).is_file())
            .collect();
        for dir in dirs {
            let result = self.venvs.ensure(&dir).await;
            let mut errors = self.venv_errors.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(_) => {
                    errors.remove(&dir);
                }
                Err(e) => {
                    if errors.insert(dir.clone(), e.to_string()).is_none() {
                        tracing::error!(pack = %dir.display(), error = %e, "cannot build the pack's virtualenv");
                    }
                }
            }
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Rescans the packs folder and swaps the result in. Problems with one
    /// pack never affect the others.
    pub fn reload(&self) -> Arc<Snapshot> {
        let mut snapshot = scan(&self.dir, &self.venvs);
        {
            let venv_errors = self.venv_errors.lock().unwrap_or_else(|e| e.into_inner());
            for e in &mut snapshot.errors {
                if let Some(why) = venv_errors.get(&e.source) {
                    e.error = format!("{}: {why}", e.error);
                }
            }
        }
        for inst in self.installed.load().iter() {
            if snapshot.packs.contains_key(&inst.name) {
                tracing::debug!(pack = %inst.name, "a pack in the packs folder shadows the installed one");
                continue;
            }
            match load_installed(inst, &self.venvs) {
                Ok(pack) => {
                    snapshot.packs.insert(inst.name.clone(), Arc::new(pack));
                }
                Err(error) => snapshot.errors.push(PackLoadError {
                    source: inst.dir.clone(),
                    error,
                    transient: starved(),
                }),
            }
        }
        let previous = self.current.load_full();
        keep_last_good(&mut snapshot, &previous, &self.dir);
        let snapshot = Arc::new(snapshot);
        for e in &snapshot.errors {
            tracing::warn!(source = %e.source.display(), error = %e.error, transient = e.transient, "pack skipped");
        }
        let old = self.current.swap(snapshot.clone());
        let versions =
            |s: &Snapshot| s.packs.iter().map(|(n, p)| (n.clone(), p.version.clone())).collect::<Vec<_>>();
        if versions(&old) != versions(&snapshot) || old.errors.len() != snapshot.errors.len() {
            tracing::info!(packs = ?versions(&snapshot), errors = snapshot.errors.len(), "packs loaded");
        }
        snapshot
    }

    pub fn resolve(&self, pack: &str, action: &str) -> Result<Arc<LoadedAction>, ResolveError> {
        if !manifest::valid_name(pack) {
            return Err(ResolveError::BadPackName(clip(pack)));
        }
        if !manifest::valid_name(action) {
            return Err(ResolveError::BadActionName(clip(action)));
        }
        let snapshot = self.current.load();
        let loaded = snapshot.packs.get(pack).ok_or_else(|| ResolveError::NoPack(pack.to_owned()))?;
        loaded
            .actions
            .get(action)
            .cloned()
            .ok_or_else(|| ResolveError::NoAction { pack: pack.to_owned(), action: action.to_owned() })
    }
}

/// Packs that failed to load only because the agent was out of descriptors
/// or memory keep their last good load (a burst of connections must not make
/// every pack vanish); the error still shows in Health.
fn keep_last_good(snapshot: &mut Snapshot, previous: &Snapshot, packs_dir: &Path) {
    let transient: Vec<PathBuf> = snapshot.errors.iter().filter(|e| e.transient).map(|e| e.source.clone()).collect();
    for source in transient {
        let whole_folder = source == packs_dir;
        for (name, pack) in &previous.packs {
            let same = if whole_folder { pack.origin == Origin::Local } else { pack.dir == source };
            if same && !snapshot.packs.contains_key(name) {
                snapshot.packs.insert(name.clone(), pack.clone());
            }
        }
    }
}

/// Whether the agent cannot open a file right now (EMFILE, ENFILE, ENOMEM).
fn starved() -> bool {
    match fs::File::open("/dev/null") {
        Ok(_) => false,
        Err(e) => matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Loads every `<dir>/<pack>/pack.toml`; hidden entries are skipped.
pub fn scan(dir: &Path, venvs: &Venvs) -> Snapshot {
    let mut snapshot = Snapshot { loaded_at: Some(SystemTime::now()), ..Default::default() };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            snapshot.errors.push(PackLoadError {
                source: dir.to_owned(),
                error: format!("cannot read the packs folder: {e}"),
                transient: starved(),
            });
            return snapshot;
        }
    };
    if let Err(error) = Trusted::agent().check(dir) {
        snapshot.errors.push(PackLoadError {
            source: dir.to_owned(),
            error: format!("no pack is loaded: {error}"),
            transient: false,
        });
        return snapshot;
    }
    let mut dirs = Vec::new();
    for e in entries.filter_map(Result::ok) {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => dirs.push(e.path()),
            Ok(t) if t.is_symlink() => snapshot.errors.push(PackLoadError {
                source: e.path(),
                error: "is a symbolic link: a pack is a folder of the packs folder itself".into(),
                transient: false,
            }),
            _ => {}
        }
    }
    dirs.sort();
    for pack_dir in dirs {
        match load_pack(&pack_dir, venvs) {
            Ok(pack) => {
                snapshot.packs.insert(pack.manifest.name.clone(), Arc::new(pack));
            }
            Err(error) => snapshot.errors.push(PackLoadError { source: pack_dir, error, transient: starved() }),
        }
    }
    snapshot
}

/// Loads a pack of the packs folder, which must be in a folder of its name.
pub fn load_pack(dir: &Path, venvs: &Venvs) -> Result<LoadedPack, String> {
    Trusted::agent().check_tree(dir)?;
    let manifest = PackManifest::load(dir).map_err(|e| e.to_string())?;
    let folder = dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    if folder != manifest.name {
        return Err(format!("pack {:?} must be in a folder of the same name, not {folder:?}", manifest.name));
    }
    let version = match &manifest.version {
        Some(v) => v.clone(),
        None => format!("local-{}", content_hash(dir).map_err(|e| format!("cannot hash the pack: {e}"))?),
    };
    let venv = venv_of(dir, venvs)?;
    build(manifest, dir, version, Origin::Local, None, venv)
}

fn load_installed(inst: &Installed, venvs: &Venvs) -> Result<LoadedPack, String> {
    let (manifest, venv) = check_unpacked(&inst.dir, &inst.name, &inst.version, venvs)?;
    build(manifest, &inst.dir, inst.version.clone(), Origin::S3, Some(inst.sha256.clone()), venv)
}

/// A pack unpacked from an archive (S3 or a dev build): its manifest must
/// name `name` and `version`, and its virtualenv must be ready if it needs one.
pub fn check_unpacked(
    dir: &Path,
    name: &str,
    version: &str,
    venvs: &Venvs,
) -> Result<(PackManifest, Option<PathBuf>), String> {
    Trusted::agent().check_tree(dir)?;
    let manifest = PackManifest::load(dir).map_err(|e| e.to_string())?;
    if manifest.name != name || manifest.version.as_deref() != Some(version) {
        return Err(format!(
            "the archive holds {} {}, not {name} {version}",
            manifest.name,
            manifest.version.as_deref().unwrap_or("(no version)")
        ));
    }
    let venv = venv_of(dir, venvs)?;
    Ok((manifest, venv))
}

/// Loads an unpacked dev build for one execution.
pub fn load_dev_build(
    dir: &Path,
    name: &str,
    version: &str,
    sha256: &str,
    venvs: &Venvs,
) -> Result<LoadedPack, String> {
    let (manifest, venv) = check_unpacked(dir, name, version, venvs)?;
    build(manifest, dir, version.to_owned(), Origin::DevBuild, Some(sha256.to_owned()), venv)
}

fn venv_of(dir: &Path, venvs: &Venvs) -> Result<Option<PathBuf>, String> {
    match Venvs::key(dir).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(key) => venvs
            .ready(&key)
            .map(Some)
            .ok_or_else(|| "its virtualenv (requirements.txt) is not built yet".to_owned()),
    }
}

fn build(
    manifest: PackManifest,
    dir: &Path,
    version: String,
    origin: Origin,
    sha256: Option<String>,
    venv: Option<PathBuf>,
) -> Result<LoadedPack, String> {
    let mut actions = BTreeMap::new();
    for spec in &manifest.actions {
        let entrypoint = manifest::resolve_entrypoint(dir, &spec.entrypoint)?;
        let patterns = spec
            .params
            .iter()
            .filter_map(|(n, p)| p.pattern.as_ref().map(|pat| (n, pat)))
            .map(|(n, pat)| params::compile_pattern(pat).map(|re| (n.clone(), re)))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        actions.insert(
            spec.name.clone(),
            Arc::new(LoadedAction {
                pack: manifest.name.clone(),
                pack_version: version.clone(),
                pack_dir: dir.to_owned(),
                venv: venv.clone(),
                spec: spec.clone(),
                entrypoint,
                patterns,
            }),
        );
    }
    Ok(LoadedPack { dir: dir.to_owned(), version, origin, sha256, actions, manifest })
}

/// First 12 hex digits of a sha256 over the pack's regular files (paths and
/// contents, in path order), so an edited hand-laid pack gets a new version.
fn content_hash(dir: &Path) -> std::io::Result<String> {
    const MAX_FILES: usize = 10_000;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let t = entry.file_type()?;
            if t.is_dir() {
                stack.push(entry.path());
            } else if t.is_file() {
                files.push(entry.path());
            }
            if files.len() > MAX_FILES {
                return Err(std::io::Error::other("more than 10000 files"));
            }
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        hasher.update(rel.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        let mut file = fs::File::open(&f)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex::encode(&hasher.finalize()[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn test_venvs(root: &Path) -> Arc<Venvs> {
        Arc::new(Venvs::new(root.join(".venvs"), "python3".into(), Duration::from_secs(60)))
    }

    fn test_tree(root: &Path) -> InstalledTree {
        InstalledTree::new(root.join(".sync"), test_venvs(root), Default::default())
    }

    fn write_pack(root: &Path, name: &str, toml_text: &str) {
        let d = root.join(name);
        fs::create_dir_all(&d).expect("mkdir");
        fs::write(d.join("pack.toml"), toml_text).expect("write");
        let s = d.join("run.sh");
        fs::write(&s, "#!/bin/sh\necho hi\n").expect("write");
        fs::set_permissions(&s, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn a_broken_pack_does_not_hide_the_others() {
        let root = tempfile::tempdir().expect("tempdir");
        write_pack(
            root.path(),
            "good",
            "name = \"good\"\n[[actions]]\nname = \"go\"\nentrypoint = \"run.sh\"\n",
        );
        write_pack(
            root.path(),
            "broken",
            "name = \"broken\"\n[[actions]]\nname = \"x\"\nentrypoint = \"missing.sh\"\n",
        );
        write_pack(
            root.path(),
            "misnamed",
            "name = \"other\"\n[[actions]]\nname = \"x\"\nentrypoint = \"run.sh\"\n",
        );
        fs::create_dir(root.path().join(".hidden")).expect("mkdir");
        let reg = Registry::new(root.path().to_owned(), test_tree(root.path()));
        let snap = reg.reload();
        assert_eq!(snap.packs.keys().collect::<Vec<_>>(), ["good"]);
        assert_eq!(snap.errors.len(), 2, "{:?}", snap.errors);
        let action = reg.resolve("good", "go").expect("resolves");
        assert!(action.pack_version.starts_with("local-"));
        assert!(matches!(reg.resolve("good", "nope"), Err(ResolveError::NoAction { .. })));
        assert!(matches!(reg.resolve("../etc", "go"), Err(ResolveError::BadPackName(_))));
        assert!(matches!(reg.resolve("broken", "x"), Err(ResolveError::NoPack(_))));
    }

    #[test]
    fn version_changes_with_content() {
        let root = tempfile::tempdir().expect("tempdir");
        write_pack(root.path(), "p", "name = \"p\"\n[[actions]]\nname = \"go\"\nentrypoint = \"run.sh\"\n");
        let v1 = load_pack(&root.path().join("p"), &test_venvs(root.path())).expect("loads").version;
        fs::write(root.path().join("p/run.sh"), "#!/bin/sh\necho changed\n").expect("write");
        let v2 = load_pack(&root.path().join("p"), &test_venvs(root.path())).expect("loads").version;
        assert_ne!(v1, v2);
    }

    #[test]
    fn timeouts_are_capped_by_the_action() {
        let root = tempfile::tempdir().expect("tempdir");
        write_pack(
            root.path(),
            "p",
            "name = \"p\"\n[[actions]]\nname = \"go\"\nentrypoint = \"run.sh\"\ntimeout = \"1m\"\n",
        );
        let reg = Registry::new(root.path().to_owned(), test_tree(root.path()));
        reg.reload();
        let a = reg.resolve("p", "go").expect("resolves");
        let d = Duration::from_secs(3600);
        assert_eq!(a.timeout(None, d), Duration::from_secs(60));
        assert_eq!(a.timeout(Some(Duration::from_secs(5)), d), Duration::from_secs(5));
        assert_eq!(a.timeout(Some(Duration::from_secs(500)), d), Duration::from_secs(60));
    }
}
