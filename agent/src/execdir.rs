//! The on-disk contract of one execution, shared by the agent (`exec`) and
//! the supervisor, which depend on it and never on each other: `<data>/executions/<id>/` holds
//!
//! - `spec.json`      what to run (written by the agent before spawning), and
//!   the request it came from ([`Origin`]), from which a lost history is rebuilt;
//! - `supervisor.pid` `pid starttime` of the supervisor;
//! - `child.pid`      `pid starttime` of the action's first process;
//! - `output.log`     the output, as records (see [`output_log`]), and
//!   once compressed `output.log.zst` (the same bytes, zstd);
//! - `kill.json`      a kill request (grace, who), then SIGTERM to the supervisor;
//! - `exit.json`      the outcome, written last and atomically: its presence
//!   means the execution is over.
//!
//! Small files are written atomically (temp file, fsync, rename).
//!
//! [`wire`] is the spawner's message format, the other way the two sides talk.

mod layout;
pub mod output_log;
pub mod wire;

pub use layout::{
    ExecDir, ExitRecord, KillRequest, Layout, Origin, Outcome, PidFile, Spec, CHILD_PID, EXIT, KILL, OUTPUT,
    OUTPUT_ZST, SPEC, SUPERVISOR_PID,
};
