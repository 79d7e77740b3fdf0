//! Resource caps of executions: one cgroup per execution (v2, or v1 on
//! hosts that only offer the controllers there), created below the agent's
//! own cgroup, with memory, CPU and pids limits. Used by the agent to probe
//! what the host offers and by the supervisor to cage one action.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cgroups_rs::fs::{
    cpu::CpuController, hierarchies, memory::MemController, pid::PidController, Cgroup, Controller,
    Hierarchy, MaxValue, Subsystem,
};
use serde::{Deserialize, Serialize};

/// CFS period used for CPU caps.
const CPU_PERIOD_US: u64 = 100_000;

/// How caps are applied on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CapsMode {
    Cgroup2,
    Cgroup1,
    /// No cgroup could be created: rlimits and niceness only.
    None,
}

impl CapsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cgroup2 => "cgroup2",
            Self::Cgroup1 => "cgroup1",
            Self::None => "none",
        }
    }
}

/// Limits of one execution; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_max: Option<u64>,
    pub cpu_max: Option<f64>,
    pub pids_max: Option<u64>,
}

/// What the supervisor needs to cage an action (part of spec.json).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CapsSpec {
    /// Relative name of the execution's cgroup ("bolt/<id>"), below the
    /// agent's original cgroups (`parents`); None without cgroups.
    pub cgroup: Option<String>,
    pub limits: Limits,
    /// The agent's cgroup in each hierarchy when it started (controller →
    /// path; "" for v2), the base of every cgroup Bolt makes.
    #[serde(default)]
    pub parents: Parents,
}

/// Controller name → cgroup path ("" is the v2 hierarchy).
pub type Parents = HashMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("cgroup {path}: {message}")]
    Cgroup { path: String, message: String },
    #[error("the {0} controller is not available")]
    Missing(&'static str),
}

/// Our own cgroup path in each v1 hierarchy (controller name → path), or
/// the v2 path under "".
pub fn own_paths() -> Parents {
    parse_proc_cgroup(&fs::read_to_string("/proc/self/cgroup").unwrap_or_default())
}

/// Parses `/proc/<pid>/cgroup`: `id:controllers:path` lines.
fn parse_proc_cgroup(text: &str) -> Parents {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        for c in controllers.split(',') {
            out.insert(c.trim_start_matches("name=").to_owned(), path.to_owned());
        }
    }
    out
}

/// The accounting files of one cgroup: where memory and CPU use are read,
/// found among its controller folders (one per hierarchy on v1).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Accounting {
    v2: bool,
    memory_dir: Option<PathBuf>,
    cpuacct_dir: Option<PathBuf>,
}

impl Accounting {
    fn find<'a>(dirs: impl IntoIterator<Item = &'a Path>, v2: bool) -> Self {
        let mut this = Self { v2, ..Self::default() };
        for dir in dirs {
            if dir.join("memory.max_usage_in_bytes").exists()
                || dir.join("memory.peak").exists()
                || dir.join("memory.current").exists()
            {
                this.memory_dir.get_or_insert(dir.to_owned());
            }
            if dir.join("cpuacct.usage").exists() || (v2 && dir.join("cpu.stat").exists()) {
                this.cpuacct_dir.get_or_insert(dir.to_owned());
            }
        }
        this
    }

    fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory_dir else { return false };
        let text = fs::read_to_string(dir.join(if self.v2 { "memory.events" } else { "memory.oom_control" }))
            .unwrap_or_default();
        text.lines().any(|l| {
            let mut it = l.split_whitespace();
            it.next() == Some("oom_kill") && it.next().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 0)
        })
    }

    fn peak_memory(&self) -> Option<u64> {
        let dir = self.memory_dir.as_ref()?;
        read_u64(&dir.join(if self.v2 { "memory.peak" } else { "memory.max_usage_in_bytes" }))
    }

    fn cpu_time_us(&self) -> Option<u64> {
        let dir = self.cpuacct_dir.as_ref()?;
        if self.v2 {
            let text = fs::read_to_string(dir.join("cpu.stat")).ok()?;
            text.lines().find_map(|l| l.strip_prefix("usage_usec ")).and_then(|v| v.trim().parse().ok())
        } else {
            read_u64(&dir.join("cpuacct.usage")).map(|ns| ns / 1000)
        }
    }
}

