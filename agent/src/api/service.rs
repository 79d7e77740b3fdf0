//! The Bolt service: each method checks the call, asks authz, and hands the
//! work to the executor, the registry or the store.

use arc_swap::ArcSwap;
use std::{
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bolt_proto::v1::{self as pb, bolt_server::Bolt};
use futures_util::Stream;
use tokio::sync::watch;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Request, Response, Status};

use super::{convert, identity};
use crate::{
    admission::Admission,
    authz::{Authorizer, Permission},
    host::caps::CapsMode,
    config::{Config, InstanceConfig},
    distribution::{dev_build, sync::Distribution},
    exec::{output, Executor, StartRequest},
    packs::{LoadedAction, Registry},
    store::Query,
};

/// Facts about the agent itself, for Health and GetAgentInfo.
pub struct AgentState {
    pub version: &'static str,
    pub started_at: SystemTime,
    pub instance: InstanceConfig,
    pub hostname: String,
    pub data_dir: std::path::PathBuf,
    pub tls_dir: std::path::PathBuf,
    pub default_timeout: Duration,
    pub max_idempotency_key_bytes: usize,
    /// Becomes true when shutdown starts.
    pub shutdown: watch::Receiver<bool>,
    /// Problems found at start that last (a metrics port taken, ...).
    pub startup_problems: Vec<String>,
}

impl AgentState {
    pub fn new(config: &Config, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            version: crate::version(),
            started_at: SystemTime::now(),
            instance: config.instance.clone(),
            hostname: crate::hostname(),
            data_dir: config.data_dir.clone(),
            tls_dir: config.tls_dir.clone(),
            default_timeout: config.exec.default_timeout,
            max_idempotency_key_bytes: config.limits.max_idempotency_key_bytes,
            shutdown,
            startup_problems: Vec::new(),
        }
    }
}

/// Health warns this many days before the agent's certificate expires.
const CERT_WARNING_DAYS: i64 = 14;

/// Longest grace a Kill may ask for between SIGTERM and SIGKILL.
const MAX_KILL_GRACE: Duration = Duration::from_secs(3600);

pub struct BoltService {
    executor: Executor,
    registry: Arc<Registry>,
    authz: Arc<ArcSwap<Authorizer>>,
    state: Arc<AgentState>,
    dist: Arc<Distribution>,
    admission: Arc<Admission>,
}

impl BoltService {
    pub fn new(
        executor: Executor,
        registry: Arc<Registry>,
        authz: Arc<ArcSwap<Authorizer>>,
        state: Arc<AgentState>,
        dist: Arc<Distribution>,
        admission: Arc<Admission>,
    ) -> Self {
        Self { executor, registry, authz, state, dist, admission }
    }

