//! The stored record of one execution (the domain type; the API converts it
//! to the proto's `Execution`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExecState {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Killed,
    OomKilled,
    Lost,
}

impl ExecState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Killed => "killed",
            Self::OomKilled => "oom_killed",
            Self::Lost => "lost",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecRecord {
    /// UUIDv7: ids sort in creation order.
    pub id: String,
    pub pack: String,
    pub action: String,
    pub pack_version: String,
    pub state: ExecState,
    pub args: BTreeMap<String, String>,
    pub caller: String,
    pub idempotency_key: String,
    /// Hash of what the caller asked for, to tell a retry from a reused key.
    pub request_hash: String,
    pub timeout_ms: u64,
    pub created_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu_time_us: u64,
    pub peak_rss_bytes: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub truncated: bool,
    pub error: String,
    pub killed_by: String,
    pub supervisor_pid: u32,
    /// The output is stored as `output.log.zst`.
    pub compressed: bool,
    /// Folder of the dev build this execution runs, removed at its end.
    pub dev_dir: String,
    /// Ended without its action ever starting: a retry with the same
    /// idempotency key runs it instead of returning this record.
    pub never_ran: bool,
}
