//! The cgroup file systems as this host mounts them, and the few files Bolt
//! reads and writes in them. Plain file operations on a root given as data,
//! so that every rule here is tested against a temporary tree.

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
};

/// The controllers the caps use.
pub const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// Controller name → the process's cgroup path in that hierarchy ("" names
/// the unified hierarchy), as `/proc/<pid>/cgroup` gives them.
pub type Parents = HashMap<String, String>;

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// The cgroup path the mount shows as its top ("/" unless mounted from
    /// a namespace or a bind mount of a subtree).
    pub mount_root: String,
    /// Its controllers; empty on v2 (read from `cgroup.controllers`).
    pub controllers: Vec<String>,
}

impl Hierarchy {
    /// The key of this hierarchy in [`Parents`]: "" on v2, else one of its
    /// controllers that `/proc/<pid>/cgroup` names.
    fn key(&self, v2: bool) -> &str {
        if v2 {
            ""
        } else {
            self.controllers.first().map_or("", String::as_str)
        }
    }

    /// The folder of cgroup `name` below the process's cgroup `parent`.
    fn dir(&self, parent: &str, name: &str) -> PathBuf {
        let rel = parent.strip_prefix(self.mount_root.as_str()).unwrap_or(parent);
        let mut dir = self.mount.clone();
        for part in rel.split('/').chain(name.split('/')).filter(|p| !p.is_empty()) {
            dir.push(part);
        }
        dir
    }
}

/// The hierarchies that hold the caps' controllers: the unified one when it
/// has them all, else one per v1 mount that has one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies {
    pub v2: bool,
    pub list: Vec<Hierarchy>,
}

impl Hierarchies {
    /// This host's, from `/proc/self/mountinfo`.
    pub fn host() -> Self {
        Self::from_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// Parses mountinfo lines (`id parent dev root mount opts... - fstype src superopts`).
    pub fn from_mountinfo(text: &str) -> Self {
        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut v2: Option<Hierarchy> = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let fields: Vec<&str> = left.split_whitespace().collect();
            let rfields: Vec<&str> = right.split_whitespace().collect();
            let (Some(root), Some(mount), Some(fstype)) = (fields.get(3), fields.get(4), rfields.first()) else {
                continue;
            };
            let hierarchy = |controllers| Hierarchy {
                mount: PathBuf::from(unescape(mount)),
                mount_root: unescape(root),
                controllers,
            };
            match *fstype {
                "cgroup2" if v2.is_none() => v2 = Some(hierarchy(Vec::new())),
                "cgroup" => {
                    let opts = rfields.get(2).copied().unwrap_or("");
                    let controllers: Vec<String> = opts
                        .split(',')
                        .filter(|o| CONTROLLERS.contains(o) || *o == "cpuacct")
                        .map(str::to_owned)
                        .collect();
                    let wanted = controllers.iter().any(|c| CONTROLLERS.contains(&c.as_str()));
                    if wanted && !v1.iter().any(|h| h.controllers == controllers) {
                        v1.push(hierarchy(controllers));
                    }
                }
                _ => {}
            }
        }
        match v2 {
            // A v1 controller is not in v2's cgroup.controllers: where they
            // are all in v1 (hybrid hosts), the unified mount is for naming only.
            Some(h) if v1.is_empty() => Self { v2: true, list: vec![h] },
            _ => Self { v2: false, list: v1 },
        }
    }

    /// The folders of cgroup `name` below `parents`, one per hierarchy.
    pub fn dirs(&self, parents: &Parents, name: &str) -> Vec<PathBuf> {
        self.list
            .iter()
            .map(|h| h.dir(parents.get(h.key(self.v2)).map_or("/", String::as_str), name))
            .collect()
    }

    /// The folder of the process's own cgroup on v2.
    pub fn own_dir(&self, parents: &Parents) -> Option<PathBuf> {
        self.v2.then(|| self.dirs(parents, "").into_iter().next()).flatten()
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses `/proc/<pid>/cgroup`: `id:controllers:path` lines.
pub fn parse_proc_cgroup(text: &str) -> Parents {
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

/// The controllers a v2 cgroup may enable below itself.
pub fn available(dir: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(dir.join("cgroup.controllers"))?.split_whitespace().map(str::to_owned).collect())
}

/// Enables `controllers` for the children of the v2 cgroup `dir`, writing
/// only those not enabled yet (each write takes the kernel's cgroup lock).
pub fn enable_below(dir: &Path, controllers: &[&str]) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file)?;
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::write(&file, missing.join(" "))
}

