//! The agent's side of pack distribution: every interval, a conditional GET
//! of the stage's signed index; on a change, verified downloads, safe
//! extraction, virtualenvs, and an atomic switch. Any failure keeps the last
//! good version of the pack concerned.

use futures_util::{stream, StreamExt};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{
    records::{check_expiry, Stage, StageEntry, StageIndex, KIND_STAGE},
    remote::{Fetched, Remote},
    signing::{Envelope, TrustedKeys},
};
use crate::{
    config::{Config, SyncConfig},
    exec::Executor,
    files::write_replace,
    packs::{
        archive::sha256_hex,
        installed::{InstallError, VerifiedArchive},
        registry::Installed,
        Registry,
    },
    shutdown::stopped,
};

/// Largest stage index read.
const MAX_INDEX_BYTES: u64 = 16 << 20;
/// Packs installed at once.
const PARALLEL_INSTALLS: usize = 4;
/// Failures named one by one in Health and the log, each at most
/// `MAX_MESSAGE` characters: an index of 60,000 broken entries must not make
/// megabytes of errors.
const MAX_REPORTED: usize = 3;
const MAX_LOGGED: usize = 10;
const MAX_MESSAGE: usize = 400;
/// Longest wait before a failed pack version is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
const STATE_FILE: &str = "state.json";

/// What pack sync has done, for Health and GetAgentInfo.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    pub enabled: bool,
    pub stage: String,
    pub last_attempt: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    pub last_error: String,
    pub failures: u64,
    pub requests: u64,
    pub generation: u64,
    /// When the stage index in use stops being trusted.
    pub index_expires_at: Option<SystemTime>,
}

/// One failed step of a sync, with a bounded reason for the metrics.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Shared between the sync loop, dev builds and the API.
pub struct Distribution {
    pub cfg: SyncConfig,
    pub stage: Stage,
    pub app: String,
    pub remote: Option<Arc<Remote>>,
    pub trusted: TrustedKeys,
    status: Mutex<SyncStatus>,
    /// Pack versions (name, sha256) that failed to install: when to try
    /// again, doubling from one interval, so a broken or hanging build is
    /// not retried (and waited for) every round.
    backoff: Mutex<HashMap<(String, String), Backoff>>,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: std::time::Instant,
}

impl std::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distribution")
            .field("stage", &self.stage)
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// What `state.json` keeps across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    generation: u64,
    /// ETag of the index last applied in full; None forces a full check.
    etag: Option<String>,
    /// sha256 of the signed payload of the index at `generation`: another
    /// payload with the same generation is refused.
    #[serde(default)]
    index_sha256: Option<String>,
    /// Expiry of the index at `generation`, checked on every round, 304s too.
    #[serde(default)]
    expires_at: Option<String>,
    packs: Vec<Installed>,
}

impl Distribution {
    /// Sets up pack sync from the config; a setup problem (no key, bad
    /// endpoint) disables sync and shows in Health, it does not stop the agent.
    pub async fn new(c: &Config) -> Arc<Self> {
        let stage = Stage::parse(&c.instance.stage).unwrap_or(Stage::Prod);
        let mut status =
            SyncStatus { enabled: c.sync.enabled, stage: stage.to_string(), ..Default::default() };
        let mut remote = None;
        let mut trusted = TrustedKeys::default();
        if c.sync.enabled {
            match TrustedKeys::load(&c.sync.trusted_keys) {
                Ok(t) => trusted = t,
                Err(e) => status.last_error = format!("pack sync disabled: {e}"),
            }
            if status.last_error.is_empty() {
                match Remote::connect(&c.sync.s3(), c.sync.request_timeout).await {
                    Ok(r) => remote = Some(Arc::new(r)),
                    Err(e) => status.last_error = format!("pack sync disabled: {e}"),
                }
            }
            if !status.last_error.is_empty() {
                tracing::error!(error = %status.last_error, "pack sync");
            }
        }
        Arc::new(Self {
            cfg: c.sync.clone(),
            stage,
            app: c.instance.app.clone(),
            remote,
            trusted,
            status: Mutex::new(status),
            backoff: Mutex::new(HashMap::new()),
        })
    }

