//! The agent's configuration: one TOML file, every key optional with a
//! documented default, command-line flags and `BOLT_*` variables on top.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use bytesize::ByteSize;
use serde::Deserialize;

use crate::authz::AuthzConfig;

/// Where the agent listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7443";
/// Certificates: `agent.crt`, `agent.key`, `ca.crt`.
pub const DEFAULT_TLS_DIR: &str = "/etc/bolt/tls";
/// Packs laid out by hand or by an image: `<dir>/<pack>/pack.toml`.
pub const DEFAULT_PACKS_DIR: &str = "/var/lib/bolt/packs";
/// History, outputs, logs.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/bolt/data";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration, as the agent uses it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the gRPC listener (port 0 picks a free port).
    pub listen: SocketAddr,
    pub tls_dir: PathBuf,
    pub packs_dir: PathBuf,
    pub data_dir: PathBuf,
    pub instance: InstanceConfig,
    pub exec: ExecConfig,
    pub limits: LimitsConfig,
    pub packs: PacksConfig,
    pub sync: SyncConfig,
    pub caps: CapsConfig,
    pub history: HistoryConfig,
    pub agent: AgentConfig,
    pub authz: AuthzConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| unreachable!()),
            tls_dir: DEFAULT_TLS_DIR.into(),
            packs_dir: DEFAULT_PACKS_DIR.into(),
            data_dir: DEFAULT_DATA_DIR.into(),
            instance: InstanceConfig::default(),
            exec: ExecConfig::default(),
            limits: LimitsConfig::default(),
            packs: PacksConfig::default(),
            sync: SyncConfig::default(),
            caps: CapsConfig::default(),
            history: HistoryConfig::default(),
            agent: AgentConfig::default(),
            authz: AuthzConfig::default(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Labels of the instance the agent runs on, reported by GetAgentInfo and
/// used by orchestrators to group instances.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceConfig {
    /// Defaults to the host name.
    pub id: String,
    pub app: String,
    pub availability_zone: String,
    pub region: String,
    /// dev, test or prod.
    pub stage: String,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            app: String::new(),
            availability_zone: String::new(),
            region: String::new(),
            stage: "prod".into(),
        }
    }
}

/// How executions are run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// Timeout of an action whose pack declares none.
    #[serde(with = "humantime_serde")]
    pub default_timeout: Duration,
    /// Time between SIGTERM and SIGKILL on kill and timeout.
    #[serde(with = "humantime_serde")]
    pub kill_grace: Duration,
    /// Niceness of every action (0..=19).
    pub nice: i32,
    /// Output kept per execution, as it takes on disk (each record's 16-byte
    /// header included); beyond it a truncation marker is written and the
    /// rest is counted but dropped.
    pub output_max: ByteSize,
    /// Variables passed from the agent's environment to actions, beside the
    /// fixed PATH, LANG and BOLT_* ones.
    pub env_passthrough: Vec<String>,
    /// PATH given to actions.
    pub path: String,
    /// Packs whose actions may run as root (glob patterns): actions that
    /// declare no `user` run as the agent's user. `[]` forbids root to all.
    pub root_packs: Vec<String>,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(3600),
            kill_grace: Duration::from_secs(10),
            nice: 1,
            output_max: ByteSize::mib(64),
            env_passthrough: Vec::new(),
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            root_packs: vec!["*".into()],
        }
    }
}

