//! Authorization: which client identities may do what, from the `[authz]`
//! rules of the config. With no rules, any identity whose certificate the CA
//! signed may execute any pack, read history and kill its own executions.

use wildmatch::WildMatch;

pub use bolt_formats::authz::{AuthzConfig, Permission};

#[derive(Debug, thiserror::Error)]
#[error("identity {identity:?} may not {permission}{}", pack.as_ref().map(|p| format!(" pack {p:?}")).unwrap_or_default())]
pub struct Denied {
    pub identity: String,
    pub permission: Permission,
    pub pack: Option<String>,
}

/// Compiled rules.
#[derive(Debug)]
pub struct Authorizer {
    rules: Vec<CompiledRule>,
    default_open: bool,
    info: Vec<WildMatch>,
}

#[derive(Debug)]
struct CompiledRule {
    identities: Vec<WildMatch>,
    allow: Vec<Permission>,
    packs: Vec<WildMatch>,
}

impl Authorizer {
    pub fn new(config: &AuthzConfig) -> Self {
        let rules = config
            .rules
            .iter()
            .map(|r| CompiledRule {
                identities: r.identities.iter().map(|p| WildMatch::new(p)).collect(),
                allow: r.allow.clone(),
                packs: r.packs.iter().map(|p| WildMatch::new(p)).collect(),
            })
            .collect();
        Self {
            rules,
            default_open: config.rules.is_empty(),
            info: config.info.iter().map(|p| WildMatch::new(p)).collect(),
        }
    }

    /// Whether `identity` holds `permission`, on `pack` when the permission is
    /// about one. Every decision is logged on the `audit` target.
    pub fn check(&self, identity: &str, permission: Permission, pack: Option<&str>) -> Result<(), Denied> {
        let allowed = self.allows(identity, permission, pack);
        tracing::debug!(target: "audit", identity, %permission, pack, allowed, "authorization");
        if allowed {
            Ok(())
        } else {
            Err(Denied { identity: identity.to_owned(), permission, pack: pack.map(str::to_owned) })
        }
    }

    /// The decision alone, not logged: for filtering many records. Without a
    /// pack, whether the identity holds the permission on any pack.
    pub fn allows(&self, identity: &str, permission: Permission, pack: Option<&str>) -> bool {
        if permission == Permission::Info && self.info.iter().any(|m| m.matches(identity)) {
            return true;
        }
        if self.default_open {
            matches!(permission, Permission::Execute | Permission::Read | Permission::Info)
        } else {
            self.rules.iter().any(|r| {
                r.allow.contains(&permission)
                    && r.identities.iter().any(|m| m.matches(identity))
                    && pack.is_none_or(|p| r.packs.iter().any(|m| m.matches(p)))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authz(toml_text: &str) -> Authorizer {
        let c: AuthzConfig = toml::from_str(toml_text).expect("valid authz");
        Authorizer::new(&c)
    }

    #[test]
    fn default_allows_execute_and_read_only() {
        let a = authz("");
        assert!(a.check("anyone", Permission::Execute, Some("p")).is_ok());
        assert!(a.check("anyone", Permission::Read, None).is_ok());
        assert!(a.check("anyone", Permission::Kill, Some("p")).is_err());
        assert!(a.check("anyone", Permission::Dev, Some("p")).is_err());
    }

    #[test]
    fn rules_match_identities_and_packs() {
        let a = authz(
            r#"
            [[rules]]
            identities = ["ops-*"]
            allow = ["execute", "read", "kill"]
            packs = ["cassandra-*"]
            [[rules]]
            identities = ["auditor"]
            allow = ["read"]
            "#,
        );
        assert!(a.check("ops-alice", Permission::Execute, Some("cassandra-disk")).is_ok());
        assert!(a.check("ops-alice", Permission::Execute, Some("kafka")).is_err());
        assert!(a.check("auditor", Permission::Read, None).is_ok());
        let err = a.check("auditor", Permission::Execute, Some("kafka")).expect_err("denied");
        assert_eq!(err.to_string(), "identity \"auditor\" may not execute pack \"kafka\"");
        assert!(a.check("mallory", Permission::Read, None).is_err());
    }

    #[test]
    fn a_read_rule_reads_only_its_packs() {
        let a = authz(
            r#"
            [[rules]]
            identities = ["reader"]
            allow = ["read"]
            packs = ["probe"]
            "#,
        );
        assert!(a.check("reader", Permission::Read, Some("probe")).is_ok());
        assert!(a.check("reader", Permission::Read, Some("secret")).is_err());
        assert!(a.allows("reader", Permission::Read, None), "some pack is readable");
    }

    #[test]
    fn info_is_everyone_s_unless_narrowed() {
        let a = authz("[[rules]]\nidentities = [\"ops\"]\nallow = [\"execute\"]\n");
        assert!(a.check("stranger", Permission::Info, None).is_ok(), "on by default, as before");
        let a = authz(
            "info = [\"monitor-*\"]\n[[rules]]\nidentities = [\"ops\"]\nallow = [\"execute\", \"info\"]\n",
        );
        assert!(a.check("stranger", Permission::Info, None).is_err());
        assert!(a.check("monitor-1", Permission::Info, None).is_ok());
        assert!(a.check("ops", Permission::Info, None).is_ok());
    }
}
