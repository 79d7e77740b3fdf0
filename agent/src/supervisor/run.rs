//! The supervisor's single-threaded loop: poll on the action's two pipes and
//! a signalfd, with the timeout and kill escalation as poll deadlines.

use std::{
    fs,
    os::fd::{AsFd, OwnedFd},
    time::{Duration, Instant, SystemTime},
};

use nix::{
    errno::Errno,
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sys::{
        prctl,
        resource::{getrusage, UsageWho},
        signal::{kill, killpg, SigSet, Signal},
        signalfd::{SfdFlags, SignalFd},
        wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus},
    },
    unistd::{getpid, read, Pid},
};

use crate::host::{caps::ExecCgroup, cgroupfs::Hierarchies};
use crate::execdir::{
    output_log::{OutputWriter, STREAM_STDERR, STREAM_STDOUT},
    ExecDir, ExitRecord, KillRequest, Outcome, PidFile, Spec, CHILD_PID, EXIT, KILL, OUTPUT, SUPERVISOR_PID,
};
use crate::files::{read_json, unix_ms, write_json};

/// How long output is drained after every process of the action is gone.
const DRAIN: Duration = Duration::from_secs(2);
/// Poll period while waiting for leftover processes to die.
const TICK: Duration = Duration::from_millis(50);
const BUF: usize = 64 * 1024;
/// How long the supervisor keeps trying to record the outcome.
const EXIT_WRITE_PATIENCE: Duration = Duration::from_secs(24 * 3600);

/// Where the supervisor starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Started by the agent (`bolt-agent supervise DIR`): still in the
    /// agent's cgroup, which it leaves first.
    Agent,
    /// Forked by the spawner, which already lives in the supervisors' cgroup.
    Spawner,
}

pub fn supervise(dir: &ExecDir, origin: Origin) -> u8 {
    let started = SystemTime::now();
    // First of all: a kill request (SIGTERM) must never end the supervisor
    // itself. The agent only signals once child.pid exists, which is after this.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        return fail_start(dir, started, format!("cannot block signals: {e}"));
    }
    // One supervisor per execution, ever: the first to create supervisor.pid
    // owns the folder. A second one (started when the spawner was lost in
    // the middle of a request) leaves at once and touches nothing.
    match claim(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return 0,
        Err(e) => return fail_start(dir, started, format!("cannot write supervisor.pid: {e}")),
    }
    let spec = match dir.read_spec() {
        Ok(s) => s,
        Err(e) => return fail_start(dir, started, format!("cannot read spec.json: {e}")),
    };
    let _ = prctl::set_child_subreaper(true);
    // Always set: the agent itself runs at its own (higher) niceness.
    let _ = rustix::process::setpriority_process(None, spec.nice);
    let mut out = match OutputWriter::create(&dir.path(OUTPUT), spec.output_max) {
        Ok(o) => o,
        Err(e) => return fail_start(dir, started, format!("cannot create output.log: {e}")),
    };
    let sfd = match SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => return fail_start(dir, started, format!("signalfd: {e}")),
    };
    let hierarchies = Hierarchies::host();
    if let (Some(name), Origin::Agent) = (&spec.caps.cgroup, origin) {
        // Out of the agent's leaf (and its cap) into the supervisors' one.
        let base = name.split('/').next().unwrap_or(name);
        if let Err(e) = crate::host::caps::move_to_supervisors(&hierarchies, &spec.caps.parents, base, 0) {
            out.notice(&format!("[bolt] supervisor stays in the agent's cgroup: {e}\n"));
        }
    }
    let cgroup = match &spec.caps.cgroup {
        Some(name) => match ExecCgroup::create(&hierarchies, &spec.caps.parents, name, &spec.caps.limits) {
            Ok(cg) => Some(cg),
            Err(e) => {
                out.notice(&format!("[bolt] resource caps not enforced: {e}\n"));
                None
            }
        },
        None => None,
    };
    let (child, pipes, into) = match super::launch::launch(&spec, cgroup.as_ref(), spec.caps.clone_into_cgroup) {
        Ok(l) => (l.pid, l.pipes, l.into_cgroup),
        Err(e) => {
            out.notice(&format!(
                "[bolt] cannot start {}: {e}\n",
                spec.argv.first().map_or("", String::as_str)
            ));
            let who = spec
                .run_as
                .as_ref()
                .map(|r| format!(" as user {} (uid {}, gid {})", r.user, r.uid, r.gid))
                .unwrap_or_default();
            return fail_start(dir, started, format!("cannot start the action{who}: {e}"));
        }
    };
    if let Some(p) = PidFile::of(child.as_raw()) {
        let _ = p.write(&dir.path(CHILD_PID));
    }
    // A kill asked for before child.pid existed was not signalled: the
    // request file is there instead (the agent writes it before looking).
    let kill_pending = dir.path(KILL).exists();
    let mut sup = Supervisor {
        dir,
        spec: &spec,
        out,
        pipes: pipes.map(Some),
        child,
        status: None,
        outcome: Outcome::Exited,
        killed_by: None,
        kill_at: None,
        deadline: after(Duration::from_millis(spec.timeout_ms)),
        drain_until: None,
        cgroup_entry: match (&cgroup, into) {
            (None, _) => "",
            (Some(_), true) => "created",
            (Some(_), false) => "moved",
        },
        cgroup,
    };
    if kill_pending {
        sup.kill_requested();
    }
    sup.run(&sfd);
    sup.finish(started)
}