/// Admission limits; beyond them a call gets RESOURCE_EXHAUSTED.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Executions PENDING or RUNNING at once.
    pub max_running: usize,
    /// Executions of one pack PENDING or RUNNING at once.
    pub max_running_per_pack: usize,
    /// Executions accepted but not started yet (PENDING).
    pub max_pending: usize,
    /// Open connections of one client identity.
    pub max_connections_per_identity: usize,
    /// Open StreamOutput calls of one client identity.
    pub max_streams_per_identity: usize,
    /// Open StreamOutput calls of all identities together: each can hold
    /// about half a MiB of output for a client that does not read.
    pub max_streams: usize,
    /// Largest gRPC message the agent decodes.
    pub max_message_bytes: ByteSize,
    /// Largest single argument value.
    pub max_arg_bytes: ByteSize,
    /// All argument names and values of one call together.
    pub max_args_bytes: ByteSize,
    /// Longest idempotency key.
    pub max_idempotency_key_bytes: usize,
    /// Free space the data folder must keep for new executions to start.
    pub min_free_bytes: ByteSize,
    /// How often the certificate files (and crl.pem) are checked for changes.
    #[serde(with = "humantime_serde")]
    pub tls_reload_interval: Duration,
    /// Time a client has to finish its TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Connections still in their TLS handshake; beyond it the oldest is
    /// closed, so that connections that never speak TLS cannot use up the
    /// agent's descriptors.
    pub max_handshakes: usize,
    /// A connection older than this is asked to go away (clients reconnect):
    /// nothing lives forever on a certificate checked once.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// Time the calls of a connection past its age get to finish.
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_running: 256,
            max_running_per_pack: 64,
            max_pending: 64,
            max_connections_per_identity: 64,
            max_streams_per_identity: 256,
            max_streams: 256,
            max_message_bytes: ByteSize::mib(4),
            max_arg_bytes: ByteSize::kib(64),
            max_args_bytes: ByteSize::kib(256),
            max_idempotency_key_bytes: 128,
            min_free_bytes: ByteSize::mib(64),
            tls_reload_interval: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 64,
            max_connection_age: Duration::from_secs(24 * 3600),
            max_connection_age_grace: Duration::from_secs(3600),
        }
    }
}

/// Loading of the packs folder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacksConfig {
    /// How often the packs folder is scanned for changes.
    #[serde(with = "humantime_serde")]
    pub rescan_interval: Duration,
}

impl Default for PacksConfig {
    fn default() -> Self {
        Self { rescan_interval: Duration::from_secs(10) }
    }
}

/// Where packs are published: an S3 bucket or an S3-compatible server.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix of everything Bolt writes in the bucket.
    pub prefix: String,
    pub region: String,
    /// Endpoint URL of an S3-compatible server; empty for AWS.
    pub endpoint: String,
    /// Path-style addressing (`endpoint/bucket/key`), as most S3-compatible
    /// servers want.
    pub path_style: bool,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: "bolt".into(),
            region: "us-east-1".into(),
            endpoint: String::new(),
            path_style: false,
        }
    }
}

/// `[sync]`: installing packs published to S3 for this agent's stage and app.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    pub enabled: bool,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub endpoint: String,
    pub path_style: bool,
    /// Time between checks of the stage's index.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Random spread of each interval, as a fraction of it (0..1), so a
    /// fleet does not poll in step.
    pub jitter: f64,
    /// ed25519 public keys (PEM) whose signatures are trusted.
    pub trusted_keys: Vec<PathBuf>,
    /// Installed packs and virtualenvs; empty means `<data_dir>/installed`.
    pub dir: PathBuf,
    /// Largest archive downloaded.
    pub max_archive_size: ByteSize,
    /// Largest total size of an archive's files.
    pub max_unpacked_size: ByteSize,
    /// Most entries in one archive.
    pub max_files: usize,
    /// Time limit of one S3 request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time limit of building one virtualenv.
    #[serde(with = "humantime_serde")]
    pub pip_timeout: Duration,
    /// Python that builds virtualenvs.
    pub python: String,
    /// The unprivileged user that runs pip (and so the packages' build
    /// code) when the agent runs as root; never root.
    pub build_user: String,
}

impl Default for SyncConfig {
    fn default() -> Self {
        let s3 = S3Settings::default();
        Self {
            enabled: false,
            bucket: s3.bucket,
            prefix: s3.prefix,
            region: s3.region,
            endpoint: s3.endpoint,
            path_style: s3.path_style,
            interval: Duration::from_secs(120),
            jitter: 0.2,
            trusted_keys: Vec::new(),
            dir: PathBuf::new(),
            max_archive_size: ByteSize::mib(64),
            max_unpacked_size: ByteSize::mib(256),
            max_files: 10_000,
            request_timeout: Duration::from_secs(30),
            pip_timeout: Duration::from_secs(600),
            python: "python3".into(),
            build_user: "nobody".into(),
        }
    }
}

impl SyncConfig {
    pub fn s3(&self) -> S3Settings {
        S3Settings {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            path_style: self.path_style,
        }
    }

