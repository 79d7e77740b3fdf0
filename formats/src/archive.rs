//! Pack archives: the reproducible `.tar.gz` that `pack build` writes and
//! the extractor that agents trust with bytes from the network.

use std::{
    fs,
    io::{self, Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Component, Path, PathBuf},
};

use flate2::{read::GzDecoder, Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::manifest::{ManifestError, PackManifest, Problem};

/// Bounds on what an archive may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_archive_bytes: u64,
    pub max_unpacked_bytes: u64,
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_archive_bytes: 64 << 20, max_unpacked_bytes: 256 << 20, max_files: 10_000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("the pack has no version: set `version` in pack.toml or pass --version")]
    NoVersion,
    #[error("--version {flag:?} disagrees with pack.toml's version {manifest:?}")]
    VersionMismatch { flag: String, manifest: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("the archive is {size} bytes, more than the limit of {limit}")]
    ArchiveTooLarge { size: u64, limit: u64 },
    #[error("the archive unpacks to more than {limit} bytes")]
    UnpackedTooLarge { limit: u64 },
    #[error("the archive holds more than {limit} entries")]
    TooManyFiles { limit: usize },
    #[error("unsafe entry {path:?} in the archive: {reason}")]
    UnsafeEntry { path: String, reason: &'static str },
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A built archive.
#[derive(Debug)]
pub struct Built {
    pub name: String,
    pub version: String,
    pub targets: Option<Vec<String>>,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lints `dir` and packs it: entries in path order, mtime 0, owner 0, modes
/// 0755/0644, a gzip header without time or name. Same folder, same bytes.
pub fn build(dir: &Path, version_flag: Option<&str>) -> Result<Built, ArchiveError> {
    let manifest = PackManifest::load(dir)?;
    let version = match (version_flag, &manifest.version) {
        (Some(f), Some(m)) if f != m => {
            return Err(ArchiveError::VersionMismatch { flag: f.into(), manifest: m.clone() })
        }
        (Some(f), _) => f.to_owned(),
        (None, Some(m)) => m.clone(),
        (None, None) => return Err(ArchiveError::NoVersion),
    };
    let with_version = PackManifest { version: Some(version.clone()), ..manifest.clone() };
    let problems = with_version.problems(dir);
    if !problems.is_empty() {
        return Err(ArchiveError::Invalid(problems));
    }
    let limits = Limits::default();
    let mut entries = Vec::new();
    collect(dir, dir, &mut entries, limits.max_files)?;
    entries.sort();

    let gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut total = 0u64;
    for rel in &entries {
        let path = dir.join(rel);
        let meta = fs::symlink_metadata(&path)
            .map_err(|source| ArchiveError::Read { path: path.clone(), source })?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let io_err = |source| ArchiveError::Write { path: path.clone(), source };
        if meta.file_type().is_symlink() {
            let target =
                fs::read_link(&path).map_err(|source| ArchiveError::Read { path: path.clone(), source })?;
            if !link_stays_inside(rel, &target) {
                return Err(ArchiveError::Unsupported {
                    path,
                    reason: format!("links to {} outside the pack", target.display()),
                });
            }
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, rel, &target).map_err(io_err)?;
        } else if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, rel, io::empty()).map_err(io_err)?;
        } else {
            let mut data =
                fs::read(&path).map_err(|source| ArchiveError::Read { path: path.clone(), source })?;
            if rel == Path::new("pack.toml") && manifest.version.is_none() {
                let mut text = format!("version = {}\n", toml::Value::String(version.clone())).into_bytes();
                text.extend_from_slice(&data);
                data = text;
            }
            total += data.len() as u64;
            if total > limits.max_unpacked_bytes {
                return Err(ArchiveError::UnpackedTooLarge { limit: limits.max_unpacked_bytes });
            }
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 });
            header.set_size(data.len() as u64);
            tar.append_data(&mut header, rel, data.as_slice()).map_err(io_err)?;
        }
    }
    let bytes = tar
        .into_inner()
        .and_then(|gz| gz.finish())
        .map_err(|source| ArchiveError::Write { path: dir.into(), source })?;
    Ok(Built { name: manifest.name, version, targets: manifest.targets, sha256: sha256_hex(&bytes), bytes })
}

