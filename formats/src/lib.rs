//! What Bolt reads from outside, parsed and checked: nothing here runs an
//! action, opens a socket or a database, so the agent, the publisher's
//! commands and the fuzz targets share one definition of each format.
//!
//! - [`manifest`]: `pack.toml`, and every check `pack lint` makes;
//! - [`params`]: call arguments checked against an action's parameters and
//!   bound to argv and environment, never a shell;
//! - [`archive`]: reproducible pack archives and their safe extraction;
//! - [`files`]: who may have written a pack's files, and reading them safely;
//! - [`accounts`]: the user and group names a pack declares;
//! - [`config`]: the agent's TOML configuration and its defaults;
//! - [`authz`]: the `[authz]` rules of that configuration;
//! - [`fuzzing`]: the invariants the fuzz targets check, replayed by tests.

pub mod accounts;
pub mod archive;
pub mod authz;
pub mod config;
pub mod files;
pub mod fuzzing;
pub mod manifest;
pub mod params;

/// This host's name, or an empty string.
pub fn hostname() -> String {
    hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}