    pub fn archive_limits(&self) -> crate::archive::Limits {
        crate::archive::Limits {
            max_archive_bytes: self.max_archive_size.as_u64(),
            max_unpacked_bytes: self.max_unpacked_size.as_u64(),
            max_files: self.max_files,
        }
    }
}

/// Resource caps of actions; a pack's own settings win over these defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapsConfig {
    /// Put each execution in a cgroup of its own where the host allows.
    pub enabled: bool,
    /// Memory cap of actions that declare none ("none" for no cap).
    #[serde(deserialize_with = "size_or_none")]
    pub memory_max: Option<ByteSize>,
    /// CPU cap, in CPUs, of actions that declare none (0 for no cap).
    pub cpu_max: f64,
    /// Most processes and threads an action may have at once.
    pub pids_max: u64,
    /// Name of the cgroup, below the agent's own, that holds the executions'.
    pub cgroup_name: String,
    /// On cgroup v2, start each action inside its cgroup (`clone3` with
    /// `CLONE_INTO_CGROUP`, Linux 5.7) instead of moving it there; off only
    /// to measure the difference.
    pub clone_into_cgroup: bool,
}

impl Default for CapsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            memory_max: Some(ByteSize::mib(512)),
            cpu_max: 1.0,
            pids_max: 1024,
            cgroup_name: "bolt".into(),
            clone_into_cgroup: true,
        }
    }
}

fn size_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
    let text = String::deserialize(d)?;
    if text == "none" {
        return Ok(None);
    }
    text.parse::<ByteSize>().map(Some).map_err(serde::de::Error::custom)
}

/// The agent's own footprint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Niceness of the agent itself (its supervisors and actions use
    /// exec.nice).
    pub nice: i32,
    /// Memory cap of the agent process alone (its own cgroup leaf; actions
    /// and supervisors are not counted); "none" for no cap.
    #[serde(deserialize_with = "size_or_none")]
    pub memory_max: Option<ByteSize>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self { nice: 1, memory_max: Some(ByteSize::mib(256)) }
    }
}

/// Upkeep of the history on the data folder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Executions (records and output) older than this are pruned.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Output is zstd-compressed this long after its execution ended.
    #[serde(with = "humantime_serde")]
    pub compress_after: Duration,
    /// How often compression and pruning run.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Executions pruned or compressed per step.
    pub batch: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(180 * 86400),
            compress_after: Duration::from_secs(86400),
            sweep_interval: Duration::from_secs(600),
            batch: 100,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as "info" or "bolt_agent=debug"; `RUST_LOG` wins.
    pub level: String,
    /// "json" (one object per line) or "text".
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Json }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// `[tls]`: beyond the files in `tls_dir`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Client certificate serials (hex, `:` allowed) refused at the
    /// handshake, beside `tls_dir/crl.pem`.
    pub revoked_serials: Vec<String>,
}

/// `[telemetry]`: metrics and traces.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address of the Prometheus text endpoint (`GET /metrics`, plain HTTP);
    /// empty turns it off.
    pub metrics_listen: String,
    /// OTLP/gRPC collector (e.g. `http://127.0.0.1:4317`) that gets metrics
    /// and traces; empty exports nothing.
    pub otlp_endpoint: String,
    /// How often metrics are pushed over OTLP.
    #[serde(with = "humantime_serde")]
    pub otlp_interval: Duration,
    /// `service.name` of the OTLP resource.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics_listen: "127.0.0.1:9464".into(),
            otlp_endpoint: String::new(),
            otlp_interval: Duration::from_secs(30),
            service_name: "bolt-agent".into(),
        }
    }
}

impl TelemetryConfig {
    /// The metrics listener, or None when turned off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listen.parse().ok()
    }
}

/// Smallest `limits.max_idempotency_key_bytes`: the clients' keys are up to this long.
pub const MIN_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// Values from the command line (or their `BOLT_*` variables) that win over
/// the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub tls_dir: Option<PathBuf>,
    pub packs_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub stage: Option<String>,
    pub app: Option<String>,
    pub metrics_listen: Option<String>,
}

/// A part of the configuration, as a reload compares two of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Listen,
    TlsDir,
    PacksDir,
    DataDir,
    Instance,
    Exec,
    Limits,
    Packs,
    Sync,
    Caps,
    History,
    Agent,
    Authz,
    LogLevel,
    LogFormat,
    Telemetry,
    Tls,
}

