//! Starting a supervisor in a session of its own, and waiting for one to end
//! whether this agent started it or a previous agent did.
//!
//! Supervisors come from the [`Spawner`] (one long-lived process of this
//! binary that forks them); running `bolt-agent supervise` directly is the
//! fallback when the spawner cannot be used.

use std::{
    os::{fd::OwnedFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio::{
    io::{unix::AsyncFd, AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
    process::Child,
};

use crate::execdir::{ExecDir, PidFile};
use crate::host::caps::Parents;
use crate::execdir::wire::{parse_answer, write_message, MAX_MESSAGE};

/// How long the spawner may take to answer one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// After the spawner failed to start, how long supervisors are run directly.
const RESTART_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start the supervisor: {0}")]
    Exec(std::io::Error),
    #[error("cannot prepare the execution folder: {0}")]
    Prepare(std::io::Error),
    #[error("supervisor spawner: {0}")]
    Spawner(String),
    #[error("the supervisor spawner is down")]
    SpawnerDown,
}

/// A supervisor just started: either this agent's child, or a process it
/// knows by pid (forked by the spawner, or found after a restart).
pub enum Supervisor {
    Child(Child),
    Orphan(PidFile),
}

impl Supervisor {
    pub fn pid(&self) -> i32 {
        match self {
            Self::Child(c) => c.id().map_or(0, |p| p as i32),
            Self::Orphan(p) => p.pid,
        }
    }

    /// Resolves when the supervisor has ended.
    pub async fn wait(self) {
        match self {
            Self::Child(mut c) => {
                let _ = c.wait().await;
            }
            Self::Orphan(pid) => wait_for_exit(pid).await,
        }
    }
}

/// Runs `<self_exe> supervise <dir>` in a process group of its own (so no
/// signal meant for the agent's group, such as a terminal's Ctrl-C, reaches
/// it; it ignores SIGHUP). The supervisor records its own pid. The child
/// handle reaps it if it ends while this agent runs; after a restart it is
/// an orphan of init and [`wait_for_exit`] watches it instead.
fn spawn_supervisor(self_exe: &Path, dir: &ExecDir) -> Result<Child, SpawnError> {
    let mut cmd = std::process::Command::new(self_exe);
    cmd.arg("supervise")
        .arg(&dir.0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    tokio::process::Command::from(cmd).spawn().map_err(SpawnError::Exec)
}

/// The agent's handle on `bolt-agent supervisor-spawner`, started on first
/// use and again after it fails.
pub struct Spawner {
    self_exe: PathBuf,
    /// Where the spawner moves to (the supervisors' cgroup), with cgroups.
    cgroup: Option<(Parents, String)>,
    state: tokio::sync::Mutex<State>,
}

enum State {
    Idle,
    Up { stream: UnixStream, _process: Box<Child> },
    Down { until: Instant },
}

impl Spawner {
    pub fn new(self_exe: PathBuf, cgroup: Option<(Parents, String)>) -> Self {
        Self { self_exe, cgroup, state: tokio::sync::Mutex::new(State::Idle) }
    }

    /// Prepares the execution folder `dir` with `spec` (spec.json) and
    /// starts its supervisor: forked by the spawner, or run directly when the
    /// spawner is not available.
    pub async fn start(&self, dir: &ExecDir, spec: &[u8]) -> Result<Supervisor, SpawnError> {
        let e = match self.fork(dir, spec).await {
            Ok(pid) => return Ok(Supervisor::Orphan(pid)),
            Err(e) => e,
        };
        if !matches!(e, SpawnError::SpawnerDown) {
            tracing::warn!(error = %e, "starting the supervisor directly");
        }
        // A spawner lost in the middle of a request may have forked one
        // already: then it holds the folder.
        if let Some(pid) = dir.supervisor().filter(PidFile::is_alive) {
            return Ok(Supervisor::Orphan(pid));
        }
        dir.prepare(spec).map_err(SpawnError::Prepare)?;
        spawn_supervisor(&self.self_exe, dir).map(Supervisor::Child)
    }

    /// Starts the spawner now rather than on the first execution.
    pub async fn warm_up(&self) {
        let mut state = self.state.lock().await;
        if matches!(*state, State::Idle) {
            *state = self.launch();
        }
    }

    async fn fork(&self, dir: &ExecDir, spec: &[u8]) -> Result<PidFile, SpawnError> {
        if spec.len() > MAX_MESSAGE {
            return Err(SpawnError::Spawner(format!("a spec of {} bytes is too big to send", spec.len())));
        }
        let mut state = self.state.lock().await;
        match &*state {
            State::Idle => *state = self.launch(),
            State::Down { until } if Instant::now() >= *until => *state = self.launch(),
            _ => {}
        }
        let State::Up { stream, .. } = &mut *state else {
            return Err(SpawnError::SpawnerDown);
        };
        let path = dir.0.as_os_str().as_encoded_bytes();
        match tokio::time::timeout(ANSWER_TIMEOUT, ask(stream, &[path, spec])).await {
            Ok(Ok(answer)) => parse_answer(&answer).map_err(SpawnError::Spawner),
            Ok(Err(e)) => {
                *state = State::Idle;
                Err(SpawnError::Spawner(format!("lost: {e}")))
            }
            Err(_) => {
                *state = State::Idle;
                Err(SpawnError::Spawner(format!("no answer within {ANSWER_TIMEOUT:?}")))
            }
        }
    }

    fn launch(&self) -> State {
        match self.try_launch() {
            Ok(up) => {
                tracing::debug!("supervisor spawner started");
                up
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?RESTART_AFTER, "supervisor spawner not available; running supervisors directly");
                State::Down { until: Instant::now() + RESTART_AFTER }
            }
        }
    }

    fn try_launch(&self) -> Result<State, SpawnError> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(SpawnError::Exec)?;
        let theirs: OwnedFd = theirs.into();
        let out = theirs.try_clone().map_err(SpawnError::Exec)?;
        let mut cmd = std::process::Command::new(&self.self_exe);
        cmd.arg("supervisor-spawner")
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::from(out))
            .stderr(std::process::Stdio::null())
            .process_group(0);
        let mut process =
            tokio::process::Command::from(cmd).kill_on_drop(true).spawn().map_err(SpawnError::Exec)?;
        if let (Some((parents, base)), Some(pid)) = (&self.cgroup, process.id()) {
            if let Err(e) = crate::host::caps::move_to_supervisors(
                &crate::host::cgroupfs::Hierarchies::host(),
                parents,
                base,
                pid,
            ) {
                let _ = process.start_kill();
                return Err(SpawnError::Spawner(e.to_string()));
            }
        }
        ours.set_nonblocking(true).map_err(SpawnError::Exec)?;
        let stream = UnixStream::from_std(ours).map_err(SpawnError::Exec)?;
        Ok(State::Up { stream, _process: Box::new(process) })
    }
}