/// Relative paths of everything under `dir` to pack; hidden entries and
/// `__pycache__` are left out, anything but files, folders and links refused.
fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>, max: usize) -> Result<(), ArchiveError> {
    let read = |source| ArchiveError::Read { path: dir.into(), source };
    for entry in fs::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        let path = entry.path();
        let t = entry.file_type().map_err(read)?;
        let rel = path.strip_prefix(root).unwrap_or(&path).to_owned();
        if !(t.is_file() || t.is_dir() || t.is_symlink()) {
            return Err(ArchiveError::Unsupported { path, reason: "not a file, folder or link".into() });
        }
        out.push(rel);
        if out.len() > max {
            return Err(ArchiveError::TooManyFiles { limit: max });
        }
        if t.is_dir() {
            collect(root, &path, out, max)?;
        }
    }
    Ok(())
}

/// Whether a link at `rel` (relative to the pack root) pointing to `target`
/// resolves, lexically, to somewhere inside the pack.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    let mut depth: usize = rel.components().count().saturating_sub(1);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Unpacks `bytes` into `dest` (which must exist and be empty), refusing
/// anything that could land outside it or exceed `limits`.
pub fn extract(bytes: &[u8], dest: &Path, limits: &Limits) -> Result<(), ArchiveError> {
    if bytes.len() as u64 > limits.max_archive_bytes {
        return Err(ArchiveError::ArchiveTooLarge {
            size: bytes.len() as u64,
            limit: limits.max_archive_bytes,
        });
    }
    // Headers (long names, pax records) are read whole by the tar crate, so
    // the decompressed stream as a whole is capped, not only file contents.
    let cap = limits
        .max_unpacked_bytes
        .saturating_add((limits.max_files as u64).saturating_mul(8 << 10) + (1 << 20));
    let mut archive = tar::Archive::new(Capped { inner: GzDecoder::new(bytes), left: cap, cap });
    let corrupt = |e: io::Error| ArchiveError::Corrupt(e.to_string());
    let mut total = 0u64;
    let mut count = 0usize;
    // Links are made last, so no file is ever written through one.
    let mut links = Vec::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        count += 1;
        if count > limits.max_files {
            return Err(ArchiveError::TooManyFiles { limit: limits.max_files });
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).chars().take(200).collect::<String>();
        let unsafe_entry = |reason| ArchiveError::UnsafeEntry { path: shown.clone(), reason };
        let rel = safe_relative(&raw).map_err(unsafe_entry)?;
        let Some(rel) = rel else { continue };
        let path = dest.join(&rel);
        let write_err = |source| ArchiveError::Write { path: path.clone(), source };
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&path).map_err(write_err)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(corrupt)?;
                total = total.saturating_add(size);
                if total > limits.max_unpacked_bytes {
                    return Err(ArchiveError::UnpackedTooLarge { limit: limits.max_unpacked_bytes });
                }
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(write_err)?;
                }
                let exec = entry.header().mode().map_err(corrupt)? & 0o111 != 0;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(if exec { 0o755 } else { 0o644 })
                    .open(&path)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::AlreadyExists => unsafe_entry("appears twice"),
                        _ => ArchiveError::Write { path: path.clone(), source: e },
                    })?;
                let copied = io::copy(&mut (&mut entry).take(size), &mut file).map_err(corrupt)?;
                if copied != size {
                    return Err(ArchiveError::Corrupt(format!("{shown:?} is cut short")));
                }
                file.flush().map_err(write_err)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_entry("a link without a target"))?
                    .into_owned();
                if !link_stays_inside(&rel, &target) {
                    return Err(unsafe_entry("a link that leads outside the pack"));
                }
                links.push((rel, path, target));
            }
            tar::EntryType::Link => return Err(unsafe_entry("hard links are not allowed")),
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {}
            _ => return Err(unsafe_entry("only files, folders and links are allowed")),
        }
    }
    // The check above is lexical, but `..` after a link goes up from where
    // the link leads: a link may neither sit under another link nor go up
    // after passing through one.
    let link_paths: std::collections::HashSet<&Path> = links.iter().map(|(rel, ..)| rel.as_path()).collect();
    for (rel, _, target) in &links {
        if let Some(reason) = link_through_link(rel, target, &link_paths) {
            let shown = rel.to_string_lossy().chars().take(200).collect::<String>();
            return Err(ArchiveError::UnsafeEntry { path: shown, reason });
        }
    }
    for (_, path, target) in links {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|source| ArchiveError::Write { path: path.clone(), source })?;
        }
        std::os::unix::fs::symlink(&target, &path).map_err(|source| ArchiveError::Write { path, source })?;
    }
    Ok(())
}

