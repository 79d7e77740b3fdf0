//! Arguments of a call checked against an action's declared parameters and
//! bound to argv (`--name=value`, declared order) and environment
//! (`BOLT_ARG_<NAME>`). Nothing here ever goes through a shell.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;

use crate::manifest::{ActionSpec, ParamSpec, ParamType};

/// Largest compiled pattern, so a hostile pack cannot make the agent build a
/// huge automaton.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a pattern so that it must match the whole value.
pub fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$")).size_limit(PATTERN_SIZE_LIMIT).build()
}

#[derive(Debug, Clone, Copy)]
pub struct ArgLimits {
    pub max_arg_bytes: usize,
    pub max_args_bytes: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgError {
    #[error("unknown argument {0:?} (this action takes: {1})")]
    Unknown(String, String),
    #[error("missing required argument {0:?}")]
    Missing(String),
    #[error("argument {name:?}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("argument {name:?} is {size} bytes; the limit is {limit} (limits.max_arg_bytes)")]
    TooLarge { name: String, size: usize, limit: usize },
    #[error("arguments total {size} bytes; the limit is {limit} (limits.max_args_bytes)")]
    TotalTooLarge { size: usize, limit: usize },
}

impl ArgError {
    /// The request field at fault, as a `google.rpc.BadRequest` field path:
    /// `args.NAME` for one argument, `args` for them all.
    pub fn field(&self) -> String {
        match self {
            Self::Unknown(name, _)
            | Self::Missing(name)
            | Self::Invalid { name, .. }
            | Self::TooLarge { name, .. } => format!("args.{name}"),
            Self::TotalTooLarge { .. } => "args".to_owned(),
        }
    }

    /// Whether the error is about a size limit rather than a bad value.
    pub fn is_limit(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::TotalTooLarge { .. })
    }
}

/// Arguments ready for the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundArgs {
    /// `--name=value`, in declared order.
    pub argv: Vec<String>,
    /// `BOLT_ARG_<NAME>` pairs.
    pub env: Vec<(String, String)>,
    /// The accepted arguments, defaults included, for the history.
    pub accepted: BTreeMap<String, String>,
}

