//! Starting a detached supervisor and waiting for one to end, whether the
//! agent started it or a previous agent did.

use std::{path::Path, time::Duration};

use tokio::io::unix::AsyncFd;

use super::layout::{ExecDir, PidFile};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start the supervisor: {0}")]
    Exec(std::io::Error),
    #[error("the supervisor failed to detach ({0})")]
    Detach(std::process::ExitStatus),
    #[error("the supervisor left no pid file")]
    NoPid,
}

/// Runs `<self_exe> supervise <dir>`; its first process exits as soon as the
/// supervisor has detached and written `supervisor.pid`.
pub async fn spawn_supervisor(self_exe: &Path, dir: &ExecDir) -> Result<PidFile, SpawnError> {
    let status = tokio::process::Command::new(self_exe)
        .arg("supervise")
        .arg(&dir.0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(SpawnError::Exec)?;
    if !status.success() {
        return Err(SpawnError::Detach(status));
    }
    dir.supervisor().ok_or(SpawnError::NoPid)
}

/// Resolves when the supervisor `pid` has ended. Uses a pidfd where the
/// kernel has them (any process, not only children), else polls /proc.
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
