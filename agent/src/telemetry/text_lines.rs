//! Fields of text log lines: `name=value` like tracing's default, without the
//! OpenTelemetry bookkeeping (`otel.*`, `rpc.system`) that the exported spans
//! need and a person reading the log does not.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{format::Writer, FormatFields},
};

/// The field formatter of `log.format = "text"`.
pub struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor { writer, sep: "", result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

fn hidden(name: &str) -> bool {
    name.starts_with("otel.") || name == "rpc.system"
}

struct TextVisitor<'w> {
    writer: Writer<'w>,
    sep: &'static str,
    result: fmt::Result,
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &value)
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || hidden(name) {
            return;
        }
        self.result = if name == "message" {
            write!(self.writer, "{}{value:?}", self.sep)
        } else {
            write!(self.writer, "{}{name}={value:?}", self.sep)
        };
        self.sep = " ";
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::captured::Captured;

    #[test]
    fn otel_fields_are_left_out_and_the_rest_reads_as_before() {
        let buf = Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(buf.clone())
            .with_ansi(false)
            .fmt_fields(TextFields);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let rpc = tracing::info_span!(
                "rpc",
                otel.name = "bolt.v1.Bolt/Execute",
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.method = "Execute",
                rpc.grpc.status_code = tracing::field::Empty,
            );
            let _r = rpc.enter();
            rpc.record("rpc.grpc.status_code", 0);
            tracing::info!(state = "succeeded", exit_code = 0, "ended");
        });
        let text = buf.text();
        assert!(
            text.contains("rpc{rpc.method=\"Execute\" rpc.grpc.status_code=0}:"),
            "{text}"
        );
        assert!(text.contains("ended state=\"succeeded\" exit_code=0"), "{text}");
        assert!(!text.contains("otel") && !text.contains("grpc\""), "{text}");
    }
}