impl Section {
    /// The name a user finds in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Listen => "listen",
            Self::TlsDir => "tls_dir",
            Self::PacksDir => "packs_dir",
            Self::DataDir => "data_dir",
            Self::Instance => "instance",
            Self::Exec => "exec",
            Self::Limits => "limits",
            Self::Packs => "packs",
            Self::Sync => "sync",
            Self::Caps => "caps",
            Self::History => "history",
            Self::Agent => "agent",
            Self::Authz => "authz",
            Self::LogLevel => "log.level",
            Self::LogFormat => "log.format",
            Self::Telemetry => "telemetry",
            Self::Tls => "tls",
        }
    }
}

impl Config {
    /// The sections in which `other` differs from this configuration, in
    /// the file's order.
    pub fn diff(&self, other: &Config) -> Vec<Section> {
        let changed = [
            (Section::Listen, self.listen != other.listen),
            (Section::TlsDir, self.tls_dir != other.tls_dir),
            (Section::PacksDir, self.packs_dir != other.packs_dir),
            (Section::DataDir, self.data_dir != other.data_dir),
            (Section::Instance, self.instance != other.instance),
            (Section::Exec, self.exec != other.exec),
            (Section::Limits, self.limits != other.limits),
            (Section::Packs, self.packs != other.packs),
            (Section::Sync, self.sync != other.sync),
            (Section::Caps, self.caps != other.caps),
            (Section::History, self.history != other.history),
            (Section::Agent, self.agent != other.agent),
            (Section::Authz, self.authz != other.authz),
            (Section::LogLevel, self.log.level != other.log.level),
            (Section::LogFormat, self.log.format != other.log.format),
            (Section::Telemetry, self.telemetry != other.telemetry),
            (Section::Tls, self.tls != other.tls),
        ];
        changed.into_iter().filter_map(|(section, differs)| differs.then_some(section)).collect()
    }

