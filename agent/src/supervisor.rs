//! The supervisor: one tiny process beside each running action, entered as
//! `bolt-agent supervise <exec-dir>`. Single-threaded, no async runtime, no
//! TLS, no database: it detaches, starts the action in its own process group,
//! copies its output into `output.log`, enforces the timeout, the output cap
//! and kill requests, ends every process of the action, and writes
//! `exit.json` last. The agent learns everything from those files, so the
//! action outlives any restart of the agent.

#![allow(unsafe_code)]

mod output;
mod run;

use std::{path::Path, process::ExitCode};

use nix::unistd::{fork, setsid, ForkResult};

use crate::exec::layout::{ExecDir, PidFile, SUPERVISOR_PID};

/// Entry point; must be called before any thread is started.
pub fn main(dir: &Path) -> ExitCode {
    let dir = ExecDir(dir.to_owned());
    // SAFETY: called from main() before any other thread exists, so the child
    // starts with a consistent copy of the only thread.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("bolt-agent supervise: fork: {e}");
            ExitCode::from(71)
        }
        Ok(ForkResult::Parent { child }) => {
            // The caller waits for this process; when it has exited the pid
            // file is in place and the supervisor is an orphan owned by init.
            match PidFile::of(child.as_raw()).map(|p| p.write(&dir.path(SUPERVISOR_PID))) {
                Some(Ok(())) => ExitCode::SUCCESS,
                _ => ExitCode::from(74),
            }
        }
        Ok(ForkResult::Child) => {
            let _ = setsid();
            ExitCode::from(run::supervise(&dir))
        }
    }
}