/// Checks one value against its parameter (the compiled pattern if any).
pub fn check_value(spec: &ParamSpec, pattern: Option<&Regex>, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    match spec.kind {
        ParamType::Int => {
            let n: i64 = value.parse().map_err(|_| format!("{value:?} is not an integer"))?;
            if let Some(min) = spec.min.filter(|m| n < *m) {
                return Err(format!("{n} is below the minimum {min}"));
            }
            if let Some(max) = spec.max.filter(|m| n > *m) {
                return Err(format!("{n} is above the maximum {max}"));
            }
        }
        ParamType::Bool => {
            if value != "true" && value != "false" {
                return Err(format!("{value:?} is not true or false"));
            }
        }
        ParamType::Enum => {
            if !spec.values.iter().any(|v| v == value) {
                return Err(format!("{value:?} is not one of {}", spec.values.join(", ")));
            }
        }
        ParamType::String => {
            if let Some(max) = spec.max_length {
                if value.len() > max as usize {
                    return Err(format!("{} bytes is longer than max_length {max}", value.len()));
                }
            }
            let compiled;
            let pattern = match (pattern, &spec.pattern) {
                (Some(p), _) => Some(p),
                (None, Some(p)) => {
                    compiled = compile_pattern(p).map_err(|e| e.to_string())?;
                    Some(&compiled)
                }
                (None, None) => None,
            };
            if let Some(p) = pattern {
                if !p.is_match(value) {
                    return Err(format!(
                        "{value:?} does not match the pattern {:?}",
                        spec.pattern.as_deref().unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The environment variable of a parameter: `BOLT_ARG_` + upper case, `-` as `_`.
pub fn env_name(param: &str) -> String {
    format!("BOLT_ARG_{}", param.to_ascii_uppercase().replace('-', "_"))
}

/// Checks `args` against `action`'s parameters and binds them.
/// `patterns` holds the compiled pattern of each parameter that has one.
pub fn bind(
    action: &ActionSpec,
    patterns: &HashMap<String, Regex>,
    args: &HashMap<String, String>,
    limits: ArgLimits,
) -> Result<BoundArgs, ArgError> {
    let mut total = 0usize;
    for (name, value) in args {
        if value.len() > limits.max_arg_bytes {
            return Err(ArgError::TooLarge {
                name: truncate(name),
                size: value.len(),
                limit: limits.max_arg_bytes,
            });
        }
        total += name.len() + value.len();
    }
    if total > limits.max_args_bytes {
        return Err(ArgError::TotalTooLarge { size: total, limit: limits.max_args_bytes });
    }
    let mut unknown: Vec<&String> = args.keys().filter(|k| !action.params.contains_key(*k)).collect();
    if let Some(name) = unknown.pop() {
        let known: Vec<&str> = action.params.keys().map(String::as_str).collect();
        let known = if known.is_empty() { "no arguments".to_string() } else { known.join(", ") };
        return Err(ArgError::Unknown(truncate(name), known));
    }
    let mut bound = BoundArgs { argv: Vec::new(), env: Vec::new(), accepted: BTreeMap::new() };
    for (name, spec) in &action.params {
        let value = match args.get(name) {
            Some(v) => v.clone(),
            None => match spec.default_text() {
                Some(d) => d,
                None if spec.required => return Err(ArgError::Missing(name.clone())),
                None => continue,
            },
        };
        check_value(spec, patterns.get(name), &value)
            .map_err(|reason| ArgError::Invalid { name: name.clone(), reason: truncate(&reason) })?;
        // "+5", "05" and "0365" pass as 5, 5 and 365; an action (bash reads
        // 0365 as octal) sees only the canonical decimal form.
        let value = match spec.kind {
            ParamType::Int => value.parse::<i64>().map_or(value, |n| n.to_string()),
            _ => value,
        };
        bound.argv.push(format!("--{name}={value}"));
        bound.env.push((env_name(name), value.clone()));
        bound.accepted.insert(name.clone(), value);
    }
    Ok(bound)
}

/// Keeps hostile names and values from flooding error messages.
fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> (ActionSpec, HashMap<String, Regex>) {
        let a: ActionSpec = toml::from_str(
            r#"
            name = "a"
            entrypoint = "a.sh"
            [params.days]
            type = "int"
            required = true
            min = 1
            max = 365
            [params.keyspace]
            type = "string"
            pattern = "[a-z_]{1,48}"
            [params.dry-run]
            type = "bool"
            default = false
            [params.mode]
            type = "enum"
            values = ["fast", "safe"]
            default = "safe"
            "#,
        )
        .expect("valid");
        let patterns = a
            .params
            .iter()
            .filter_map(|(n, p)| {
                p.pattern.as_ref().map(|pat| (n.clone(), compile_pattern(pat).expect("compiles")))
            })
            .collect();
        (a, patterns)
    }

    const LIMITS: ArgLimits = ArgLimits { max_arg_bytes: 1024, max_args_bytes: 4096 };

    fn args(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn binds_in_declared_order_with_defaults() {
        let (a, p) = action();
        let b = bind(&a, &p, &args(&[("keyspace", "ks_one"), ("days", "7")]), LIMITS).expect("valid");
        assert_eq!(b.argv, ["--days=7", "--keyspace=ks_one", "--dry-run=false", "--mode=safe"]);
        assert!(b.env.contains(&("BOLT_ARG_DRY_RUN".into(), "false".into())));
        assert_eq!(b.accepted.get("mode").map(String::as_str), Some("safe"));
    }

    #[test]
    fn refuses_bad_arguments() {
        let (a, p) = action();
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "missing required argument \"days\""),
            (&[("days", "0")], "below the minimum"),
            (&[("days", "1; rm -rf /")], "not an integer"),
            (&[("days", "3"), ("keyspace", "KS")], "does not match"),
            (&[("days", "3"), ("keyspace", "ks\nx")], "does not match"),
            (&[("days", "3"), ("dry-run", "yes")], "not true or false"),
            (&[("days", "3"), ("mode", "reckless")], "not one of"),
            (&[("days", "3"), ("extra", "1")], "unknown argument \"extra\""),
            (&[("days", "3\0")], "NUL"),
        ];
        for (given, want) in cases {
            let err = bind(&a, &p, &args(given), LIMITS).expect_err("invalid");
            assert!(err.to_string().contains(want), "{given:?}: {err}");
        }
    }

    #[test]
    fn integers_are_passed_in_canonical_decimal_form() {
        let (a, p) = action();
        for (given, passed) in [("+5", "5"), ("05", "5"), ("0365", "365"), ("42", "42")] {
            let b = bind(&a, &p, &args(&[("days", given)]), LIMITS).expect("valid");
            assert_eq!(b.argv[0], format!("--days={passed}"), "{given}");
            assert_eq!(b.env[0], ("BOLT_ARG_DAYS".into(), passed.into()));
            assert_eq!(b.accepted["days"], passed);
        }
    }

    #[test]
    fn enforces_sizes() {
        let (a, p) = action();
        let big = "x".repeat(2000);
        let err = bind(&a, &p, &args(&[("days", "3"), ("keyspace", &big)]), LIMITS).expect_err("too big");
        assert!(err.is_limit() && err.to_string().contains("limits.max_arg_bytes"), "{err}");
        assert_eq!(err.field(), "args.keyspace");
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let (a, p) = action();
        let unknown = bind(&a, &p, &args(&[("days", "3"), ("nope", "1")]), LIMITS).expect_err("unknown");
        assert_eq!(unknown.field(), "args.nope");
        let missing = bind(&a, &p, &args(&[]), LIMITS).expect_err("missing");
        assert_eq!(missing.field(), "args.days");
        let total = ArgError::TotalTooLarge { size: 10, limit: 1 };
        assert_eq!(total.field(), "args");
    }

    #[test]
    fn pattern_must_match_whole_value() {
        let re = compile_pattern("[a-z]+").expect("compiles");
        assert!(re.is_match("abc"));
        assert!(!re.is_match("abc; id"));
        assert!(!re.is_match("$(id)abc"));
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("dry-run"), "BOLT_ARG_DRY_RUN");
        assert_eq!(env_name("days"), "BOLT_ARG_DAYS");
    }
}