/// The CFS quota for `cpus` CPUs over [`CPU_PERIOD_US`] (at least 1 ms).
fn cpu_quota_us(cpus: f64) -> i64 {
    (cpus * CPU_PERIOD_US as f64).round().max(1000.0) as i64
}

/// One execution's cgroup (a directory per hierarchy on v1).
pub struct ExecCgroup {
    cg: Cgroup,
    v2: bool,
    /// `cgroup.procs` of every hierarchy: writing "0" there moves the writer.
    procs_files: Vec<PathBuf>,
    accounting: Accounting,
}

impl ExecCgroup {
    /// Creates `name` below the `parents` cgroups with `limits`. Every
    /// controller a limit needs must be there, or it is an error.
    pub fn create(parents: &Parents, name: &str, limits: &Limits) -> Result<Self, CapsError> {
        let hier: Box<dyn Hierarchy> = Box::new(Needed(hierarchies::auto()));
        let v2 = hier.v2();
        let err = |message: String| CapsError::Cgroup { path: name.to_owned(), message };
        let cg = if v2 {
            Cgroup::new(hier, v2_path(parents, name)).map_err(|e| err(e.to_string()))?
        } else {
            Cgroup::new_with_relative_paths(hier, name, parents.clone()).map_err(|e| err(e.to_string()))?
        };
        let this = Self::from_cgroup(cg, v2);
        if let Err(e) = this.apply(limits) {
            this.remove(Duration::ZERO);
            return Err(e);
        }
        Ok(this)
    }

    /// The cgroup `name` below `parents` if it still exists (one left by a
    /// supervisor that died), without creating anything.
    pub fn existing(parents: &Parents, name: &str) -> Option<Self> {
        let hier: Box<dyn Hierarchy> = Box::new(Needed(hierarchies::auto()));
        let v2 = hier.v2();
        let cg = if v2 {
            Cgroup::load(hier, v2_path(parents, name))
        } else {
            Cgroup::load_with_relative_paths(hier, name, parents.clone())
        };
        cg.exists().then(|| Self::from_cgroup(cg, v2))
    }

    fn from_cgroup(cg: Cgroup, v2: bool) -> Self {
        let dirs: Vec<PathBuf> = cg.subsystems().iter().map(|s| s.to_controller().path().to_owned()).collect();
        let mut procs_files = Vec::new();
        for procs in dirs.iter().map(|d| d.join("cgroup.procs")) {
            if procs.exists() && !procs_files.contains(&procs) {
                procs_files.push(procs);
            }
        }
        let accounting = Accounting::find(dirs.iter().map(PathBuf::as_path), v2);
        Self { cg, v2, procs_files, accounting }
    }

    /// Sets the limits (a `None` leaves that resource as it is).
    pub fn apply(&self, limits: &Limits) -> Result<(), CapsError> {
        let err = |what: &str, e: cgroups_rs::fs::error::Error| CapsError::Cgroup {
            path: self.cg.path().to_owned(),
            message: format!("{what}: {e}"),
        };
        if let Some(bytes) = limits.memory_max {
            let mem: &MemController = self.cg.controller_of().ok_or(CapsError::Missing("memory"))?;
            mem.set_limit(bytes as i64).map_err(|e| err("memory limit", e))?;
            // No swap beyond the cap where the kernel accounts it (v1 memsw).
            let _ = mem.set_memswap_limit(bytes as i64);
        }
        if let Some(cpus) = limits.cpu_max {
            let cpu: &CpuController = self.cg.controller_of().ok_or(CapsError::Missing("cpu"))?;
            cpu.set_cfs_quota_and_period(Some(cpu_quota_us(cpus)), Some(CPU_PERIOD_US))
                .map_err(|e| err("cpu quota", e))?;
        }
        if let Some(n) = limits.pids_max {
            let pids: &PidController = self.cg.controller_of().ok_or(CapsError::Missing("pids"))?;
            pids.set_pid_max(MaxValue::Value(n as i64)).map_err(|e| err("pids limit", e))?;
        }
        Ok(())
    }

    /// Moves the calling process into this cgroup (every hierarchy).
    pub fn enter(&self) -> std::io::Result<()> {
        self.add(0)
    }

    /// Moves process `pid` (0: the caller) into this cgroup.
    pub fn add(&self, pid: u32) -> std::io::Result<()> {
        for p in &self.procs_files {
            fs::write(p, pid.to_string())?;
        }
        Ok(())
    }

