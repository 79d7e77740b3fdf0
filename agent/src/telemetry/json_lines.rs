//! JSON log lines with the fields of every enclosing span flattened into the
//! line: the `ended` line of an execution carries its `id`, caller, pack and
//! action like every other line about it, so one `jq 'select(.id == …)'`
//! finds them all. Inner spans win over outer ones, the event's own fields
//! over both; `span` names the innermost span. A field named `*_json` that
//! holds a JSON text (the audit line's `args_json`) is embedded as a value
//! under the name without the suffix, not as a string holding JSON.

use std::fmt;

use serde_json::{Map, Value};
use tracing::{field::Field, Event, Subscriber};
use tracing_subscriber::{
    fmt::{
        format::{JsonFields, Writer},
        FmtContext, FormatEvent, FormattedFields,
    },
    registry::LookupSpan,
};

/// The event formatter; pair it with `fmt_fields(JsonFields::new())`.
pub struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), now().into());
        line.insert("level".into(), meta.level().as_str().into());
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<JsonFields>>() {
                    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields) {
                        line.extend(map);
                    }
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".into(), name.into());
            }
        }
        event.record(&mut Visitor(&mut line));
        line.insert("target".into(), meta.target().into());
        writeln!(writer, "{}", Value::Object(line))
    }
}

fn now() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// Event fields as JSON values: numbers and booleans stay typed.
struct Visitor<'a>(&'a mut Map<String, Value>);

impl Visitor<'_> {
    fn text(&mut self, name: &str, value: String) {
        if let Some(base) = name.strip_suffix("_json") {
            if let Ok(v) = serde_json::from_str::<Value>(&value) {
                self.0.insert(base.into(), v);
                return;
            }
        }
        self.0.insert(name.into(), value.into());
    }
}

impl tracing::field::Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field.name(), value.to_owned());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field.name(), format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::captured::Captured;

    #[test]
    fn every_line_carries_the_fields_of_its_spans() {
        let buf = Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(buf.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let execution = tracing::info_span!("execution", id = "e-1", pack = "p", caller = "alice");
            let _e = execution.enter();
            let end = tracing::info_span!("end", pack = "inner");
            let _x = end.enter();
            tracing::info!(state = "succeeded", exit_code = 0, ok = true, "ended");
            tracing::info!(args_json = r#"{"msg":"a \"b\""}"#, broken_json = "{no", "execute");
        });
        let text = buf.text();
        assert_eq!(text.lines().count(), 2);
        let line: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("one JSON object");
        assert_eq!(line["id"], "e-1");
        assert_eq!(line["caller"], "alice");
        assert_eq!(line["pack"], "inner", "the inner span wins");
        assert_eq!(line["message"], "ended");
        assert_eq!(line["exit_code"], 0);
        assert_eq!(line["ok"], true);
        assert_eq!(line["span"], "end");
        assert_eq!(line["level"], "INFO");
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        let audit: Value = serde_json::from_str(text.lines().nth(1).expect("a line")).expect("JSON");
        assert_eq!(audit["args"]["msg"], "a \"b\"", "JSON text embedded as an object");
        assert_eq!(audit["broken_json"], "{no", "not JSON: kept as the string it is");
    }
}
