//! The few facts read from /proc: a process's parent and start time (which
//! guards pid files against pid reuse), resident memory, and descendants.

use std::{collections::HashMap, fs};

/// Fields of `/proc/<pid>/stat` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// Clock ticks after boot at which the process started.
    pub starttime: u64,
}

/// Parses one stat line; the command name may hold spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    Some(Stat {
        pid,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        starttime: rest.get(19)?.parse().ok()?,
    })
}

pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `pid` is the process that started at `starttime` and is not a
/// zombie.
pub fn is_alive(pid: i32, starttime: u64) -> bool {
    stat(pid).is_some_and(|s| s.starttime == starttime && s.state != 'Z' && s.state != 'X')
}

/// Every live descendant of `root`, parents before children. Walks the
/// kernel's per-thread `children` lists where it has them (cheap), else
/// scans every process in /proc.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for task in tasks.flatten() {
            match fs::read_to_string(task.path().join("children")) {
                Ok(text) => {
                    for kid in text.split_whitespace().filter_map(|k| k.parse::<i32>().ok()) {
                        out.push(kid);
                        queue.push(kid);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return descendants_by_scan(root),
                Err(_) => {}
            }
        }
    }
    out.retain(|&pid| stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X'));
    out
}

fn descendants_by_scan(root: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(s) = stat(pid) {
            if s.state != 'Z' && s.state != 'X' {
                children.entry(s.ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                out.push(k);
                queue.push(k);
            }
        }
    }
    out
}

/// Resident set size of `pid` in bytes, from `/proc/<pid>/statm`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100";
        let s = parse_stat(line).expect("parses");
        assert_eq!((s.pid, s.state, s.ppid, s.pgrp, s.starttime), (1234, 'S', 1, 1234, 98765));
    }

    #[test]
    fn finds_children_and_grandchildren() {
        let mut child =
            std::process::Command::new("sh").args(["-c", "sleep 5 & sleep 5 & wait"]).spawn().expect("spawn");
        let me = std::process::id() as i32;
        let mut found = Vec::new();
        for _ in 0..100 {
            found = descendants(me);
            if found.len() >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let by_scan = descendants_by_scan(me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.len() >= 3, "{found:?}");
        assert!(found.contains(&(child.id() as i32)));
        for p in &found {
            assert!(by_scan.contains(p), "{p} missing from the scan {by_scan:?}");
        }
    }

    #[test]
    fn sees_itself_alive() {
        let me = std::process::id() as i32;
        let s = stat(me).expect("own stat");
        assert!(is_alive(me, s.starttime));
        assert!(!is_alive(me, s.starttime + 1));
        assert!(rss_bytes(me as u32).is_some_and(|r| r > 0));
    }
}
