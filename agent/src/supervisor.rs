//! The supervisor: one tiny process beside each running action, entered as
//! `bolt-agent supervise <exec-dir>` in a session of its own. Single-threaded,
//! no async runtime, no TLS, no database: it starts the action in its own
//! process group, copies its output into `output.log`, enforces the timeout,
//! the output cap and kill requests, ends every process of the action, and
//! writes `exit.json` last. The agent learns everything from those files, so
//! the action outlives any restart of the agent.
//!
//! Supervisors are normally forked by the [`spawner`], a process of the same
//! binary the agent starts once; `bolt-agent supervise` is the fallback.

#![allow(unsafe_code)]

mod launch;
mod run;
mod spawner;

use std::{path::Path, process::ExitCode};

use crate::execdir::ExecDir;

/// Entry point; runs the execution in `dir` to its end.
pub fn main(dir: &Path) -> ExitCode {
    ExitCode::from(run::supervise(&ExecDir(dir.to_owned()), run::Origin::Agent))
}

/// Entry point of the spawner; serves the agent until it goes away.
pub fn spawner_main() -> ExitCode {
    ExitCode::from(spawner::main())
}
