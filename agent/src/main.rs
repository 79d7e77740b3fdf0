//! `bolt-agent`: the command line. The only place an error becomes an exit
//! code.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

mod cli;

use cli::{certs, pack};

use bolt_agent::{
    config::{Config, Overrides},
    App,
};

#[derive(Parser)]
#[command(name = "bolt-agent", version = bolt_agent::version(), about = "Bolt: whitelisted actions on this instance over mTLS gRPC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (flags win over the config file).
    Run {
        #[arg(long, env = "BOLT_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, env = "BOLT_LISTEN")]
        listen: Option<SocketAddr>,
        #[arg(long, env = "BOLT_TLS_DIR")]
        tls_dir: Option<PathBuf>,
        #[arg(long, env = "BOLT_PACKS_DIR")]
        packs_dir: Option<PathBuf>,
        #[arg(long, env = "BOLT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Pack stage this agent follows (dev, test, prod).
        #[arg(long, env = "BOLT_STAGE")]
        stage: Option<String>,
        /// App of this instance: packs targeting it are installed.
        #[arg(long, env = "BOLT_APP")]
        app: Option<String>,
        /// Prometheus endpoint address ("" turns it off).
        #[arg(long, env = "BOLT_METRICS_LISTEN")]
        metrics_listen: Option<String>,
    },
    /// Reload the running agent's config and certificates (SIGHUP) and wait
    /// for its verdict: exit 1 when they do not load (the unit's ExecReload=).
    Reload {
        #[arg(long, env = "BOLT_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, env = "BOLT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The agent's pid (systemd's $MAINPID); default: DATA_DIR/agent.pid.
        #[arg(long)]
        pid: Option<u32>,
        /// How long to wait for the agent's verdict.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Packs: check, build, publish to S3, promote, list, audit.
    Pack {
        #[command(subcommand)]
        command: pack::PackCommand,
    },
    /// Signing keys for packs.
    Keys {
        #[command(subcommand)]
        command: pack::KeysCommand,
    },
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Run one execution's supervisor (started by the agent itself).
    #[command(hide = true)]
    Supervise { dir: PathBuf },
    /// Fork supervisors on the agent's request (started by the agent itself).
    #[command(hide = true)]
    SupervisorSpawner,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Write a dev CA, an agent and a client certificate into DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Extra agent names or addresses (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Replace an existing set.
        #[arg(long)]
        force: bool,
        /// Validity of the agent and client certificates, in days.
        #[arg(long, default_value_t = certs::LEAF_DAYS)]
        days: i64,
    },
    /// Revoke DIR/NAME.crt: adds it to DIR/crl.pem, which agents using DIR
    /// load within their TLS reload interval.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Issue another client certificate, NAME.crt and NAME.key, from DIR's CA.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// Validity in days; negative for an already expired one.
        #[arg(long, default_value_t = 365, allow_negative_numbers = true)]
        days: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // Before anything else: the supervisor forks and must be single-threaded.
        Command::Supervise { dir } => return bolt_agent::supervisor::main(&dir),
        Command::SupervisorSpawner => return bolt_agent::supervisor::spawner_main(),
        Command::Run { config, listen, tls_dir, packs_dir, data_dir, stage, app, metrics_listen } => {
            run(config, Overrides { listen, tls_dir, packs_dir, data_dir, stage, app, metrics_listen })
        }
        Command::Reload { config, data_dir, pid, wait } => reload(config, data_dir, pid, wait),
        Command::Pack { command } => pack::pack(command),
        Command::Keys { command } => pack::keys(command),
        Command::Certs { command: CertsCommand::Init { dir, sans, force, days } } => {
            certs::init(&dir, &sans, force, days).map(print_files).map_err(Into::into)
        }
        Command::Certs { command: CertsCommand::Revoke { dir, name } } => {
            certs::revoke(&dir, &name).map(print_files).map_err(Into::into)
        }
        Command::Certs { command: CertsCommand::Issue { dir, name, days } } => {
            certs::issue(&dir, &name, days).map(print_files).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bolt-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[allow(clippy::print_stdout)]
fn reload(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    pid: Option<u32>,
    wait: std::time::Duration,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let config = Config::load(config.as_deref(), Overrides { data_dir, ..Overrides::default() })
        .context("the config does not load, so the agent was not asked to reload (it keeps its running config)")?;
    let status = bolt_agent::app::request_reload(&config.data_dir, pid, wait)?;
    if !status.ok {
        anyhow::bail!("reload {} of pid {}: {}", status.generation, status.pid, status.message);
    }
    println!("{}", status.message);
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_files(files: Vec<PathBuf>) {
    for f in files {
        println!("{}", f.display());
    }
}

fn run(config_path: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref(), overrides.clone())?;
    // What the agent creates (installed packs, virtualenvs, folders) never
    // depends on the umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    // Niceness is per thread on Linux: set it before the runtime's threads exist.
    let niced = rustix::process::setpriority_process(None, config.agent.nice);
    bolt_agent::host::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Inside the runtime: the OTLP exporters run on it.
        let telemetry = bolt_agent::telemetry::init(&config)?;
        if let Err(e) = niced {
            tracing::warn!(error = %e, nice = config.agent.nice, "cannot set the agent's niceness");
        }
        let result = App::new(config)
            .with_metrics_registry(telemetry.registry.clone())
            .reload_on_sighup(config_path, overrides)
            .run(shutdown_signal())
            .await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "agent failed");
        }
        telemetry.shutdown();
        result.map_err(anyhow::Error::from)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}
