//! Bolt agent: exposes whitelisted actions on an instance as gRPC calls over
//! mutual TLS, runs them under detached supervisors and keeps their history.
//!
//! Modules, each with one job:
//! - [`admission`]: connections and streams per identity;
//! - [`config`]: the TOML configuration and its defaults (from `bolt-formats`);
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
pub use bolt_formats::{config, hostname};

/// The version this build reports (GetAgentInfo, logs, `--version`): the
/// crate version, plus `+<label>` for a build made with `BOLT_BUILD=<label>`
/// (see build.rs) or a binary stamped with a label afterwards.
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| match stamped_label() {
        Some(label) => format!("{}+{label}", env!("CARGO_PKG_VERSION")),
        None => env!("BOLT_VERSION").to_owned(),
    })
}

/// A slot in the binary's read-only data where `scripts/stamp-build.py`
/// writes a build label into a copy of a built binary (as a packager stamps
/// a build number), so a labelled binary needs no second compilation: the
/// marker, then up to 32 label bytes, NUL-padded.
#[used]
static BUILD_LABEL_SLOT: [u8; 49] = *b"BOLT-BUILD-LABEL:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

fn stamped_label() -> Option<String> {
    // Read through an opaque reference: the bytes may have been changed in
    // the file after compilation.
    let slot = std::hint::black_box(&BUILD_LABEL_SLOT);
    let label = slot.get(17..)?;
    let end = label.iter().position(|b| *b == 0).unwrap_or(label.len());
    let label = std::str::from_utf8(&label[..end]).ok()?;
    let valid = !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    valid.then(|| label.to_owned())
}