    /// The action of a dev build, fetched for this execution, and the folder
    /// to remove when it ends.
    async fn dev_action(
        &self,
        who: &str,
        r: &pb::ExecuteRequest,
        dev: &pb::DevBuild,
    ) -> Result<(Arc<LoadedAction>, std::path::PathBuf), Status> {
        if !crate::packs::manifest::valid_name(&r.pack) {
            return Err(crate::packs::ResolveError::BadPackName(r.pack.chars().take(80).collect()).into());
        }
        if !crate::packs::manifest::valid_name(&r.action) {
            return Err(crate::packs::ResolveError::BadActionName(r.action.chars().take(80).collect()).into());
        }
        self.authz.load().check(who, Permission::Dev, Some(&r.pack))?;
        let pack = dev_build::fetch(&self.dist, &self.registry, &r.pack, &dev.version, &dev.sha256).await?;
        tracing::info!(target: "audit", pack = %r.pack, version = %pack.version, sha256 = pack.sha256.as_deref(), "dev build fetched");
        let dir = pack.dir.clone();
        match pack.actions.get(&r.action) {
            Some(a) => Ok((a.clone(), dir)),
            None => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(crate::packs::ResolveError::NoAction { pack: r.pack.clone(), action: r.action.clone() }
                    .into())
            }
        }
    }

    fn health(&self) -> pb::HealthResponse {
        let snapshot = self.registry.snapshot();
        let mut problems: Vec<String> = snapshot
            .errors
            .iter()
            .map(|e| format!("pack {} skipped: {}", e.source.display(), e.error))
            .collect();
        if let Some(expiry) = crate::tls::agent_cert_expiry(&self.state.tls_dir) {
            let now =
                SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let days = (expiry - now) / 86400;
            if expiry - now < CERT_WARNING_DAYS * 86400 {
                problems.push(format!(
                    "the agent's certificate {} expires in {days} days; rotate it (files in {} are reloaded)",
                    self.state.tls_dir.join(crate::tls::AGENT_CERT).display(),
                    self.state.tls_dir.display()
                ));
            }
        }
        if let Some((free, _)) = disk_space(&self.state.data_dir) {
            if free < 100 << 20 {
                problems.push(format!(
                    "data folder {} has {} MiB free",
                    self.state.data_dir.display(),
                    free >> 20
                ));
            }
        }
        problems.extend(self.state.startup_problems.iter().cloned());
        let sync = self.dist.status();
        if !sync.last_error.is_empty() {
            problems.push(format!("pack sync: {}", sync.last_error));
        }
        let status = if *self.state.shutdown.borrow() {
            pb::ServingStatus::NotServing
        } else if problems.is_empty() {
            pb::ServingStatus::Serving
        } else {
            pb::ServingStatus::Degraded
        };
        pb::HealthResponse {
            status: status as i32,
            problems,
            running: self.executor.running() as u32,
            caps_enforced: self.executor.caps_mode() != CapsMode::None,
            pack_errors: pack_errors(&snapshot),
        }
    }
}

fn pack_sync(dist: &Distribution) -> pb::PackSync {
    let s = dist.status();
    pb::PackSync {
        enabled: s.enabled,
        stage: s.stage,
        last_attempt: s.last_attempt.map(convert::timestamp),
        last_success: s.last_success.map(convert::timestamp),
        last_error: s.last_error,
        failures: s.failures,
        requests: s.requests,
        generation: s.generation,
        index_expires_at: s.index_expires_at.map(convert::timestamp),
    }
}

fn pack_errors(s: &crate::packs::Snapshot) -> Vec<pb::PackError> {
    s.errors
        .iter()
        .map(|e| pb::PackError { source: e.source.display().to_string(), error: e.error.clone() })
        .collect()
}

