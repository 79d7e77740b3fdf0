//! Starting an execution: validation, idempotency, the admission caps,
//! the PENDING record, then the launch in the background.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    executor::{free_bytes, ExecutorConfig, StartRequest, Started},
    spec, ExecError, Executor,
};
use crate::{
    files::unix_ms,
    store::{Created, ExecRecord, ExecState},
};

impl Executor {
    /// Validates, records (PENDING) and launches; returns without waiting
    /// for the action.
    pub async fn start(&self, req: StartRequest) -> Result<Started, ExecError> {
        // Removed on every way out but the one that hands it to the execution.
        let dev_build = DevBuild(req.dev_dir.clone());
        let bound = tracing::info_span!("validate")
            .in_scope(|| req.action.bind(&req.args, self.inner.cfg.arg_limits))?;
        let run_as =
            crate::host::runas::resolve(req.action.spec.user.as_deref(), req.action.spec.group.as_deref())?;
        if crate::host::runas::is_root(run_as.as_ref())
            && !self
                .inner
                .cfg
                .root_packs
                .iter()
                .any(|p| wildmatch::WildMatch::new(p).matches(&req.action.pack))
        {
            return Err(ExecError::RootForbidden { pack: req.action.pack.clone() });
        }
        let timeout = req.action.timeout(req.timeout, self.inner.cfg.default_timeout);
        let request_hash = request_hash(&req, timeout);
        if let Some(free) = free_bytes(&self.inner.layout.root) {
            if free < self.inner.cfg.min_free_bytes {
                return Err(ExecError::DiskFull {
                    path: self.inner.layout.root.display().to_string(),
                    free,
                    min: self.inner.cfg.min_free_bytes,
                });
            }
        }
        // A retry of an accepted key starts nothing: it is answered before
        // the caps, which only bound new executions.
        if !req.idempotency_key.is_empty() {
            let known = self.inner.store.by_key(&req.caller, &req.idempotency_key)?;
            if let Some(existing) = known.filter(|e| !e.never_ran) {
                if existing.request_hash != request_hash {
                    return Err(ExecError::KeyReused(req.idempotency_key.clone()));
                }
                let current = self.get(&existing.id)?.unwrap_or(existing);
                return Ok(Started { record: current, deduplicated: true });
            }
        }
        let record = ExecRecord {
            id: uuid::Uuid::now_v7().to_string(),
            pack: req.action.pack.clone(),
            action: req.action.spec.name.clone(),
            pack_version: req.action.pack_version.clone(),
            state: ExecState::Pending,
            args: bound.accepted.clone(),
            caller: req.caller.clone(),
            idempotency_key: req.idempotency_key.clone(),
            request_hash,
            timeout_ms: timeout.as_millis() as u64,
            created_at_ms: unix_ms(SystemTime::now()),
            dev_dir: req.dev_dir.as_ref().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default(),
            ..Default::default()
        };
        // Registered before the record is written so that a concurrent retry
        // that finds the record also finds it live; checked against the caps
        // under the same lock, so concurrent calls cannot overshoot them.
        let (tx, _) = watch::channel(record.clone());
        {
            let mut live = self.live();
            if let Err(e) = admit(&self.inner.cfg, &live, &record.pack) {
                drop(live);
                return Err(e);
            }
            live.insert(record.id.clone(), tx);
        }
        match self.inner.store.create(record.clone()).await {
            Ok(Created::New) => {}
            Ok(Created::Existing(existing)) => {
                self.live().remove(&record.id);
                if existing.request_hash != record.request_hash {
                    return Err(ExecError::KeyReused(record.idempotency_key));
                }
                let current = self.get(&existing.id)?.unwrap_or(*existing);
                return Ok(Started { record: current, deduplicated: true });
            }
            Err(e) => {
                self.live().remove(&record.id);
                return Err(e.into());
            }
        }
        dev_build.hand_over();
        let spec = spec::assemble(&self.inner.cfg, &req.action, bound, &record, run_as);
        crate::telemetry::metrics::execution_started(&record.pack, &record.action);
        // Inside the Execute call's span, which names caller, pack and action
        // already: the id is all this one adds (recovery's span names them all).
        let span = tracing::info_span!("execution", id = %record.id);
        tracing::info!(
            target: "audit",
            parent: &span,
            args_json = %serde_json::to_string(&record.args).unwrap_or_default(),
            timeout_ms = record.timeout_ms,
            "execute"
        );
        let this = self.clone();
        let id = record.id.clone();
        tokio::spawn(async move { this.launch(id, spec).await }.instrument(span));
        Ok(Started { record, deduplicated: false })
    }
}

/// A dev build's folder, removed when dropped unless handed over to the
/// execution it was fetched for (whose end removes it).
struct DevBuild(Option<PathBuf>);

impl DevBuild {
    fn hand_over(mut self) {
        self.0 = None;
    }
}

impl Drop for DevBuild {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            remove_dev_build(&dir);
        }
    }
}

