//! The agent's instruments. Names follow Prometheus conventions once the
//! exporter adds the unit and `_total` suffixes; labels are bounded (pack,
//! action, state, method, code, reason; never ids or arguments).

use std::{path::PathBuf, sync::OnceLock, time::SystemTime};

use opentelemetry::{
    metrics::{Counter, Histogram, Meter},
    KeyValue,
};

pub struct Metrics {
    pub executions_started: Counter<u64>,
    pub executions_finished: Counter<u64>,
    pub execution_cpu: Histogram<f64>,
    pub execution_peak_memory: Histogram<f64>,
    pub execution_duration: Histogram<f64>,
    pub rpc_duration: Histogram<f64>,
    pub sync_attempts: Counter<u64>,
    pub sync_failures: Counter<u64>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

pub fn meter() -> Meter {
    opentelemetry::global::meter("bolt")
}

/// The instruments, made from the global meter provider on first use (so
/// after [`super::init`] has set it).
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let m = meter();
        Metrics {
            executions_started: m
                .u64_counter("bolt_executions_started")
                .with_description("Executions started, by pack and action")
                .build(),
            executions_finished: m
                .u64_counter("bolt_executions_finished")
                .with_description("Executions ended, by pack, action and final state")
                .build(),
            execution_cpu: m
                .f64_histogram("bolt_execution_cpu")
                .with_unit("s")
                .with_description("CPU time of each ended execution")
                .with_boundaries(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0])
                .build(),
            execution_peak_memory: m
                .f64_histogram("bolt_execution_peak_memory")
                .with_unit("By")
                .with_description("Peak memory of each ended execution")
                .with_boundaries(
                    [1u64 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30, 4 << 30]
                        .iter()
                        .map(|b| *b as f64)
                        .collect(),
                )
                .build(),
            execution_duration: m
                .f64_histogram("bolt_execution_duration")
                .with_unit("s")
                .with_description("Wall time of each ended execution, from its start to its end")
                .with_boundaries(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0])
                .build(),
            rpc_duration: m
                .f64_histogram("bolt_rpc_duration")
                .with_unit("s")
                .with_description(
                    "Time to answer a call (for streams: to the response headers), by method and code",
                )
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .build(),
            sync_attempts: m
                .u64_counter("bolt_pack_sync_attempts")
                .with_description("Checks of the stage's pack index")
                .build(),
            sync_failures: m
                .u64_counter("bolt_pack_sync_failures")
                .with_description("Failed pack sync steps, by reason")
                .build(),
        }
    })
}

/// One execution has ended.
pub fn execution_ended(pack: &str, action: &str, state: &str, cpu_time_us: u64, peak_bytes: u64, wall_ms: Option<u64>) {
    let m = get();
    let labels = [KeyValue::new("pack", pack.to_owned()), KeyValue::new("action", action.to_owned())];
    m.executions_finished
        .add(1, &[labels[0].clone(), labels[1].clone(), KeyValue::new("state", state.to_owned())]);
    m.execution_cpu.record(cpu_time_us as f64 / 1e6, &labels);
    if peak_bytes > 0 {
        m.execution_peak_memory.record(peak_bytes as f64, &labels);
    }
    if let Some(ms) = wall_ms {
        m.execution_duration.record(ms as f64 / 1e3, &labels);
    }
}

pub fn execution_started(pack: &str, action: &str) {
    get()
        .executions_started
        .add(1, &[KeyValue::new("pack", pack.to_owned()), KeyValue::new("action", action.to_owned())]);
}

/// What the gauges read, from the modules that own it.
pub struct GaugeSources {
    /// Executions PENDING or RUNNING now.
    pub running: Box<dyn Fn() -> u64 + Send + Sync>,
    pub caps_enforced: bool,
    pub data_dir: PathBuf,
    /// When the last pack sync succeeded.
    pub last_sync: Box<dyn Fn() -> Option<SystemTime> + Send + Sync>,
    /// Unix time at which the agent's certificate expires.
    pub certificate_expiry: Box<dyn Fn() -> Option<i64> + Send + Sync>,
}

