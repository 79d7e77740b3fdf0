//! Wiring: data folder, history, packs, TLS, executor, then the gRPC server
//! until shutdown. Tests start an `App` on port 0 like `main` does.

mod reload;
mod watchdog;

pub use reload::{request_reload, ReloadError, ReloadStatus, PID_FILE, RELOAD_STATUS_FILE};

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use bolt_proto::v1::bolt_server::BoltServer;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    api::{self, AgentState, BoltService},
    authz::Authorizer,
    config::{Config, Overrides},
    distribution::sync::Distribution,
    exec::{Executor, ExecutorConfig},
    execdir::Layout,
    files,
    packs::{installed::InstalledTree, venv::Venvs, ArgLimits, Registry},
    store::{Store, StoreError},
    tls::{serve_incoming, TlsError, TlsFiles},
};

/// How long in-flight calls get to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data folder {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} (create a development set with: bolt-agent certs init --dir DIR)")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("recovering executions: {0}")]
    Recover(#[from] crate::exec::ExecError),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("cannot find this binary to run supervisors: {0}")]
    SelfExe(std::io::Error),
}

pub struct App {
    config: Config,
    metrics: Option<prometheus::Registry>,
    /// Where SIGHUP re-reads the config from.
    reload: Option<(Option<PathBuf>, Overrides)>,
}

impl App {
    pub fn new(config: Config) -> Self {
        Self { config, metrics: None, reload: None }
    }

    /// On SIGHUP, re-read the config from `path` (with the same overrides)
    /// and the certificates, keeping every connection.
    pub fn reload_on_sighup(mut self, path: Option<PathBuf>, overrides: Overrides) -> Self {
        self.reload = Some((path, overrides));
        self
    }

    /// Serves this registry as Prometheus text on `telemetry.metrics_listen`.
    pub fn with_metrics_registry(mut self, registry: prometheus::Registry) -> Self {
        self.metrics = Some(registry);
        self
    }

    /// Runs until `shutdown` resolves, then drains calls and returns.
    /// Running actions are left to their supervisors.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), AppError> {
        let c = &self.config;
        let data_err = |source| AppError::DataDir { path: c.data_dir.clone(), source };
        files::prepare_data_dir(&c.data_dir).map_err(data_err)?;
        let layout = Layout::new(&c.data_dir).map_err(data_err)?;
        let store = Store::open(&c.data_dir.join("history.redb"))?;
        let venvs = Arc::new(Venvs::with_build_user(
            c.sync.dir.join("venvs"),
            c.sync.python.clone(),
            c.sync.pip_timeout,
            c.sync.build_user.clone(),
        ));
        let installed = InstalledTree::new(c.sync.dir.clone(), venvs, c.sync.archive_limits());
        let registry = Arc::new(Registry::new(c.packs_dir.clone(), installed));
        let dist = Distribution::new(c).await;
        registry.set_installed(dist.installed_at_start());
        registry.reload();
        let tls_files = TlsFiles::new(&c.tls_dir).with_revoked_serials(&c.tls.revoked_serials);
        let tls = Arc::new(ArcSwap::new(tls_files.server_config()?));

        let parents = crate::host::caps::own_paths();
        let hierarchies = crate::host::cgroupfs::Hierarchies::host();
        let (caps_mode, why) = if c.caps.enabled {
            crate::host::caps::probe(&hierarchies, &parents, &c.caps.cgroup_name)
        } else {
            (crate::host::caps::CapsMode::None, Some("disabled by caps.enabled = false".to_owned()))
        };
        match &why {
            None => tracing::info!(mode = caps_mode.as_str(), "resource caps enforced with cgroups"),
            Some(why) => {
                tracing::warn!(reason = %why, "resource caps NOT enforced: rlimits and niceness only")
            }
        }
        if caps_mode != crate::host::caps::CapsMode::None {
            let cap = c.agent.memory_max.map(|m| m.as_u64());
            match crate::host::caps::cage_agent(&hierarchies, &parents, &c.caps.cgroup_name, cap) {
                Ok(_) => tracing::info!(memory_max = cap, "agent moved into its own cgroup"),
                Err(e) => {
                    tracing::warn!(error = %e, "agent stays in its cgroup; agent.memory_max not applied")
                }
            }
        }
        let executor = Executor::new(self.executor_config(caps_mode, parents)?, store, layout);
        executor.recover().await?;
        executor.warm_up().await;
        let (stop_tx, stop_rx) = watch::channel(false);
        crate::distribution::sync::spawn(dist.clone(), registry.clone(), executor.clone(), stop_rx.clone());
        crate::exec::retention::spawn(
            executor.clone(),
            crate::exec::retention::RetentionConfig {
                compress_after: c.history.compress_after,
                retention: c.history.retention,
                interval: c.history.sweep_interval,
                batch: c.history.batch,
            },
            stop_rx.clone(),
        );

