//! Bolt agent: exposes whitelisted actions on an instance as gRPC calls over
//! mutual TLS, runs them under detached supervisors and keeps their history.
//!
//! Modules, each with one job:
//! - [`admission`]: connections and streams per identity;
//! - [`config`]: the TOML configuration and its defaults;
//! - [`tls`]: the mTLS listener and the caller's identity;
//! - [`certs`]: `bolt-agent certs` (a development CA and certificates);
//! - [`api`]: the gRPC services (tonic only lives here);
//! - [`authz`]: which identity may do what;
//! - [`caps`]: per-execution cgroups (memory, CPU, pids caps);
//! - [`packs`]: pack manifests, parameters and the loaded packs;
//! - [`exec`]: executions from the agent's side (start, watch, kill, recover, output);
//! - [`distribution`]: packs published to S3, synced by agents, dev builds;
//! - [`signing`]: ed25519 keys and signed envelopes;
//! - [`supervisor`]: the tiny detached process beside each running action;
//! - [`store`]: the history in redb;
//! - [`memory`]: allocator tuning that keeps the resident set flat;
//! - [`runas`]: the user and group an action runs as;
//! - [`procfs`]: facts read from /proc;
//! - [`shutdown`]: the stop flag long-lived tasks watch;
//! - [`telemetry`]: structured logs.

pub mod admission;
pub mod api;
pub mod app;
pub mod authz;
pub mod caps;
pub mod certs;
pub mod config;
pub mod distribution;
pub mod exec;
pub mod memory;
pub mod packs;
pub mod procfs;
pub mod runas;
pub mod shutdown;
pub mod signing;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod tls;

pub use app::{App, AppError};

/// The version this build reports (GetAgentInfo, logs, `--version`): the
/// crate version, plus `+<label>` for a build made with `BOLT_BUILD=<label>`
/// (see build.rs).
pub const VERSION: &str = env!("BOLT_VERSION");

/// This host's name, or an empty string.
pub fn hostname() -> String {
    hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}
