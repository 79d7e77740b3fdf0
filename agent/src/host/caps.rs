//! Resource caps of executions: one cgroup per execution (v2, or v1 on
//! hosts that only offer the controllers there), created below the agent's
//! own cgroup, with memory, CPU and pids limits. Used by the agent to probe
//! what the host offers and by the supervisor to cage one action.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::cgroupfs::{self, Hierarchies, CONTROLLERS};
pub use super::cgroupfs::Parents;

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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapsSpec {
    /// Relative name of the execution's cgroup ("bolt/<id>"), below the
    /// agent's original cgroups (`parents`); None without cgroups.
    pub cgroup: Option<String>,
    pub limits: Limits,
    /// The agent's cgroup in each hierarchy when it started (controller →
    /// path; "" for v2), the base of every cgroup Bolt makes.
    #[serde(default)]
    pub parents: Parents,
    /// On v2, start the action inside its cgroup (`clone3` with
    /// `CLONE_INTO_CGROUP`) rather than moving it there.
    #[serde(default = "yes")]
    pub clone_into_cgroup: bool,
}

fn yes() -> bool {
    true
}

impl Default for CapsSpec {
    fn default() -> Self {
        Self { cgroup: None, limits: Limits::default(), parents: Parents::new(), clone_into_cgroup: true }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("cgroup {path}: {message}")]
    Cgroup { path: String, message: String },
    #[error("the {0} controller is not available")]
    Missing(&'static str),
    #[error("no cgroup file system with the memory, cpu or pids controller is mounted")]
    NotMounted,
    #[error("{0}")]
    NotDelegated(String),
}

impl CapsError {
    fn at(path: &Path, what: &str, e: io::Error) -> Self {
        Self::Cgroup { path: path.display().to_string(), message: format!("{what}: {e}") }
    }
}

/// Our own cgroup path in each v1 hierarchy (controller name → path), or
/// the v2 path under "".
pub fn own_paths() -> Parents {
    cgroupfs::parse_proc_cgroup(&fs::read_to_string("/proc/self/cgroup").unwrap_or_default())
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
        let file = dir.join(if self.v2 { "memory.events" } else { "memory.oom_control" });
        cgroupfs::read_key(&file, "oom_kill").is_some_and(|n| n > 0)
    }

    fn peak_memory(&self) -> Option<u64> {
        let dir = self.memory_dir.as_ref()?;
        cgroupfs::read_u64(&dir.join(if self.v2 { "memory.peak" } else { "memory.max_usage_in_bytes" }))
    }

    fn cpu_time_us(&self) -> Option<u64> {
        let dir = self.cpuacct_dir.as_ref()?;
        if self.v2 {
            cgroupfs::read_key(&dir.join("cpu.stat"), "usage_usec")
        } else {
            cgroupfs::read_u64(&dir.join("cpuacct.usage")).map(|ns| ns / 1000)
        }
    }
}

/// The CFS quota for `cpus` CPUs over [`CPU_PERIOD_US`] (at least 1 ms).
fn cpu_quota_us(cpus: f64) -> u64 {
    (cpus * CPU_PERIOD_US as f64).round().max(1000.0) as u64
}

/// One execution's cgroup (a folder per hierarchy on v1).
#[derive(Debug)]
pub struct ExecCgroup {
    v2: bool,
    dirs: Vec<PathBuf>,
    accounting: Accounting,
}