        let listener =
            TcpListener::bind(c.listen).await.map_err(|source| AppError::Bind { addr: c.listen, source })?;
        let local = listener.local_addr().map_err(|source| AppError::Bind { addr: c.listen, source })?;
        let mut problems = Vec::new();
        if let (true, Some(why)) = (c.caps.enabled, &why) {
            problems.push(format!("resource caps not enforced (rlimits and niceness only): {why}"));
        }
        // Tests and scripts read the bound address (useful with port 0).
        note_in_data_dir(&c.data_dir, "agent.addr", &local.to_string());
        // For `bolt-agent reload`, which checks it names a serving agent.
        note_in_data_dir(&c.data_dir, PID_FILE, &std::process::id().to_string());
        tracing::info!(addr = %local, version = crate::version(), instance = %c.instance.id, "listening");
        // systemd's Type=notify: ready once the listener is up (no-op elsewhere).
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        watchdog::spawn(stop_rx.clone());

        if let (Some(addr), Some(registry)) = (c.telemetry.metrics_addr(), self.metrics.clone()) {
            // Metrics are not worth refusing to run for.
            match crate::telemetry::prometheus::serve(addr, registry, stop_rx.clone()).await {
                Ok(bound) => {
                    note_in_data_dir(&c.data_dir, "metrics.addr", &bound.to_string());
                    tracing::info!(addr = %bound, "Prometheus metrics at http://{bound}/metrics");
                }
                Err(e) => {
                    let p = format!("metrics listener on {addr} (telemetry.metrics_listen): {e}");
                    tracing::error!(error = %p, "no Prometheus endpoint");
                    problems.push(p);
                }
            }
        }
        let _gauges = {
            let (running, dist, tls_dir) = (executor.clone(), dist.clone(), c.tls_dir.clone());
            crate::telemetry::metrics::gauges(crate::telemetry::metrics::GaugeSources {
                running: Box::new(move || running.running() as u64),
                caps_enforced: executor.caps_mode() != crate::host::caps::CapsMode::None,
                data_dir: c.data_dir.clone(),
                last_sync: Box::new(move || dist.status().last_success),
                certificate_expiry: Box::new(move || crate::tls::agent_cert_expiry(&tls_dir)),
            })
        };
        let mut state = AgentState::new(c, stop_rx.clone());
        state.startup_problems = problems;
        let state = Arc::new(state);
        registry.spawn_rescan(c.packs.rescan_interval, stop_rx.clone());
        let idle = executor.clone();
        crate::host::memory::spawn_trim(move || idle.running() == 0, stop_rx.clone());
        let tls_files = Arc::new(ArcSwap::from_pointee(tls_files));
        crate::tls::spawn_reload(tls_files.clone(), tls.clone(), c.limits.tls_reload_interval, stop_rx.clone());
        let authz = Arc::new(ArcSwap::from_pointee(Authorizer::new(&c.authz)));
        if let Some((path, overrides)) = self.reload.clone() {
            let ctx = reload::Reload {
                path,
                overrides,
                running: c.clone(),
                tls_files,
                tls: tls.clone(),
                authz: authz.clone(),
                registry: registry.clone(),
                generation: 0,
            };
            reload::spawn_sighup(ctx, stop_rx.clone());
        }

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<BoltServer<BoltService>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(bolt_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| AppError::Reflection(e.to_string()))?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(bolt_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| AppError::Reflection(e.to_string()))?;

