//! Per-pack virtualenvs, keyed by the sha256 of `requirements.txt`: packs
//! with the same file share one, packs with conflicting pins get their own.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
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
}

#[derive(Debug)]
pub struct Venvs {
    root: PathBuf,
    python: String,
    timeout: Duration,
    /// One build at a time: pip is heavy and two builds of one key collide.
    building: tokio::sync::Mutex<()>,
}

impl Venvs {
    pub fn new(root: PathBuf, python: String, timeout: Duration) -> Self {
        Self { root, python, timeout, building: tokio::sync::Mutex::new(()) }
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
        let _guard = self.building.lock().await;
        if let Some(dir) = self.ready(&key) {
            return Ok(Some(dir));
        }
        let dir = self.root.join(&key);
        let io = |source| VenvError::Io { path: dir.clone(), source };
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir).await.map_err(io)?;
        }
        tokio::fs::create_dir_all(&self.root).await.map_err(io)?;
        tracing::info!(venv = %dir.display(), pack = %pack_dir.display(), "building virtualenv");
        let started = std::time::Instant::now();
        self.run(Command::new(&self.python).arg("-m").arg("venv").arg(&dir)).await?;
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
                .arg(pack_dir.join(REQUIREMENTS))
                .env("PIP_NO_INPUT", "1"),
        )
        .await?;
        tokio::fs::write(dir.join(READY), b"").await.map_err(io)?;
        tracing::info!(venv = %dir.display(), seconds = started.elapsed().as_secs_f64(), "virtualenv ready");
        Ok(Some(dir))
    }

    async fn run(&self, cmd: &mut Command) -> Result<(), VenvError> {
        let shown = format!("{:?}", cmd.as_std()).replace('"', "");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| VenvError::Command {
                command: shown.clone(),
                status: "not started".into(),
                output: e.to_string(),
            })?;
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
        let _guard = self.building.lock().await;
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