/// Free and total bytes of the file system holding `path`.
fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize))
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<pb::OutputChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Bolt for BoltService {
    #[tracing::instrument(skip_all)]
    async fn list_actions(
        &self,
        req: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        let who = identity(&req)?;
        self.authz.load().check(&who.name, Permission::Info, None)?;
        let filter = req.into_inner().pack;
        convert::name_filter("pack", &filter)?;
        let snapshot = self.registry.snapshot();
        let actions = snapshot
            .packs
            .values()
            .filter(|p| filter.is_empty() || p.manifest.name == filter)
            .flat_map(|p| p.actions.values())
            .map(|a| convert::action(a, self.state.default_timeout))
            .collect();
        Ok(Response::new(pb::ListActionsResponse { actions }))
    }

    #[tracing::instrument(skip_all, fields(caller, pack, action))]
    async fn execute(
        &self,
        req: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResponse>, Status> {
        let who = identity(&req)?;
        let r = req.into_inner();
        let span = tracing::Span::current();
        span.record("caller", who.name.as_str())
            .record("pack", r.pack.as_str())
            .record("action", r.action.as_str());
        if r.idempotency_key.len() > self.state.max_idempotency_key_bytes {
            return Err(Status::resource_exhausted(format!(
                "idempotency_key is {} bytes; the limit is {} (limits.max_idempotency_key_bytes)",
                r.idempotency_key.len(),
                self.state.max_idempotency_key_bytes
            )));
        }
        let timeout = r.timeout.as_ref().map(|d| convert::from_duration("timeout", d)).transpose()?;
        let (action, dev_dir) = match &r.dev_build {
            Some(dev) => {
                self.authz.load().check(&who.name, Permission::Execute, Some(&r.pack))?;
                let (a, dir) = self.dev_action(&who.name, &r, dev).await?;
                (a, Some(dir))
            }
            None => {
                let action = self.registry.resolve(&r.pack, &r.action)?;
                self.authz.load().check(&who.name, Permission::Execute, Some(&r.pack))?;
                (action, None)
            }
        };
        let started = self
            .executor
            .start(StartRequest {
                action,
                args: r.args,
                caller: who.name.clone(),
                idempotency_key: r.idempotency_key,
                timeout,
                dev_dir,
            })
            .await?;
        Ok(Response::new(pb::ExecuteResponse {
            execution_id: started.record.id.clone(),
            state: convert::state(started.record.state) as i32,
            deduplicated: started.deduplicated,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_execution(
        &self,
        req: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let who = identity(&req)?;
        self.authz.load().check(&who.name, Permission::Read, None)?;
        let id = convert::execution_id(&req.get_ref().execution_id)?;
        let rec = self.executor.get(&id)?.ok_or_else(|| Status::not_found(format!("no execution {id}")))?;
        self.authz.load().check(&who.name, Permission::Read, Some(&rec.pack))?;
        Ok(Response::new(convert::execution(&rec)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_executions(
        &self,
        req: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let who = identity(&req)?;
        self.authz.load().check(&who.name, Permission::Read, None)?;
        let r = req.into_inner();
        convert::name_filter("pack", &r.pack)?;
        convert::name_filter("action", &r.action)?;
        if !r.pack.is_empty() {
            self.authz.load().check(&who.name, Permission::Read, Some(&r.pack))?;
        }
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let query = Query {
            limit: match r.page_size {
                0 => 50,
                n => n.min(1000) as usize,
            },
            before: nonempty(r.page_token).map(|t| convert::execution_id(&t)).transpose()?,
            pack: nonempty(r.pack),
            action: nonempty(r.action),
            caller: nonempty(r.caller),
            states: r.states.into_iter().map(convert::state_from).collect::<Result<_, _>>()?,
            since_ms: r.since.as_ref().map(convert::from_timestamp),
            until_ms: r.until.as_ref().map(convert::from_timestamp),
        };
        let store = self.executor.store().clone();
        // Only executions of packs the caller may read are listed.
        let authz = self.authz.load_full();
        let (page, more) = tokio::task::spawn_blocking(move || {
            store.list_visible(&query, &|rec| authz.allows(&who.name, Permission::Read, Some(&rec.pack)))
        })
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        let next_page_token =
            if more { page.last().map(|r| r.id.clone()).unwrap_or_default() } else { String::new() };
        // Live executions are shown as the executor sees them now.
        let executions = page
            .iter()
            .map(|r| {
                if r.state.is_terminal() {
                    convert::execution(r)
                } else {
                    convert::execution(&self.executor.get(&r.id).ok().flatten().unwrap_or_else(|| r.clone()))
                }
            })
            .collect();
        Ok(Response::new(pb::ListExecutionsResponse { executions, next_page_token }))
    }

    type StreamOutputStream = OutputStream;

    #[tracing::instrument(skip_all)]
    async fn stream_output(
        &self,
        req: Request<pb::StreamOutputRequest>,
    ) -> Result<Response<OutputStream>, Status> {
        let who = identity(&req)?;
        self.authz.load().check(&who.name, Permission::Read, None)?;
        let r = req.into_inner();
        let id = convert::execution_id(&r.execution_id)?;
        let rec = self.executor.get(&id)?.ok_or_else(|| Status::not_found(format!("no execution {id}")))?;
        self.authz.load().check(&who.name, Permission::Read, Some(&rec.pack))?;
        let permit =
            self.admission.stream(&who.name).map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let rx = output::stream(&self.executor, &id, r.offset, r.follow, self.state.shutdown.clone())?;
        // The permit lives as long as the stream.
        let stream = ReceiverStream::new(rx).map(move |item| match (item, &permit).0 {
            Ok(output::Item::Chunk(c)) => Ok(convert::chunk(c)),
            Ok(output::Item::End(rec, offset)) => Ok(pb::OutputChunk {
                end: true,
                offset,
                execution: Some(convert::execution(&rec)),
                ..Default::default()
            }),
            Err(e) => Err(e.into()),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn kill(&self, req: Request<pb::KillRequest>) -> Result<Response<pb::KillResponse>, Status> {
        let who = identity(&req)?;
        let r = req.into_inner();
        let id = convert::execution_id(&r.execution_id)?;
        let rec = self.executor.get(&id)?.ok_or_else(|| Status::not_found(format!("no execution {id}")))?;
        // Anyone with kill on the pack, or the caller who started it.
        if let Err(denied) = self.authz.load().check(&who.name, Permission::Kill, Some(&rec.pack)) {
            let own = rec.caller == who.name
                && self.authz.load().check(&who.name, Permission::Execute, Some(&rec.pack)).is_ok();
            if !own {
                return Err(denied.into());
            }
        }
        let grace = r.grace.as_ref().map(|d| convert::from_duration("grace", d)).transpose()?;
        if grace.is_some_and(|g| g > MAX_KILL_GRACE) {
            return Err(super::status::invalid_field("grace", format!(
                "grace must be at most {}s",
                MAX_KILL_GRACE.as_secs()
            )));
        }
        let before = self.executor.kill(&id, grace, &who.name).await?;
        Ok(Response::new(pb::KillResponse {
            state: convert::state(before.state) as i32,
            already_ended: before.state.is_terminal(),
        }))
    }

    async fn health(&self, req: Request<pb::HealthRequest>) -> Result<Response<pb::HealthResponse>, Status> {
        let who = identity(&req)?;
        self.authz.load().check(&who.name, Permission::Info, None)?;
        Ok(Response::new(self.health()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_agent_info(
        &self,
        req: Request<pb::GetAgentInfoRequest>,
    ) -> Result<Response<pb::AgentInfo>, Status> {
        let who = identity(&req)?;
        self.authz.load().check(&who.name, Permission::Info, None)?;
        let health = self.health();
        let snapshot = self.registry.snapshot();
        let (free, total) = disk_space(&self.state.data_dir).unwrap_or((0, 0));
        let i = &self.state.instance;
        Ok(Response::new(pb::AgentInfo {
            version: self.state.version.to_owned(),
            started_at: Some(convert::timestamp(self.state.started_at)),
            uptime: Some(convert::duration(self.state.started_at.elapsed().unwrap_or_default())),
            instance: Some(pb::Instance {
                instance_id: i.id.clone(),
                app: i.app.clone(),
                availability_zone: i.availability_zone.clone(),
                region: i.region.clone(),
                stage: i.stage.clone(),
                hostname: self.state.hostname.clone(),
            }),
            packs: snapshot
                .packs
                .values()
                .map(|p| pb::PackInfo {
                    name: p.manifest.name.clone(),
                    version: p.version.clone(),
                    description: p.manifest.description.clone(),
                    source: p.dir.display().to_string(),
                    actions: p.actions.len() as u32,
                    sha256: p.sha256.clone().unwrap_or_default(),
                    origin: p.origin.as_str().into(),
                })
                .collect(),
            pack_errors: health.pack_errors,
            last_pack_sync: snapshot.loaded_at.map(convert::timestamp),
            data_disk_free_bytes: free,
            data_disk_total_bytes: total,
            running: health.running,
            caps_enforced: health.caps_enforced,
            caps_mode: self.executor.caps_mode().as_str().into(),
            agent_rss_bytes: crate::host::procfs::rss_bytes(std::process::id()).unwrap_or(0),
            status: health.status,
            problems: health.problems,
            pack_sync: Some(pack_sync(&self.dist)),
        }))
    }
}
