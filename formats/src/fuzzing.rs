//! The invariants the fuzz targets check (fuzz/fuzz_targets/), one function
//! per target taking the raw input. `cargo test` replays the committed corpus
//! and every saved regression through the same functions
//! (tests/fuzz_corpus.rs), so a crash that fuzzing once found stays a test.
//! Panics are the failures: that is what libFuzzer catches.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{
    collections::HashMap,
    fs,
    path::Path,
    sync::OnceLock,
};

use arbitrary::{Arbitrary, Unstructured};
use regex::Regex;

use crate::{
    archive::{extract, Limits},
    config::Config,
    manifest::{ActionSpec, PackManifest, ParamType},
    params::{self, ArgError, ArgLimits},
};

/// pack.toml text: parsing, then every check that needs no files.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(manifest) = PackManifest::parse(text) {
        // Entrypoints are reported missing; everything else is checked.
        let _ = manifest.problems(Path::new("/nonexistent-bolt-fuzz"));
    }
}

/// agent.toml text: parsing and validation.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::from_toml(text);
}

/// Call arguments (structured from the bytes as libFuzzer's typed targets
/// do) checked against a fixed action and bound, with the invariants
/// `params::bind` guarantees.
pub fn args(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        check_args(input);
    }
}

const PACK: &str = r#"
name = "fuzz"
[[actions]]
name = "go"
entrypoint = "run.sh"
[actions.params.days]
type = "int"
required = true
min = 1
max = 365
[actions.params.retries]
type = "int"
min = -5
max = 5
default = 2
[actions.params.keyspace]
type = "string"
pattern = "[a-z_]{1,48}"
max_length = 32
[actions.params.label]
type = "string"
max_length = 16
default = "none"
[actions.params.note]
type = "string"
[actions.params.mode]
type = "enum"
values = ["fast", "safe"]
default = "safe"
[actions.params.dry-run]
type = "bool"
default = false
[actions.params.force]
type = "bool"
"#;

/// Declared names, so the fuzzer hits them without guessing.
const NAMES: &[&str] = &["days", "retries", "keyspace", "label", "note", "mode", "dry-run", "force"];

struct Fixed {
    action: ActionSpec,
    patterns: HashMap<String, Regex>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let manifest = PackManifest::parse(PACK).expect("the fixed pack parses");
        // Only the (fake) entrypoint may be wrong with it.
        let problems: Vec<_> = manifest
            .problems(Path::new("/nonexistent-bolt-fuzz"))
            .into_iter()
            .filter(|p| !p.field.ends_with(".entrypoint"))
            .collect();
        assert!(problems.is_empty(), "the fixed pack is invalid: {problems:?}");
        let action = manifest.actions.into_iter().next().expect("one action");
        let patterns = action
            .params
            .iter()
            .filter_map(|(n, p)| {
                p.pattern.as_ref().map(|pat| (n.clone(), params::compile_pattern(pat).expect("compiles")))
            })
            .collect();
        Fixed { action, patterns }
    })
}

#[derive(Debug, Arbitrary)]
enum Name {
    Declared(u8),
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    args: Vec<(Name, String)>,
    max_arg_bytes: u8,
    max_args_bytes: u16,
}

