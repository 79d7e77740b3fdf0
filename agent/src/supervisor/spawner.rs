//! The supervisor spawner: a small single-threaded process the agent starts
//! once (`bolt-agent supervisor-spawner`) and asks, over a socket on its
//! stdin, to fork one supervisor per execution.
//!
//! Forking a supervisor from here instead of running `bolt-agent supervise`
//! from the agent saves, per execution, an exec of the whole binary (dynamic
//! loading and relocation), the agent's own clone of a large multi-threaded
//! process, and the supervisor's moves out of the agent's cgroup: the spawner
//! left it once, and its children start where it is. On cgroup v1 every such
//! move takes a system-wide lock that also holds up every fork.
//!
//! The spawner also creates the execution folder and its `spec.json`, so
//! that their inodes are charged to the supervisors' cgroup rather than to
//! the agent's capped one: on cgroup v1 the kernel does not reclaim them
//! under the cgroup's limit, and an agent keeping months of history would
//! run into its own cap.
//!
//! Requests and answers follow [`crate::execdir::wire`]. End of input (the
//! agent stopped or died) ends the spawner; the supervisors it forked run
//! on, as orphans of init.

use std::{
    io::{self, Read, Write},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::ffi::OsStrExt,
    },
    path::PathBuf,
    time::Duration,
};

use nix::{
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sys::wait::{waitpid, WaitPidFlag, WaitStatus},
    unistd::{fork, setsid, ForkResult, Pid},
};

use super::run::{supervise, Origin};
use crate::execdir::{
    wire::{answer, read_message, write_message, SUPERVISOR_COMM},
    ExecDir, PidFile,
};

/// How often finished supervisors are reaped while no request comes.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Entry point of `bolt-agent supervisor-spawner`: serves requests on its
/// stdin (a socket, also its stdout) until it closes. Must run before any
/// other thread exists.
pub fn main() -> u8 {
    let stdin = io::stdin();
    let stdout = io::stdout();
    // Unbuffered, and not duplicated: a forked supervisor must keep no copy
    // of the socket (it replaces fds 0 and 1 with /dev/null).
    let mut input = Fd(stdin.as_fd());
    let mut output = Fd(stdout.as_fd());
    // Start-up code is done with; what runs from here on is this loop, the
    // fork and the supervisor.
    crate::host::memory::release_code();
    loop {
        reap();
        let mut fds = [PollFd::new(input.0, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(REAP_EVERY.as_millis() as u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return 1,
        }
        let (dir, spec) = match (read_message(&mut input), read_message(&mut input)) {
            (Ok(Some(dir)), Ok(Some(spec))) => (dir, spec),
            (Ok(None), _) => return 0,
            _ => return 1,
        };
        let dir = ExecDir(PathBuf::from(std::ffi::OsStr::from_bytes(&dir)));
        let result = match dir.prepare(&spec) {
            Err(e) => Err(format!("cannot prepare the execution folder: {e}")),
            Ok(()) => fork_supervisor(dir).map_err(|e| format!("cannot fork a supervisor: {e}")),
        };
        if write_message(&mut output, answer(result).as_bytes()).is_err() {
            return 1;
        }
    }
}

/// Plain reads and writes on a borrowed descriptor.
struct Fd<'a>(BorrowedFd<'a>);

impl Read for Fd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(self.0, buf).map_err(io::Error::from)
    }
}

impl Write for Fd<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        nix::unistd::write(self.0, buf).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn fork_supervisor(dir: ExecDir) -> io::Result<PidFile> {
    // SAFETY: the spawner is single-threaded (it never starts a thread),
    // so the child may do anything the parent could.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Child => {
            let code = child(dir);
            // SAFETY: ends this process at once; the spawner's atexit
            // handlers and stdio buffers are not the child's to run or flush.
            unsafe { libc::_exit(i32::from(code)) }
        }
        ForkResult::Parent { child } => {
            // Not yet reaped (only `reap` does that), so /proc still has it
            // even if it has already ended.
            let pid = child.as_raw();
            Ok(PidFile::of(pid).unwrap_or(PidFile { pid, starttime: 0 }))
        }
    }
}

fn child(dir: ExecDir) -> u8 {
    // Detached: a session of its own, and not the spawner's socket, so the
    // agent sees the spawner's end whatever the supervisors do.
    let _ = setsid();
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(null.as_fd());
        let _ = nix::unistd::dup2_stdout(null.as_fd());
        debug_assert!(null.as_raw_fd() > 2);
    }
    let _ = nix::sys::prctl::set_name(SUPERVISOR_COMM);
    let _ = std::env::set_current_dir(&dir.0);
    supervise(&dir, Origin::Spawner)
}

/// Collects every supervisor that has ended.
fn reap() {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
