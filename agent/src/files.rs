//! Small file helpers every module shares: atomic replacement, owner-only
//! folders and files, the data folder's permissions, and unix times.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

use serde::{Deserialize, Serialize};

pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// The data folder: created 0711 (others may pass through to the installed
/// packs and virtualenvs, never list or write), or, if it exists, refused
/// when another user owns it and tightened when others can write it.
pub fn prepare_data_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().recursive(true).mode(0o711).create(path)?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o711))
        }
        Err(e) => Err(e),
        Ok(meta) if !meta.is_dir() => Err(io::Error::other("exists and is not a folder")),
        Ok(meta) => {
            let me = rustix::process::geteuid().as_raw();
            if meta.uid() != me && meta.uid() != 0 {
                return Err(io::Error::other(format!(
                    "is owned by uid {}, not by the agent's user (uid {me}) or root: refused",
                    meta.uid()
                )));
            }
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                let tight = mode & !0o022;
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), now = format!("{tight:o}"), "the data folder was writable by others; tightened");
                fs::set_permissions(path, fs::Permissions::from_mode(tight))?;
            }
            Ok(())
        }
    }
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<T> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Temp file, fsync, rename, fsync of the folder: readers see the old file
/// or the whole new one, before and after a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_replace(path, bytes, true)
}

/// Temp file and rename; with `durable`, fsyncs of the file and the folder
/// too. Files that mean nothing after a reboot (pids, the spec of an action
/// about to start) skip the fsyncs.
pub fn write_replace(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let tmp = write_temp(path, bytes, durable)?;
    fs::rename(&tmp, path)?;
    if durable {
        fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
    }
    Ok(())
}

/// Creates `path` holding `bytes`, failing if it exists (a claim): written
/// whole under a name of its own, then linked into place, so `link` refuses an
/// existing name and a reader never sees the file half written.
pub fn create_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = write_temp(path, bytes, false)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked
}

/// `bytes` in a new owner-only file beside `path`, under a name of its own,
/// created new and never through a link: a file or link planted under a
/// predictable name is neither followed nor reused.
fn write_temp(path: &Path, bytes: &[u8], durable: bool) -> io::Result<std::path::PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let mut f =
        fs::OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    Ok(tmp)
}

pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Makes a file owner-only, whatever the umask was when it was created.
pub fn restrict_file(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_is_whole_private_and_leaves_no_temp() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.json");
        write_json(&p, &vec![1, 2, 3]).expect("write");
        write_replace(&p, b"[4]", false).expect("replace");
        let back: Vec<u32> = read_json(&p).expect("read");
        assert_eq!(back, [4]);
        let names: Vec<_> = fs::read_dir(d.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["x.json"]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_link_planted_at_the_temp_name_is_not_followed() {
        let d = tempfile::tempdir().expect("tempdir");
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").expect("victim");
        // Every temp name this process could pick next is a link to the victim.
        for n in 0..64 {
            let _ = std::os::unix::fs::symlink(&victim, d.path().join(format!(".f.{}-{n}.tmp", std::process::id())));
        }
        let _ = write_replace(&d.path().join("f"), b"new", false);
        assert_eq!(fs::read(&victim).expect("read"), b"keep");
    }

    #[test]
    fn the_data_folder_is_created_passable_and_tightened_when_others_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let data = d.path().join("a/b");
        prepare_data_dir(&data).expect("create");
        assert_eq!(fs::metadata(&data).expect("meta").permissions().mode() & 0o777, 0o711);
        fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).expect("chmod");
        prepare_data_dir(&data).expect("tighten");
        assert_eq!(fs::metadata(&data).expect("meta").permissions().mode() & 0o777, 0o755);
        let file = d.path().join("file");
        fs::write(&file, b"").expect("file");
        assert!(prepare_data_dir(&file).is_err());
    }
}
