//! The supervisor: one tiny process beside each running action, entered as
//! `bolt-agent supervise <exec-dir>` in a session of its own. Single-threaded,
//! no async runtime, no TLS, no database: it starts the action in its own
//! process group, copies its output into `output.log`, enforces the timeout,
//! the output cap and kill requests, ends every process of the action, and
//! writes `exit.json` last. The agent learns everything from those files, so
//! the action outlives any restart of the agent.

#![allow(unsafe_code)]

mod output;
mod run;

use std::{path::Path, process::ExitCode};

use crate::exec::layout::ExecDir;

/// Entry point; runs the execution in `dir` to its end.
pub fn main(dir: &Path) -> ExitCode {
    ExitCode::from(run::supervise(&ExecDir(dir.to_owned())))
}