async fn ask(stream: &mut UnixStream, parts: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(parts.iter().map(|p| 4 + p.len()).sum());
    for part in parts {
        write_message(&mut msg, part)?;
    }
    stream.write_all(&msg).await?;
    let len = stream.read_u32_le().await? as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other(format!("answer of {len} bytes")));
    }
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

/// Resolves when the supervisor `pid` (not a child of this agent) has ended.
/// Uses a pidfd where the kernel has them, else polls /proc.
pub async fn wait_for_exit(pid: PidFile) {
    if let Some(fd) = open_pidfd(pid) {
        // SAFETY: `fd` is an OwnedFd moved into the AsyncFd, so it stays
        // open and refers to the same pidfd for the AsyncFd's whole life.
        #[allow(unsafe_code)]
        if let Ok(fd) = unsafe { AsyncFd::register(fd) } {
            let _ = fd.readable().await;
            return;
        }
    }
    while pid.is_alive() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn open_pidfd(pid: PidFile) -> Option<std::os::fd::OwnedFd> {
    let raw = rustix::process::Pid::from_raw(pid.pid)?;
    let fd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).ok()?;
    // The pidfd pins one process; make sure it is the one that started at
    // the recorded time, not a later one that reused the pid.
    pid.is_alive().then_some(fd)
}
