//! Bolt agent: exposes whitelisted actions on an instance as gRPC calls over
//! mutual TLS, runs them under detached supervisors and keeps their history.
//!
//! Modules, each with one job, from the leaves to the wiring (the allowed
//! uses between them are a table in `tests/layering.rs`):
//! - [`files`]: atomic writes, private modes, unix times;
//! - [`host`]: the host's facilities: cgroups, /proc, allocator, run-as;
//! - [`shutdown`]: the stop flag long-lived tasks watch;
//! - [`store`]: the history in redb;
//! - [`execdir`]: the on-disk contract of one execution (layout, output.log, spawner wire);
//! - [`supervisor`]: the tiny detached process beside each running action;
//! - [`packs`]: pack manifests, parameters, the installed packs and their virtualenvs;
//! - [`exec`]: executions from the agent's side (start, watch, kill, recover, output);
//! - [`distribution`]: packs published to S3 and signed, synced by agents, dev builds;
//! - [`admission`]: connections and streams per identity;
//! - [`tls`]: the mTLS listener and the caller's identity;
//! - [`authz`]: which identity may do what;
//! - [`api`]: the gRPC services (tonic only lives here);
//! - [`telemetry`]: structured logs and metrics;
//! - [`app`]: the agent's wiring, reloads and periodic tasks.
//!
//! The binary (`main.rs`, with `cli/` for `certs`, `pack` and `keys`) is
//! the only place an error becomes an exit code. Only what it and the tests
//! use is public; the rest (`admission`, `api`, `authz`, `exec`, `files`,
//! `shutdown`, `store`) is the crate's own.

pub(crate) mod admission;
pub(crate) mod api;
pub mod app;
pub(crate) mod authz;
pub mod distribution;
pub(crate) mod exec;
pub mod execdir;
pub(crate) mod files;
pub mod host;
pub mod packs;
pub(crate) mod shutdown;
pub(crate) mod store;
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

