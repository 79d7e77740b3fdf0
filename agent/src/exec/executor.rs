//! The executor: the live executions and their state transitions. Each live
//! execution has a watch channel carrying its current record: followers and
//! GetExecution read it, the task that watches the supervisor writes it.
//! Starting ([`super::start`]), killing ([`super::kill`]) and recovering after
//! a restart ([`super::recover`]) are beside it.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::sync::watch;
use tracing::Instrument;

use super::{recover, spawn};
use crate::{
    execdir::{ExecDir, Layout, Spec},
    files::unix_ms,
    host::caps::{CapsMode, Limits},
    packs::{ArgError, ArgLimits, LoadedAction},
    store::{ExecRecord, ExecState, Store, StoreError},
};

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub default_timeout: Duration,
    pub kill_grace: Duration,
    pub nice: i32,
    pub output_max: u64,
    pub max_running: usize,
    pub max_running_per_pack: usize,
    pub max_pending: usize,
    pub arg_limits: ArgLimits,
    /// PATH, LANG and the passed-through variables every action gets.
    pub base_env: Vec<(String, String)>,
    /// Packs that may run as root (glob patterns).
    pub root_packs: Vec<String>,
    /// This binary, re-executed as `supervise`.
    pub self_exe: PathBuf,
    /// How caps are applied on this host, the agent's original cgroups and
    /// the cgroup holding executions below them.
    pub caps_mode: CapsMode,
    pub cgroup_parents: crate::host::caps::Parents,
    pub cgroup_name: String,
    /// On v2, actions start inside their cgroup (`caps.clone_into_cgroup`).
    pub clone_into_cgroup: bool,
    /// Caps of actions whose pack sets none.
    pub default_limits: Limits,
    /// Free space the data folder must keep for a new execution to start.
    pub min_free_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Args(#[from] ArgError),
    #[error("{what}; the limit is {limit} ({setting})")]
    Busy { what: String, limit: usize, setting: &'static str },
    #[error(transparent)]
    RunAs(#[from] crate::host::runas::RunAsError),
    #[error("pack {pack:?} may not run as root on this agent (exec.root_packs); give the action a `user` in pack.toml")]
    RootForbidden { pack: String },
    #[error("idempotency key {0:?} was already used for a different request")]
    KeyReused(String),
    #[error("no execution {0:?}")]
    NotFound(String),
    #[error(
        "the data folder {path} has {free} bytes free; new executions need {min} (limits.min_free_bytes)"
    )]
    DiskFull { path: String, free: u64, min: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("execution folder: {0}")]
    Io(#[from] std::io::Error),
}

/// An Execute call, validated by the API layer.
pub struct StartRequest {
    pub action: Arc<LoadedAction>,
    pub args: HashMap<String, String>,
    pub caller: String,
    pub idempotency_key: String,
    pub timeout: Option<Duration>,
    /// A dev build's folder, removed when the execution ends.
    pub dev_dir: Option<std::path::PathBuf>,
}

pub struct Started {
    pub record: ExecRecord,
    pub deduplicated: bool,
}

#[derive(Clone)]
pub struct Executor {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) cfg: ExecutorConfig,
    pub(super) store: Store,
    pub(super) layout: Layout,
    live: Mutex<HashMap<String, watch::Sender<ExecRecord>>>,
    pub(super) spawner: spawn::Spawner,
    /// Started with the first follower (it needs the runtime).
    dir_watcher: std::sync::OnceLock<Option<Arc<super::dir_watch::DirWatcher>>>,
}