/// Creates supervisor.pid (`pid starttime`), failing if it exists.
fn claim(dir: &ExecDir) -> std::io::Result<()> {
    let me = getpid().as_raw();
    PidFile::of(me).unwrap_or(PidFile { pid: me, starttime: 0 }).create_new(&dir.path(SUPERVISOR_PID))
}

/// `now + d`, saturating far in the future instead of overflowing.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86400))).unwrap_or(now)
}

fn has_children() -> bool {
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::WEXITED;
    !matches!(waitid(Id::All, flags), Err(Errno::ECHILD))
}

fn fail_start(dir: &ExecDir, started: SystemTime, error: String) -> u8 {
    let rec = ExitRecord {
        outcome: Outcome::StartFailed,
        exit_code: None,
        signal: None,
        error: Some(error),
        killed_by: None,
        started_at_ms: unix_ms(started),
        ended_at_ms: unix_ms(SystemTime::now()),
        cpu_time_us: 0,
        peak_rss_bytes: 0,
        stdout_bytes: 0,
        stderr_bytes: 0,
        truncated: false,
        cgroup_entry: String::new(),
    };
    if write_json(&dir.path(EXIT), &rec).is_ok() {
        0
    } else {
        74
    }
}

struct Supervisor<'a> {
    dir: &'a ExecDir,
    spec: &'a Spec,
    out: OutputWriter,
    pipes: [Option<OwnedFd>; 2],
    child: Pid,
    status: Option<WaitStatus>,
    outcome: Outcome,
    killed_by: Option<String>,
    /// When SIGKILL follows the SIGTERM already sent.
    kill_at: Option<Instant>,
    deadline: Instant,
    /// Set once no process of the action is left.
    drain_until: Option<Instant>,
    cgroup: Option<ExecCgroup>,
    /// How the action entered its cgroup, for exit.json.
    cgroup_entry: &'static str,
}

