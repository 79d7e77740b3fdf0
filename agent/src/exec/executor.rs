//! Admission, idempotency and the state transitions of executions. Each live
//! execution has a watch channel carrying its current record: followers and
//! GetExecution read it, the task that watches the supervisor writes it.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    layout::{self, unix_ms, ExecDir, ExitRecord, KillRequest, Layout, Origin, Outcome, PidFile, Spec},
    spawn,
};
use crate::{
    caps::{CapsMode, CapsSpec, Limits},
    packs::{ArgError, ArgLimits, LoadedAction},
    store::{Created, ExecRecord, ExecState, Store, StoreError},
    supervisor::spawner::SUPERVISOR_COMM,
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
    pub cgroup_parents: crate::caps::Parents,
    pub cgroup_name: String,
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
    RunAs(#[from] crate::runas::RunAsError),
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
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ExecutorConfig,
    store: Store,
    layout: Layout,
    live: Mutex<HashMap<String, watch::Sender<ExecRecord>>>,
    spawner: spawn::Spawner,
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

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<ExecRecord>>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validates, records (PENDING) and launches; returns without waiting
    /// for the action.
    pub async fn start(&self, req: StartRequest) -> Result<Started, ExecError> {
        let bound = tracing::info_span!("validate")
            .in_scope(|| req.action.bind(&req.args, self.inner.cfg.arg_limits))?;
        let run_as =
            crate::runas::resolve(req.action.spec.user.as_deref(), req.action.spec.group.as_deref())?;
        if crate::runas::is_root(run_as.as_ref())
            && !self
                .inner
                .cfg
                .root_packs
                .iter()
                .any(|p| wildmatch::WildMatch::new(p).matches(&req.action.pack))
        {
            return Err(ExecError::RootForbidden { pack: req.action.pack.clone() });
        }
        let timeout = req.action.timeout(req.timeout, self.inner.cfg.default_timeout);
        let request_hash = request_hash(&req, timeout);
        if let Some(free) = free_bytes(&self.inner.layout.root) {
            if free < self.inner.cfg.min_free_bytes {
                return Err(ExecError::DiskFull {
                    path: self.inner.layout.root.display().to_string(),
                    free,
                    min: self.inner.cfg.min_free_bytes,
                });
            }
        }
        // A retry of an accepted key starts nothing: it is answered before
        // the caps, which only bound new executions.
        if !req.idempotency_key.is_empty() {
            let known = self.inner.store.by_key(&req.caller, &req.idempotency_key)?;
            if let Some(existing) = known.filter(|e| !e.never_ran) {
                if let Some(dir) = &req.dev_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                if existing.request_hash != request_hash {
                    return Err(ExecError::KeyReused(req.idempotency_key.clone()));
                }
                let current = self.get(&existing.id)?.unwrap_or(existing);
                return Ok(Started { record: current, deduplicated: true });
            }
        }
        let record = ExecRecord {
            id: uuid::Uuid::now_v7().to_string(),
            pack: req.action.pack.clone(),
            action: req.action.spec.name.clone(),
            pack_version: req.action.pack_version.clone(),
            state: ExecState::Pending,
            args: bound.accepted.clone(),
            caller: req.caller.clone(),
            idempotency_key: req.idempotency_key.clone(),
            request_hash,
            timeout_ms: timeout.as_millis() as u64,
            created_at_ms: unix_ms(SystemTime::now()),
            dev_dir: req.dev_dir.as_ref().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default(),
            ..Default::default()
        };
        // Registered before the record is written so that a concurrent retry
        // that finds the record also finds it live; checked against the caps
        // under the same lock, so concurrent calls cannot overshoot them.
        let (tx, _) = watch::channel(record.clone());
        {
            let mut live = self.live();
            if let Err(e) = admit(&self.inner.cfg, &live, &record.pack) {
                drop(live);
                if let Some(dir) = &req.dev_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return Err(e);
            }
            live.insert(record.id.clone(), tx);
        }
        match self.inner.store.create(record.clone()).await {
            Ok(Created::New) => {}
            Ok(Created::Existing(existing)) => {
                self.live().remove(&record.id);
                if let Some(dir) = &req.dev_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                if existing.request_hash != record.request_hash {
                    return Err(ExecError::KeyReused(record.idempotency_key));
                }
                let current = self.get(&existing.id)?.unwrap_or(*existing);
                return Ok(Started { record: current, deduplicated: true });
            }
            Err(e) => {
                self.live().remove(&record.id);
                if let Some(dir) = &req.dev_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return Err(e.into());
            }
        }
        let mut env = self.inner.cfg.base_env.clone();
        if let Some(venv) = &req.action.venv {
            for (k, v) in &mut env {
                if k == "PATH" {
                    *v = format!("{}:{v}", venv.join("bin").display());
                }
            }
            env.push(("VIRTUAL_ENV".to_owned(), venv.to_string_lossy().into_owned()));
        }
        if let Some(r) = &run_as {
            env.retain(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME"));
            env.extend([
                ("HOME".to_owned(), r.home.clone()),
                ("USER".to_owned(), r.user.clone()),
                ("LOGNAME".to_owned(), r.user.clone()),
            ]);
        }
        env.extend([
            ("BOLT_EXECUTION_ID".to_owned(), record.id.clone()),
            ("BOLT_PACK".to_owned(), record.pack.clone()),
            ("BOLT_PACK_VERSION".to_owned(), record.pack_version.clone()),
            ("BOLT_ACTION".to_owned(), record.action.clone()),
        ]);
        env.extend(bound.env);
        let mut argv = vec![req.action.entrypoint.to_string_lossy().into_owned()];
        argv.extend(bound.argv);
        let spec = Spec {
            execution_id: record.id.clone(),
            argv,
            env,
            cwd: req.action.pack_dir.clone(),
            timeout_ms: record.timeout_ms,
            kill_grace_ms: self.inner.cfg.kill_grace.as_millis() as u64,
            output_max: self.inner.cfg.output_max,
            nice: self.inner.cfg.nice,
            caps: self.caps_for(&req.action, &record.id),
            run_as,
            origin: Some(Origin {
                pack: record.pack.clone(),
                action: record.action.clone(),
                pack_version: record.pack_version.clone(),
                args: record.args.clone(),
                caller: record.caller.clone(),
                idempotency_key: record.idempotency_key.clone(),
                request_hash: record.request_hash.clone(),
                timeout_ms: record.timeout_ms,
                created_at_ms: record.created_at_ms,
                dev_dir: record.dev_dir.clone(),
            }),
        };
        crate::telemetry::metrics::execution_started(&record.pack, &record.action);
        let span = tracing::info_span!("execution", id = %record.id, caller = %record.caller, pack = %record.pack, action = %record.action);
        tracing::info!(target: "audit", parent: &span, args = ?record.args, timeout_ms = record.timeout_ms, "execute");
        let this = self.clone();
        let id = record.id.clone();
        tokio::spawn(async move { this.launch(id, spec).await }.instrument(span));
        Ok(Started { record, deduplicated: false })
    }

    fn caps_for(&self, action: &LoadedAction, id: &str) -> CapsSpec {
        let d = &self.inner.cfg.default_limits;
        let cgroup = (self.inner.cfg.caps_mode != CapsMode::None)
            .then(|| format!("{}/{id}", self.inner.cfg.cgroup_name));
        CapsSpec {
            cgroup,
            parents: self.inner.cfg.cgroup_parents.clone(),
            limits: Limits {
                memory_max: action.spec.memory_max.map(|m| m.as_u64()).or(d.memory_max),
                cpu_max: action.spec.cpu_max.or(d.cpu_max),
                pids_max: action.spec.pids_max.map(u64::from).or(d.pids_max),
            },
        }
    }

    pub fn caps_mode(&self) -> CapsMode {
        self.inner.cfg.caps_mode
    }

    async fn launch(&self, id: String, spec: Spec) {
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

    async fn fail(&self, id: &str, error: String) {
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
    async fn finalize(&self, id: &str, dir: &ExecDir) {
        let Some(mut rec) = self.current(id) else { return };
        let exit = dir.read_exit();
        if exit.is_none() {
            let orphaned = dir.clone();
            let _ = tokio::task::spawn_blocking(move || end_orphaned_action(&orphaned)).await;
        }
        apply_exit(&mut rec, exit);
        tracing::info!(state = rec.state.as_str(), exit_code = rec.exit_code, signal = rec.signal, "ended");
        self.end(rec).await;
    }

    async fn end(&self, rec: ExecRecord) {
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
        );
        if !rec.dev_dir.is_empty() {
            let dir = std::path::Path::new(&rec.dev_dir);
            match std::fs::remove_dir_all(dir) {
                Ok(()) => tracing::debug!(dir = %dir.display(), "dev build removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the dev build"),
            }
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

    fn publish(&self, rec: &ExecRecord) {
        if let Some(tx) = self.live().get(&rec.id) {
            tx.send_replace(rec.clone());
        }
    }

    fn current(&self, id: &str) -> Option<ExecRecord> {
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

    /// Asks the supervisor to end the action. Returns the record as it was.
    pub async fn kill(&self, id: &str, grace: Option<Duration>, by: &str) -> Result<ExecRecord, ExecError> {
        let Some(mut rx) = self.subscribe(id) else {
            return self.get(id)?.ok_or_else(|| ExecError::NotFound(id.to_owned()));
        };
        // A kill that races the launch waits for the supervisor to exist.
        let rec = match tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|r| r.state != ExecState::Pending),
        )
        .await
        {
            Ok(Ok(r)) => r.clone(),
            _ => return self.get(id)?.ok_or_else(|| ExecError::NotFound(id.to_owned())),
        };
        if rec.state.is_terminal() {
            return Ok(rec);
        }
        let dir = self.inner.layout.dir(id);
        let req = KillRequest {
            grace_ms: grace.unwrap_or(self.inner.cfg.kill_grace).as_millis() as u64,
            by: by.to_owned(),
        };
        // On a full disk kill.json cannot be written; the signal alone still
        // kills (with the default grace, "by a signal to the supervisor").
        if let Err(e) = layout::write_replace(&dir.path(layout::KILL), &serde_json::to_vec(&req).unwrap_or_default(), false)
        {
            tracing::warn!(error = %e, "cannot write kill.json; signalling the supervisor all the same");
        }
        // Signalled only once child.pid exists, that is once the supervisor
        // blocks SIGTERM; before that it finds kill.json after its spawn.
        if dir.path(layout::CHILD_PID).exists() {
            if let Some(pid) = dir.supervisor().filter(PidFile::is_alive) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid.pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        tracing::info!(target: "audit", id, by, grace_ms = req.grace_ms, "kill");
        Ok(rec)
    }

    /// Reconciles the history with the execution folders after a start:
    /// finished ones are recorded, running ones re-attached, the rest LOST.
    pub async fn recover(&self) -> Result<(), ExecError> {
        let adopted = self.adopt().await?;
        let active = self.inner.store.active()?;
        let (mut attached, mut ended) = (0, 0);
        for rec in active {
            let dir = self.inner.layout.dir(&rec.id);
            let span = tracing::info_span!("execution", id = %rec.id, caller = %rec.caller, pack = %rec.pack, action = %rec.action);
            // A supervisor writes its pid file first thing; one started right
            // before a crash may not have yet: it is found by its command line
            // or, forked by the spawner, by its working folder.
            let supervisor = dir.supervisor().or_else(|| find_supervisor(&dir)).filter(PidFile::is_alive);
            let (tx, _) = watch::channel(rec.clone());
            self.live().insert(rec.id.clone(), tx);
            match supervisor {
                Some(pid) if !dir.has_exit() => {
                    attached += 1;
                    let this = self.clone();
                    let id = rec.id.clone();
                    tokio::spawn(
                        async move {
                            tracing::info!(supervisor = pid.pid, "re-attached");
                            spawn::wait_for_exit(pid).await;
                            this.finalize(&id, &this.inner.layout.dir(&id)).await;
                        }
                        .instrument(span),
                    );
                }
                _ => {
                    ended += 1;
                    let _g = span.enter();
                    let mut rec = rec;
                    if dir.has_exit() {
                        apply_exit(&mut rec, dir.read_exit());
                    } else if !dir.path(layout::OUTPUT).exists() && !dir.path(layout::CHILD_PID).exists() {
                        // No supervisor ever ran it: it is known not to have run.
                        rec.state = ExecState::Failed;
                        rec.error = "the agent stopped before the action was started; it did not run (a retry with the same idempotency key runs it)".into();
                        rec.never_ran = true;
                        rec.ended_at_ms = Some(unix_ms(SystemTime::now()));
                    } else {
                        end_orphaned_action(&dir);
                        apply_exit(&mut rec, None);
                    }
                    tracing::info!(state = rec.state.as_str(), "recovered");
                    drop(_g);
                    // Stored in the background: on a full disk the end waits
                    // for space, and the agent must serve meanwhile.
                    self.publish(&rec);
                    let this = self.clone();
                    tokio::spawn(async move { this.end(rec).await }.instrument(span));
                }
            }
        }
        tracing::info!(attached, ended, adopted, "recovered executions");
        Ok(())
    }

    /// Execution folders the history does not know: the history lost their
    /// records (emptied, replaced, moved aside). Each one whose `spec.json`
    /// names its request gets its record back, as RUNNING, for the
    /// reconciliation that follows to settle; nothing is deleted but the
    /// hidden `.<id>` folders of removals cut short. Returns how many.
    async fn adopt(&self) -> Result<usize, ExecError> {
        let (mut adopted, mut unknown) = (0, 0);
        for name in self.inner.layout.list()? {
            let path = self.inner.layout.root.join(&name);
            if name.starts_with('.') {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if self.inner.store.contains(&name)? {
                continue;
            }
            let dir = self.inner.layout.dir(&name);
            let origin = dir.read_spec().ok().filter(|s| s.execution_id == name).and_then(|s| s.origin);
            let Some(o) = origin.filter(|_| uuid::Uuid::parse_str(&name).is_ok()) else {
                unknown += 1;
                tracing::warn!(folder = %path.display(), "an execution folder the history does not know, without a readable spec.json; left alone");
                continue;
            };
            let rec = ExecRecord {
                id: name.clone(),
                pack: o.pack,
                action: o.action,
                pack_version: o.pack_version,
                state: ExecState::Running,
                args: o.args,
                caller: o.caller,
                idempotency_key: o.idempotency_key,
                request_hash: o.request_hash,
                timeout_ms: o.timeout_ms,
                created_at_ms: o.created_at_ms,
                started_at_ms: Some(o.created_at_ms),
                dev_dir: o.dev_dir,
                supervisor_pid: dir.supervisor().map_or(0, |p| p.pid as u32),
                compressed: dir.path(layout::OUTPUT_ZST).exists() && !dir.path(layout::OUTPUT).exists(),
                ..Default::default()
            };
            match self.inner.store.create(rec).await {
                Ok(Created::New) => adopted += 1,
                Ok(Created::Existing(_)) => {}
                // A full disk: the folder stays, the next start adopts it.
                Err(e) => tracing::error!(folder = %path.display(), error = %e, "cannot record an adopted execution"),
            }
        }
        if adopted > 0 || unknown > 0 {
            tracing::warn!(adopted, unknown, "the history did not know every execution folder: adopted those it could from their spec.json");
        }
        Ok(adopted)
    }
}

/// The live supervisor of an execution: `bolt-agent supervise <dir>` by its
/// command line, or a forked `bolt-supervise` by its working folder.
fn find_supervisor(dir: &ExecDir) -> Option<PidFile> {
    let want = format!("supervise\0{}\0", dir.0.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let by_cmdline = String::from_utf8_lossy(&cmdline).contains(&want);
        let forked = || {
            std::fs::read(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_ascii_end() == SUPERVISOR_COMM.to_bytes())
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir.0)
        };
        (by_cmdline || forked()).then(|| PidFile::of(pid)).flatten()
    })
}

/// Free bytes for unprivileged users on the file system holding `path`.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(path).ok().map(|s| s.f_bavail * s.f_frsize)
}

/// A supervisor that died without recording an outcome leaves its action
/// running unwatched, with no timeout: end what is left of it (its process
/// group, then every process of its cgroup) and remove the cgroup, so that
/// nothing outlives the LOST record.
fn end_orphaned_action(dir: &ExecDir) {
    use nix::sys::signal::{killpg, Signal};
    if let Some(child) = PidFile::read(&dir.path(layout::CHILD_PID)).filter(PidFile::is_alive) {
        if killpg(nix::unistd::Pid::from_raw(child.pid), Signal::SIGKILL).is_ok() {
            tracing::warn!(pid = child.pid, "the action outlived its supervisor; its process group was killed");
        }
    }
    let Ok(spec) = dir.read_spec() else { return };
    let Some(name) = &spec.caps.cgroup else { return };
    if let Some(cgroup) = crate::caps::ExecCgroup::existing(&spec.caps.parents, name) {
        cgroup.kill_all();
        cgroup.remove(Duration::from_secs(2));
    }
}

/// Turns the supervisor's exit record into the final state.
fn apply_exit(rec: &mut ExecRecord, exit: Option<ExitRecord>) {
    let Some(exit) = exit else {
        rec.state = ExecState::Lost;
        rec.error = "the supervisor ended without recording an outcome".into();
        rec.ended_at_ms = Some(unix_ms(SystemTime::now()));
        return;
    };
    rec.state = match exit.outcome {
        Outcome::Exited if exit.exit_code == Some(0) => ExecState::Succeeded,
        Outcome::Exited => ExecState::Failed,
        Outcome::Killed => ExecState::Killed,
        Outcome::TimedOut => ExecState::TimedOut,
        Outcome::StartFailed => ExecState::Failed,
        Outcome::OomKilled => ExecState::OomKilled,
    };
    rec.exit_code = exit.exit_code;
    rec.signal = exit.signal;
    if let Some(e) = exit.error {
        rec.error = e;
    }
    if let Some(by) = exit.killed_by {
        rec.killed_by = by;
    }
    // The supervisor's clock of the start, not the agent's later record of it.
    rec.started_at_ms = Some(exit.started_at_ms);
    rec.ended_at_ms = Some(exit.ended_at_ms);
    rec.cpu_time_us = exit.cpu_time_us;
    rec.peak_rss_bytes = exit.peak_rss_bytes;
    rec.stdout_bytes = exit.stdout_bytes;
    rec.stderr_bytes = exit.stderr_bytes;
    rec.truncated = exit.truncated;
}

/// What the caller asked for: pack, action, arguments as given, timeout.
/// The admission caps: executions at once, of one pack, and pending.
fn admit(
    cfg: &ExecutorConfig,
    live: &HashMap<String, watch::Sender<ExecRecord>>,
    pack: &str,
) -> Result<(), ExecError> {
    let (mut of_pack, mut pending) = (0, 0);
    for tx in live.values() {
        let r = tx.borrow();
        of_pack += usize::from(r.pack == pack);
        pending += usize::from(r.state == ExecState::Pending);
    }
    let exhausted =
        |what: String, limit: usize, setting: &'static str| Err(ExecError::Busy { what, limit, setting });
    if live.len() >= cfg.max_running {
        return exhausted(
            format!("{} executions are running", live.len()),
            cfg.max_running,
            "limits.max_running",
        );
    }
    if of_pack >= cfg.max_running_per_pack {
        return exhausted(
            format!("{of_pack} executions of pack {pack:?} are running"),
            cfg.max_running_per_pack,
            "limits.max_running_per_pack",
        );
    }
    if pending >= cfg.max_pending {
        return exhausted(
            format!("{pending} executions are waiting to start"),
            cfg.max_pending,
            "limits.max_pending",
        );
    }
    Ok(())
}

fn request_hash(req: &StartRequest, timeout: Duration) -> String {
    let mut args: Vec<_> = req.args.iter().collect();
    args.sort();
    let mut h = Sha256::new();
    for part in [req.action.pack.as_str(), req.action.spec.name.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in args {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.update(timeout.as_millis().to_le_bytes());
    if req.dev_dir.is_some() {
        h.update(b"dev\0");
        h.update(req.action.pack_version.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}
