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
    manifest::{self, ActionSpec, PackManifest},
    params::{self, ArgLimits, BoundArgs},
    ArgError,
};

/// A pack ready to run.
#[derive(Debug)]
pub struct LoadedPack {
    pub manifest: PackManifest,
    pub dir: PathBuf,
    pub version: String,
    pub actions: BTreeMap<String, Arc<LoadedAction>>,
}

/// An action with its compiled parameter patterns.
#[derive(Debug)]
pub struct LoadedAction {
    pub pack: String,
    pub pack_version: String,
    pub pack_dir: PathBuf,
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
#[derive(Debug, Clone)]
pub struct PackLoadError {
    pub source: PathBuf,
    pub error: String,
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
    current: ArcSwap<Snapshot>,
}

impl Registry {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, current: ArcSwap::from_pointee(Snapshot::default()) }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Rescans the packs folder and swaps the result in. Problems with one
    /// pack never affect the others.
    pub fn reload(&self) -> Arc<Snapshot> {
        let snapshot = Arc::new(scan(&self.dir));
        for e in &snapshot.errors {
            tracing::warn!(source = %e.source.display(), error = %e.error, "pack skipped");
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

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Loads every `<dir>/<pack>/pack.toml`; hidden entries are skipped.
pub fn scan(dir: &Path) -> Snapshot {
    let mut snapshot = Snapshot { loaded_at: Some(SystemTime::now()), ..Default::default() };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            snapshot.errors.push(PackLoadError {
                source: dir.to_owned(),
                error: format!("cannot read the packs folder: {e}"),
            });
            return snapshot;
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for pack_dir in dirs {
        match load_pack(&pack_dir) {
            Ok(pack) => {
                snapshot.packs.insert(pack.manifest.name.clone(), Arc::new(pack));
            }
            Err(error) => snapshot.errors.push(PackLoadError { source: pack_dir, error }),
        }
    }
    snapshot
}

pub fn load_pack(dir: &Path) -> Result<LoadedPack, String> {
    let manifest = PackManifest::load(dir).map_err(|e| e.to_string())?;
    let folder = dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    if folder != manifest.name {
        return Err(format!("pack {:?} must be in a folder of the same name, not {folder:?}", manifest.name));
    }
    let version = match &manifest.version {
        Some(v) => v.clone(),
        None => format!("local-{}", content_hash(dir).map_err(|e| format!("cannot hash the pack: {e}"))?),
    };
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
                spec: spec.clone(),
                entrypoint,
                patterns,
            }),
        );
    }
    Ok(LoadedPack { dir: dir.to_owned(), version, actions, manifest })
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
        let reg = Registry::new(root.path().to_owned());
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
        let v1 = load_pack(&root.path().join("p")).expect("loads").version;
        fs::write(root.path().join("p/run.sh"), "#!/bin/sh\necho changed\n").expect("write");
        let v2 = load_pack(&root.path().join("p")).expect("loads").version;
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
        let reg = Registry::new(root.path().to_owned());
        reg.reload();
        let a = reg.resolve("p", "go").expect("resolves");
        let d = Duration::from_secs(3600);
        assert_eq!(a.timeout(None, d), Duration::from_secs(60));
        assert_eq!(a.timeout(Some(Duration::from_secs(5)), d), Duration::from_secs(5));
        assert_eq!(a.timeout(Some(Duration::from_secs(500)), d), Duration::from_secs(60));
    }
}
