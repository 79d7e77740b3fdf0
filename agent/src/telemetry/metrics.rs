//! The agent's instruments. Names follow Prometheus conventions once the
//! exporter adds the unit and `_total` suffixes; labels are bounded (pack,
//! action, state, method, code, reason; never ids or arguments).

use std::sync::OnceLock;

use opentelemetry::{
    metrics::{Counter, Histogram, Meter},
    KeyValue,
};

pub struct Metrics {
    pub executions_started: Counter<u64>,
    pub executions_finished: Counter<u64>,
    pub execution_cpu: Histogram<f64>,
    pub execution_peak_memory: Histogram<f64>,
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
pub fn execution_ended(pack: &str, action: &str, state: &str, cpu_time_us: u64, peak_bytes: u64) {
    let m = get();
    let labels = [KeyValue::new("pack", pack.to_owned()), KeyValue::new("action", action.to_owned())];
    m.executions_finished
        .add(1, &[labels[0].clone(), labels[1].clone(), KeyValue::new("state", state.to_owned())]);
    m.execution_cpu.record(cpu_time_us as f64 / 1e6, &labels);
    if peak_bytes > 0 {
        m.execution_peak_memory.record(peak_bytes as f64, &labels);
    }
}

pub fn execution_started(pack: &str, action: &str) {
    get()
        .executions_started
        .add(1, &[KeyValue::new("pack", pack.to_owned()), KeyValue::new("action", action.to_owned())]);
}
