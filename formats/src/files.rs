//! Who may have written a pack's files. Actions may run as root, so a pack
//! whose files or folders anyone but root or the agent's own user can change
//! is refused, as sshd refuses such an `authorized_keys`. Only regular files,
//! folders and links inside the pack are allowed: a FIFO or a device would
//! block or mislead whoever reads it.

use std::{
    fs,
    io::Read,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// Most entries walked in one pack.
const MAX_ENTRIES: usize = 10_000;

/// The uid and gid whose files are trusted besides root's.
#[derive(Debug, Clone, Copy)]
pub struct Trusted {
    pub uid: u32,
    pub gid: u32,
}

impl Trusted {
    /// The agent's own effective user and group.
    pub fn agent() -> Self {
        Self { uid: rustix::process::geteuid().as_raw(), gid: rustix::process::getegid().as_raw() }
    }

    /// Checks one file or folder (not following a link).
    pub fn check(&self, path: &Path) -> Result<(), String> {
        let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            // The link itself cannot be changed but by its folder's writers,
            // checked with the folder; where it leads is checked by its users.
            return Ok(());
        }
        if !(kind.is_file() || kind.is_dir()) {
            return Err(format!("{} is not a regular file or a folder", path.display()));
        }
        if meta.uid() != 0 && meta.uid() != self.uid {
            return Err(format!(
                "{} is owned by uid {}, not by root or the agent's user (uid {}): refused, as its owner could change what runs",
                path.display(),
                meta.uid(),
                self.uid
            ));
        }
        let mode = meta.mode() & 0o7777;
        let group_may_write = mode & 0o020 != 0 && meta.gid() != 0 && meta.gid() != self.gid;
        if mode & 0o002 != 0 || group_may_write {
            return Err(format!(
                "{} can be written by {} (mode {mode:o}): refused, as they could change what runs; chmod go-w it",
                path.display(),
                if mode & 0o002 != 0 { "anyone" } else { "its group" },
            ));
        }
        Ok(())
    }

    /// Checks `dir` and everything under it.
    pub fn check_tree(&self, dir: &Path) -> Result<(), String> {
        self.check(dir)?;
        let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
        let mut seen = 0usize;
        while let Some(d) = stack.pop() {
            let entries = fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("{}: {e}", d.display()))?;
                seen += 1;
                if seen > MAX_ENTRIES {
                    return Err(format!("{} holds more than {MAX_ENTRIES} files", dir.display()));
                }
                let path = entry.path();
                self.check(&path)?;
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                }
            }
        }
        Ok(())
    }
}

/// Reads a small text file of a pack: never through a link, never blocking
/// on a FIFO, at most `limit` bytes.
pub fn read_small(path: &Path, limit: u64) -> std::io::Result<String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::other("is a symbolic link, which is refused here")
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("is not a regular file"));
    }
    let mut text = String::new();
    file.take(limit).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn writable_by_others_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("run.sh");
        fs::write(&f, "#!/bin/sh\n").expect("write");
        chmod(d.path(), 0o755);
        chmod(&f, 0o755);
        let me = Trusted::agent();
        assert_eq!(me.check_tree(d.path()), Ok(()));

        chmod(&f, 0o777);
        let err = me.check_tree(d.path()).expect_err("world-writable file");
        assert!(err.contains("run.sh") && err.contains("anyone"), "{err}");
        chmod(&f, 0o755);
        chmod(d.path(), 0o777);
        assert!(me.check_tree(d.path()).is_err(), "world-writable folder");
        chmod(d.path(), 0o755);

        // Another user's file.
        let other = Trusted { uid: me.uid.wrapping_add(1), gid: me.gid };
        if me.uid != 0 {
            assert!(other.check(&f).is_err());
        }
        // Group-writable: fine for the agent's own group, not for another.
        chmod(&f, 0o775);
        let foreign_group = Trusted { uid: me.uid, gid: me.gid.wrapping_add(1) };
        let gid = fs::metadata(&f).expect("meta").gid();
        assert_eq!(Trusted { uid: me.uid, gid }.check(&f), Ok(()));
        if gid != 0 {
            assert!(foreign_group.check(&f).is_err());
        }
    }

    #[test]
    fn a_fifo_is_neither_read_nor_accepted() {
        let d = tempfile::tempdir().expect("tempdir");
        let fifo = d.path().join("pack.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        let err = read_small(&fifo, 1024).expect_err("a FIFO is refused without blocking");
        assert!(err.to_string().contains("regular"), "{err}");
        assert!(Trusted::agent().check_tree(d.path()).is_err());
    }

    #[test]
    fn a_symlinked_file_is_not_read() {
        let d = tempfile::tempdir().expect("tempdir");
        let target = d.path().join("secret");
        fs::write(&target, "top secret line\n").expect("write");
        let link = d.path().join("pack.toml");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = read_small(&link, 1024).expect_err("refused");
        assert!(err.to_string().contains("symbolic link") && !err.to_string().contains("top secret"), "{err}");
    }
}