        let admission = crate::admission::Admission::with_total_streams(
            c.limits.max_connections_per_identity,
            c.limits.max_streams_per_identity,
            c.limits.max_streams,
        );
        let service = BoltService::new(executor, registry, authz, state, dist, admission.clone());
        let bolt =
            BoltServer::new(service).max_decoding_message_size(c.limits.max_message_bytes.as_u64() as usize);
        let incoming = serve_incoming(listener, tls, c.limits.handshake_timeout, c.limits.max_handshakes, admission.clone());

        let stop = {
            let stop_rx = stop_rx.clone();
            async move {
                let mut rx = stop_rx;
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .max_connection_age(c.limits.max_connection_age)
            .max_connection_age_grace(c.limits.max_connection_age_grace)
            .initial_connection_window_size(Some(4 << 20))
            .initial_stream_window_size(Some(1 << 20))
            .layer(api::RpcLayer)
            .layer(tonic::service::InterceptorLayer::new(api::require_identity))
            .layer(tower::util::MapResponseLayer::new(api::oversized_to_resource_exhausted))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(bolt)
            .serve_with_incoming_shutdown(incoming, stop);
        let mut server = std::pin::pin!(server);

        tokio::select! {
            r = &mut server => return r.map_err(Into::into),
            () = shutdown => {}
        }
        tracing::info!("shutting down: no new calls; running actions continue under their supervisors");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        health_reporter.set_not_serving::<BoltServer<BoltService>>().await;
        let _ = stop_tx.send(true);
        match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
            Ok(r) => r?,
            Err(_) => tracing::warn!("calls still open after {DRAIN_TIMEOUT:?}; closing them"),
        }
        tracing::info!("stopped");
        Ok(())
    }

    fn executor_config(
        &self,
        caps_mode: crate::host::caps::CapsMode,
        cgroup_parents: crate::host::caps::Parents,
    ) -> Result<ExecutorConfig, AppError> {
        let c = &self.config;
        let mut base_env = vec![
            ("PATH".to_owned(), c.exec.path.clone()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("HOME".to_owned(), std::env::var("HOME").unwrap_or_else(|_| "/".into())),
        ];
        for name in &c.exec.env_passthrough {
            if let Ok(v) = std::env::var(name) {
                base_env.push((name.clone(), v));
            }
        }
        Ok(ExecutorConfig {
            default_timeout: c.exec.default_timeout,
            kill_grace: c.exec.kill_grace,
            nice: c.exec.nice,
            output_max: c.exec.output_max.as_u64(),
            max_running: c.limits.max_running,
            max_running_per_pack: c.limits.max_running_per_pack,
            max_pending: c.limits.max_pending,
            arg_limits: ArgLimits {
                max_arg_bytes: c.limits.max_arg_bytes.as_u64() as usize,
                max_args_bytes: c.limits.max_args_bytes.as_u64() as usize,
            },
            base_env,
            root_packs: c.exec.root_packs.clone(),
            self_exe: self_exe().map_err(AppError::SelfExe)?,
            caps_mode,
            cgroup_parents,
            min_free_bytes: c.limits.min_free_bytes.as_u64(),
            cgroup_name: c.caps.cgroup_name.clone(),
            clone_into_cgroup: c.caps.clone_into_cgroup,
            default_limits: crate::host::caps::Limits {
                memory_max: c.caps.memory_max.map(|m| m.as_u64()),
                cpu_max: (c.caps.cpu_max > 0.0).then_some(c.caps.cpu_max),
                pids_max: Some(c.caps.pids_max),
            },
        })
    }
}

/// This binary's path. After an upgrade replaced the file, /proc/self/exe
/// names the deleted inode; the new binary at the same path is the one to run.
fn self_exe() -> std::io::Result<PathBuf> {
    let p = std::env::current_exe()?;
    let s = p.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(orig) => PathBuf::from(orig),
        None => p,
    })
}

/// A convenience file in the data folder (bound addresses, the pid) for tests,
/// scripts and `bolt-agent reload`. A full data disk must not keep the agent
/// from serving (reads, kills, Health saying why), so a failure is a warning.
fn note_in_data_dir(data_dir: &std::path::Path, name: &str, text: &str) {
    if let Err(e) = files::write_replace(&data_dir.join(name), text.as_bytes(), false) {
        tracing::warn!(error = %e, "cannot write {name} in the data folder");
    }
}