impl ExecCgroup {
    /// Creates `name` below the `parents` cgroups with `limits`. Every
    /// controller a limit needs must be there, or it is an error. On v2 the
    /// controllers are enabled on the way down from the agent's own cgroup.
    pub fn create(h: &Hierarchies, parents: &Parents, name: &str, limits: &Limits) -> Result<Self, CapsError> {
        if h.list.is_empty() {
            return Err(CapsError::NotMounted);
        }
        if h.v2 {
            let mut dir = h.own_dir(parents).ok_or(CapsError::NotMounted)?;
            for part in name.split('/').filter(|p| !p.is_empty()) {
                let offered = cgroupfs::available(&dir).map_err(|e| CapsError::at(&dir, "controllers", e))?;
                let wanted: Vec<&str> = CONTROLLERS.into_iter().filter(|c| offered.iter().any(|o| o == c)).collect();
                cgroupfs::enable_below(&dir, &wanted).map_err(|e| CapsError::at(&dir, "cannot enable controllers", e))?;
                dir.push(part);
                make_dir(&dir)?;
            }
        } else {
            for dir in h.dirs(parents, name) {
                fs::create_dir_all(&dir).map_err(|e| CapsError::at(&dir, "cannot create", e))?;
            }
        }
        let this = Self::from_dirs(h.v2, h.dirs(parents, name));
        if let Err(e) = this.apply(limits) {
            this.remove(Duration::ZERO);
            return Err(e);
        }
        Ok(this)
    }

    /// The cgroup `name` below `parents` if it still exists (one left by a
    /// supervisor that died), without creating anything.
    pub fn existing(h: &Hierarchies, parents: &Parents, name: &str) -> Option<Self> {
        let dirs: Vec<PathBuf> = h.dirs(parents, name).into_iter().filter(|d| d.is_dir()).collect();
        (!dirs.is_empty()).then(|| Self::from_dirs(h.v2, dirs))
    }

    fn from_dirs(v2: bool, dirs: Vec<PathBuf>) -> Self {
        let accounting = Accounting::find(dirs.iter().map(PathBuf::as_path), v2);
        Self { v2, dirs, accounting }
    }

    /// The folder holding `file` (the controller's hierarchy on v1).
    fn dir_with(&self, file: &str, controller: &'static str) -> Result<&Path, CapsError> {
        self.dirs.iter().find(|d| d.join(file).exists()).map(PathBuf::as_path).ok_or(CapsError::Missing(controller))
    }

    fn write(&self, file: &str, controller: &'static str, value: &str) -> Result<(), CapsError> {
        let dir = self.dir_with(file, controller)?;
        cgroupfs::set(dir, file, value).map_err(|e| CapsError::at(dir, &format!("{file} = {value}"), e))
    }

