//! The agent's side of executions: admission, spawning detached supervisors,
//! watching them end, kills, recovery after a restart and reading output.

mod dir_watch;
pub mod executor;
pub mod layout;
pub mod output;
pub mod retention;
mod spawn;

pub use executor::{ExecError, Executor, ExecutorConfig, StartRequest, Started};