    /// When `name` at `sha256` may be tried again, if it failed before.
    fn backing_off(&self, name: &str, sha256: &str) -> Option<Backoff> {
        let map = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(name.to_owned(), sha256.to_owned())).copied().filter(|b| b.until > std::time::Instant::now())
    }

    fn record_outcome(&self, name: &str, sha256: &str, ok: bool) {
        let mut map = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let key = (name.to_owned(), sha256.to_owned());
        if ok {
            map.remove(&key);
            return;
        }
        let failures = map.get(&key).map_or(0, |b| b.failures).saturating_add(1);
        let wait = self.cfg.interval.saturating_mul(1 << failures.min(16).saturating_sub(1)).min(MAX_BACKOFF);
        map.insert(key, Backoff { failures, until: std::time::Instant::now() + wait });
    }

    pub fn status(&self) -> SyncStatus {
        let mut s = self.lock().clone();
        s.requests = self.remote.as_ref().map_or(0, |r| r.requests());
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The packs installed by earlier runs, to serve before the first sync.
    pub fn installed_at_start(&self) -> Vec<Installed> {
        let state = self.read_state();
        state.packs.into_iter().filter(|p| p.dir.join("pack.toml").exists()).collect()
    }

    fn read_state(&self) -> State {
        let path = self.cfg.dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable pack sync state; starting afresh");
                State::default()
            }),
            Err(_) => State::default(),
        }
    }

    fn write_state(&self, state: &State) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.cfg.dir)?;
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        write_replace(&self.cfg.dir.join(STATE_FILE), &bytes, true)
    }

    /// Fetches `key` and verifies it with the trusted keys.
    pub(crate) async fn fetch_signed<T: serde::de::DeserializeOwned>(
        &self,
        remote: &Remote,
        key: &str,
    ) -> Result<Option<T>, String> {
        match remote.get(key, None, MAX_INDEX_BYTES).await.map_err(|e| e.to_string())? {
            Fetched::Found { bytes, .. } => {
                let envelope = Envelope::from_slice(&bytes).map_err(|e| format!("{key}: {e}"))?;
                self.trusted.open(&envelope).map(Some).map_err(|e| format!("{key}: {e}"))
            }
            Fetched::NotFound | Fetched::NotModified => Ok(None),
        }
    }

    /// Downloads the archive `sha256` names and checks its bytes against it.
    pub(crate) async fn fetch_archive(
        &self,
        remote: &Remote,
        name: &str,
        version: &str,
        sha256: &str,
    ) -> Result<VerifiedArchive, Failure> {
        VerifiedArchive::check_names(name, version, sha256).map_err(Failure::from)?;
        let key = remote.layout.archive(name, sha256);
        let fetched = remote
            .get(&key, None, self.cfg.max_archive_size.as_u64())
            .await
            .map_err(|e| Failure::new("unreachable", e.to_string()))?;
        match fetched {
            Fetched::Found { bytes, .. } => VerifiedArchive::check(name, version, sha256, bytes).map_err(Failure::from),
            _ => Err(Failure::new("archive_missing", format!("{name} {version}: archive {key} is missing"))),
        }
    }
}

impl From<InstallError> for Failure {
    fn from(e: InstallError) -> Self {
        Failure::new(e.reason(), e.to_string())
    }
}

/// Starts the sync loop (if sync is enabled): first check at once, then
/// every interval with jitter.
pub fn spawn(
    dist: Arc<Distribution>,
    registry: Arc<Registry>,
    executor: Executor,
    mut stop: watch::Receiver<bool>,
) {
    let Some(remote) = dist.remote.clone() else { return };
    tokio::spawn(async move {
        let mut state = dist.read_state();
        loop {
            sync_once(&dist, &remote, &registry, &executor, &mut state).await;
            let base = dist.cfg.interval.as_secs_f64();
            let spread = base * dist.cfg.jitter * (fastrand::f64() * 2.0 - 1.0);
            let wait = Duration::from_secs_f64((base + spread).max(0.1));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stopped(&mut stop) => return,
            }
        }
    });
}

async fn sync_once(
    dist: &Distribution,
    remote: &Remote,
    registry: &Arc<Registry>,
    executor: &Executor,
    state: &mut State,
) {
    let span = tracing::info_span!("pack_sync", stage = %dist.stage, app = %dist.app);
    let _enter = span.enter();
    let started = SystemTime::now();
    dist.lock().last_attempt = Some(started);
    drop(_enter);
    let result = round(dist, remote, registry, state).await;
    let _enter = span.enter();
    let metrics = crate::telemetry::metrics::get();
    metrics.sync_attempts.add(1, &[]);
    {
        let mut s = dist.lock();
        s.generation = state.generation;
        s.index_expires_at = state.expires_at.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        match &result {
            Ok(()) => {
                s.last_success = Some(started);
                s.last_error.clear();
            }
            Err(failures) => {
                s.failures += 1;
                s.last_error = summary(failures);
            }
        }
    }
    if let Err(failures) = &result {
        for f in failures {
            metrics.sync_failures.add(1, &[opentelemetry::KeyValue::new("reason", f.reason)]);
        }
        for f in failures.iter().take(MAX_LOGGED) {
            tracing::error!(reason = f.reason, error = %clip(&f.message), "pack sync failed; the last good versions stay");
        }
        if failures.len() > MAX_LOGGED {
            tracing::error!(more = failures.len() - MAX_LOGGED, "pack sync: more failures, not logged one by one");
        }
    }
    drop(_enter);
    registry.collect_garbage(&state.packs, &executor.live_versions()).await;
}

