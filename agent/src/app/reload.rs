//! SIGHUP: re-reads the config and the certificates, applies what can
//! change live and names what needs a restart.
//!
//! Each reload is told to systemd (`RELOADING=1` then `READY=1`) and written
//! to `reload.json` in the data folder, which `bolt-agent reload` (the unit's
//! `ExecReload=`) waits for: `systemctl reload` returns once the agent has
//! reloaded, and fails when the new config does not load.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    authz::Authorizer,
    config::{Config, Overrides, Section},
    packs::Registry,
    shutdown::stopped,
    tls::{ServerTls, TlsFiles},
};

/// The file, in the data folder, that records the last reload.
pub const RELOAD_STATUS_FILE: &str = "reload.json";
/// The file, in the data folder, that holds the serving agent's pid.
pub const PID_FILE: &str = "agent.pid";

/// What one reload did (the content of `reload.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// The agent that reloaded.
    pub pid: u32,
    /// 1 for its first reload, then 2, ...
    pub generation: u64,
    /// False when the config or the certificates could not be loaded.
    pub ok: bool,
    pub at: String,
    pub message: String,
    pub applied: Vec<String>,
    pub needs_restart: Vec<String>,
}

/// What SIGHUP can change in a running agent.
pub(super) struct Reload {
    pub(super) path: Option<PathBuf>,
    pub(super) overrides: Overrides,
    pub(super) running: Config,
    pub(super) tls_files: Arc<ArcSwap<TlsFiles>>,
    pub(super) tls: Arc<ArcSwap<ServerTls>>,
    pub(super) authz: Arc<ArcSwap<Authorizer>>,
    pub(super) registry: Arc<Registry>,
    pub(super) generation: u64,
}

pub(super) fn spawn_sighup(mut ctx: Reload, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config reload by signal is off");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                () = stopped(&mut stop) => return,
            }
            tracing::info!("SIGHUP: reloading the config and the certificates");
            let mut reloading = vec![sd_notify::NotifyState::Reloading];
            reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
            let _ = sd_notify::notify(&reloading);
            let status = ctx.apply().await;
            ctx.record(&status);
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&status.message),
            ]);
        }
    });
}

impl Reload {
    /// Applies what can change live (certificates, authorization rules, log
    /// level, packs); names what needs a restart. A config that does not load
    /// changes nothing.
    async fn apply(&mut self) -> ReloadStatus {
        self.generation += 1;
        let mut status = ReloadStatus {
            pid: std::process::id(),
            generation: self.generation,
            ok: true,
            at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            message: String::new(),
            applied: Vec::new(),
            needs_restart: Vec::new(),
        };
        let new = match Config::load(self.path.as_deref(), self.overrides.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the config does not load; nothing changed");
                status.ok = false;
                status.message = format!("the config does not load; nothing changed: {e:#}");
                return status;
            }
        };
        let files = TlsFiles::new(&new.tls_dir).with_revoked_serials(&new.tls.revoked_serials);
        match files.server_config() {
            Ok(cfg) => {
                self.tls.store(cfg);
                self.tls_files.store(Arc::new(files));
                tracing::info!(tls_dir = %new.tls_dir.display(), "TLS certificates reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: certificates cannot be loaded; keeping the previous ones");
                status.ok = false;
                status.message = format!("certificates cannot be loaded; keeping the previous ones: {e:#}. ");
            }
        }
        let mut applied = if status.ok { vec!["certificates"] } else { Vec::new() };
        let mut restart = Vec::new();
        for section in self.running.diff(&new) {
            match section {
                // Reloaded above, whatever changed.
                Section::TlsDir | Section::Tls => {}
                Section::Authz => {
                    self.authz.store(Arc::new(Authorizer::new(&new.authz)));
                    applied.push(section.name());
                }
                Section::LogLevel => match crate::telemetry::set_log_level(&new.log.level) {
                    Ok(()) => {
                        applied.push(section.name());
                        self.running.log.level = new.log.level.clone();
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: log level not changed"),
                },
                other => restart.push(other.name()),
            }
        }
        let r = self.registry.clone();
        let _ = tokio::task::spawn_blocking(move || r.reload()).await;
        applied.push("packs");
        if restart.is_empty() {
            tracing::info!(applied = ?applied, "SIGHUP: reloaded");
            status.message.push_str(&format!("reloaded: {}", applied.join(", ")));
        } else {
            tracing::warn!(applied = ?applied, needs_restart = ?restart, "SIGHUP: reloaded; these changes take effect at the next restart");
            status.message.push_str(&format!(
                "reloaded: {}; at the next restart: {}",
                applied.join(", "),
                restart.join(", ")
            ));
        }
        status.applied = applied.iter().map(|s| (*s).to_owned()).collect();
        status.needs_restart = restart.iter().map(|s| (*s).to_owned()).collect();
        // Only what was applied changes the running state, so the next
        // SIGHUP compares the rest against what really runs.
        self.running.tls_dir = new.tls_dir;
        self.running.tls = new.tls;
        self.running.authz = new.authz;
        status
    }

