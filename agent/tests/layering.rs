//! The module boundaries of agent/src, checked from the source like a lint:
//! a table of which module may use which, gRPC types only in the API layer,
//! and a supervisor free of the async runtime, TLS and the database (one
//! runs beside every action).

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

/// Which modules of the crate each module may use. A `use` outside its
/// row fails the build's tests: the layers stay as the folders show them,
/// from the leaves (top) to the binary's wiring (bottom). Items of the
/// crate root (`config`, `hostname`, `version`: the shared formats crate and
/// the build's version) are usable everywhere.
const ALLOWED: &[(&str, &[&str])] = &[
    ("files", &[]),
    ("shutdown", &[]),
    ("admission", &[]),
    ("authz", &[]),
    ("host", &["shutdown"]),
    ("store", &["files"]),
    ("telemetry", &["host", "shutdown"]),
    ("tls", &["admission", "shutdown"]),
    ("execdir", &["files", "host"]),
    ("supervisor", &["execdir", "files", "host"]),
    ("packs", &["files", "shutdown"]),
    ("exec", &["execdir", "files", "host", "packs", "store", "shutdown", "telemetry"]),
    ("distribution", &["exec", "files", "host", "packs", "shutdown", "telemetry"]),
    (
        "api",
        &["admission", "authz", "distribution", "exec", "execdir", "files", "host", "packs", "store", "telemetry", "tls"],
    ),
    (
        "app",
        &[
            "admission",
            "api",
            "authz",
            "distribution",
            "exec",
            "execdir",
            "files",
            "host",
            "packs",
            "shutdown",
            "store",
            "telemetry",
            "tls",
        ],
    ),
];

/// Root items every module may name.
const ROOT_ITEMS: &[&str] = &["config", "hostname", "version"];

/// The top-level module a source file belongs to (`src/exec/spawn.rs` → exec).
fn module_of(file: &str) -> Option<&str> {
    let rest = file.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    // The crate root and the binary (main.rs and its cli/) wire everything.
    (!matches!(name, "lib" | "main" | "cli")).then_some(name)
}

/// Every module of the crate named by `text`: `crate::name` paths, and the
/// top-level names inside `use crate::{...}` groups.
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    for (at, _) in text.match_indices("crate::") {
        let after = &text[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 || c == '{' {
                    item.push(c);
                }
            }
            out.push(ident(item.trim()));
        } else {
            out.push(ident(after));
        }
    }
    out.retain(|u| !u.is_empty());
    out
}

#[test]
fn every_module_uses_only_what_its_row_allows() {
    let mut broken = Vec::new();
    for (file, text) in all() {
        let Some(module) = module_of(&file) else { continue };
        let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| *m == module) else {
            broken.push(format!("{file}: module {module} has no row in ALLOWED; place it in the layers"));
            continue;
        };
        for used in uses(code(&text)) {
            if used != module && !allowed.contains(&used.as_str()) && !ROOT_ITEMS.contains(&used.as_str()) {
                broken.push(format!("{file} uses crate::{used}, which {module}'s row does not allow"));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_table_reads_grouped_and_plain_uses() {
    let text = "use crate::{\n    exec::{Executor, x::{A, B}},\n    files,\n};\nlet _ = crate::host::caps::probe();";
    assert_eq!(uses(text), ["exec", "files", "host"]);
    assert_eq!(module_of("src/exec/spawn.rs"), Some("exec"));
    assert_eq!(module_of("src/files.rs"), Some("files"));
    assert_eq!(module_of("src/cli/pack.rs"), None);
}
