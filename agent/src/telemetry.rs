//! Logs, metrics and traces.
//!
//! - logs: JSON lines (or text) on stderr, filtered by `RUST_LOG` or
//!   `log.level`;
//! - metrics: OpenTelemetry instruments ([`metrics`]), always readable as
//!   Prometheus text on their own listener ([`prometheus`]) and pushed over
//!   OTLP when `telemetry.otlp_endpoint` is set;
//! - traces: `tracing` spans, exported over OTLP with tracing-opentelemetry
//!   when an endpoint is set; an incoming W3C `traceparent` is continued
//!   (`api::rpc_layer`).

mod json_lines;
mod text_lines;
#[cfg(test)]
mod captured;
pub mod metrics;
pub mod prometheus;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    metrics::{periodic_reader_with_async_runtime::PeriodicReader, SdkMeterProvider},
    propagation::TraceContextPropagator,
    runtime::Tokio,
    trace::SdkTracerProvider,
    Resource,
};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::config::{Config, LogFormat};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter for {endpoint}: {message}")]
    Otlp { endpoint: String, message: String },
    #[error("Prometheus exporter: {0}")]
    Prometheus(String),
}

type FilterHandle = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

static LOG_FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// Changes the log filter (`log.level`) of the running agent; `RUST_LOG`,
/// when set, keeps winning.
pub fn set_log_level(level: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(());
    }
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level = {level:?}: {e}"))?;
    LOG_FILTER.get().ok_or("logging is not set up")?.reload(filter).map_err(|e| e.to_string())
}

/// Keeps the providers alive; [`Telemetry::shutdown`] flushes what is queued.
pub struct Telemetry {
    meters: SdkMeterProvider,
    tracer: Option<SdkTracerProvider>,
    pub registry: ::prometheus::Registry,
}

impl Telemetry {
    pub fn shutdown(&self) {
        if let Some(t) = &self.tracer {
            let _ = t.shutdown();
        }
        let _ = self.meters.shutdown();
    }
}

/// Sets up logs, metrics and traces. Called inside the tokio runtime: the
/// OTLP exporters run on it.
pub fn init(config: &Config) -> Result<Telemetry, TelemetryError> {
    let t = &config.telemetry;
    let resource = Resource::builder()
        .with_service_name(t.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new("service.instance.id", config.instance.id.clone()))
        .with_attribute(opentelemetry::KeyValue::new("service.version", crate::version()))
        .build();
    let otlp_err = |e: &dyn std::fmt::Display| TelemetryError::Otlp {
        endpoint: t.otlp_endpoint.clone(),
        message: e.to_string(),
    };

    let registry = ::prometheus::Registry::new();
    let prom = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .build()
        .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
    let mut meters = SdkMeterProvider::builder().with_resource(resource.clone()).with_reader(prom);
    let mut tracer = None;
    if !t.otlp_endpoint.is_empty() {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(t.otlp_endpoint.clone())
            .build()
            .map_err(|e| otlp_err(&e))?;
        meters = meters
            .with_reader(PeriodicReader::builder(exporter, Tokio).with_interval(t.otlp_interval).build());
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(t.otlp_endpoint.clone())
            .build()
            .map_err(|e| otlp_err(&e))?;
        // The SDK's thread-based batch processor: ending a span queues it
        // without waking anything (the async-runtime one wakes a task per
        // span, which cost Execute 6-9 % of its latency on two cores).
        tracer =
            Some(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(spans).build());
    }
    let meters = meters.build();
    opentelemetry::global::set_meter_provider(meters.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = LOG_FILTER.set(handle);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match config.log.format {
        LogFormat::Json => fmt
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json_lines::FlatJson)
            .boxed(),
        // Colour only on a terminal: never escape codes in files or the journal.
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(text_lines::TextFields)
            .boxed(),
    };
    // The log level filters the log lines only: spans are exported at info
    // whatever the logs show.
    let otel = tracer.as_ref().map(|p| {
        // Names, fields and timing only: the busy/idle accounting (a clock
        // read at every poll of an instrumented future), thread and source
        // location attributes cost more per span than they tell.
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("bolt-agent"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).try_init();
    Ok(Telemetry { meters, tracer, registry })
}