impl Executor {
    pub fn new(cfg: ExecutorConfig, store: Store, layout: Layout) -> Self {
        let cgroup =
            (cfg.caps_mode != CapsMode::None).then(|| (cfg.cgroup_parents.clone(), cfg.cgroup_name.clone()));
        let spawner = spawn::Spawner::new(cfg.self_exe.clone(), cgroup);
        Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                layout,
                live: Mutex::new(HashMap::new()),
                spawner,
                dir_watcher: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Wakes on writes into an execution folder; None where inotify is
    /// unavailable.
    pub(super) fn watch_dir(&self, dir: &std::path::Path) -> Option<super::dir_watch::DirWatch> {
        self.inner.dir_watcher.get_or_init(super::dir_watch::DirWatcher::start).as_ref()?.watch(dir)
    }

    /// Starts the supervisor spawner now rather than at the first execution.
    pub async fn warm_up(&self) {
        self.inner.spawner.warm_up().await;
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    pub fn running(&self) -> usize {
        self.live().len()
    }

    pub(super) fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<ExecRecord>>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn caps_mode(&self) -> CapsMode {
        self.inner.cfg.caps_mode
    }

    pub(super) async fn launch(&self, id: String, spec: Spec) {
        let start = async {
            let dir = self.inner.layout.dir(&id);
            let bytes = serde_json::to_vec(&spec).map_err(|e| format!("cannot write spec.json: {e}"))?;
            let supervisor = self.inner.spawner.start(&dir, &bytes).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((dir, supervisor))
        };
        let (dir, supervisor) = match start.instrument(tracing::info_span!("start")).await {
            Ok(x) => x,
            Err(e) => return self.fail(&id, e).await,
        };
        let pid = supervisor.pid();
        let Some(mut rec) = self.current(&id) else { return };
        rec.state = ExecState::Running;
        rec.started_at_ms = Some(unix_ms(SystemTime::now()));
        rec.supervisor_pid = pid as u32;
        self.publish(&rec);
        if let Err(e) = self.inner.store.put(rec).await {
            tracing::error!(error = %e, "cannot record RUNNING");
        }
        tracing::debug!(supervisor = pid, "running");
        async {
            supervisor.wait().await;
            // A supervisor started twice for one folder (the spawner lost in
            // the middle of a request) leaves at once: follow the one that
            // holds the folder.
            if !dir.has_exit() {
                if let Some(other) = dir.supervisor().filter(|p| p.pid != pid && p.is_alive()) {
                    spawn::wait_for_exit(other).await;
                }
            }
        }
        .instrument(tracing::info_span!("run", supervisor = pid))
        .await;
        self.finalize(&id, &dir).instrument(tracing::info_span!("end")).await;
    }

    pub(super) async fn fail(&self, id: &str, error: String) {
        tracing::error!(%error, "execution failed to start");
        if let Some(mut rec) = self.current(id) {
            rec.state = ExecState::Failed;
            rec.error = error;
            rec.never_ran = true;
            rec.ended_at_ms = Some(unix_ms(SystemTime::now()));
            self.end(rec).await;
        }
    }

    /// Reads `exit.json` (or its absence) into the final record.
    pub(super) async fn finalize(&self, id: &str, dir: &ExecDir) {
        let Some(mut rec) = self.current(id) else { return };
        let exit = dir.read_exit();
        if exit.is_none() {
            let orphaned = dir.clone();
            let _ = tokio::task::spawn_blocking(move || recover::end_orphaned_action(&orphaned)).await;
        }
        recover::apply_exit(&mut rec, exit);
        tracing::info!(state = rec.state.as_str(), exit_code = rec.exit_code, signal = rec.signal, "ended");
        self.end(rec).await;
    }

    pub(super) async fn end(&self, rec: ExecRecord) {
        let id = rec.id.clone();
        // Until the end is stored (a full disk may refuse it for a while),
        // the record stays live in memory with its final state.
        let mut wait = Duration::from_millis(200);
        while let Err(e) = self.inner.store.put(rec.clone()).await {
            tracing::error!(error = %e, retry_in = ?wait, "cannot record the end of the execution");
            if matches!(e, StoreError::Closed) {
                break;
            }
            self.publish(&rec);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
        // Published after the write, so a follower that sees the end can
        // also read it from the history.
        self.publish(&rec);
        self.live().remove(&id);
        crate::telemetry::metrics::execution_ended(
            &rec.pack,
            &rec.action,
            rec.state.as_str(),
            rec.cpu_time_us,
            rec.peak_rss_bytes,
            rec.started_at_ms.zip(rec.ended_at_ms).map(|(s, e)| e.saturating_sub(s)),
        );
        if !rec.dev_dir.is_empty() {
            super::start::remove_dev_build(std::path::Path::new(&rec.dev_dir));
        }
    }

    /// (pack, version) of every live execution: versions not to remove.
    pub fn live_versions(&self) -> std::collections::HashSet<(String, String)> {
        self.live()
            .values()
            .map(|tx| {
                let r = tx.borrow();
                (r.pack.clone(), r.pack_version.clone())
            })
            .collect()
    }

    pub(super) fn publish(&self, rec: &ExecRecord) {
        if let Some(tx) = self.live().get(&rec.id) {
            tx.send_replace(rec.clone());
        }
    }

    pub(super) fn current(&self, id: &str) -> Option<ExecRecord> {
        self.live().get(id).map(|tx| tx.borrow().clone())
    }

    /// The live record if the execution is live, else the stored one.
    pub fn get(&self, id: &str) -> Result<Option<ExecRecord>, ExecError> {
        if let Some(rec) = self.current(id) {
            return Ok(Some(rec));
        }
        Ok(self.inner.store.get(id)?)
    }

    /// Changes of a live execution's record; None once it has ended.
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<ExecRecord>> {
        self.live().get(id).map(watch::Sender::subscribe)
    }

}

/// Free bytes for unprivileged users on the file system holding `path`.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(path).ok().map(|s| s.f_bavail * s.f_frsize)
}