    /// Reads `path` if given (a missing file is an error only when named
    /// explicitly), then applies the overrides and checks the result.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                Self::from_toml(&text).map_err(|e| match e {
                    ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.to_owned(), source },
                    other => other,
                })?
            }
            None => Self::default(),
        };
        if let Some(v) = overrides.listen {
            config.listen = v;
        }
        if let Some(v) = overrides.tls_dir {
            config.tls_dir = v;
        }
        if let Some(v) = overrides.packs_dir {
            config.packs_dir = v;
        }
        if let Some(v) = overrides.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = overrides.stage {
            config.instance.stage = v;
        }
        if let Some(v) = overrides.app {
            config.instance.app = v;
        }
        if let Some(v) = overrides.metrics_listen {
            config.telemetry.metrics_listen = v;
        }
        if config.sync.dir.as_os_str().is_empty() {
            config.sync.dir = config.data_dir.join("installed");
        }
        if config.instance.id.is_empty() {
            config.instance.id = crate::hostname();
        }
        config.make_paths_absolute()?;
        config.validate()?;
        Ok(config)
    }

    /// Every path made absolute once, against the working folder at start:
    /// supervisors and actions run in other folders, and `spec.json` is read
    /// by a process that never saw this one's working folder. Symbolic links
    /// are kept as given (an operator may point the data folder elsewhere).
    fn make_paths_absolute(&mut self) -> Result<(), ConfigError> {
        let absolute = |p: &mut PathBuf, name: &str| -> Result<(), ConfigError> {
            *p = std::path::absolute(&*p)
                .map_err(|e| ConfigError::Invalid(format!("{name} = {:?}: {e}", p.display().to_string())))?;
            Ok(())
        };
        absolute(&mut self.tls_dir, "tls_dir")?;
        absolute(&mut self.packs_dir, "packs_dir")?;
        absolute(&mut self.data_dir, "data_dir")?;
        absolute(&mut self.sync.dir, "sync.dir")?;
        for key in &mut self.sync.trusted_keys {
            absolute(key, "sync.trusted_keys")?;
        }
        Ok(())
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)
            .map_err(|source| ConfigError::Parse { path: PathBuf::new(), source: Box::new(source) })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !(0..=19).contains(&self.agent.nice) {
            problems.push(format!("agent.nice = {} is not in 0..=19", self.agent.nice));
        }
        if !(0..=19).contains(&self.exec.nice) {
            problems.push(format!("exec.nice = {} is not in 0..=19", self.exec.nice));
        }
        if self.exec.default_timeout.is_zero() {
            problems.push("exec.default_timeout must be more than 0".to_string());
        }
        for (name, v) in [
            ("max_running", self.limits.max_running),
            ("max_running_per_pack", self.limits.max_running_per_pack),
            ("max_pending", self.limits.max_pending),
            ("max_connections_per_identity", self.limits.max_connections_per_identity),
            ("max_streams_per_identity", self.limits.max_streams_per_identity),
            ("max_handshakes", self.limits.max_handshakes),
            ("max_streams", self.limits.max_streams),
        ] {
            if v == 0 {
                problems.push(format!("limits.{name} must be at least 1"));
            }
        }
        // The clients' fleet keys (run_id:instance_id) are hashed beyond 128 bytes,
        // so a lower limit would refuse keys that both clients send.
        if self.limits.max_idempotency_key_bytes < MIN_IDEMPOTENCY_KEY_BYTES {
            problems.push(format!(
                "limits.max_idempotency_key_bytes = {} is below {MIN_IDEMPOTENCY_KEY_BYTES}, the size of the \
                 keys the clients send",
                self.limits.max_idempotency_key_bytes
            ));
        }
        if !["dev", "test", "prod"].contains(&self.instance.stage.as_str()) {
            problems
                .push(format!("instance.stage = {:?} is not one of dev, test, prod", self.instance.stage));
        }
        if !(0.0..=1024.0).contains(&self.caps.cpu_max) {
            problems.push(format!("caps.cpu_max = {} is not a number of CPUs", self.caps.cpu_max));
        }
        if self.history.sweep_interval.is_zero() || self.history.batch == 0 {
            problems.push("history.sweep_interval and history.batch must be more than 0".to_string());
        }
        if self.caps.pids_max == 0 {
            problems.push("caps.pids_max must be at least 1".to_string());
        }
        if !crate::manifest::valid_name(&self.caps.cgroup_name) {
            problems.push(format!("caps.cgroup_name = {:?} is not a valid name", self.caps.cgroup_name));
        }
        if self.sync.enabled {
            if self.sync.bucket.is_empty() {
                problems.push("sync.bucket must be set when sync.enabled = true".to_string());
            }
            if self.sync.trusted_keys.is_empty() {
                problems.push(
                    "sync.trusted_keys must name at least one public key when sync.enabled = true"
                        .to_string(),
                );
            }
        }
        if self.sync.interval < Duration::from_millis(200) {
            problems.push("sync.interval must be at least 200ms".to_string());
        }
        if !(0.0..1.0).contains(&self.sync.jitter) {
            problems.push(format!("sync.jitter = {} is not in 0..1", self.sync.jitter));
        }
        if !self.telemetry.metrics_listen.is_empty() && self.telemetry.metrics_addr().is_none() {
            problems.push(format!(
                "telemetry.metrics_listen = {:?} is not an address (IP:PORT, or empty to turn it off)",
                self.telemetry.metrics_listen
            ));
        }
        let otlp = &self.telemetry.otlp_endpoint;
        if !(otlp.is_empty() || otlp.starts_with("http://") || otlp.starts_with("https://")) {
            problems.push(format!(
                "telemetry.otlp_endpoint = {:?} is not an http(s):// URL",
                self.telemetry.otlp_endpoint
            ));
        }
        if self.telemetry.otlp_interval < Duration::from_millis(100) {
            problems.push("telemetry.otlp_interval must be at least 100ms".to_string());
        }
        for s in &self.tls.revoked_serials {
            if normalize_serial(s).is_none() {
                problems.push(format!("tls.revoked_serials: {s:?} is not a hex serial number"));
            }
        }
        if let Err(e) = self.authz.validate() {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.join("; ")))
        }
    }
}

