//! Starting a supervisor in a process group of its own, and waiting for one to end
//! whether this agent started it or a previous agent did.

use std::{os::unix::process::CommandExt, path::Path, time::Duration};

use tokio::{io::unix::AsyncFd, process::Child};

use super::layout::{ExecDir, PidFile, SUPERVISOR_PID};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start the supervisor: {0}")]
    Exec(std::io::Error),
    #[error("the supervisor exited at once")]
    Vanished,
    #[error("cannot write supervisor.pid: {0}")]
    PidFile(std::io::Error),
}

/// Runs `<self_exe> supervise <dir>` in a process group of its own (so no
/// signal meant for the agent's group, such as a terminal's Ctrl-C, reaches
/// it; it ignores SIGHUP) and records its pid. The child handle
/// reaps it if it ends while this agent runs; after a restart it is an
/// orphan of init and [`wait_for_exit`] watches it instead.
pub fn spawn_supervisor(self_exe: &Path, dir: &ExecDir) -> Result<(PidFile, Child), SpawnError> {
    let mut cmd = std::process::Command::new(self_exe);
    cmd.arg("supervise")
        .arg(&dir.0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    let child = tokio::process::Command::from(cmd).spawn().map_err(SpawnError::Exec)?;
    let pid = child.id().and_then(|p| PidFile::of(p as i32)).ok_or(SpawnError::Vanished)?;
    pid.write(&dir.path(SUPERVISOR_PID)).map_err(SpawnError::PidFile)?;
    Ok((pid, child))
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
