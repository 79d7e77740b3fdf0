//! After a restart: execution folders the history lost are adopted back,
//! running supervisors re-attached, and the rest settled (finished, never
//! started, or LOST with what is left of the action ended).

use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::Instrument;

use super::{spawn, ExecError, Executor};
use crate::{
    execdir::{wire::SUPERVISOR_COMM, ExecDir, ExitRecord, Outcome, PidFile, CHILD_PID, OUTPUT, OUTPUT_ZST},
    files::unix_ms,
    store::{Created, ExecRecord, ExecState},
};

impl Executor {
    /// Reconciles the history with the execution folders after a start:
    /// finished ones are recorded, running ones re-attached, the rest LOST.
    pub async fn recover(&self) -> Result<(), ExecError> {
        let adopted = self.adopt().await?;
        let active = self.inner.store.active()?;
        let (mut attached, mut ended) = (0, 0);
        for rec in active {
            let dir = self.inner.layout.dir(&rec.id);
            let span = tracing::info_span!("execution", id = %rec.id, caller = %rec.caller, pack = %rec.pack, action = %rec.action);
            // A supervisor writes its pid file first thing; one started right
            // before a crash may not have yet: it is found by its command line
            // or, forked by the spawner, by its working folder.
            let supervisor = dir.supervisor().or_else(|| find_supervisor(&dir)).filter(PidFile::is_alive);
            let (tx, _) = watch::channel(rec.clone());
            self.live().insert(rec.id.clone(), tx);
            match supervisor {
                Some(pid) if !dir.has_exit() => {
                    attached += 1;
                    let this = self.clone();
                    let id = rec.id.clone();
                    tokio::spawn(
                        async move {
                            tracing::info!(supervisor = pid.pid, "re-attached");
                            spawn::wait_for_exit(pid).await;
                            this.finalize(&id, &this.inner.layout.dir(&id)).await;
                        }
                        .instrument(span),
                    );
                }
                _ => {
                    ended += 1;
                    let _g = span.enter();
                    let mut rec = rec;
                    if dir.has_exit() {
                        apply_exit(&mut rec, dir.read_exit());
                    } else if !dir.path(OUTPUT).exists() && !dir.path(CHILD_PID).exists() {
                        // No supervisor ever ran it: it is known not to have run.
                        rec.state = ExecState::Failed;
                        rec.error = "the agent stopped before the action was started; it did not run (a retry with the same idempotency key runs it)".into();
                        rec.never_ran = true;
                        rec.ended_at_ms = Some(unix_ms(SystemTime::now()));
                    } else {
                        end_orphaned_action(&dir);
                        apply_exit(&mut rec, None);
                    }
                    tracing::info!(state = rec.state.as_str(), "recovered");
                    drop(_g);
                    // Stored in the background: on a full disk the end waits
                    // for space, and the agent must serve meanwhile.
                    self.publish(&rec);
                    let this = self.clone();
                    tokio::spawn(async move { this.end(rec).await }.instrument(span));
                }
            }
        }
        tracing::info!(attached, ended, adopted, "recovered executions");
        Ok(())
    }

    /// Execution folders the history does not know: the history lost their
    /// records (emptied, replaced, moved aside). Each one whose `spec.json`
    /// names its request gets its record back, as RUNNING, for the
    /// reconciliation that follows to settle; nothing is deleted but the
    /// hidden `.<id>` folders of removals cut short. Returns how many.
    async fn adopt(&self) -> Result<usize, ExecError> {
        let (mut adopted, mut unknown) = (0, 0);
        for name in self.inner.layout.list()? {
            let path = self.inner.layout.root.join(&name);
            if name.starts_with('.') {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if self.inner.store.contains(&name)? {
                continue;
            }
            let dir = self.inner.layout.dir(&name);
            let origin = dir.read_spec().ok().filter(|s| s.execution_id == name).and_then(|s| s.origin);
            let Some(o) = origin.filter(|_| uuid::Uuid::parse_str(&name).is_ok()) else {
                unknown += 1;
                tracing::warn!(folder = %path.display(), "an execution folder the history does not know, without a readable spec.json; left alone");
                continue;
            };
            let rec = ExecRecord {
                id: name.clone(),
                pack: o.pack,
                action: o.action,
                pack_version: o.pack_version,
                state: ExecState::Running,
                args: o.args,
                caller: o.caller,
                idempotency_key: o.idempotency_key,
                request_hash: o.request_hash,
                timeout_ms: o.timeout_ms,
                created_at_ms: o.created_at_ms,
                started_at_ms: Some(o.created_at_ms),
                dev_dir: o.dev_dir,
                supervisor_pid: dir.supervisor().map_or(0, |p| p.pid as u32),
                compressed: dir.path(OUTPUT_ZST).exists() && !dir.path(OUTPUT).exists(),
                ..Default::default()
            };
            match self.inner.store.create(rec).await {
                Ok(Created::New) => adopted += 1,
                Ok(Created::Existing(_)) => {}
                // A full disk: the folder stays, the next start adopts it.
                Err(e) => tracing::error!(folder = %path.display(), error = %e, "cannot record an adopted execution"),
            }
        }
        if adopted > 0 || unknown > 0 {
            tracing::warn!(adopted, unknown, "the history did not know every execution folder: adopted those it could from their spec.json");
        }
        Ok(adopted)
    }
}

/// The live supervisor of an execution: `bolt-agent supervise <dir>` by its
/// command line, or a forked `bolt-supervise` by its working folder.
fn find_supervisor(dir: &ExecDir) -> Option<PidFile> {
    let want = format!("supervise\0{}\0", dir.0.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let by_cmdline = String::from_utf8_lossy(&cmdline).contains(&want);
        let forked = || {
            std::fs::read(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_ascii_end() == SUPERVISOR_COMM.to_bytes())
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir.0)
        };
        (by_cmdline || forked()).then(|| PidFile::of(pid)).flatten()
    })
}