/// Why the link at `rel` to `target` cannot be checked lexically, given the
/// paths of every link in the archive: it sits under a link, or its target
/// goes up (`..`) after passing through a link.
fn link_through_link(
    rel: &Path,
    target: &Path,
    links: &std::collections::HashSet<&Path>,
) -> Option<&'static str> {
    let mut at = PathBuf::new();
    for c in rel.parent().into_iter().flat_map(Path::components) {
        at.push(c);
        if links.contains(at.as_path()) {
            return Some("a link under another link");
        }
    }
    let mut through = false;
    for c in target.components() {
        match c {
            Component::Normal(part) => {
                at.push(part);
                through |= links.contains(at.as_path());
            }
            Component::ParentDir if through => return Some("a link that goes up through another link"),
            Component::ParentDir => {
                at.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    None
}

/// The entry's path as a relative path without `.`; `None` for the root.
fn safe_relative(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    if raw.contains(&0) {
        return Err("a NUL byte in the name");
    }
    if raw.len() > 1024 {
        return Err("a name longer than 1024 bytes");
    }
    let path = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("a `..` in the path"),
            Component::RootDir | Component::Prefix(_) => return Err("an absolute path"),
        }
    }
    if out.components().count() > 32 {
        return Err("folders nested more than 32 deep");
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// A reader that fails once more than `cap` bytes have come through.
struct Capped<R> {
    inner: R,
    left: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::other(format!("the archive decompresses to more than {} bytes", self.cap))
        })?;
        Ok(n)
    }
}

