//! The agent's side of executions: admission, spawning detached supervisors,
//! watching them end, kills, recovery after a restart and reading output.

mod dir_watch;
pub mod executor;
mod kill;
pub mod output;
mod recover;
pub mod retention;
mod spawn;
mod spec;
mod start;

pub use executor::{ExecError, Executor, ExecutorConfig, StartRequest};