/// One check of the index; Err lists what failed (what succeeded is kept).
async fn round(
    dist: &Distribution,
    remote: &Remote,
    registry: &Arc<Registry>,
    state: &mut State,
) -> Result<(), Vec<Failure>> {
    let key = remote.layout.stage(dist.stage);
    let one = |reason, message: String| vec![Failure::new(reason, message)];
    let fetched = remote
        .get(&key, state.etag.as_deref(), MAX_INDEX_BYTES)
        .await
        .map_err(|e| one("unreachable", e.to_string()))?;
    let expired = |why: String| {
        one(
            "expired",
            format!(
                "{key} {why}; keeping generation {} and its packs until the publisher re-signs it (bolt-agent pack refresh --stage {})",
                state.generation, dist.stage
            ),
        )
    };
    let (bytes, etag) = match fetched {
        Fetched::NotModified => {
            return check_expiry(state.expires_at.as_deref(), SystemTime::now()).map(drop).map_err(expired)
        }
        Fetched::NotFound if state.generation == 0 => return Ok(()),
        Fetched::NotFound => {
            return Err(one(
                "index_missing",
                format!("{key} is missing; keeping generation {}", state.generation),
            ))
        }
        Fetched::Found { bytes, etag } => (bytes, etag),
    };
    let envelope = Envelope::from_slice(&bytes).map_err(|e| one("index", format!("{key}: {e}")))?;
    let index: StageIndex =
        dist.trusted.open(&envelope).map_err(|e| one("signature", format!("{key}: {e}")))?;
    if index.kind != KIND_STAGE || index.stage != dist.stage {
        return Err(one(
            "index",
            format!("{key}: is an index of {} ({}), not of {}", index.stage, index.kind, dist.stage),
        ));
    }
    check_expiry(index.expires_at.as_deref(), SystemTime::now()).map_err(expired)?;
    if index.generation < state.generation {
        return Err(one(
            "rollback",
            format!(
                "{key}: generation {} is older than {} in use; refusing to roll back",
                index.generation, state.generation
            ),
        ));
    }
    let payload_sha256 = sha256_hex(envelope.payload.as_bytes());
    if index.generation == state.generation
        && state.index_sha256.as_ref().is_some_and(|applied| *applied != payload_sha256)
    {
        return Err(one(
            "rollback",
            format!(
                "{key}: generation {} has other content than the index applied at that generation; refusing it",
                index.generation
            ),
        ));
    }
    let wanted: Vec<(&String, &StageEntry)> =
        index.packs.iter().filter(|(_, e)| e.targets_app(&dist.app)).collect();
    let current: HashMap<String, Installed> =
        state.packs.iter().map(|p| (p.name.clone(), p.clone())).collect();
    // What serves while the round goes on: the installed version of each
    // wanted pack, replaced as soon as its new version is ready, so one slow
    // build never holds the others back.
    let mut serving: BTreeMap<String, Installed> = BTreeMap::new();
    let mut pending = Vec::new();
    let mut errors = Vec::new();
    for (name, entry) in &wanted {
        if let Some(have) = current.get(*name).filter(|h| h.sha256 == entry.sha256 && h.dir.exists()) {
            serving.insert((*name).clone(), have.clone());
            continue;
        }
        if let Some(old) = current.get(*name) {
            serving.insert((*name).clone(), old.clone());
        }
        match dist.backing_off(name, &entry.sha256) {
            Some(b) => errors.push(Failure::new(
                "backoff",
                format!(
                    "{name} {}: failed {} time(s); next try in {}s",
                    entry.version,
                    b.failures,
                    b.until.saturating_duration_since(std::time::Instant::now()).as_secs()
                ),
            )),
            None => pending.push(((*name).clone(), (*entry).clone())),
        }
    }
    let mut installs =
        stream::iter(pending).map(|(name, entry)| install_owned(dist, registry, remote, name, entry)).buffer_unordered(PARALLEL_INSTALLS);
    // What the registry serves already (set as each install finishes).
    let mut published = state.packs.clone();
    while let Some((name, entry, result)) = installs.next().await {
        dist.record_outcome(&name, &entry.sha256, result.is_ok());
        match result {
            Ok(inst) => {
                tracing::info!(pack = %name, version = %entry.version, sha256 = %entry.sha256, "pack installed");
                serving.insert(name.clone(), inst);
                published = serving.values().cloned().collect();
                publish(registry, published.clone()).await;
            }
            Err(e) => errors.push(e),
        }
    }
    drop(installs);
    for old in state.packs.iter().filter(|p| !wanted.iter().any(|(n, _)| **n == p.name)) {
        tracing::info!(pack = %old.name, version = %old.version, "pack no longer in the stage for this app; removed");
    }
    let next: Vec<Installed> = wanted.iter().filter_map(|(n, _)| serving.get(*n).cloned()).collect();
    // Packs no longer in the stage leave now; the rest are served already.
    let changed = next != published;
    state.packs = next;
    state.generation = index.generation;
    state.index_sha256 = Some(payload_sha256);
    state.expires_at = index.expires_at.clone();
    state.etag = if errors.is_empty() { etag } else { None };
    if let Err(e) = dist.write_state(state) {
        errors.push(Failure::new(
            "io",
            format!("cannot write {}: {e}", dist.cfg.dir.join(STATE_FILE).display()),
        ));
    }
    if changed {
        publish(registry, state.packs.clone()).await;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Serves `installed` (with the packs folder's own packs) from now on.
async fn publish(registry: &Arc<Registry>, installed: Vec<Installed>) {
    registry.set_installed(installed);
    let r = registry.clone();
    let _ = tokio::task::spawn_blocking(move || r.reload()).await;
}

async fn install_owned(
    dist: &Distribution,
    registry: &Registry,
    remote: &Remote,
    name: String,
    entry: StageEntry,
) -> (String, StageEntry, Result<Installed, Failure>) {
    let result = install(dist, registry, remote, &name, &entry).await;
    (name, entry, result)
}

/// Fetch, verify, hand over: the registry installs what was verified.
async fn install(
    dist: &Distribution,
    registry: &Registry,
    remote: &Remote,
    name: &str,
    entry: &StageEntry,
) -> Result<Installed, Failure> {
    registry.check_not_reused(name, &entry.version, &entry.sha256)?;
    let archive = dist.fetch_archive(remote, name, &entry.version, &entry.sha256).await?;
    Ok(registry.install(archive).await?)
}

/// One line for Health: the first failures, each clipped, and a count of the rest.
fn summary(failures: &[Failure]) -> String {
    let mut text = failures.iter().take(MAX_REPORTED).map(|f| clip(&f.message)).collect::<Vec<_>>().join("; ");
    if failures.len() > MAX_REPORTED {
        text.push_str(&format!("; and {} more failures", failures.len() - MAX_REPORTED));
    }
    text
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_MESSAGE).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_version_backs_off_doubling_and_a_success_clears_it() {
        let mut c = Config::default();
        c.sync.interval = Duration::from_secs(10);
        let dist = Distribution::new(&c).await;
        assert!(dist.backing_off("p", "s").is_none());
        let wait = |d: &Distribution| d.backing_off("p", "s").map(|b| (b.failures, b.until - std::time::Instant::now()));
        dist.record_outcome("p", "s", false);
        let (n, left) = wait(&dist).expect("backing off");
        assert_eq!(n, 1);
        assert!(left <= Duration::from_secs(10) && left > Duration::from_secs(9), "{left:?}");
        dist.record_outcome("p", "s", false);
        dist.record_outcome("p", "s", false);
        let (n, left) = wait(&dist).expect("backing off");
        assert_eq!(n, 3);
        assert!(left > Duration::from_secs(39), "10 s doubled twice: {left:?}");
        assert!(dist.backing_off("p", "other").is_none(), "per archive, not per pack");
        for _ in 0..40 {
            dist.record_outcome("p", "s", false);
        }
        assert!(wait(&dist).expect("capped").1 <= MAX_BACKOFF);
        dist.record_outcome("p", "s", true);
        assert!(dist.backing_off("p", "s").is_none());
    }

    #[test]
    fn health_names_a_few_failures_each_clipped_and_counts_the_rest() {
        let long = "x".repeat(MAX_MESSAGE * 3);
        let failures: Vec<Failure> = (0..7).map(|i| Failure::new("io", format!("{i}:{long}"))).collect();
        let text = summary(&failures);
        assert!(text.ends_with("; and 4 more failures"), "{text}");
        assert_eq!(text.matches('…').count(), MAX_REPORTED);
        assert!(text.chars().count() < MAX_REPORTED * (MAX_MESSAGE + 4) + 40);
        assert_eq!(summary(&failures[..1]).chars().count(), MAX_MESSAGE + 1);
        assert_eq!(clip("short"), "short");
    }
}