impl Supervisor<'_> {
    fn run(&mut self, sfd: &SignalFd) {
        let mut buf = vec![0u8; BUF];
        loop {
            let now = Instant::now();
            if self.kill_at.is_some_and(|t| now >= t) {
                self.kill_tree(Signal::SIGKILL);
                self.kill_at = None;
            }
            if self.status.is_none() && self.outcome == Outcome::Exited && now >= self.deadline {
                self.outcome = Outcome::TimedOut;
                let secs = self.spec.timeout_ms as f64 / 1000.0;
                self.terminate(&format!("[bolt] timed out after {secs}s"));
            }
            if self.status.is_some() && self.drain_until.is_none() {
                self.end_leftovers(now);
            }
            let pipes_open = self.pipes.iter().any(Option::is_some);
            if self.drain_until.is_some_and(|t| !pipes_open || now >= t) {
                return;
            }
            let wait = self.next_wakeup(now);
            self.poll_once(sfd, wait, &mut buf);
        }
    }

    /// After the first process exits: the rest of the tree goes too, at once,
    /// or at the end of the grace period of a kill in progress.
    fn end_leftovers(&mut self, now: Instant) {
        // As subreaper, every live descendant is a child or below one: no
        // child means no process left, and needs no scan of /proc.
        let cgroup_empty = self.cgroup.as_ref().is_none_or(|c| c.pids().is_empty());
        if cgroup_empty && (!has_children() || crate::host::procfs::descendants(getpid().as_raw()).is_empty()) {
            self.kill_at = None;
            self.drain_until = Some(now + DRAIN);
        } else if self.kill_at.is_none() {
            self.kill_tree(Signal::SIGKILL);
        }
    }

    fn next_wakeup(&self, now: Instant) -> Duration {
        let mut until: Vec<Instant> = Vec::new();
        if self.status.is_none() && self.outcome == Outcome::Exited {
            until.push(self.deadline);
        }
        if let Some(t) = self.kill_at {
            until.push(t);
        }
        if let Some(t) = self.drain_until {
            until.push(t);
        }
        if self.status.is_some() && self.drain_until.is_none() {
            until.push(now + TICK);
        }
        until.into_iter().min().map_or(Duration::from_secs(3600), |t| t.saturating_duration_since(now))
    }

    fn poll_once(&mut self, sfd: &SignalFd, wait: Duration, buf: &mut [u8]) {
        let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
        let (ready_pipes, ready_sig) = {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            let mut slots = Vec::new();
            for (i, p) in self.pipes.iter().enumerate() {
                if let Some(fd) = p {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    slots.push(i);
                }
            }
            match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
                Ok(0) | Err(Errno::EINTR) => return,
                Ok(_) => {}
                Err(_) => return,
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            let sig = ready(&fds[0]);
            let pipes: Vec<usize> =
                slots.iter().zip(&fds[1..]).filter(|(_, f)| ready(f)).map(|(i, _)| *i).collect();
            (pipes, sig)
        };
        for i in ready_pipes {
            self.read_pipe(i, buf);
        }
        if ready_sig {
            self.handle_signals(sfd);
        }
    }

    fn read_pipe(&mut self, i: usize, buf: &mut [u8]) {
        let Some(fd) = &self.pipes[i] else { return };
        match read(fd, buf) {
            Ok(0) => self.pipes[i] = None,
            Ok(n) => {
                let stream = if i == 0 { STREAM_STDOUT } else { STREAM_STDERR };
                self.out.action_output(stream, &buf[..n]);
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => self.pipes[i] = None,
        }
    }

    fn handle_signals(&mut self, sfd: &SignalFd) {
        while let Ok(Some(info)) = sfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                Ok(Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) => self.kill_requested(),
                _ => {}
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if status.pid() == Some(self.child) {
                        self.status = Some(status);
                    }
                }
            }
        }
    }

    /// A kill's grace never stretches past the timeout plus the configured
    /// grace: the timeout is a promise about how long an action may live.
    fn escalation(&self, grace_ms: u64) -> Instant {
        let latest = self.deadline + Duration::from_millis(self.spec.kill_grace_ms);
        Instant::now().checked_add(Duration::from_millis(grace_ms)).map_or(latest, |t| t.min(latest))
    }

    fn kill_requested(&mut self) {
        if self.status.is_some() || self.outcome != Outcome::Exited {
            return;
        }
        let req: Option<KillRequest> = read_json(&self.dir.path(KILL)).ok();
        let grace = req.as_ref().map_or(self.spec.kill_grace_ms, |r| r.grace_ms);
        let by = req.map_or_else(|| "a signal to the supervisor".to_owned(), |r| r.by);
        self.outcome = Outcome::Killed;
        self.killed_by = Some(by.clone());
        let at = self.escalation(grace);
        self.kill_at = Some(at);
        let secs = at.saturating_duration_since(Instant::now()).as_secs_f64();
        self.out.notice(&format!("[bolt] killed by {by}: SIGTERM sent, SIGKILL in {secs:.1}s\n"));
        self.kill_tree(Signal::SIGTERM);
    }

    fn terminate(&mut self, why: &str) {
        let grace = Duration::from_millis(self.spec.kill_grace_ms);
        self.out.notice(&format!("{why}: SIGTERM sent, SIGKILL in {}s\n", grace.as_secs_f64()));
        self.kill_at = Some(after(grace));
        self.kill_tree(Signal::SIGTERM);
    }

    /// The action's process group, then every descendant of the supervisor
    /// (as subreaper it inherits the ones that left the group or were orphaned).
    fn kill_tree(&self, sig: Signal) {
        let _ = killpg(self.child, sig);
        if let Some(cg) = &self.cgroup {
            if sig == Signal::SIGKILL {
                cg.kill_all();
            } else {
                for pid in cg.pids() {
                    let _ = kill(Pid::from_raw(pid), sig);
                }
            }
        }
        for pid in crate::host::procfs::descendants(getpid().as_raw()) {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    fn finish(mut self, started: SystemTime) -> u8 {
        self.reap();
        let (exit_code, signal) = match self.status {
            Some(WaitStatus::Exited(_, code)) => (Some(code), None),
            Some(WaitStatus::Signaled(_, sig, _)) => (None, Some(sig as i32)),
            _ => (None, None),
        };
        let usage = getrusage(UsageWho::RUSAGE_CHILDREN).ok();
        let cpu_time_us: u64 = usage.map_or(0, |u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as u64 * 1_000_000 + tv.tv_usec() as u64;
            t(u.user_time()) + t(u.system_time())
        });
        let mut peak_rss_bytes = usage.map_or(0, |u| u.max_rss().max(0) as u64 * 1024);
        let mut cpu_time_us = cpu_time_us;
        if let Some(cg) = &self.cgroup {
            // The cgroup saw every process of the action, reaped or not.
            cpu_time_us = cg.cpu_time_us().unwrap_or(cpu_time_us);
            peak_rss_bytes = cg.peak_memory().unwrap_or(peak_rss_bytes);
            let abnormal = signal == Some(Signal::SIGKILL as i32) || exit_code.is_some_and(|c| c != 0);
            if self.outcome == Outcome::Exited && abnormal && cg.oom_killed() {
                self.outcome = Outcome::OomKilled;
                let cap = self.spec.caps.limits.memory_max.unwrap_or(0);
                self.out.notice(&format!(
                    "[bolt] killed by the kernel: the memory cap of {cap} bytes was exceeded\n"
                ));
            }
            cg.remove(Duration::from_secs(2));
        }
        self.out.finish_notice();
        self.out.sync();
        let rec = ExitRecord {
            outcome: self.outcome,
            exit_code,
            signal,
            error: None,
            killed_by: self.killed_by.clone(),
            started_at_ms: unix_ms(started),
            ended_at_ms: unix_ms(SystemTime::now()),
            cpu_time_us,
            peak_rss_bytes,
            stdout_bytes: self.out.stdout_bytes,
            stderr_bytes: self.out.stderr_bytes,
            truncated: self.out.truncated,
            cgroup_entry: self.cgroup_entry.to_owned(),
        };
        let _ = fs::remove_file(self.dir.path(KILL));
        // A full data folder refuses exit.json for a while: keep trying, the
        // agent sees the execution RUNNING meanwhile and nothing is lost.
        let mut wait = Duration::from_millis(100);
        let give_up = Instant::now() + EXIT_WRITE_PATIENCE;
        loop {
            match write_json(&self.dir.path(EXIT), &rec) {
                Ok(()) => return 0,
                Err(_) if Instant::now() < give_up => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(_) => return 74,
            }
        }
    }
}
