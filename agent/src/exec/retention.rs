//! History upkeep: compresses outputs some time after their execution
//! ended, and prunes executions (records and folders) older than the
//! retention, in small batches so that calls are never held up for long.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::Executor;
use crate::{execdir::output_log, files::unix_ms};
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct RetentionConfig {
    pub compress_after: Duration,
    pub retention: Duration,
    pub interval: Duration,
    pub batch: usize,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub compressed: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub pruned: usize,
}

/// Runs a sweep every `interval` until shutdown.
pub fn spawn(executor: Executor, cfg: RetentionConfig, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = crate::shutdown::stopped(&mut stop) => return,
            }
            match sweep(&executor, &cfg).await {
                Ok(s) if s != Sweep::default() => tracing::info!(
                    compressed = s.compressed,
                    bytes_before = s.bytes_before,
                    bytes_after = s.bytes_after,
                    pruned = s.pruned,
                    "history sweep"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "history sweep failed; retrying next interval"),
            }
        }
    });
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Db(e.to_string()))
}

/// One pass: compress what is due, then prune what is past the retention.
pub async fn sweep(executor: &Executor, cfg: &RetentionConfig) -> Result<Sweep, StoreError> {
    let mut s = Sweep::default();
    let now = unix_ms(SystemTime::now());
    let due = now.saturating_sub(cfg.compress_after.as_millis() as u64);
    'compress: loop {
        let store = executor.store().clone();
        let batch = cfg.batch;
        let ids = blocking(move || store.to_compress(due, batch)).await??;
        if ids.is_empty() {
            break;
        }
        for id in ids {
            let dir = executor.layout().dir(&id).0;
            match blocking(move || output_log::compress(&dir)).await? {
                Ok((before, after)) => {
                    s.compressed += 1;
                    s.bytes_before += before;
                    s.bytes_after += after;
                }
                // Nothing to compress (no output, or already done).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(id, error = %e, "cannot compress output; will retry");
                    break 'compress;
                }
            }
            let store = executor.store().clone();
            blocking(move || store.mark_compressed(&id)).await??;
        }
    }
    let cutoff_ms = now.saturating_sub(cfg.retention.as_millis() as u64);
    let cutoff = uuid::Builder::from_unix_timestamp_millis(cutoff_ms, &[0u8; 10]).into_uuid().to_string();
    loop {
        let store = executor.store().clone();
        let (c, batch) = (cutoff.clone(), cfg.batch);
        let ids = blocking(move || store.prune_before(&c, batch)).await??;
        if ids.is_empty() {
            break;
        }
        for id in &ids {
            if let Err(e) = executor.layout().remove(id) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(id, error = %e, "cannot remove a pruned execution's folder");
                }
            }
        }
        s.pruned += ids.len();
        // Let calls in between batches.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(s)
}
