//! Sets `BOLT_VERSION`, the version the agent reports (GetAgentInfo, logs,
//! `--version`): the crate's version, plus `+<label>` when the build is
//! labelled with `BOLT_BUILD=<label>` (e.g. a CI build number). Only this
//! crate rebuilds when the label changes; a built binary can also be stamped
//! with a label afterwards (scripts/stamp-build.py, as the upgrade test does).

// A build script talks to cargo on stdout and fails by exiting.
#![allow(clippy::print_stdout, clippy::exit)]

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BOLT_BUILD");
    let base = env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let label = env::var_os("BOLT_BUILD").map(|l| l.to_string_lossy().into_owned());
    let version = match label {
        Some(label) if !label.is_empty() => {
            let ok = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                eprintln!(
                    "error: BOLT_BUILD={label:?} is not a valid build label: use only ASCII letters, digits, '.' and '-' (it becomes the version's +{{label}} part)"
                );
                std::process::exit(1);
            }
            format!("{base}+{label}")
        }
        _ => base,
    };
    println!("cargo:rustc-env=BOLT_VERSION={version}");
}
