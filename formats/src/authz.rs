//! `[authz]` of the agent's config: which client identities may do what.
//! The rules are applied by the agent's authorizer; here they are read.

use serde::Deserialize;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Start actions of the rule's packs (and kill one's own executions).
    Execute,
    /// Read executions, their output and history.
    Read,
    /// Kill anyone's executions of the rule's packs.
    Kill,
    /// Run dev builds of packs.
    Dev,
    /// See what the agent serves and how it is (ListActions, GetAgentInfo,
    /// Health): packs, paths, errors.
    Info,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Execute => "execute",
            Self::Read => "read",
            Self::Kill => "kill",
            Self::Dev => "dev",
            Self::Info => "info",
        })
    }
}

/// `[authz]`: rules are unioned; an identity matching none may do nothing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Identities that hold `info` whatever the rules say (default every
    /// identity, as an agent without rules); `[]` leaves `info` to the rules.
    #[serde(default = "everyone")]
    pub info: Vec<String>,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        Self { rules: Vec::new(), info: everyone() }
    }
}

fn everyone() -> Vec<String> {
    vec!["*".into()]
}

/// `[[authz.rules]]`: identities (glob patterns, `*` matches any run of
/// characters) get the listed permissions on the listed packs (default all).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub identities: Vec<String>,
    pub allow: Vec<Permission>,
    #[serde(default = "all_packs")]
    pub packs: Vec<String>,
}

fn all_packs() -> Vec<String> {
    vec!["*".into()]
}

impl AuthzConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.identities.is_empty() {
                return Err(format!("authz.rules[{i}].identities is empty"));
            }
            if rule.allow.is_empty() {
                return Err(format!("authz.rules[{i}].allow is empty"));
            }
        }
        Ok(())
    }
}
