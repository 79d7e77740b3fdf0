//! Account names in `pack.toml` (`user`, `group`): well-formed, and known on
//! this host.

/// POSIX-style account names: `[a-z_][a-z0-9_-]*` with an optional
/// trailing `$`, at most 32 bytes.
pub fn valid_account_name(name: &str) -> bool {
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
    }
}