/// A supervisor that died without recording an outcome leaves its action
/// running unwatched, with no timeout: end what is left of it (its process
/// group, then every process of its cgroup) and remove the cgroup, so that
/// nothing outlives the LOST record.
pub(super) fn end_orphaned_action(dir: &ExecDir) {
    use nix::sys::signal::{killpg, Signal};
    if let Some(child) = PidFile::read(&dir.path(CHILD_PID)).filter(PidFile::is_alive) {
        if killpg(nix::unistd::Pid::from_raw(child.pid), Signal::SIGKILL).is_ok() {
            tracing::warn!(pid = child.pid, "the action outlived its supervisor; its process group was killed");
        }
    }
    let Ok(spec) = dir.read_spec() else { return };
    let Some(name) = &spec.caps.cgroup else { return };
    if let Some(cgroup) = crate::host::caps::ExecCgroup::existing(&crate::host::cgroupfs::Hierarchies::host(), &spec.caps.parents, name) {
        cgroup.kill_all();
        cgroup.remove(Duration::from_secs(2));
    }
}

/// Turns the supervisor's exit record into the final state.
pub(super) fn apply_exit(rec: &mut ExecRecord, exit: Option<ExitRecord>) {
    let Some(exit) = exit else {
        rec.state = ExecState::Lost;
        rec.error = "the supervisor ended without recording an outcome".into();
        rec.ended_at_ms = Some(unix_ms(SystemTime::now()));
        return;
    };
    rec.state = match exit.outcome {
        Outcome::Exited if exit.exit_code == Some(0) => ExecState::Succeeded,
        Outcome::Exited => ExecState::Failed,
        Outcome::Killed => ExecState::Killed,
        Outcome::TimedOut => ExecState::TimedOut,
        Outcome::StartFailed => ExecState::Failed,
        Outcome::OomKilled => ExecState::OomKilled,
    };
    rec.exit_code = exit.exit_code;
    rec.signal = exit.signal;
    if let Some(e) = exit.error {
        rec.error = e;
    }
    if let Some(by) = exit.killed_by {
        rec.killed_by = by;
    }
    // The supervisor's clock of the start, not the agent's later record of it.
    rec.started_at_ms = Some(exit.started_at_ms);
    rec.ended_at_ms = Some(exit.ended_at_ms);
    rec.cpu_time_us = exit.cpu_time_us;
    rec.peak_rss_bytes = exit.peak_rss_bytes;
    rec.stdout_bytes = exit.stdout_bytes;
    rec.stderr_bytes = exit.stderr_bytes;
    rec.truncated = exit.truncated;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(outcome: Outcome, code: Option<i32>) -> ExitRecord {
        ExitRecord {
            outcome,
            exit_code: code,
            signal: None,
            error: None,
            killed_by: Some("bob".into()),
            started_at_ms: 10,
            ended_at_ms: 20,
            cpu_time_us: 30,
            peak_rss_bytes: 40,
            stdout_bytes: 50,
            stderr_bytes: 60,
            truncated: true,
            cgroup_entry: String::new(),
        }
    }

    #[test]
    fn the_outcome_becomes_the_final_state() {
        let cases = [
            (Outcome::Exited, Some(0), ExecState::Succeeded),
            (Outcome::Exited, Some(3), ExecState::Failed),
            (Outcome::Killed, None, ExecState::Killed),
            (Outcome::TimedOut, None, ExecState::TimedOut),
            (Outcome::StartFailed, None, ExecState::Failed),
            (Outcome::OomKilled, None, ExecState::OomKilled),
        ];
        for (outcome, code, state) in cases {
            let mut rec = ExecRecord { started_at_ms: Some(99), ..Default::default() };
            apply_exit(&mut rec, Some(exit(outcome, code)));
            assert_eq!(rec.state, state, "{outcome:?} {code:?}");
            assert_eq!((rec.started_at_ms, rec.ended_at_ms), (Some(10), Some(20)), "the supervisor's clock");
            assert_eq!((rec.cpu_time_us, rec.stdout_bytes, rec.killed_by.as_str()), (30, 50, "bob"));
            assert!(rec.truncated);
        }
    }

    #[test]
    fn no_exit_record_is_lost_and_says_why() {
        let mut rec = ExecRecord { state: ExecState::Running, ..Default::default() };
        apply_exit(&mut rec, None);
        assert_eq!(rec.state, ExecState::Lost);
        assert!(rec.error.contains("without recording an outcome"));
        assert!(rec.ended_at_ms.is_some());
    }
}
