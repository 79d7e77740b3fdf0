//! SIGHUP: re-reads the config and the certificates, applies what can
//! change live and names what needs a restart.

use std::{path::PathBuf, sync::Arc};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::{
    authz::Authorizer,
    config::{Config, Overrides, Section},
    packs::Registry,
    shutdown::stopped,
    tls::{ServerTls, TlsFiles},
};

/// What SIGHUP can change in a running agent.
pub(super) struct Reload {
    pub(super) path: Option<PathBuf>,
    pub(super) overrides: Overrides,
    pub(super) running: Config,
    pub(super) tls_files: Arc<ArcSwap<TlsFiles>>,
    pub(super) tls: Arc<ArcSwap<ServerTls>>,
    pub(super) authz: Arc<ArcSwap<Authorizer>>,
    pub(super) registry: Arc<Registry>,
}

pub(super) fn spawn_sighup(mut ctx: Reload, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config reload by signal is off");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                () = stopped(&mut stop) => return,
            }
            tracing::info!("SIGHUP: reloading the config and the certificates");
            ctx.apply().await;
        }
    });
}

impl Reload {
    /// Applies what can change live (certificates, authorization rules, log
    /// level, packs); names what needs a restart. A config that does not load
    /// changes nothing.
    async fn apply(&mut self) {
        let new = match Config::load(self.path.as_deref(), self.overrides.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the config does not load; nothing changed");
                return;
            }
        };
        let files = TlsFiles::new(&new.tls_dir).with_revoked_serials(&new.tls.revoked_serials);
        match files.server_config() {
            Ok(cfg) => {
                self.tls.store(cfg);
                self.tls_files.store(Arc::new(files));
                tracing::info!(tls_dir = %new.tls_dir.display(), "TLS certificates reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: certificates cannot be loaded; keeping the previous ones")
            }
        }
        let mut applied = vec!["certificates"];
        let mut restart = Vec::new();
        for section in self.running.diff(&new) {
            match section {
                // Reloaded above, whatever changed.
                Section::TlsDir | Section::Tls => {}
                Section::Authz => {
                    self.authz.store(Arc::new(Authorizer::new(&new.authz)));
                    applied.push(section.name());
                }
                Section::LogLevel => match crate::telemetry::set_log_level(&new.log.level) {
                    Ok(()) => {
                        applied.push(section.name());
                        self.running.log.level = new.log.level.clone();
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: log level not changed"),
                },
                other => restart.push(other.name()),
            }
        }
        let r = self.registry.clone();
        let _ = tokio::task::spawn_blocking(move || r.reload()).await;
        applied.push("packs");
        if restart.is_empty() {
            tracing::info!(applied = ?applied, "SIGHUP: reloaded");
        } else {
            tracing::warn!(applied = ?applied, needs_restart = ?restart, "SIGHUP: reloaded; these changes take effect at the next restart");
        }
        // Only what was applied changes the running state, so the next
        // SIGHUP compares the rest against what really runs.
        self.running.tls_dir = new.tls_dir;
        self.running.tls = new.tls;
        self.running.authz = new.authz;
    }
}
