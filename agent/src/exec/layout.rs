//! The on-disk contract of one execution, shared by the agent and the
//! supervisor: `<data>/executions/<id>/` holds
//!
//! - `spec.json`      what to run (written by the agent before spawning), and
//!   the request it came from ([`Origin`]), from which a lost history is rebuilt;
//! - `supervisor.pid` `pid starttime` of the supervisor;
//! - `child.pid`      `pid starttime` of the action's first process;
//! - `output.log`     the output, as records (see [`RecordHeader`]), and
//!   once compressed `output.log.zst` (the same bytes, zstd);
//! - `kill.json`      a kill request (grace, who), then SIGTERM to the supervisor;
//! - `exit.json`      the outcome, written last and atomically: its presence
//!   means the execution is over.
//!
//! Small files are written atomically (temp file, fsync, rename).

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub const SPEC: &str = "spec.json";
pub const SUPERVISOR_PID: &str = "supervisor.pid";
pub const CHILD_PID: &str = "child.pid";
pub const OUTPUT: &str = "output.log";
/// The output once compressed (zstd of the same records).
pub const OUTPUT_ZST: &str = "output.log.zst";
pub const KILL: &str = "kill.json";
pub const EXIT: &str = "exit.json";

/// What the supervisor runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub execution_id: String,
    /// argv[0] is the entrypoint's absolute path.
    pub argv: Vec<String>,
    /// The whole environment of the action.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub timeout_ms: u64,
    pub kill_grace_ms: u64,
    /// Payload bytes kept before the truncation marker.
    pub output_max: u64,
    pub nice: i32,
    /// Cgroup and limits; rlimits stand in where there is no cgroup.
    #[serde(default)]
    pub caps: crate::caps::CapsSpec,
    /// Credentials to drop to before exec; None keeps the supervisor's.
    #[serde(default)]
    pub run_as: Option<crate::runas::RunAs>,
    /// The request this execution answers; the supervisor ignores it.
    #[serde(default)]
    pub origin: Option<Origin>,
}

/// What the history records of an execution when it is created: kept in
/// `spec.json` too, so that an execution whose history record was lost (an
/// emptied or replaced `history.redb`) is adopted back, never deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub pack: String,
    pub action: String,
    pub pack_version: String,
    pub args: std::collections::BTreeMap<String, String>,
    pub caller: String,
    pub idempotency_key: String,
    pub request_hash: String,
    pub timeout_ms: u64,
    pub created_at_ms: u64,
    pub dev_dir: String,
}

/// How an execution ended, as the supervisor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action ended by itself (exit code or signal).
    Exited,
    /// Ended on a kill request.
    Killed,
    /// Ended at its timeout.
    TimedOut,
    /// Could not be started.
    StartFailed,
    /// Ended by the kernel for exceeding its memory cap.
    OomKilled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitRecord {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub killed_by: Option<String>,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    pub cpu_time_us: u64,
    pub peak_rss_bytes: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillRequest {
    pub grace_ms: u64,
    pub by: String,
}

/// `pid starttime`: a process identity that survives pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidFile {
    pub pid: i32,
    pub starttime: u64,
}

impl PidFile {
    pub fn of(pid: i32) -> Option<Self> {
        crate::procfs::stat(pid).map(|s| Self { pid, starttime: s.starttime })
    }

    pub fn read(path: &Path) -> Option<Self> {
        let text = fs::read_to_string(path).ok()?;
        let mut it = text.split_whitespace();
        Some(Self { pid: it.next()?.parse().ok()?, starttime: it.next()?.parse().ok()? })
    }

    pub fn write(&self, path: &Path) -> io::Result<()> {
        write_replace(path, self.line().as_bytes(), false)
    }

    /// Creates `path` with this pid, failing if it exists (a claim).
    pub fn create_new(&self, path: &Path) -> io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        f.write_all(self.line().as_bytes())
    }

    fn line(&self) -> String {
        format!("{} {}\n", self.pid, self.starttime)
    }

    pub fn is_alive(&self) -> bool {
        crate::procfs::is_alive(self.pid, self.starttime)
    }
}

/// Paths of one execution's folder.
#[derive(Debug, Clone)]
pub struct ExecDir(pub PathBuf);

impl ExecDir {
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn read_spec(&self) -> io::Result<Spec> {
        read_json(&self.path(SPEC))
    }

    pub fn read_exit(&self) -> Option<ExitRecord> {
        read_json(&self.path(EXIT)).ok()
    }

    pub fn has_exit(&self) -> bool {
        self.path(EXIT).exists()
    }

    pub fn supervisor(&self) -> Option<PidFile> {
        PidFile::read(&self.path(SUPERVISOR_PID))
    }
}

/// Root of all execution folders.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("executions");
        create_private_dir(&root)?;
        Ok(Self { root })
    }

    pub fn dir(&self, id: &str) -> ExecDir {
        ExecDir(self.root.join(id))
    }

    /// Removes a folder: renamed to `.<id>` first so a crash mid-way leaves
    /// nothing that looks like a live execution.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let from = self.root.join(id);
        let to = self.root.join(format!(".{id}"));
        fs::rename(&from, &to)?;
        fs::remove_dir_all(&to)
    }

    /// Names of execution folders (hidden ones are leftovers being removed).
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            out.push(name);
        }
        Ok(out)
    }
}

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
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A name of its own, created new and never through a link: a file or
    // link planted under a predictable name is neither followed nor reused.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

// === output.log records ===

/// First bytes of every output.log.
pub const OUTPUT_MAGIC: &[u8; 8] = b"BOLTOUT1";

/// Stream tags in record headers (the values of the proto's `Stream`).
pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;
pub const STREAM_SYSTEM: u8 = 3;

/// 16-byte header before each record's payload:
/// `stream u8, 3 reserved bytes, len u32 LE, unix ms u64 LE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub stream: u8,
    pub len: u32,
    pub time_ms: u64,
}

impl RecordHeader {
    pub const SIZE: usize = 16;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0] = self.stream;
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.time_ms.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; Self::SIZE]) -> Option<Self> {
        let stream = b[0];
        if !(STREAM_STDOUT..=STREAM_SYSTEM).contains(&stream) {
            return None;
        }
        Some(Self {
            stream,
            len: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            time_ms: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        })
    }
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
    fn header_round_trips() {
        let h = RecordHeader { stream: STREAM_STDERR, len: 65536, time_ms: 1_700_000_000_123 };
        assert_eq!(RecordHeader::decode(&h.encode()), Some(h));
        assert_eq!(RecordHeader::decode(&[0u8; 16]), None);
    }

    #[test]
    fn atomic_write_and_pidfile() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.pid");
        let me = PidFile::of(std::process::id() as i32).expect("self");
        me.write(&p).expect("write");
        assert_eq!(PidFile::read(&p), Some(me));
        assert!(me.is_alive());
        assert!(!d.path().join(".x.pid.tmp").exists());
    }

    #[test]
    fn remove_renames_first() {
        let d = tempfile::tempdir().expect("tempdir");
        let l = Layout::new(d.path()).expect("layout");
        let e = l.dir("abc");
        crate::supervisor::spawner::prepare(&e, b"{}").expect("create");
        fs::write(e.path(OUTPUT), b"x").expect("write");
        l.remove("abc").expect("remove");
        assert!(l.list().expect("list").is_empty());
    }
}
