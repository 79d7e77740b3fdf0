//! Starting the action: fork and exec done by hand, so that on cgroup v2 the
//! child is created inside its cgroup (`clone3` with `CLONE_INTO_CGROUP`,
//! Linux 5.7) and no `cgroup.procs` write, with its system-wide lock, is
//! paid per execution. Elsewhere the child moves itself before exec.
//!
//! Everything the child needs is built before the fork: between fork and
//! exec it makes plain syscalls only and reports a failure's errno through
//! a close-on-exec pipe, as the standard library's `Command` does.

use std::{
    ffi::{CString, OsStr},
    fs::File,
    io,
    os::{
        fd::{AsRawFd, OwnedFd, RawFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    unistd::{pipe2, Pid},
};

use crate::execdir::Spec;
use crate::host::caps::ExecCgroup;

/// `CLONE_INTO_CGROUP` (linux/sched.h); libc's constant has the wrong type.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A started action: its pid, the read ends of its stdout and stderr, and
/// whether it was created inside its cgroup rather than moved there.
pub struct Launched {
    pub pid: Pid,
    pub pipes: [OwnedFd; 2],
    pub into_cgroup: bool,
}

/// What the child does between fork and exec, all of it prepared.
struct ChildPlan {
    program: CString,
    /// NUL-terminated pointer arrays into `_strings`, which they outlive not.
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    _strings: [Vec<CString>; 2],
    cwd: CString,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// `cgroup.procs` files to write "0" into when not created in the cgroup.
    procs: Vec<CString>,
    rlimit_as: Option<u64>,
    run_as: Option<(libc::gid_t, libc::uid_t)>,
}

fn cstring(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte")))
}

fn path_cstring(p: &Path) -> io::Result<CString> {
    cstring(p.as_os_str().as_bytes(), "a path")
}

/// Starts the action of `spec`, in `cgroup` if given. `into_cgroup` asks
/// for `CLONE_INTO_CGROUP` where the cgroup is a v2 one.
pub fn launch(spec: &Spec, cgroup: Option<&ExecCgroup>, into_cgroup: bool) -> io::Result<Launched> {
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC)?;
    for fd in [&out_r, &err_r] {
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    }
    // A bigger pipe means fewer wake-ups for chatty actions; best effort.
    let _ = fcntl(&out_w, FcntlArg::F_SETPIPE_SZ(1 << 20));
    let first = spec.argv.first().ok_or_else(|| io::Error::other("empty argv"))?;
    // Relative to the supervisor's folder, not the action's working folder.
    let program = std::path::absolute(first)?;
    let cgroup_dir = match cgroup.and_then(ExecCgroup::unified_dir).filter(|_| into_cgroup) {
        Some(dir) => Some(OwnedFd::from(File::open(dir)?)),
        None => None,
    };
    let argv: Vec<CString> =
        spec.argv.iter().map(|a| cstring(a.as_bytes(), "an argument")).collect::<io::Result<_>>()?;
    let envp: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstring(&[OsStr::new(k).as_bytes(), b"=", v.as_bytes()].concat(), "the environment"))
        .collect::<io::Result<_>>()?;
    let plan = ChildPlan {
        program: path_cstring(&program)?,
        argv: pointers(&argv),
        envp: pointers(&envp),
        _strings: [argv, envp],
        cwd: path_cstring(&spec.cwd)?,
        stdin: OwnedFd::from(File::open("/dev/null")?),
        stdout: out_w,
        stderr: err_w,
        procs: cgroup.map(|c| c.procs_files().iter().map(|p| path_cstring(p)).collect()).transpose()?.unwrap_or_default(),
        // Without a cgroup, the memory cap becomes an address-space rlimit.
        rlimit_as: if cgroup.is_none() { spec.caps.limits.memory_max } else { None },
        run_as: spec.run_as.as_ref().map(|r| (r.gid, r.uid)),
    };
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (pid, into) = fork(cgroup_dir.as_ref().map(AsRawFd::as_raw_fd))?;
    if pid == 0 {
        // In the child: never returns.
        plan.exec(report_w.as_raw_fd(), into);
    }
    drop(report_w);
    // Our copies of the write ends go now, so EOF on the pipes means every
    // process of the action has closed them.
    drop(plan);
    let mut errno = [0u8; 4];
    let got = read_full(&report_r, &mut errno);
    if got == 4 {
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok(Launched { pid: Pid::from_raw(pid), pipes: [out_r, err_r], into_cgroup: into })
}

/// Reads until `buf` is full or EOF; the count read.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    n
}

/// Forks: with `clone3(CLONE_INTO_CGROUP)` when given a v2 cgroup folder and
/// the kernel has it, else plainly. Returns the pid (0 in the child) and
/// whether the child was created in the cgroup.
fn fork(cgroup_dir: Option<RawFd>) -> io::Result<(libc::pid_t, bool)> {
    if let Some(fd) = cgroup_dir {
        // SAFETY: clone_args is plain data; zero is "unset" for every field.
        let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
        args.flags = CLONE_INTO_CGROUP;
        args.exit_signal = libc::SIGCHLD as u64;
        args.cgroup = fd as u64;
        // SAFETY: like fork(2): no stack given, so the child runs on a copy
        // of ours. The supervisor is single-threaded, so no lock is held by
        // a thread that the child would lack.
        let pid = unsafe {
            libc::syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, std::mem::size_of::<libc::clone_args>())
        };
        if pid >= 0 {
            return Ok((pid as libc::pid_t, true));
        }
        let e = io::Error::last_os_error();
        // Kernels before 5.3 (no clone3) or 5.7 (no CLONE_INTO_CGROUP), or
        // a seccomp filter that refuses it: fall back to moving the child.
        if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM)) {
            return Err(e);
        }
    }
    // SAFETY: single-threaded caller, see above.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        pid => Ok((pid, false)),
    }
}