    /// Writes `reload.json` for `bolt-agent reload`, which waits for it.
    fn record(&self, status: &ReloadStatus) {
        let path = self.running.data_dir.join(RELOAD_STATUS_FILE);
        let written = serde_json::to_vec_pretty(status)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::files::write_replace(&path, &bytes, false));
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %path.display(), "cannot record the reload");
        }
    }
}

/// Why `bolt-agent reload` could not get a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read the agent's pid from {path}: {source} (is the agent running with this data folder? or pass --pid)")]
    NoPid { path: PathBuf, source: std::io::Error },
    #[error("{path} does not hold a pid: {text:?}")]
    BadPid { path: PathBuf, text: String },
    #[error("process {pid} is not a serving bolt-agent ({why}); a stale {PID_FILE}? pass --pid")]
    NotTheAgent { pid: u32, why: String },
    #[error("cannot signal process {pid}: {source}")]
    Signal { pid: u32, source: nix::Error },
    #[error("the agent (pid {pid}) recorded no reload within {waited:?} (is it older than this command?)")]
    NoAnswer { pid: u32, waited: Duration },
}

/// Asks the agent serving `data_dir` (or `pid`) to reload and waits for its
/// verdict: the `ReloadStatus` it records (`ok` false: the new config or
/// certificates did not load).
pub fn request_reload(data_dir: &Path, pid: Option<u32>, wait: Duration) -> Result<ReloadStatus, ReloadError> {
    let pid = match pid {
        Some(p) => p,
        None => read_pid(&data_dir.join(PID_FILE))?,
    };
    check_agent(pid)?;
    let status_path = data_dir.join(RELOAD_STATUS_FILE);
    let before = read_status(&status_path).filter(|s| s.pid == pid).map_or(0, |s| s.generation);
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).map_err(|_| ReloadError::NotTheAgent {
        pid,
        why: "not a valid pid".into(),
    })?);
    nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGHUP)
        .map_err(|source| ReloadError::Signal { pid, source })?;
    let started = Instant::now();
    loop {
        if let Some(s) = read_status(&status_path).filter(|s| s.pid == pid && s.generation > before) {
            return Ok(s);
        }
        if started.elapsed() > wait {
            return Err(ReloadError::NoAnswer { pid, waited: wait });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_pid(path: &Path) -> Result<u32, ReloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReloadError::NoPid { path: path.into(), source })?;
    text.trim().parse().map_err(|_| ReloadError::BadPid { path: path.into(), text: text.chars().take(40).collect() })
}

/// A pid file outlives its agent and pids are reused: signal only a process
/// that runs this program's `run`.
fn check_agent(pid: u32) -> Result<(), ReloadError> {
    let not = |why: String| ReloadError::NotTheAgent { pid, why };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| not(format!("no such process: {e}")))?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let program = args.first().map(|a| Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(a)));
    let named = program.and_then(Path::file_name).is_some_and(|n| n == "bolt-agent");
    if !named || args.get(1) != Some(&&b"run"[..]) {
        return Err(not(format!("its command line is {:?}", String::from_utf8_lossy(&cmdline).replace('\0', " "))));
    }
    Ok(())
}

fn read_status(path: &Path) -> Option<ReloadStatus> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