pub(super) fn remove_dev_build(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::debug!(dir = %dir.display(), "dev build removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the dev build"),
    }
}

/// The admission caps: executions at once, of one pack, and pending.
fn admit(
    cfg: &ExecutorConfig,
    live: &HashMap<String, watch::Sender<ExecRecord>>,
    pack: &str,
) -> Result<(), ExecError> {
    let (mut of_pack, mut pending) = (0, 0);
    for tx in live.values() {
        let r = tx.borrow();
        of_pack += usize::from(r.pack == pack);
        pending += usize::from(r.state == ExecState::Pending);
    }
    let exhausted =
        |what: String, limit: usize, setting: &'static str| Err(ExecError::Busy { what, limit, setting });
    if live.len() >= cfg.max_running {
        return exhausted(
            format!("{} executions are running", live.len()),
            cfg.max_running,
            "limits.max_running",
        );
    }
    if of_pack >= cfg.max_running_per_pack {
        return exhausted(
            format!("{of_pack} executions of pack {pack:?} are running"),
            cfg.max_running_per_pack,
            "limits.max_running_per_pack",
        );
    }
    if pending >= cfg.max_pending {
        return exhausted(
            format!("{pending} executions are waiting to start"),
            cfg.max_pending,
            "limits.max_pending",
        );
    }
    Ok(())
}

/// What the caller asked for: pack, action, arguments as given, timeout.
fn request_hash(req: &StartRequest, timeout: Duration) -> String {
    let mut args: Vec<_> = req.args.iter().collect();
    args.sort();
    let mut h = Sha256::new();
    for part in [req.action.pack.as_str(), req.action.spec.name.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in args {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.update(timeout.as_millis().to_le_bytes());
    if req.dev_dir.is_some() {
        h.update(b"dev\0");
        h.update(req.action.pack_version.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{exec::spec::tests as fixtures, host::caps::CapsMode};

    fn live(records: &[(&str, &str, ExecState)]) -> HashMap<String, watch::Sender<ExecRecord>> {
        records
            .iter()
            .map(|(id, pack, state)| {
                let rec = ExecRecord { id: (*id).into(), pack: (*pack).into(), state: *state, ..Default::default() };
                ((*id).to_owned(), watch::channel(rec).0)
            })
            .collect()
    }

    #[test]
    fn admission_names_the_cap_that_is_full() {
        let cfg = fixtures::config(CapsMode::None);
        assert!(admit(&cfg, &live(&[]), "p").is_ok());
        let one = live(&[("1", "p", ExecState::Running)]);
        let err = admit(&cfg, &one, "p").expect_err("per pack");
        assert!(err.to_string().contains("limits.max_running_per_pack"), "{err}");
        assert!(admit(&cfg, &one, "q").is_ok());
        let pending = live(&[("1", "p", ExecState::Pending)]);
        assert!(admit(&cfg, &pending, "q").expect_err("pending").to_string().contains("limits.max_pending"));
        let two = live(&[("1", "p", ExecState::Running), ("2", "q", ExecState::Running)]);
        assert!(admit(&cfg, &two, "r").expect_err("all").to_string().contains("limits.max_running"));
    }

    #[test]
    fn the_request_hash_covers_arguments_and_timeout_not_their_order() {
        let d = tempfile::tempdir().expect("tempdir");
        let action = fixtures::action(d.path(), "");
        let req = |args: &[(&str, &str)], dev: bool| StartRequest {
            action: action.clone(),
            args: args.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            caller: "c".into(),
            idempotency_key: "k".into(),
            timeout: None,
            dev_dir: dev.then(|| d.path().join("dev")),
        };
        let t = Duration::from_secs(5);
        let base = request_hash(&req(&[("a", "1"), ("b", "2")], false), t);
        assert_eq!(base, request_hash(&req(&[("b", "2"), ("a", "1")], false), t));
        assert_ne!(base, request_hash(&req(&[("a", "1"), ("b", "3")], false), t));
        assert_ne!(base, request_hash(&req(&[("a", "1"), ("b", "2")], false), t * 2));
        assert_ne!(base, request_hash(&req(&[("a", "1"), ("b", "2")], true), t));
        // No separator games: ("a","1b") and ("a1","b") differ.
        assert_ne!(request_hash(&req(&[("a", "1b")], false), t), request_hash(&req(&[("a1", "b")], false), t));
    }

    #[test]
    fn a_dev_build_is_removed_unless_handed_over() {
        let d = tempfile::tempdir().expect("tempdir");
        let (dropped, kept) = (d.path().join("dropped"), d.path().join("kept"));
        for dir in [&dropped, &kept] {
            std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        }
        drop(DevBuild(Some(dropped.clone())));
        DevBuild(Some(kept.clone())).hand_over();
        assert!(!dropped.exists());
        assert!(kept.join("sub").exists());
        drop(DevBuild(Some(dropped)));
    }
}
