//! Around every call: a `tracing` span that continues the caller's W3C
//! `traceparent`, and the latency histogram with the span's attributes (`rpc.method`, `rpc.grpc.status_code`).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use opentelemetry::{propagation::Extractor, KeyValue};
use tonic::codegen::http::{HeaderMap, Request, Response};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[derive(Clone)]
pub struct RpcLayer;

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<Request<B>> for RpcService<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        crate::host::memory::note_activity();
        // "/bolt.v1.Bolt/Execute": a bounded set of names, fine as a label.
        let method = req.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
        let service =
            req.uri().path().trim_start_matches('/').split('/').next().unwrap_or_default().to_owned();
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())));
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(parent);
        let started = Instant::now();
        let fut = self.inner.call(req);
        let span2 = span.clone();
        Box::pin(
            async move {
                let res = fut.await;
                // Errors travel as a trailers-only response: grpc-status in
                // the headers. Its absence means the call went on with OK.
                let code = match &res {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0),
                    Err(_) => 2,
                };
                span2.record("rpc.grpc.status_code", code);
                crate::telemetry::metrics::get().rpc_duration.record(
                    started.elapsed().as_secs_f64(),
                    // The span's own attribute names (OpenTelemetry's RPC conventions).
                    &[KeyValue::new("rpc.method", method), KeyValue::new("rpc.grpc.status_code", i64::from(code))],
                );
                res
            }
            .instrument(span),
        )
    }
}

