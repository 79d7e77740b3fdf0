//! `pack.toml`: parsing and validation, with every problem reported with the
//! field it is about.

use std::{
    fs,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
    time::Duration,
};

use bytesize::ByteSize;
use indexmap::IndexMap;
use serde::Deserialize;

/// Names of packs, actions: `[a-z0-9][a-z0-9-]*`, at most 64 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b == b'-'))
}

/// Versions: `[A-Za-z0-9._+-]`, at most 64 bytes, not starting with a dot
/// (a version names a folder).
pub fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && !v.starts_with('.')
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// Names of parameters: like pack names, `_` also allowed after the first.
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_')))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackManifest {
    pub name: String,
    /// Set by `pack build`; hand-laid packs without it get a content hash.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owners: Vec<String>,
    /// Apps whose instances get this pack from S3; absent means all.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub name: String,
    pub entrypoint: String,
    #[serde(default)]
    pub description: String,
    /// Default and maximum run time.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub memory_max: Option<ByteSize>,
    #[serde(default)]
    pub cpu_max: Option<f64>,
    #[serde(default)]
    pub pids_max: Option<u32>,
    /// User the action runs as (it must exist on the host); the agent's own
    /// user (root) if absent.
    #[serde(default)]
    pub user: Option<String>,
    /// Group the action runs as; the user's primary group if absent.
    #[serde(default)]
    pub group: Option<String>,
    /// Parameters in declared order.
    #[serde(default)]
    pub params: IndexMap<String, ParamSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Bool,
    Enum,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub required: bool,
    /// Given as a string or as a TOML value of the parameter's type.
    #[serde(default)]
    pub default: Option<toml::Value>,
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub max_length: Option<u32>,
}

impl ParamSpec {
    /// The default as the text an action would receive.
    pub fn default_text(&self) -> Option<String> {
        self.default.as_ref().map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// One problem with a pack, located by file and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.field, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

/// Largest pack.toml read.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

impl PackManifest {
    /// Reads and validates `<dir>/pack.toml` against the files in `dir`.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join("pack.toml");
        let text = crate::files::read_small(&path, MAX_MANIFEST_BYTES)
            .map_err(|source| ManifestError::Read { path: path.clone(), source })?;
        let manifest = Self::parse(&text).map_err(|e| match e {
            ManifestError::Syntax { message, .. } => ManifestError::Syntax { path: path.clone(), message },
            other => other,
        })?;
        let problems = manifest.problems(dir);
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestError::Invalid(problems))
        }
    }

    /// Parses the text of a pack.toml without checking it against any
    /// folder (see [`PackManifest::problems`]); syntax errors name `pack.toml`.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        toml::from_str(text).map_err(|e| ManifestError::Syntax {
            path: PathBuf::from("pack.toml"),
            message: syntax_message(text, &e),
        })
    }

    /// Every problem of the manifest, checked against the pack folder `dir`.
    pub fn problems(&self, dir: &Path) -> Vec<Problem> {
        let file = dir.join("pack.toml");
        let mut out = Vec::new();
        let mut push =
            |field: String, message: String| out.push(Problem { file: file.clone(), field, message });
        if !valid_name(&self.name) {
            push(
                "name".into(),
                format!("{:?} is not a valid name ([a-z0-9][a-z0-9-]*, at most 64)", self.name),
            );
        }
        if let Some(v) = &self.version {
            if !valid_version(v) {
                push("version".into(), format!("{v:?} is not a valid version"));
            }
        }
        if self.actions.is_empty() {
            push("actions".into(), "a pack needs at least one action".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, action) in self.actions.iter().enumerate() {
            let at = format!("actions[{i}]");
            if !valid_name(&action.name) {
                push(format!("{at}.name"), format!("{:?} is not a valid name", action.name));
            } else if !seen.insert(action.name.as_str()) {
                push(format!("{at}.name"), format!("duplicate action {:?}", action.name));
            }
            if let Err(message) = check_entrypoint(dir, &action.entrypoint) {
                push(format!("{at}.entrypoint"), message);
            }
            if action.timeout.is_some_and(|t| t.is_zero()) {
                push(format!("{at}.timeout"), "must be more than 0".into());
            }
            if action.cpu_max.is_some_and(|c| !(c > 0.0 && c <= 1024.0)) {
                push(format!("{at}.cpu_max"), "must be a number of CPUs above 0".into());
            }
            if action.memory_max.is_some_and(|m| m.as_u64() < 1 << 20) {
                push(format!("{at}.memory_max"), "must be at least 1MiB".into());
            }
            if let Some(user) = &action.user {
                if let Err(message) = crate::accounts::check_user(user) {
                    push(format!("{at}.user"), message);
                }
            }
            if let Some(group) = &action.group {
                if let Err(message) = crate::accounts::check_group(group) {
                    push(format!("{at}.group"), message);
                }
            }
            for (name, param) in &action.params {
                let at = format!("{at}.params.{name}");
                if !valid_param_name(name) {
                    push(at.clone(), "invalid parameter name ([a-z0-9][a-z0-9_-]*)".into());
                }
                for message in param_problems(param) {
                    push(at.clone(), message);
                }
            }
        }
        out
    }
}

