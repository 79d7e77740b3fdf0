//! systemd's watchdog (`WatchdogSec=` in the unit): `WATCHDOG=1` three times
//! per period, sent only while the runtime still runs tasks and its blocking
//! pool still answers. A wedged agent stops sending, systemd restarts it, and
//! the running actions, each under its own supervisor, are re-attached.

use std::time::Duration;

use tokio::sync::watch;

use crate::shutdown::stopped;

/// Starts the keep-alives when systemd asked for them (`WATCHDOG_USEC` for this pid).
pub(super) fn spawn(stop: watch::Receiver<bool>) {
    if let Some(period) = sd_notify::watchdog_enabled() {
        tracing::info!(period = ?period, "systemd watchdog on");
        tokio::spawn(keep_alive(period / 3, stop));
    }
}

async fn keep_alive(every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stopped(&mut stop) => return,
        }
        if responsive(every).await {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!(within = ?every, "the blocking pool did not answer; skipping a watchdog keep-alive");
        }
    }
}

/// Whether a task on the blocking pool (where store and file work runs) gets
/// done within `limit`.
async fn responsive(limit: Duration) -> bool {
    matches!(tokio::time::timeout(limit, tokio::task::spawn_blocking(|| ())).await, Ok(Ok(())))
}