impl ChildPlan {
    /// The child's side: set up, exec, or report errno and exit.
    fn exec(&self, report: RawFd, in_cgroup: bool) -> ! {
        let errno = self.prepare(in_cgroup).err().unwrap_or(0);
        let errno = if errno != 0 { errno } else { self.execve() };
        let bytes = errno.to_ne_bytes();
        // SAFETY: plain syscalls on descriptors and memory we own.
        unsafe {
            libc::write(report, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    }

    /// Every step but exec; Err(errno) on failure. Only syscalls, no allocation.
    fn prepare(&self, in_cgroup: bool) -> Result<(), i32> {
        let check = |rc: libc::c_int| if rc == -1 { Err(last_errno()) } else { Ok(()) };
        // SAFETY: each call is a plain syscall on data prepared before the fork.
        unsafe {
            // No signal blocked (the supervisor blocks them for its signalfd),
            // a process group of its own, a fixed umask.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            check(libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()))?;
            check(libc::setpgid(0, 0))?;
            libc::umask(0o022);
            // Into the cgroup before anything can fork.
            if !in_cgroup {
                for procs in &self.procs {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    check(fd)?;
                    let wrote = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let e = last_errno();
                    libc::close(fd);
                    if wrote != 1 {
                        return Err(e);
                    }
                }
            }
            for (from, to) in [(&self.stdin, 0), (&self.stdout, 1), (&self.stderr, 2)] {
                check(libc::dup2(from.as_raw_fd(), to))?;
            }
            // No descriptor but the three, whatever the agent was started with.
            close_inherited_fds();
            check(libc::chdir(self.cwd.as_ptr()))?;
            if let Some(bytes) = self.rlimit_as {
                let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
                check(libc::setrlimit(libc::RLIMIT_AS, &lim))?;
            }
            // Last, once the cgroup files (owned by root) are written: no
            // supplementary groups, then the gid, then the uid.
            if let Some((gid, uid)) = self.run_as {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
        }
        Ok(())
    }

    /// Returns errno: execve only comes back on failure.
    fn execve(&self) -> i32 {
        // SAFETY: NUL-terminated arrays of pointers into live CStrings.
        unsafe { libc::execve(self.program.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        last_errno()
    }
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Marks every descriptor above 2 close-on-exec (the report pipe must stay
/// open until exec, so nothing is closed outright).
fn close_inherited_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes flags.
    let done = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } == 0;
    if !done {
        // Kernels before 5.11: one by one, up to the soft limit.
        let mut lim = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
        // SAFETY: getrlimit writes into our struct.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        for fd in 3..lim.rlim_cur.min(65536) as i32 {
            // SAFETY: F_SETFD on a descriptor that may not exist (EBADF) is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execdir::Spec;

    fn spec(argv: &[&str], dir: &Path) -> Spec {
        Spec {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            cwd: dir.to_owned(),
            env: vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned()), ("GREETING".to_owned(), "hi".to_owned())],
            execution_id: "x".into(),
            timeout_ms: 0,
            kill_grace_ms: 0,
            output_max: 0,
            nice: 0,
            caps: Default::default(),
            run_as: None,
            origin: None,
        }
    }

    fn wait_output(l: &Launched) -> (i32, String) {
        let status = nix::sys::wait::waitpid(l.pid, None).expect("wait");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match nix::unistd::read(&l.pipes[0], &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) => panic!("read: {e}"),
            }
        }
        let code = match status {
            nix::sys::wait::WaitStatus::Exited(_, c) => c,
            other => panic!("{other:?}"),
        };
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn the_child_gets_its_argv_env_folder_and_own_group() {
        let d = tempfile::tempdir().expect("tempdir");
        let script = r#"echo "$GREETING $1 $(pwd) $$"; cut -d' ' -f5 /proc/$$/stat"#;
        let s = spec(&["/bin/sh", "-c", script, "sh", "there"], d.path());
        let l = launch(&s, None, true).expect("launch");
        assert!(!l.into_cgroup);
        let (code, out) = wait_output(&l);
        assert_eq!(code, 0);
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(&words[..3], ["hi", "there", &d.path().display().to_string()]);
        assert_eq!(words[3], words[4], "the action leads a process group of its own: {out}");
    }

    #[test]
    fn a_failed_exec_is_reported_with_its_errno() {
        let d = tempfile::tempdir().expect("tempdir");
        let err = launch(&spec(&["/nonexistent/x"], d.path()), None, true).err().expect("fails");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let err = launch(&spec(&["/bin/true"], &d.path().join("gone")), None, true).err().expect("fails");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "a missing working folder");
        let err = launch(&spec(&["/bin/true\0x"], d.path()), None, true).err().expect("fails");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
