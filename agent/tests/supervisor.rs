//! The supervisor loop, run as users' agents run it (`bolt-agent supervise
//! <dir>`, a process of its own) on execution folders prepared by hand: the
//! outcome, output, timeout and cap that `exit.json` and `output.log` record.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use bolt_agent::execdir::{
    output_log::{OutputReader, STREAM_STDERR, STREAM_STDOUT, STREAM_SYSTEM},
    ExecDir, ExitRecord, Outcome, PidFile, Spec, CHILD_PID,
};

fn spec(script: &str, timeout_ms: u64, output_max: u64) -> Spec {
    Spec {
        execution_id: "test".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("ONLY".into(), "this".into())],
        cwd: "/".into(),
        timeout_ms,
        kill_grace_ms: 200,
        output_max,
        nice: 3,
        caps: Default::default(),
        run_as: None,
        origin: None,
    }
}

/// Runs `spec` under `bolt-agent supervise`; the folder and its outcome.
fn supervise(spec: &Spec) -> (tempfile::TempDir, ExecDir, ExitRecord) {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = ExecDir(d.path().join("exec"));
    dir.prepare(&serde_json::to_vec(spec).expect("spec")).expect("prepare");
    let status = Command::new(env!("CARGO_BIN_EXE_bolt-agent"))
        .arg("supervise")
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("child");
    assert!(status.success(), "{status:?}");
    let exit = dir.read_exit().expect("exit.json written");
    (d, dir, exit)
}

fn output(dir: &ExecDir) -> Vec<(u8, String)> {
    let mut r = OutputReader::open_dir(&dir.0, 0).expect("output");
    let mut out: Vec<(u8, String)> = Vec::new();
    while let Some(c) = r.next_chunk().expect("read") {
        match out.last_mut() {
            Some((s, text)) if *s == c.stream => text.push_str(&String::from_utf8_lossy(&c.data)),
            _ => out.push((c.stream, String::from_utf8_lossy(&c.data).into_owned())),
        }
    }
    out
}

#[test]
fn an_action_runs_to_its_exit_with_its_output_environment_and_niceness() {
    let script = "echo out; echo err >&2; echo \"$ONLY ${HOME:-nohome}\"; cut -d' ' -f19 /proc/self/stat; exit 3";
    let (_d, dir, exit) = supervise(&spec(script, 10_000, 1 << 20));
    assert_eq!((exit.outcome, exit.exit_code, exit.signal), (Outcome::Exited, Some(3), None));
    let out = output(&dir);
    let stdout: String = out.iter().filter(|(s, _)| *s == STREAM_STDOUT).map(|(_, t)| t.as_str()).collect();
    let stderr: String = out.iter().filter(|(s, _)| *s == STREAM_STDERR).map(|(_, t)| t.as_str()).collect();
    assert!(stdout.starts_with("out\nthis nohome\n"), "{stdout:?}");
    assert!(stdout.trim_end().ends_with('3'), "nice 3: {stdout:?}");
    assert_eq!(stderr, "err\n");
    assert_eq!((exit.stdout_bytes, exit.stderr_bytes), (stdout.len() as u64, 4));
    assert!(exit.ended_at_ms >= exit.started_at_ms && !exit.truncated);
    assert!(PidFile::read(&dir.path(CHILD_PID)).is_some() && dir.supervisor().is_some());
}

#[test]
fn the_timeout_ends_the_whole_process_group() {
    let started = Instant::now();
    let (_d, dir, exit) = supervise(&spec("sleep 30 & sleep 30; echo never", 300, 1 << 20));
    assert_eq!(exit.outcome, Outcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(!output(&dir).iter().any(|(_, t)| t.contains("never")));
    let child = PidFile::read(&dir.path(CHILD_PID)).expect("child.pid");
    assert!(!child.is_alive());
}

#[test]
fn output_beyond_the_cap_is_dropped_and_said_so() {
    let (_d, dir, exit) = supervise(&spec("head -c 100000 /dev/zero | tr '\\0' x", 10_000, 1000));
    assert_eq!((exit.outcome, exit.exit_code), (Outcome::Exited, Some(0)));
    assert!(exit.truncated);
    assert_eq!(exit.stdout_bytes, 100_000, "counted, though not kept");
    let out = output(&dir);
    let kept: usize = out.iter().filter(|(s, _)| *s == STREAM_STDOUT).map(|(_, t)| t.len()).sum();
    assert!(kept < 1000, "{kept}");
    assert!(out.iter().any(|(s, t)| *s == STREAM_SYSTEM && t.contains("output truncated")));
}

#[test]
fn an_entrypoint_that_cannot_start_is_a_start_failure_with_the_reason() {
    let mut s = spec("", 10_000, 1000);
    s.argv = vec!["/nonexistent/entrypoint".into()];
    let (_d, _dir, exit) = supervise(&s);
    assert_eq!(exit.outcome, Outcome::StartFailed);
    assert!(exit.error.as_deref().is_some_and(|e| e.contains("cannot start the action")), "{:?}", exit.error);
}
