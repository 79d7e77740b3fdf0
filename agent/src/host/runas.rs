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
    fn users_resolve_on_this_host() {
        let r = resolve(Some("root"), None).expect("root resolves").expect("some");
        assert_eq!((r.uid, r.gid), (0, 0));
        assert!(is_root(Some(&r)));
        assert!(matches!(resolve(Some("no-such-user-bolt"), None), Err(RunAsError::NoUser(_))));
        assert!(resolve(None, None).expect("ok").is_none());
    }

}