    /// Sets the limits (a `None` leaves that resource as it is).
    pub fn apply(&self, limits: &Limits) -> Result<(), CapsError> {
        if let Some(bytes) = limits.memory_max {
            let bytes = bytes.to_string();
            if self.v2 {
                self.write("memory.max", "memory", &bytes)?;
                // The whole action goes when one of its processes is OOM-killed,
                // and it gets no swap beyond the cap.
                self.write("memory.oom.group", "memory", "1")?;
                let _ = self.write("memory.swap.max", "memory", "0");
            } else {
                self.write("memory.limit_in_bytes", "memory", &bytes)?;
                let _ = self.write("memory.memsw.limit_in_bytes", "memory", &bytes);
            }
        }
        if let Some(cpus) = limits.cpu_max {
            let quota = cpu_quota_us(cpus);
            if self.v2 {
                self.write("cpu.max", "cpu", &format!("{quota} {CPU_PERIOD_US}"))?;
            } else {
                self.write("cpu.cfs_period_us", "cpu", &CPU_PERIOD_US.to_string())?;
                self.write("cpu.cfs_quota_us", "cpu", &quota.to_string())?;
            }
        }
        if let Some(n) = limits.pids_max {
            self.write("pids.max", "pids", &n.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling process into this cgroup (every hierarchy).
    pub fn enter(&self) -> io::Result<()> {
        self.add(0)
    }

    /// Moves process `pid` (0: the caller) into this cgroup.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        self.dirs.iter().try_for_each(|d| cgroupfs::add(d, pid))
    }

    /// Files to write "0" into from the child, between fork and exec.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The v2 folder, which a child can be started straight into
    /// (`clone3` with `CLONE_INTO_CGROUP`); None on v1.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.dirs.first().filter(|_| self.v2).map(PathBuf::as_path)
    }

    /// Pids in the cgroup (any hierarchy).
    pub fn pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.dirs.iter().flat_map(|d| cgroupfs::procs(d)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// SIGKILL to every process of the cgroup: `cgroup.kill` where the
    /// kernel has it (5.14), which also takes what forks meanwhile.
    pub fn kill_all(&self) {
        if let Some(dir) = self.unified_dir() {
            if cgroupfs::set(dir, "cgroup.kill", "1").is_ok() {
                return;
            }
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
            let left = self.dirs.iter().filter(|d| match fs::remove_dir(d) {
                Ok(()) => false,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            });
            if left.count() == 0 || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn make_dir(dir: &Path) -> Result<(), CapsError> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(CapsError::at(dir, "cannot create", e)),
        _ => Ok(()),
    }
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
pub fn cage_agent(
    h: &Hierarchies,
    parents: &Parents,
    base: &str,
    memory_max: Option<u64>,
) -> Result<ExecCgroup, CapsError> {
    let cg = ExecCgroup::create(h, parents, &agent_cgroup(base), &Limits::default())?;
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
pub fn move_to_supervisors(h: &Hierarchies, parents: &Parents, base: &str, pid: u32) -> Result<(), CapsError> {
    let cg = ExecCgroup::create(h, parents, &supervisors_cgroup(base), &Limits::default())?;
    cg.add(pid).map_err(|e| CapsError::Cgroup { path: supervisors_cgroup(base), message: e.to_string() })
}

/// On v2, makes the agent's own cgroup fit to have controllers enabled
/// below it (the unified hierarchy's rule: a cgroup that does is not to
/// hold processes itself): the agent moves into its leaf first. Fails,
/// saying why, where the cgroup holds other processes too or was not
/// delegated the controllers; the root cgroup is exempt from the rule.
fn make_room(h: &Hierarchies, parents: &Parents, base: &str) -> Result<(), CapsError> {
    let Some(own) = h.own_dir(parents).filter(|_| h.v2) else { return Ok(()) };
    let offered = cgroupfs::available(&own).map_err(|e| CapsError::at(&own, "controllers", e))?;
    let missing: Vec<&str> = CONTROLLERS.into_iter().filter(|c| !offered.iter().any(|o| o == c)).collect();
    if !missing.is_empty() {
        return Err(CapsError::NotDelegated(format!(
            "the agent's cgroup {} was not given the {} controller(s) (under systemd: Delegate=yes)",
            own.display(),
            missing.join(", ")
        )));
    }
    // The root cgroup (no cgroup.type) may hold processes and still enable controllers.
    if !own.join("cgroup.type").exists() {
        return Ok(());
    }
    let leaf = own.join(agent_cgroup(base));
    make_dir(&leaf)?;
    cgroupfs::add(&leaf, 0).map_err(|e| CapsError::at(&leaf, "cannot move the agent", e))?;
    let others = cgroupfs::procs(&own);
    if others.is_empty() {
        return Ok(());
    }
    // Back where it was: nothing below a busy cgroup can be capped.
    let _ = cgroupfs::add(&own, 0);
    let _ = fs::remove_dir(&leaf);
    Err(CapsError::NotDelegated(format!(
        "the agent's cgroup {} also holds other processes ({}), and cgroup v2 enables controllers only below a cgroup that holds none: run the agent in a cgroup of its own (under systemd: Delegate=yes)",
        own.display(),
        others.iter().take(5).map(i32::to_string).collect::<Vec<_>>().join(", ")
    )))
}

/// What the host offers: makes room on v2, then tries to create (and
/// removes) a cgroup named `<base>/probe-<pid>` with every limit the caps use.
pub fn probe(h: &Hierarchies, parents: &Parents, base: &str) -> (CapsMode, Option<String>) {
    let name = format!("{base}/probe-{}", std::process::id());
    let limits = Limits { memory_max: Some(1 << 30), cpu_max: Some(1.0), pids_max: Some(1 << 16) };
    let result = make_room(h, parents, base).and_then(|()| ExecCgroup::create(h, parents, &name, &limits));
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

    fn read(d: &tempfile::TempDir, path: &str) -> String {
        fs::read_to_string(d.path().join(path)).expect(path)
    }

    fn v2(d: &tempfile::TempDir) -> Hierarchies {
        Hierarchies::from_mountinfo(&format!("1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n", d.path().display()))
    }

    /// A v2 leaf's control files, as the kernel would make them on mkdir.
    const V2_LEAF: [&str; 7] =
        ["cgroup.procs", "memory.max", "memory.oom.group", "memory.swap.max", "cpu.max", "pids.max", "cgroup.kill"];

    #[test]
    fn v2_creation_enables_controllers_on_the_way_down_and_writes_every_limit() {
        let mut files = vec![
            ("svc/cgroup.controllers", "cpu io memory pids\n"),
            ("svc/cgroup.subtree_control", ""),
            ("svc/cgroup.type", "domain\n"),
            ("svc/bolt/cgroup.controllers", "cpu memory pids\n"),
            ("svc/bolt/cgroup.subtree_control", "memory cpu pids\n"),
        ];
        let leaf: Vec<String> = V2_LEAF.iter().map(|f| format!("svc/bolt/x/{f}")).collect();
        files.extend(leaf.iter().map(|f| (f.as_str(), "")));
        let d = tree(&files);
        let parents = cgroupfs::parse_proc_cgroup("0::/svc\n");
        let limits = Limits { memory_max: Some(64 << 20), cpu_max: Some(0.25), pids_max: Some(32) };
        let cg = ExecCgroup::create(&v2(&d), &parents, "bolt/x", &limits).expect("create");
        assert_eq!(read(&d, "svc/cgroup.subtree_control"), "+memory +cpu +pids");
        assert_eq!(read(&d, "svc/bolt/cgroup.subtree_control"), "memory cpu pids\n", "already enabled: not rewritten");
        assert_eq!(read(&d, "svc/bolt/x/memory.max"), "67108864");
        assert_eq!(read(&d, "svc/bolt/x/memory.oom.group"), "1");
        assert_eq!(read(&d, "svc/bolt/x/memory.swap.max"), "0");
        assert_eq!(read(&d, "svc/bolt/x/cpu.max"), "25000 100000");
        assert_eq!(read(&d, "svc/bolt/x/pids.max"), "32");
        assert_eq!(cg.unified_dir(), Some(d.path().join("svc/bolt/x").as_path()));
        cg.add(4242).expect("add");
        assert_eq!(read(&d, "svc/bolt/x/cgroup.procs"), "4242");
        cg.kill_all();
        assert_eq!(read(&d, "svc/bolt/x/cgroup.kill"), "1");
    }

    #[test]
    fn v2_creation_without_a_controller_fails_naming_it() {
        let d = tree(&[
            ("cgroup.controllers", "cpu memory\n"),
            ("cgroup.subtree_control", ""),
            ("x/memory.max", ""),
            ("x/memory.oom.group", ""),
            ("x/cpu.max", ""),
        ]);
        let limits = Limits { pids_max: Some(8), ..Default::default() };
        let err = ExecCgroup::create(&v2(&d), &Parents::new(), "x", &limits).expect_err("no pids");
        assert_eq!(err.to_string(), "the pids controller is not available");
        assert_eq!(read(&d, "cgroup.subtree_control"), "+memory +cpu", "only offered controllers are asked for");
    }

    #[test]
    fn v1_creation_writes_each_limit_in_its_hierarchy() {
        let d = tree(&[
            ("memory/job/bolt/x/memory.limit_in_bytes", ""),
            ("memory/job/bolt/x/cgroup.procs", ""),
            ("cpu/bolt/x/cpu.cfs_period_us", ""),
            ("cpu/bolt/x/cpu.cfs_quota_us", ""),
            ("cpu/bolt/x/cgroup.procs", ""),
            ("pids/bolt/x/pids.max", ""),
            ("pids/bolt/x/cgroup.procs", "17\n3\n"),
        ]);
        let mounts: String = ["cpu", "memory", "pids"]
            .iter()
            .map(|c| format!("1 0 0:1 / {}/{c} rw - cgroup cgroup rw,{c}\n", d.path().display()))
            .collect();
        let h = Hierarchies::from_mountinfo(&mounts);
        let parents = cgroupfs::parse_proc_cgroup("4:memory:/job\n1:cpu:/\n8:pids:/\n");
        let limits = Limits { memory_max: Some(1 << 20), cpu_max: Some(1.5), pids_max: Some(9) };
        let cg = ExecCgroup::create(&h, &parents, "bolt/x", &limits).expect("create");
        assert_eq!(read(&d, "memory/job/bolt/x/memory.limit_in_bytes"), "1048576");
        assert_eq!(read(&d, "cpu/bolt/x/cpu.cfs_quota_us"), "150000");
        assert_eq!(read(&d, "cpu/bolt/x/cpu.cfs_period_us"), "100000");
        assert_eq!(read(&d, "pids/bolt/x/pids.max"), "9");
        assert_eq!(cg.pids(), [3, 17]);
        assert_eq!(cg.unified_dir(), None, "v1 cannot start a child straight into its cgroup");
        assert_eq!(cg.procs_files().len(), 3);
        assert!(ExecCgroup::existing(&h, &parents, "bolt/x").is_some());
        assert!(ExecCgroup::existing(&h, &parents, "bolt/gone").is_none());
    }

    #[test]
    fn no_mounted_hierarchy_is_a_clear_error() {
        let h = Hierarchies::from_mountinfo("");
        let err = ExecCgroup::create(&h, &Parents::new(), "bolt/x", &Limits::default()).expect_err("nothing");
        assert!(err.to_string().contains("no cgroup file system"), "{err}");
        assert_eq!(probe(&h, &Parents::new(), "bolt").0, CapsMode::None);
    }

    #[test]
    fn v2_refuses_a_busy_or_undelegated_cgroup_saying_why() {
        let d = tree(&[
            ("shell/cgroup.controllers", "cpu memory pids\n"),
            ("shell/cgroup.type", "domain\n"),
            ("shell/cgroup.procs", "1\n2\n"),
            ("bare/cgroup.controllers", "cpu\n"),
            ("bare/cgroup.type", "domain\n"),
        ]);
        let h = v2(&d);
        let why = make_room(&h, &cgroupfs::parse_proc_cgroup("0::/bare\n"), "bolt").expect_err("undelegated");
        assert!(why.to_string().contains("memory, pids controller(s)"), "{why}");
        let why = make_room(&h, &cgroupfs::parse_proc_cgroup("0::/shell\n"), "bolt").expect_err("busy");
        assert!(why.to_string().contains("also holds other processes (1, 2"), "{why}");
        assert_eq!(read(&d, "shell/bolt-agent/cgroup.procs"), "0", "the agent tried its leaf");
        assert_eq!(read(&d, "shell/cgroup.procs"), "0", "and went back where it was");
        fs::write(d.path().join("shell/cgroup.procs"), "1\n").expect("write");
        let (mode, reason) = probe(&h, &cgroupfs::parse_proc_cgroup("0::/shell\n"), "bolt");
        assert_eq!(mode, CapsMode::None);
        assert!(reason.is_some_and(|r| r.contains("Delegate=yes")));
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
    fn leaf_names_and_quotas_have_a_floor() {
        assert_eq!((agent_cgroup("bolt"), supervisors_cgroup("bolt")), ("bolt-agent".into(), "bolt-supervisors".into()));
        assert_eq!(cpu_quota_us(0.5), 50_000);
        assert_eq!(cpu_quota_us(2.0), 200_000);
        assert_eq!(cpu_quota_us(0.001), 1000);
    }
}
