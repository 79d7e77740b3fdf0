//! The module boundaries of agent/src, checked from the source like a lint:
//! gRPC types stay in the API layer, and the supervisor stays free of the
//! async runtime, TLS and the database (one runs beside every action).

use std::{fs, path::Path};

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).expect("read agent/src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).expect("inside").display().to_string();
            out.push((rel, fs::read_to_string(&path).expect("read")));
        }
    }
}

fn all() -> Vec<(String, String)> {
    let mut v = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut v);
    assert!(v.len() > 20, "found the sources");
    v
}

/// Code outside `#[cfg(test)]` modules.
fn code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

#[test]
fn grpc_types_stay_in_the_api_layer() {
    let allowed = ["src/api.rs", "src/api/", "src/app.rs", "src/tls/incoming.rs", "src/main.rs"];
    for (file, text) in all() {
        if allowed.iter().any(|a| file.starts_with(a)) {
            continue;
        }
        for needle in ["tonic::", "bolt_proto::", "prost::", "prost_types::"] {
            assert!(!code(&text).contains(needle), "{file} uses {needle}: gRPC types belong in api/");
        }
    }
}

#[test]
fn the_supervisor_has_no_runtime_tls_or_database() {
    for (file, text) in all() {
        if !file.starts_with("src/supervisor") {
            continue;
        }
        for needle in
            ["tokio", "tonic", "redb", "rustls", "crate::store", "crate::api", "crate::exec::executor"]
        {
            assert!(!code(&text).contains(needle), "{file} uses {needle}");
        }
    }
}

#[test]
fn leaves_do_not_reach_up() {
    for (file, text) in all() {
        let leaf = ["src/store", "src/config.rs", "src/packs/manifest.rs", "src/procfs.rs"];
        if leaf.iter().any(|l| file.starts_with(l)) {
            for needle in ["crate::api", "crate::exec::executor", "crate::app"] {
                assert!(!code(&text).contains(needle), "{file} uses {needle}");
            }
        }
    }
}

#[test]
fn executions_know_nothing_of_the_network() {
    for (file, text) in all() {
        if file.starts_with("src/exec") || file.starts_with("src/packs") {
            for needle in ["crate::api", "crate::tls", "crate::app"] {
                assert!(!code(&text).contains(needle), "{file} uses {needle}");
            }
        }
    }
}

#[test]
fn every_file_says_its_job() {
    for (file, text) in all() {
        assert!(text.starts_with("//!"), "{file} must open with a //! line saying what it is for");
    }
}
