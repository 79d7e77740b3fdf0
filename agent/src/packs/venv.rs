//! Per-pack virtualenvs, keyed by the sha256 of `requirements.txt`: packs
//! with the same file share one, packs with conflicting pins get their own.
//!
//! pip runs a pack's build backend, which is the pack author's code: an agent
//! running as root builds as `sync.build_user` (nobody by default) in a
//! process group of its own, then takes the finished folder back (owner root,
//! no write for others) so that nothing the builder left can change what
//! actions run. The whole group is killed when the build ends or times out,
//! so no build process outlives it. Builds of different keys run side by side.

use std::{
    collections::HashMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use sha2::{Digest, Sha256};
use tokio::process::Command;

/// Marks a finished virtualenv; a folder without it is half-built.
const READY: &str = ".bolt-ready";
pub const REQUIREMENTS: &str = "requirements.txt";
/// Largest requirements.txt read.
const MAX_REQUIREMENTS_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot prepare {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("`{command}` failed ({status}): {output}")]
    Command { command: String, status: String, output: String },
    #[error("`{command}` took longer than {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("sync.build_user {0:?} does not exist on this host: virtualenvs are never built as root")]
    NoBuilder(String),
    #[error(
        "sync.build_user {user:?} cannot reach {dir}: {closed} is closed to it (chmod o+x {closed}, \
         or set sync.dir in a folder it can pass through)"
    )]
    Unreachable { user: String, dir: PathBuf, closed: PathBuf },
}

#[derive(Debug)]
pub struct Venvs {
    root: PathBuf,
    python: String,
    timeout: Duration,
    /// Who runs pip when the agent is root.
    build_user: String,
    /// One build per key at a time (two builds of one key would collide);
    /// other keys build meanwhile.
    building: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Builds hold it shared, pruning exclusively.
    pruning: tokio::sync::RwLock<()>,
}

/// The unprivileged account a root agent builds with.
#[derive(Debug, Clone, Copy)]
struct Builder {
    uid: u32,
    gid: u32,
}

impl Venvs {
    pub fn new(root: PathBuf, python: String, timeout: Duration) -> Self {
        Self::with_build_user(root, python, timeout, "nobody".into())
    }

    pub fn with_build_user(root: PathBuf, python: String, timeout: Duration, build_user: String) -> Self {
        Self {
            root,
            python,
            timeout,
            build_user,
            building: std::sync::Mutex::new(HashMap::new()),
            pruning: tokio::sync::RwLock::new(()),
        }
    }

    fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.building.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(key.to_owned()).or_default().clone()
    }

    /// None when the agent is not root (it builds as itself).
    fn builder(&self) -> Result<Option<Builder>, VenvError> {
        if !rustix::process::geteuid().is_root() {
            return Ok(None);
        }
        match nix::unistd::User::from_name(&self.build_user) {
            Ok(Some(u)) if !u.uid.is_root() => Ok(Some(Builder { uid: u.uid.as_raw(), gid: u.gid.as_raw() })),
            _ => Err(VenvError::NoBuilder(self.build_user.clone())),
        }
    }

    /// The builder must pass through every folder above the virtualenvs.
    fn check_reachable(&self, b: Builder) -> Result<(), VenvError> {
        use std::os::unix::fs::MetadataExt;
        for dir in self.root.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else { continue };
            let bits = if meta.uid() == b.uid {
                0o100
            } else if meta.gid() == b.gid {
                0o010
            } else {
                0o001
            };
            if meta.mode() & bits == 0 {
                return Err(VenvError::Unreachable {
                    user: self.build_user.clone(),
                    dir: self.root.clone(),
                    closed: dir.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The key of the pack's virtualenv, or None if it needs none.
    pub fn key(pack_dir: &Path) -> Result<Option<String>, VenvError> {
        let path = pack_dir.join(REQUIREMENTS);
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(VenvError::Read { path, source }),
            Ok(m) if m.len() > MAX_REQUIREMENTS_BYTES => {
                return Err(VenvError::Read { path, source: std::io::Error::other("larger than 1 MiB") })
            }
            Ok(m) if !m.is_file() => {
                return Err(VenvError::Read { path, source: std::io::Error::other("not a regular file") })
            }
            Ok(_) => {}
        }
        let bytes = std::fs::read(&path).map_err(|source| VenvError::Read { path, source })?;
        Ok(Some(hex::encode(&Sha256::digest(&bytes)[..16])))
    }

    /// The finished virtualenv of `key`, if there is one.
    pub fn ready(&self, key: &str) -> Option<PathBuf> {
        let dir = self.root.join(key);
        dir.join(READY).exists().then_some(dir)
    }

    /// The pack's virtualenv, built first if needed; None if the pack has no
    /// requirements.txt.
    pub async fn ensure(&self, pack_dir: &Path) -> Result<Option<PathBuf>, VenvError> {
        let Some(key) = Self::key(pack_dir)? else { return Ok(None) };
        if let Some(dir) = self.ready(&key) {
            return Ok(Some(dir));
        }
        let _pruning = self.pruning.read().await;
        let lock = self.key_lock(&key);
        let _building = lock.lock().await;
        if let Some(dir) = self.ready(&key) {
            return Ok(Some(dir));
        }
        let builder = self.builder()?;
        if let Some(b) = builder {
            self.check_reachable(b)?;
        }
        let dir = self.root.join(&key);
        let io = |source| VenvError::Io { path: dir.clone(), source };
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir).await.map_err(io)?;
        }
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        // The builder reads its own copy: the pack's folder may be closed to it.
        let requirements = dir.join(".requirements.txt");
        tokio::fs::copy(pack_dir.join(REQUIREMENTS), &requirements).await.map_err(io)?;
        if let Some(b) = builder {
            for p in [&dir, &requirements] {
                std::os::unix::fs::lchown(p, Some(b.uid), Some(b.gid)).map_err(io)?;
            }
        }
        tracing::info!(venv = %dir.display(), pack = %pack_dir.display(), as_uid = builder.map(|b| b.uid), "building virtualenv");
        let started = std::time::Instant::now();
        let built = async {
            self.run(Command::new(&self.python).arg("-m").arg("venv").arg(&dir), &dir, builder).await?;
            let python = dir.join("bin/python");
            self.run(
                Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--no-input",
                        "--disable-pip-version-check",
                        "--no-cache-dir",
                        "-r",
                    ])
                    .arg(&requirements)
                    .env("PIP_NO_INPUT", "1"),
                &dir,
                builder,
            )
            .await
        }
        .await;
        // Whatever happened, the folder is the agent's again before anything
        // reads it, and only the agent can write it.
        let owner = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        let dir_for_walk = dir.clone();
        let reclaimed = tokio::task::spawn_blocking(move || reclaim(&dir_for_walk, owner))
            .await
            .map_err(|e| io(std::io::Error::other(e.to_string())))
            .and_then(|r| r.map_err(io));
        built?;
        reclaimed?;
        tokio::fs::write(dir.join(READY), b"").await.map_err(io)?;
        tracing::info!(venv = %dir.display(), seconds = started.elapsed().as_secs_f64(), "virtualenv ready");
        Ok(Some(dir))
    }

    /// Runs one build step in a process group of its own (as the builder,
    /// if any), bounded by the pip timeout; the whole group is killed when the
    /// step ends, whatever it left behind.
    async fn run(&self, cmd: &mut Command, home: &Path, builder: Option<Builder>) -> Result<(), VenvError> {
        let shown = format!("{:?}", cmd.as_std()).replace('"', "");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir(home)
            .env("HOME", home)
            .env("PIP_NO_CACHE_DIR", "1")
            .process_group(0)
            .kill_on_drop(true);
        if let Some(b) = builder {
            cmd.uid(b.uid).gid(b.gid);
        }
        let child = cmd.spawn().map_err(|e| VenvError::Command {
            command: shown.clone(),
            status: "not started".into(),
            output: e.to_string(),
        })?;
        let _group = child.id().map(GroupKill);
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| VenvError::Command {
                command: shown.clone(),
                status: "wait failed".into(),
                output: e.to_string(),
            })?,
            Err(_) => return Err(VenvError::Timeout { command: shown, timeout: self.timeout }),
        };
        if out.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        if text.trim().is_empty() {
            text = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let tail: String = text
            .trim()
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        Err(VenvError::Command {
            command: shown,
            status: out.status.to_string(),
            output: tail.chars().take(600).collect(),
        })
    }

    /// Removes virtualenvs whose key is not in `keep` (never while one is
    /// being built).
    pub async fn prune(&self, keep: &std::collections::HashSet<String>) {
        let _guard = self.pruning.write().await;
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => tracing::info!(venv = %e.path().display(), "unused virtualenv removed"),
                    Err(err) => {
                        tracing::warn!(venv = %e.path().display(), error = %err, "cannot remove an unused virtualenv")
                    }
                }
            }
        }
    }
}

/// SIGKILL to a build step's whole process group when the step is over
/// (done, timed out, or abandoned): build backends that pip started must not
/// outlive it. The group id cannot be reused while any member is alive.
struct GroupKill(u32);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.0) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Gives every file under `dir` back to `owner` and takes write permission
/// from group and others (links are changed themselves, never followed).
fn reclaim(dir: &Path, owner: (u32, u32)) -> std::io::Result<()> {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        fix(&d, owner)?;
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                fix(&entry.path(), owner)?;
            }
        }
    }
    Ok(())
}

fn fix(path: &Path, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    if !meta.file_type().is_symlink() && meta.permissions().mode() & 0o022 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.permissions().mode() & !0o022))?;
    }
    Ok(())
}
