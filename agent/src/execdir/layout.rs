//! Names and records of one execution folder (see the module above).

use std::{
    fs,
    io,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::files::{create_private_dir, create_whole, read_json, write_replace};

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
    pub caps: crate::host::caps::CapsSpec,
    /// Credentials to drop to before exec; None keeps the supervisor's.
    #[serde(default)]
    pub run_as: Option<crate::host::runas::RunAs>,
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
    /// How the action entered its cgroup: "created" (cgroup v2's
    /// `CLONE_INTO_CGROUP`), "moved" (a `cgroup.procs` write), or "" for none.
    #[serde(default)]
    pub cgroup_entry: String,
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
        crate::host::procfs::stat(pid).map(|s| Self { pid, starttime: s.starttime })
    }

    pub fn read(path: &Path) -> Option<Self> {
        let text = fs::read_to_string(path).ok()?;
        let mut it = text.split_whitespace();
        Some(Self { pid: it.next()?.parse().ok()?, starttime: it.next()?.parse().ok()? })
    }

    pub fn write(&self, path: &Path) -> io::Result<()> {
        write_replace(path, self.line().as_bytes(), false)
    }

    /// Creates `path` with this pid, failing if it exists (a claim); a reader
    /// never sees a claim without its pid.
    pub fn create_new(&self, path: &Path) -> io::Result<()> {
        create_whole(path, self.line().as_bytes())
    }

    fn line(&self) -> String {
        format!("{} {}\n", self.pid, self.starttime)
    }

    pub fn is_alive(&self) -> bool {
        crate::host::procfs::is_alive(self.pid, self.starttime)
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

    /// Creates the folder (private) and its spec; an existing folder is
    /// reused (a retried start).
    pub fn prepare(&self, spec: &[u8]) -> io::Result<()> {
        match fs::DirBuilder::new().mode(0o700).create(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        write_replace(&self.path(SPEC), spec, false)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfiles_round_trip_and_claims_are_exclusive() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.pid");
        let me = PidFile::of(std::process::id() as i32).expect("self");
        me.write(&p).expect("write");
        assert_eq!(PidFile::read(&p), Some(me));
        assert!(me.is_alive());
        assert!(me.create_new(&p).is_err());
        fs::write(&p, b"12 x").expect("garbage");
        assert_eq!(PidFile::read(&p), None);
        // A claim appears whole, and only its own name is left behind.
        let claim = d.path().join("supervisor.pid");
        me.create_new(&claim).expect("first claim");
        assert_eq!(PidFile::read(&claim), Some(me));
        let err = me.create_new(&claim).expect_err("second claim");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        let mut names: Vec<String> =
            fs::read_dir(d.path()).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        names.sort();
        assert_eq!(names, ["supervisor.pid", "x.pid"]);
    }

    #[test]
    fn remove_renames_first() {
        let d = tempfile::tempdir().expect("tempdir");
        let l = Layout::new(d.path()).expect("layout");
        let e = l.dir("abc");
        e.prepare(b"{}").expect("create");
        e.prepare(b"{}").expect("again");
        fs::write(e.path(OUTPUT), b"x").expect("write");
        l.remove("abc").expect("remove");
        assert!(l.list().expect("list").is_empty());
    }
}