/// Reads at most `limit` bytes, or fails.
pub fn read_limited(mut r: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    (&mut r).take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::other(format!("more than {limit} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(dir: &Path, version: Option<&str>) {
        let v = version.map(|v| format!("version = \"{v}\"\n")).unwrap_or_default();
        fs::write(
            dir.join("pack.toml"),
            format!("name = \"p\"\n{v}[[actions]]\nname = \"go\"\nentrypoint = \"bin/run.sh\"\n"),
        )
        .expect("write");
        fs::create_dir_all(dir.join("bin")).expect("mkdir");
        fs::write(dir.join("bin/run.sh"), "#!/bin/sh\necho hi\n").expect("write");
        fs::set_permissions(dir.join("bin/run.sh"), fs::Permissions::from_mode(0o750)).expect("chmod");
        fs::write(dir.join("data.txt"), "x").expect("write");
        fs::create_dir_all(dir.join(".git")).expect("mkdir");
        fs::write(dir.join(".git/HEAD"), "secret").expect("write");
    }

    #[test]
    fn builds_are_reproducible_and_round_trip() {
        let a = tempfile::tempdir().expect("tempdir");
        pack(a.path(), Some("1.0.0"));
        let first = build(a.path(), None).expect("build");
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(a.path().join("data.txt"), "x").expect("touch");
        let second = build(a.path(), None).expect("build");
        assert_eq!(first.sha256, second.sha256);
        assert_eq!(first.version, "1.0.0");

        let out = tempfile::tempdir().expect("tempdir");
        extract(&first.bytes, out.path(), &Limits::default()).expect("extract");
        assert!(!out.path().join(".git").exists(), "hidden files are left out");
        let mode = fs::metadata(out.path().join("bin/run.sh")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        PackManifest::load(out.path()).expect("the extracted pack loads");
    }

    #[test]
    fn the_version_is_written_into_the_archive() {
        let a = tempfile::tempdir().expect("tempdir");
        pack(a.path(), None);
        assert!(matches!(build(a.path(), None), Err(ArchiveError::NoVersion)));
        assert!(matches!(build(a.path(), Some("../x")), Err(ArchiveError::Invalid(_))));
        let built = build(a.path(), Some("2.1")).expect("build");
        let out = tempfile::tempdir().expect("tempdir");
        extract(&built.bytes, out.path(), &Limits::default()).expect("extract");
        let m = PackManifest::load(out.path()).expect("loads");
        assert_eq!(m.version.as_deref(), Some("2.1"));
        pack(a.path(), Some("1"));
        assert!(matches!(build(a.path(), Some("2")), Err(ArchiveError::VersionMismatch { .. })));
    }

    /// Name, kind, data and link target of one entry.
    type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], Option<&'a str>);

    fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
        let gz = GzBuilder::new().write(Vec::new(), Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Write the name raw so that hostile names survive.
            let gnu = h.as_gnu_mut().expect("gnu");
            gnu.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                h.set_link_name(l).expect("link");
            }
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar").finish().expect("gz")
    }

    #[test]
    fn hostile_archives_are_refused() {
        use tar::EntryType::*;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("traversal", raw_tar(&[(b"../evil", Regular, b"x", None)])),
            ("absolute", raw_tar(&[(b"/tmp/evil", Regular, b"x", None)])),
            ("deep traversal", raw_tar(&[(b"a/../../evil", Regular, b"x", None)])),
            ("escaping symlink", raw_tar(&[(b"l", Symlink, b"", Some("../../etc"))])),
            ("absolute symlink", raw_tar(&[(b"l", Symlink, b"", Some("/etc/passwd"))])),
            // Lexically inside, but `l/..` is the folder above the pack.
            (
                "symlink up through a symlink",
                raw_tar(&[(b"l", Symlink, b"", Some(".")), (b"m", Symlink, b"", Some("l/.."))]),
            ),
            (
                "symlink under a symlink",
                raw_tar(&[(b"l", Symlink, b"", Some(".")), (b"l/x", Symlink, b"", Some(".."))]),
            ),
            ("hard link", raw_tar(&[(b"h", Link, b"", Some("x"))])),
            ("device", raw_tar(&[(b"dev", Char, b"", None)])),
            ("fifo", raw_tar(&[(b"fifo", Fifo, b"", None)])),
            ("duplicate", raw_tar(&[(b"a", Regular, b"x", None), (b"a", Regular, b"y", None)])),
            ("not gzip", b"this is not an archive".to_vec()),
        ];
        for (what, bytes) in cases {
            let out = tempfile::tempdir().expect("tempdir");
            let dest = out.path().join("pack");
            fs::create_dir(&dest).expect("mkdir");
            let r = extract(&bytes, &dest, &Limits::default());
            assert!(r.is_err(), "{what} was accepted");
            assert!(!out.path().join("evil").exists(), "{what} wrote outside");
        }
    }

    #[test]
    fn a_decompression_bomb_is_cut_off() {
        // A 64 MiB pax header of zeros compresses to a few KiB, and the tar
        // crate would read it whole into memory.
        let gz = GzBuilder::new().write(Vec::new(), Compression::best());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(64 << 20);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "zeros", io::repeat(0).take(64 << 20)).expect("append");
        let bytes = b.into_inner().expect("tar").finish().expect("gz");
        assert!(bytes.len() < 1 << 20);
        let out = tempfile::tempdir().expect("tempdir");
        let small = Limits { max_unpacked_bytes: 1 << 20, max_files: 4, ..Limits::default() };
        let err = extract(&bytes, out.path(), &small).expect_err("refused");
        assert!(err.to_string().contains("decompresses to more than"), "{err}");
    }

    #[test]
    fn limits_hold() {
        let big = vec![0u8; 4096];
        let bytes = raw_tar(&[
            (b"a", tar::EntryType::Regular, &big, None),
            (b"b", tar::EntryType::Regular, &big, None),
        ]);
        let out = tempfile::tempdir().expect("tempdir");
        let small = Limits { max_unpacked_bytes: 6000, ..Limits::default() };
        assert!(matches!(extract(&bytes, out.path(), &small), Err(ArchiveError::UnpackedTooLarge { .. })));
        let out = tempfile::tempdir().expect("tempdir");
        let few = Limits { max_files: 1, ..Limits::default() };
        assert!(matches!(extract(&bytes, out.path(), &few), Err(ArchiveError::TooManyFiles { .. })));
        let tiny = Limits { max_archive_bytes: 10, ..Limits::default() };
        assert!(matches!(extract(&bytes, out.path(), &tiny), Err(ArchiveError::ArchiveTooLarge { .. })));
        let ok = tempfile::tempdir().expect("tempdir");
        let inside = raw_tar(&[
            (b"d/l", tar::EntryType::Symlink, b"", Some("../a")),
            (b"a", tar::EntryType::Regular, b"x", None),
        ]);
        extract(&inside, ok.path(), &Limits::default()).expect("a link inside the pack is fine");
        assert_eq!(fs::read(ok.path().join("d/l")).expect("through link"), b"x");
    }
}