/// Serials as lower-case hex without separators or leading zeros.
pub fn normalize_serial(serial: &str) -> Option<String> {
    let hex: String =
        serial.chars().filter(|c| !matches!(c, ':' | ' ' | '-')).collect::<String>().to_ascii_lowercase();
    let hex = hex.strip_prefix("0x").unwrap_or(&hex).trim_start_matches('0').to_owned();
    (!hex.is_empty() && hex.len() <= 40 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_exactly_the_sections_that_changed() {
        let a = Config::from_toml("").expect("defaults");
        assert!(a.diff(&a.clone()).is_empty());
        let b = Config::from_toml(
            r#"
            [exec]
            nice = 5
            [log]
            level = "debug"
            [authz]
            rules = []
            "#,
        )
        .expect("config");
        let names: Vec<_> = a.diff(&b).into_iter().map(Section::name).collect();
        assert!(names.contains(&"exec") && names.contains(&"log.level"), "{names:?}");
        assert!(!names.contains(&"limits") && !names.contains(&"log.format"), "{names:?}");
        assert_eq!(b.diff(&a).len(), a.diff(&b).len());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("").expect("defaults");
        assert_eq!(c.listen.port(), 7443);
        assert_eq!(c.exec.nice, 1);
        assert_eq!(c.exec.output_max, ByteSize::mib(64));
        assert_eq!(c.instance.stage, "prod");
    }

    #[test]
    fn values_parse_with_units() {
        let c = Config::from_toml(
            r#"
            listen = "127.0.0.1:9000"
            [exec]
            default_timeout = "30m"
            kill_grace = "2s"
            output_max = "1MiB"
            [instance]
            app = "kafka"
            availability_zone = "us-east-1a"
            stage = "test"
            "#,
        )
        .expect("valid");
        assert_eq!(c.exec.default_timeout, Duration::from_secs(1800));
        assert_eq!(c.exec.kill_grace, Duration::from_secs(2));
        assert_eq!(c.exec.output_max.as_u64(), 1 << 20);
        assert_eq!(c.instance.app, "kafka");
    }

    #[test]
    fn caps_defaults_and_none() {
        let c = Config::from_toml("").expect("defaults");
        assert!(c.caps.enabled);
        assert_eq!(c.caps.memory_max, Some(ByteSize::mib(512)));
        let c =
            Config::from_toml("[caps]\nmemory_max = \"none\"\ncpu_max = 0.5\npids_max = 64").expect("valid");
        assert_eq!(c.caps.memory_max, None);
        assert_eq!((c.caps.cpu_max, c.caps.pids_max), (0.5, 64));
        assert!(Config::from_toml("[caps]\nmemory_max = \"lots\"").is_err());
        assert!(Config::from_toml("[caps]\ncgroup_name = \"../x\"").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("lissen = \"1.2.3.4:5\"").expect_err("unknown key");
        assert!(err.to_string().contains("lissen"), "{err}");
    }

    #[test]
    fn bad_values_are_all_reported() {
        let err = Config::from_toml("[exec]\nnice = 40\n[instance]\nstage = \"qa\"").expect_err("invalid");
        let msg = err.to_string();
        assert!(msg.contains("exec.nice") && msg.contains("instance.stage"), "{msg}");
    }

    #[test]
    fn idempotency_keys_fit_what_the_clients_send() {
        let err = Config::from_toml("[limits]\nmax_idempotency_key_bytes = 64").expect_err("below 128");
        assert!(err.to_string().contains("max_idempotency_key_bytes = 64 is below 128"), "{err}");
        assert!(Config::from_toml("[limits]\nmax_idempotency_key_bytes = 128").is_ok());
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            listen: Some("127.0.0.1:1".parse().expect("addr")),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let c = Config::load(None, o).expect("valid");
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert!(!c.instance.id.is_empty());
    }

    #[test]
    fn relative_paths_become_absolute_against_the_working_folder() {
        let o = Overrides {
            data_dir: Some(".dev/data".into()),
            packs_dir: Some("examples/packs/".into()),
            tls_dir: Some("./certs".into()),
            ..Default::default()
        };
        let c = Config::load(None, o).expect("valid");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(c.data_dir, cwd.join(".dev/data"));
        assert_eq!(c.packs_dir, cwd.join("examples/packs"));
        assert_eq!(c.tls_dir, cwd.join("certs"));
        assert_eq!(c.sync.dir, cwd.join(".dev/data/installed"));
        assert!(c.data_dir.is_absolute() && c.sync.dir.is_absolute());
    }
}