fn param_problems(p: &ParamSpec) -> Vec<String> {
    let mut out = Vec::new();
    if p.kind != ParamType::Int && (p.min.is_some() || p.max.is_some()) {
        out.push("min and max apply to int parameters only".into());
    }
    if let (Some(min), Some(max)) = (p.min, p.max) {
        if min > max {
            out.push(format!("min {min} is above max {max}"));
        }
    }
    if p.kind != ParamType::String && (p.pattern.is_some() || p.max_length.is_some()) {
        out.push("pattern and max_length apply to string parameters only".into());
    }
    if let Some(pattern) = &p.pattern {
        if let Err(e) = crate::params::compile_pattern(pattern) {
            out.push(format!("pattern does not compile: {e}"));
        }
    }
    match p.kind {
        ParamType::Enum if p.values.is_empty() => out.push("an enum needs values".into()),
        ParamType::Enum => {}
        _ if !p.values.is_empty() => out.push("values apply to enum parameters only".into()),
        _ => {}
    }
    if p.required && p.default.is_some() {
        out.push("a required parameter cannot have a default".into());
    }
    if let Some(default) = p.default_text() {
        if let Err(reason) = crate::params::check_value(p, None, &default) {
            out.push(format!("default {default:?} is invalid: {reason}"));
        }
    }
    out
}

/// A TOML error as "line L, column C: what": the file's text is never
/// quoted, since errors reach every caller of Health.
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim_end().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}

/// The entrypoint must be a relative path to an executable regular file
/// inside the pack (after resolving links) that starts with a shebang line
/// or is an ELF binary.
fn check_entrypoint(dir: &Path, entrypoint: &str) -> Result<PathBuf, String> {
    let rel = Path::new(entrypoint);
    if entrypoint.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{entrypoint:?} must be a relative path inside the pack"));
    }
    let root = dir.canonicalize().map_err(|e| format!("cannot resolve the pack folder: {e}"))?;
    let path = root.join(rel).canonicalize().map_err(|e| format!("{entrypoint:?} does not exist: {e}"))?;
    if !path.starts_with(&root) {
        return Err(format!("{entrypoint:?} leads outside the pack"));
    }
    let meta = fs::metadata(&path).map_err(|e| format!("{entrypoint:?}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{entrypoint:?} is not a regular file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{entrypoint:?} is not executable (chmod +x)"));
    }
    let mut head = [0u8; 4];
    let n = fs::File::open(&path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| format!("{entrypoint:?}: {e}"))?;
    if !(head[..n].starts_with(b"#!") || head[..n] == *b"\x7fELF") {
        return Err(format!("{entrypoint:?} has no shebang line (#!/path/to/interpreter)"));
    }
    Ok(path)
}

/// Absolute path of an action's entrypoint, checked as at load time.
pub fn resolve_entrypoint(dir: &Path, entrypoint: &str) -> Result<PathBuf, String> {
    check_entrypoint(dir, entrypoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn pack(toml_text: &str, files: &[(&str, &str, u32)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("pack.toml"), toml_text).expect("write");
        for (name, body, mode) in files {
            let p = dir.path().join(name);
            fs::write(&p, body).expect("write");
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        dir
    }

    const GOOD: &str = r#"
name = "cassandra-disk"
description = "Reclaim disk"
[[actions]]
name = "reclaim-snapshots"
entrypoint = "run.sh"
timeout = "30m"
memory_max = "256MiB"
cpu_max = 0.5
[actions.params.days]
type = "int"
required = true
min = 1
max = 365
[actions.params.keyspace]
type = "string"
pattern = "^[a-z_]{1,48}$"
"#;

    #[test]
    fn loads_the_design_example() {
        let dir = pack(GOOD, &[("run.sh", "#!/bin/sh\n", 0o755)]);
        let m = PackManifest::load(dir.path()).expect("valid");
        assert_eq!(m.name, "cassandra-disk");
        let a = &m.actions[0];
        assert_eq!(a.timeout, Some(Duration::from_secs(1800)));
        assert_eq!(a.memory_max, Some(ByteSize::mib(256)));
        let names: Vec<_> = a.params.keys().cloned().collect();
        assert_eq!(names, ["days", "keyspace"], "declared order kept");
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let text = r#"
name = "Bad_Name"
[[actions]]
name = "a"
entrypoint = "../escape.sh"
[[actions]]
name = "a"
entrypoint = "noexec.sh"
[actions.params.n]
type = "int"
min = 5
max = 1
pattern = "x"
"#;
        let dir = pack(text, &[("noexec.sh", "#!/bin/sh\n", 0o644)]);
        let Err(ManifestError::Invalid(problems)) = PackManifest::load(dir.path()) else {
            panic!("expected problems");
        };
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        for f in [
            "name",
            "actions[0].entrypoint",
            "actions[1].name",
            "actions[1].entrypoint",
            "actions[1].params.n",
        ] {
            assert!(fields.contains(&f), "{f} missing from {problems:?}");
        }
    }

    #[test]
    fn entrypoint_needs_shebang_and_must_stay_inside() {
        let dir = pack(GOOD, &[("run.sh", "echo hi\n", 0o755)]);
        let err = PackManifest::load(dir.path()).expect_err("no shebang");
        assert!(err.to_string().contains("shebang"), "{err}");

        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().join("evil.sh");
        fs::write(&target, "#!/bin/sh\n").expect("write");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).expect("chmod");
        let dir = pack(GOOD, &[]);
        std::os::unix::fs::symlink(&target, dir.path().join("run.sh")).expect("symlink");
        let err = PackManifest::load(dir.path()).expect_err("escapes");
        assert!(err.to_string().contains("outside the pack"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let dir = pack("name = ", &[]);
        let err = PackManifest::load(dir.path()).expect_err("syntax");
        assert!(err.to_string().contains("pack.toml"), "{err}");
    }

    #[test]
    fn names() {
        assert!(valid_name("a-b-9"));
        assert!(!valid_name("-a"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("A"));
        assert!(!valid_name(""));
        assert!(!valid_name("ｃａｓｓａｎｄｒａ"));
    }
}