fn check_args(input: Input) {
    let Fixed { action, patterns } = fixed();
    let args: HashMap<String, String> = input
        .args
        .into_iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Declared(i) => NAMES[usize::from(i) % NAMES.len()].to_owned(),
                Name::Other(s) => s,
            };
            (name, value)
        })
        .collect();
    // Mostly generous limits, sometimes tight ones.
    let limits = ArgLimits {
        max_arg_bytes: if input.max_arg_bytes == 0 { 4096 } else { usize::from(input.max_arg_bytes) },
        max_args_bytes: if input.max_args_bytes < 16 { 1 << 16 } else { usize::from(input.max_args_bytes) },
    };
    let too_large = args.values().any(|v| v.len() > limits.max_arg_bytes);
    let total: usize = args.iter().map(|(k, v)| k.len() + v.len()).sum();

    match params::bind(action, patterns, &args, limits) {
        Ok(bound) => {
            assert!(!too_large && total <= limits.max_args_bytes, "a limit was ignored");
            assert!(args.keys().all(|k| action.params.contains_key(k)), "an unknown argument was accepted");
            assert_eq!(bound.argv.len(), bound.accepted.len());
            assert_eq!(bound.env.len(), bound.accepted.len());
            // argv and env follow the declared order.
            let declared: Vec<&String> = action.params.keys().filter(|n| bound.accepted.contains_key(*n)).collect();
            for (i, name) in declared.iter().enumerate() {
                let value = &bound.accepted[*name];
                assert!(!value.contains('\0'), "an accepted value holds a NUL");
                assert!(bound.argv[i].starts_with("--"), "argv entry {:?}", bound.argv[i]);
                assert_eq!(bound.argv[i], format!("--{name}={value}"));
                assert_eq!(bound.env[i], (params::env_name(name), value.clone()));
                assert!(bound.env[i].0.starts_with("BOLT_ARG_"));
                let spec = &action.params[*name];
                if let Some(given) = args.get(*name) {
                    if spec.kind == ParamType::Int {
                        // Passed in its canonical decimal form.
                        let n: i64 = given.parse().expect("an accepted int");
                        assert_eq!(&n.to_string(), value, "not the canonical form");
                    } else {
                        assert_eq!(given, value, "the given value was changed");
                    }
                } else {
                    assert_eq!(spec.default_text().as_ref(), Some(value), "a value from nowhere");
                }
                assert_eq!(params::check_value(spec, patterns.get(*name), value), Ok(()));
                match spec.kind {
                    ParamType::Int => {
                        let n: i64 = value.parse().expect("an int");
                        assert!(spec.min.is_none_or(|m| n >= m) && spec.max.is_none_or(|m| n <= m));
                    }
                    ParamType::Bool => assert!(value == "true" || value == "false"),
                    ParamType::Enum => assert!(spec.values.contains(value)),
                    ParamType::String => {
                        assert!(spec.max_length.is_none_or(|m| value.len() <= m as usize));
                        if name.as_str() == "keyspace" {
                            assert!(!value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
                        }
                    }
                }
            }
            for (name, spec) in &action.params {
                if spec.required {
                    assert!(bound.accepted.contains_key(name), "required {name} missing");
                }
                if spec.default.is_some() || args.contains_key(name) {
                    assert!(bound.accepted.contains_key(name), "{name} dropped");
                }
            }
        }
        Err(ArgError::TooLarge { size, limit, .. }) => assert!(too_large && size > limit),
        Err(ArgError::TotalTooLarge { size, limit }) => {
            assert!(!too_large && size == total && size > limit)
        }
        Err(ArgError::Unknown(name, _)) => {
            assert!(!too_large && total <= limits.max_args_bytes);
            let prefix = name.strip_suffix('…').unwrap_or(&name);
            assert!(args.keys().any(|k| k.starts_with(prefix) && !action.params.contains_key(k)));
        }
        Err(ArgError::Missing(name)) => {
            let spec = &action.params[&name];
            assert!(spec.required && !args.contains_key(&name));
        }
        Err(ArgError::Invalid { name, .. }) => {
            let spec = &action.params[&name];
            let value = args.get(&name).cloned().or_else(|| spec.default_text()).expect("a value");
            assert!(params::check_value(spec, patterns.get(&name), &value).is_err());
        }
    }
}

const LIMITS: Limits = Limits { max_archive_bytes: 1 << 20, max_unpacked_bytes: 64 << 10, max_files: 64 };

/// `archive::extract` into a fresh folder `root/pack`: then nothing may
/// exist outside it and no link under it may resolve outside it, whether the
/// extraction succeeded or not.
pub fn archive(data: &[u8]) {
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("pack");
    fs::create_dir(&dest).expect("mkdir");
    let _ = extract(data, &dest, &LIMITS);

    let names: Vec<_> =
        fs::read_dir(root.path()).expect("read root").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["pack"], "the extraction wrote outside its folder");
    let meta = fs::symlink_metadata(&dest).expect("pack");
    assert!(meta.is_dir(), "the folder itself was replaced");
    let inside = dest.canonicalize().expect("canonical pack");
    check_links(&dest, &inside);
}

/// Every link under `dir` either dangles or resolves inside `inside`.
fn check_links(dir: &Path, inside: &Path) {
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = fs::symlink_metadata(&path).expect("lstat");
        if meta.file_type().is_symlink() {
            if let Ok(resolved) = path.canonicalize() {
                assert!(
                    resolved.starts_with(inside),
                    "{} resolves to {} outside the pack",
                    path.display(),
                    resolved.display()
                );
            }
        } else if meta.is_dir() {
            check_links(&path, inside);
        }
    }
}