/// Pids in one cgroup folder (none if it is gone).
pub fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Moves process `pid` (0: the writer) into the cgroup `dir`.
pub fn add(dir: &Path, pid: u32) -> io::Result<()> {
    fs::write(dir.join("cgroup.procs"), pid.to_string())
}

/// Writes one control file of a cgroup.
pub fn set(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    fs::write(dir.join(file), value)
}

pub fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`memory.events`, `cpu.stat`).
pub fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_HOST: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_v1_host_gives_one_hierarchy_per_needed_controller() {
        let h = Hierarchies::from_mountinfo(V1_HOST);
        assert!(!h.v2);
        let mounts: Vec<_> = h.list.iter().map(|h| h.mount.display().to_string()).collect();
        assert_eq!(mounts, ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"]);
        let parents = parse_proc_cgroup("4:memory:/job/1\n1:cpu:/\n8:pids:/\n0::/\n");
        assert_eq!(
            h.dirs(&parents, "bolt/x"),
            [
                PathBuf::from("/sys/fs/cgroup/cpu/bolt/x"),
                PathBuf::from("/sys/fs/cgroup/memory/job/1/bolt/x"),
                PathBuf::from("/sys/fs/cgroup/pids/bolt/x"),
            ]
        );
        assert_eq!(h.own_dir(&parents), None);
    }

    #[test]
    fn comounted_cpu_and_cpuacct_are_one_hierarchy() {
        let h = Hierarchies::from_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             2 0 0:2 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        assert_eq!(h.list[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(h.list.len(), 2);
    }

    #[test]
    fn a_unified_host_gives_one_hierarchy_and_honours_the_mount_root() {
        let h = Hierarchies::from_mountinfo(
            "30 23 0:26 /system.slice/x /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert!(h.v2);
        let parents = parse_proc_cgroup("0::/system.slice/x/bolt.service\n");
        assert_eq!(h.own_dir(&parents), Some(PathBuf::from("/sys/fs/cgroup/bolt.service")));
        assert_eq!(h.dirs(&parents, "bolt/abc"), [PathBuf::from("/sys/fs/cgroup/bolt.service/bolt/abc")]);
        // A process in the root cgroup.
        assert_eq!(h.dirs(&parse_proc_cgroup("0::/\n"), "bolt-agent"), [PathBuf::from("/sys/fs/cgroup/bolt-agent")]);
    }

    #[test]
    fn no_cgroup_mount_gives_nothing() {
        let h = Hierarchies::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/sda rw\n");
        assert!(h.list.is_empty() && h.dirs(&Parents::new(), "x").is_empty());
    }

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(unescape(r"/a\040b\134c\"), "/a b\\c\\");
        let h = Hierarchies::from_mountinfo(r"1 0 0:1 / /mnt/cg\040two rw - cgroup2 none rw");
        assert_eq!(h.list[0].mount, PathBuf::from("/mnt/cg two"));
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
    fn controllers_are_enabled_once() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::write(d.path().join("cgroup.subtree_control"), "memory\n").expect("write");
        enable_below(d.path(), &CONTROLLERS).expect("enable");
        // A real kernel file would now list all three; the written request is what is checked.
        assert_eq!(fs::read_to_string(d.path().join("cgroup.subtree_control")).expect("read"), "+cpu +pids");
        fs::write(d.path().join("cgroup.subtree_control"), "cpu memory pids\n").expect("write");
        enable_below(d.path(), &CONTROLLERS).expect("enable");
        assert_eq!(fs::read_to_string(d.path().join("cgroup.subtree_control")).expect("read"), "cpu memory pids\n");
    }

    #[test]
    fn keyed_files_and_procs_are_read() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::write(d.path().join("memory.events"), "low 0\noom 1\noom_kill 2\n").expect("write");
        fs::write(d.path().join("cgroup.procs"), "12\n7\n").expect("write");
        assert_eq!(read_key(&d.path().join("memory.events"), "oom_kill"), Some(2));
        assert_eq!(read_key(&d.path().join("memory.events"), "oom_group"), None);
        assert_eq!(procs(d.path()), [12, 7]);
        assert!(procs(&d.path().join("gone")).is_empty());
    }
}