    /// Files to write "0" into from the child, between fork and exec.
    pub fn procs_files(&self) -> &[PathBuf] {
        &self.procs_files
    }

    /// Pids in the cgroup (any hierarchy).
    pub fn pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.cg.procs().into_iter().map(|p| p.pid as i32).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// SIGKILL to every process of the cgroup (`cgroup.kill` where the
    /// kernel has it).
    pub fn kill_all(&self) {
        if self.v2 && self.cg.kill().is_ok() {
            return;
        }
        for pid in self.pids() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Whether the kernel's OOM killer ended a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        self.accounting.oom_killed()
    }

    /// Highest memory use of the cgroup, where the kernel records it.
    pub fn peak_memory(&self) -> Option<u64> {
        self.accounting.peak_memory()
    }

    /// CPU time of every process that ran in the cgroup, in microseconds.
    pub fn cpu_time_us(&self) -> Option<u64> {
        self.accounting.cpu_time_us()
    }

    /// Removes the cgroup once it is empty, waiting up to `wait` for its
    /// last processes to be reaped.
    pub fn remove(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            if self.cg.delete().is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The v2 path of `name` below the agent's original cgroup.
fn v2_path(parents: &Parents, name: &str) -> String {
    let base = parents.get("").cloned().unwrap_or_default();
    format!("{}/{name}", base.trim_start_matches('/').trim_end_matches('/')).trim_start_matches('/').to_owned()
}

/// A hierarchy narrowed to the controllers executions use. On cgroup v1
/// every other controller (blkio, cpuset, devices, freezer, ...) would cost a
/// directory to make, join and remove per execution for nothing.
#[derive(Debug)]
struct Needed(Box<dyn Hierarchy>);

impl Hierarchy for Needed {
    fn subsystems(&self) -> Vec<Subsystem> {
        let all = self.0.subsystems();
        // cpuacct only where it shares cpu's hierarchy (the usual v1 mount):
        // on a hierarchy of its own it would cost a directory and a move per
        // execution for the CPU time that getrusage gives the supervisor.
        let cpu_dir = all.iter().find_map(|s| match s {
            Subsystem::Cpu(c) => Some(c.path().to_owned()),
            _ => None,
        });
        all.into_iter()
            .filter(|s| match s {
                Subsystem::Mem(_) | Subsystem::Cpu(_) | Subsystem::Pid(_) => true,
                Subsystem::CpuAcct(c) => cpu_dir.as_deref() == Some(c.path()),
                _ => false,
            })
            .collect()
    }

    fn root(&self) -> PathBuf {
        self.0.root()
    }

    fn root_control_group(&self) -> Cgroup {
        self.0.root_control_group()
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        self.0.parent_control_group(path)
    }

    fn v2(&self) -> bool {
        self.0.v2()
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Where the agent and the supervisors live: leaves beside `<base>`, which
/// holds the executions. Leaves keep cgroup v2's rule that only leaves
/// hold processes, and let the agent cap itself without capping actions.
pub fn agent_cgroup(base: &str) -> String {
    format!("{base}-agent")
}

pub fn supervisors_cgroup(base: &str) -> String {
    format!("{base}-supervisors")
}

/// Moves the agent into its own leaf, with a memory cap if given.
/// The leaf is entered before its limit is set: on cgroup v2 the parent
/// must hold no process before controllers can be enabled below it.
pub fn cage_agent(parents: &Parents, base: &str, memory_max: Option<u64>) -> Result<ExecCgroup, CapsError> {
    let cg = ExecCgroup::create(parents, &agent_cgroup(base), &Limits::default())?;
    cg.enter().map_err(|e| CapsError::Cgroup {
        path: agent_cgroup(base),
        message: format!("cannot move the agent: {e}"),
    })?;
    cg.apply(&Limits { memory_max, ..Default::default() })?;
    Ok(cg)
}

/// Moves process `pid` (0: the caller) out of the agent's leaf (and so out
/// of its cap) into the supervisors' one: a supervisor started by the agent,
/// or the spawner, so that what it forks starts there.
pub fn move_to_supervisors(parents: &Parents, base: &str, pid: u32) -> Result<(), CapsError> {
    let cg = ExecCgroup::create(parents, &supervisors_cgroup(base), &Limits::default())?;
    cg.add(pid).map_err(|e| CapsError::Cgroup { path: supervisors_cgroup(base), message: e.to_string() })
}

/// What the host offers: tries to create (and removes) a cgroup named
/// `<base>/probe-<pid>` with every controller the caps use.
pub fn probe(parents: &Parents, base: &str) -> (CapsMode, Option<String>) {
    let name = format!("{base}/probe-{}", std::process::id());
    let limits = Limits { memory_max: Some(1 << 30), cpu_max: Some(1.0), pids_max: Some(1 << 16) };
    let result = ExecCgroup::create(parents, &name, &limits);
    let mode = match &result {
        Ok(cg) if cg.v2 => CapsMode::Cgroup2,
        Ok(_) => CapsMode::Cgroup1,
        Err(_) => CapsMode::None,
    };
    let reason = result.as_ref().err().map(ToString::to_string);
    // The parent (`<base>`) stays: other executions may be starting in it.
    if let Ok(cg) = result {
        cg.remove(Duration::from_millis(200));
    }
    (mode, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup's controller folders, as the kernel lays them out.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = d.path().join(path);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, text).expect("write");
        }
        d
    }

    #[test]
    fn proc_cgroup_names_each_controller_and_the_unified_path() {
        let p = parse_proc_cgroup(
            "12:memory:/system.slice/bolt.service\n4:cpu,cpuacct:/system.slice/bolt.service\n1:name=systemd:/x\n0::/user.slice\n",
        );
        assert_eq!(p["memory"], "/system.slice/bolt.service");
        assert_eq!(p["cpuacct"], "/system.slice/bolt.service");
        assert_eq!(p["systemd"], "/x");
        assert_eq!(p[""], "/user.slice");
        assert!(parse_proc_cgroup("garbage without colons").contains_key(""));
    }

    #[test]
    fn v2_accounting_reads_events_peak_and_usage() {
        let d = tree(&[
            ("cg/memory.current", "1\n"),
            ("cg/memory.peak", "4096\n"),
            ("cg/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("cg/cpu.stat", "usage_usec 1500\nuser_usec 1000\n"),
        ]);
        let a = Accounting::find([d.path().join("cg").as_path()], true);
        assert!(a.oom_killed());
        assert_eq!((a.peak_memory(), a.cpu_time_us()), (Some(4096), Some(1500)));
        fs::write(d.path().join("cg/memory.events"), "oom 1\noom_kill 0\n").expect("write");
        assert!(!a.oom_killed(), "an OOM event without a kill is not an OOM kill");
    }

    #[test]
    fn v1_accounting_finds_memory_and_cpuacct_in_their_own_hierarchies() {
        let d = tree(&[
            ("memory/bolt/x/memory.max_usage_in_bytes", "8192\n"),
            ("memory/bolt/x/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            ("cpu,cpuacct/bolt/x/cpuacct.usage", "2500000\n"),
            ("pids/bolt/x/pids.max", "max\n"),
        ]);
        let dirs: Vec<PathBuf> =
            ["pids", "memory", "cpu,cpuacct"].iter().map(|h| d.path().join(h).join("bolt/x")).collect();
        let a = Accounting::find(dirs.iter().map(PathBuf::as_path), false);
        assert_eq!(a.memory_dir.as_deref(), Some(dirs[1].as_path()));
        assert!(a.oom_killed());
        assert_eq!((a.peak_memory(), a.cpu_time_us()), (Some(8192), Some(2500)));
        let none = Accounting::find([dirs[0].as_path()], false);
        assert!(!none.oom_killed() && none.peak_memory().is_none() && none.cpu_time_us().is_none());
    }

    #[test]
    fn cgroup_names_sit_below_the_agent_and_quotas_have_a_floor() {
        let parents: Parents = [("".to_owned(), "/system.slice/bolt.service/".to_owned())].into();
        assert_eq!(v2_path(&parents, "bolt/abc"), "system.slice/bolt.service/bolt/abc");
        assert_eq!(v2_path(&Parents::new(), "bolt/abc"), "bolt/abc");
        assert_eq!((agent_cgroup("bolt"), supervisors_cgroup("bolt")), ("bolt-agent".into(), "bolt-supervisors".into()));
        assert_eq!(cpu_quota_us(0.5), 50_000);
        assert_eq!(cpu_quota_us(2.0), 200_000);
        assert_eq!(cpu_quota_us(0.001), 1000);
    }
}
