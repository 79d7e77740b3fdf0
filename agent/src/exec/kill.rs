//! Killing an execution: `kill.json` says who and with what grace, then
//! SIGTERM tells the supervisor to read it.

use std::time::Duration;

use super::{ExecError, Executor};
use crate::{
    execdir::{KillRequest, PidFile, CHILD_PID, KILL},
    files,
    store::{ExecRecord, ExecState},
};

impl Executor {
    /// Asks the supervisor to end the action. Returns the record as it was.
    pub async fn kill(&self, id: &str, grace: Option<Duration>, by: &str) -> Result<ExecRecord, ExecError> {
        let Some(mut rx) = self.subscribe(id) else {
            return self.get(id)?.ok_or_else(|| ExecError::NotFound(id.to_owned()));
        };
        // A kill that races the launch waits for the supervisor to exist.
        let rec = match tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|r| r.state != ExecState::Pending),
        )
        .await
        {
            Ok(Ok(r)) => r.clone(),
            _ => return self.get(id)?.ok_or_else(|| ExecError::NotFound(id.to_owned())),
        };
        if rec.state.is_terminal() {
            return Ok(rec);
        }
        let dir = self.inner.layout.dir(id);
        let req = KillRequest {
            grace_ms: grace.unwrap_or(self.inner.cfg.kill_grace).as_millis() as u64,
            by: by.to_owned(),
        };
        // On a full disk kill.json cannot be written; the signal alone still
        // kills (with the default grace, "by a signal to the supervisor").
        if let Err(e) = files::write_replace(&dir.path(KILL), &serde_json::to_vec(&req).unwrap_or_default(), false)
        {
            tracing::warn!(error = %e, "cannot write kill.json; signalling the supervisor all the same");
        }
        // Signalled only once child.pid exists, that is once the supervisor
        // blocks SIGTERM; before that it finds kill.json after its spawn.
        if dir.path(CHILD_PID).exists() {
            if let Some(pid) = dir.supervisor().filter(PidFile::is_alive) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid.pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        tracing::info!(target: "audit", id, by, grace_ms = req.grace_ms, "kill");
        Ok(rec)
    }
}