/// Gauges read when metrics are collected: the agent's own CPU and memory,
/// running executions, free disk, caps, pack sync, certificate expiry. They
/// are observed as long as the returned handles are kept.
pub fn gauges(src: GaugeSources) -> Vec<Box<dyn std::any::Any>> {
    use opentelemetry::metrics::{ObservableCounter, ObservableGauge};
    let GaugeSources { running, caps_enforced, data_dir, last_sync, certificate_expiry } = src;
    let m = meter();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let cpu: ObservableCounter<f64> = m
        .f64_observable_counter("bolt_agent_cpu")
        .with_unit("s")
        .with_description("CPU time of the agent itself (user + system)")
        .with_callback(|o| {
            if let Some(s) = own_cpu_seconds() {
                o.observe(s, &[]);
            }
        })
        .build();
    keep.push(Box::new(cpu));
    let rss: ObservableGauge<u64> = m
        .u64_observable_gauge("bolt_agent_resident_memory")
        .with_unit("By")
        .with_description("Resident memory of the agent itself")
        .with_callback(|o| {
            if let Some(b) = crate::host::procfs::rss_bytes(std::process::id()) {
                o.observe(b, &[]);
            }
        })
        .build();
    keep.push(Box::new(rss));
    // The same two under the names every Prometheus process exporter uses,
    // so stock dashboards and alerts work unchanged.
    keep.push(Box::new(
        m.f64_observable_counter("process_cpu")
            .with_unit("s")
            .with_description("Total user and system CPU time spent in seconds")
            .with_callback(|o| {
                if let Some(s) = own_cpu_seconds() {
                    o.observe(s, &[]);
                }
            })
            .build(),
    ));
    keep.push(Box::new(
        m.u64_observable_gauge("process_resident_memory")
            .with_unit("By")
            .with_description("Resident memory size in bytes")
            .with_callback(|o| {
                if let Some(b) = crate::host::procfs::rss_bytes(std::process::id()) {
                    o.observe(b, &[]);
                }
            })
            .build(),
    ));
    keep.push(Box::new(
        m.u64_observable_gauge("process_open_fds")
            .with_description("Number of open file descriptors")
            .with_callback(|o| {
                if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
                    o.observe(fds.count() as u64, &[]);
                }
            })
            .build(),
    ));
    keep.push(Box::new(
        m.u64_observable_gauge("bolt_agent_build_info")
            .with_description("Always 1; the agent's version as a label")
            .with_callback(|o| o.observe(1, &[KeyValue::new("version", crate::version())]))
            .build(),
    ));
    keep.push(Box::new(
        m.u64_observable_gauge("bolt_executions_running")
            .with_description("Executions PENDING or RUNNING now")
            .with_callback(move |o| o.observe(running(), &[]))
            .build(),
    ));
    let enforced = u64::from(caps_enforced);
    keep.push(Box::new(
        m.u64_observable_gauge("bolt_caps_enforced")
            .with_description("1 when resource caps are enforced with cgroups")
            .with_callback(move |o| o.observe(enforced, &[]))
            .build(),
    ));
    let data = data_dir;
    keep.push(Box::new(
        m.u64_observable_gauge("bolt_data_disk_free")
            .with_unit("By")
            .with_description("Free space on the data folder's file system")
            .with_callback(move |o| {
                if let Ok(s) = rustix::fs::statvfs(&data) {
                    o.observe(s.f_bavail * s.f_frsize, &[]);
                }
            })
            .build(),
    ));
    keep.push(Box::new(
        m.f64_observable_gauge("bolt_pack_sync_last_success_timestamp")
            .with_unit("s")
            .with_description("Unix time of the last good pack sync")
            .with_callback(move |o| {
                if let Some(t) = last_sync() {
                    o.observe(t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()), &[]);
                }
            })
            .build(),
    ));
    keep.push(Box::new(
        m.f64_observable_gauge("bolt_agent_certificate_expiry_timestamp")
            .with_unit("s")
            .with_description("Unix time at which the agent's certificate expires")
            .with_callback(move |o| {
                if let Some(t) = certificate_expiry() {
                    o.observe(t as f64, &[]);
                }
            })
            .build(),
    ));
    keep
}

/// CPU time of this process (user + system), in seconds.
fn own_cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(u.user_time()) + secs(u.system_time()))
}
