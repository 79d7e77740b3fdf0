//! Run-as: the user and group an action declares in `pack.toml`, resolved
//! on this host. The supervisor drops to them (supplementary groups, gid,
//! uid, in that order) just before exec.

use serde::{Deserialize, Serialize};

/// Credentials an action runs with, resolved by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    #[error("user {0:?} does not exist on this host")]
    NoUser(String),
    #[error("group {0:?} does not exist on this host")]
    NoGroup(String),
    #[error("cannot look up {name:?}: {source}")]
    Lookup { name: String, source: nix::Error },
}

/// POSIX-style account names: `[a-z_][a-z0-9_-]*` with an optional
/// trailing `$`, at most 32 bytes.
fn valid_account_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    !body.is_empty()
        && name.len() <= 32
        && body
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_lowercase() || b == b'_' || (i > 0 && (b.is_ascii_digit() || b == b'-')))
}

/// Lint: the name is well-formed and the user exists here.
pub fn check_user(name: &str) -> Result<(), String> {
    if !valid_account_name(name) {
        return Err(format!("{name:?} is not a valid user name"));
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("user {name:?} does not exist on this host")),
        Err(e) => Err(format!("cannot look up user {name:?}: {e}")),
    }
}

/// Lint: the name is well-formed and the group exists here.
pub fn check_group(name: &str) -> Result<(), String> {
    if !valid_account_name(name) {
        return Err(format!("{name:?} is not a valid group name"));
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("group {name:?} does not exist on this host")),
        Err(e) => Err(format!("cannot look up group {name:?}: {e}")),
    }
}

/// Resolves an action's `user` and `group`; None when it declares neither
/// (it runs as the agent's user).
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<RunAs>, RunAsError> {
    let Some(user) = user else {
        return match group {
            None => Ok(None),
            // A group alone: the agent's user with that group.
            Some(g) => {
                let gid = group_id(g)?;
                let uid = nix::unistd::geteuid();
                let (name, home) = match nix::unistd::User::from_uid(uid) {
                    Ok(Some(u)) => (u.name, u.dir.to_string_lossy().into_owned()),
                    _ => (uid.to_string(), "/".into()),
                };
                Ok(Some(RunAs { user: name, uid: uid.as_raw(), gid, home }))
            }
        };
    };
    let u = nix::unistd::User::from_name(user)
        .map_err(|source| RunAsError::Lookup { name: user.into(), source })?
        .ok_or_else(|| RunAsError::NoUser(user.into()))?;
    let gid = match group {
        Some(g) => group_id(g)?,
        None => u.gid.as_raw(),
    };
    Ok(Some(RunAs { user: u.name, uid: u.uid.as_raw(), gid, home: u.dir.to_string_lossy().into_owned() }))
}

fn group_id(name: &str) -> Result<u32, RunAsError> {
    nix::unistd::Group::from_name(name)
        .map_err(|source| RunAsError::Lookup { name: name.into(), source })?
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| RunAsError::NoGroup(name.into()))
}

/// Whether an action with these credentials runs as root.
pub fn is_root(run_as: Option<&RunAs>) -> bool {
    match run_as {
        Some(r) => r.uid == 0,
        None => nix::unistd::geteuid().is_root(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lookups() {
        assert!(valid_account_name("nobody"));
        assert!(valid_account_name("_apt"));
        assert!(valid_account_name("machine$"));
        assert!(!valid_account_name("Root"));
        assert!(!valid_account_name("-x"));
        assert!(!valid_account_name("a b"));
        assert!(!valid_account_name(&"a".repeat(33)));
        assert!(check_user("root").is_ok());
        assert!(check_user("no-such-user-bolt").expect_err("unknown").contains("does not exist"));
        assert!(check_group("no-such-group-bolt").expect_err("unknown").contains("does not exist"));
        let r = resolve(Some("root"), None).expect("root resolves").expect("some");
        assert_eq!((r.uid, r.gid), (0, 0));
        assert!(is_root(Some(&r)));
        assert!(matches!(resolve(Some("no-such-user-bolt"), None), Err(RunAsError::NoUser(_))));
        assert!(resolve(None, None).expect("ok").is_none());
    }
}
