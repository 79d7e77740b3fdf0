//! The gRPC surface: the Bolt service, grpc.health.v1 and reflection, all
//! behind the check that the caller presented a client certificate.

mod convert;
mod rpc_layer;
mod service;
pub(crate) mod status;

pub use rpc_layer::RpcLayer;
pub use service::{AgentState, BoltService};

use tonic::{
    body::Body,
    codegen::http::{HeaderMap, HeaderValue, Response},
    Request, Status,
};

use crate::tls::{incoming::ConnInfo, PeerIdentity};
use std::sync::Arc;

/// tonic answers a message beyond the decoding limit with OUT_OF_RANGE;
/// gRPC's convention (and every other limit of Bolt) is RESOURCE_EXHAUSTED
/// with a message naming the setting. A request that is not valid protobuf
/// gets INVALID_ARGUMENT rather than INTERNAL. The status may be in the headers or
/// in the trailers, so both are rewritten.
pub fn oversized_to_resource_exhausted(res: Response<Body>) -> Response<Body> {
    use http_body_util::BodyExt;
    let (mut parts, body) = res.into_parts();
    rewrite_oversized(&mut parts.headers);
    let body = body.map_frame(|frame| match frame.into_trailers() {
        Ok(mut trailers) => {
            rewrite_oversized(&mut trailers);
            http_body::Frame::trailers(trailers)
        }
        Err(frame) => frame,
    });
    Response::from_parts(parts, Body::new(body))
}

fn rewrite_oversized(h: &mut HeaderMap) {
    let code = h.get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let msg = h.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or_default().to_owned();
    let oversized =
        code == "11" && (msg.contains("length%20too%20large") || msg.contains("length too large"));
    // A message that is not valid protobuf is a malformed call, not a fault
    // of the agent.
    let undecodable =
        code == "13" && (msg.contains("failed%20to%20decode") || msg.contains("failed to decode"));
    if oversized {
        h.insert("grpc-status", HeaderValue::from_static("8"));
        if let Ok(v) = HeaderValue::from_str(&format!("{msg}%20(limits.max_message_bytes)")) {
            h.insert("grpc-message", v);
        }
    } else if undecodable {
        h.insert("grpc-status", HeaderValue::from_static("3"));
    }
}

/// Refuses every call, on every service, from a connection that completed
/// TLS without a client certificate.
#[allow(clippy::result_large_err)]
pub fn require_identity(req: Request<()>) -> Result<Request<()>, Status> {
    identity(&req).map(|_| req)
}

#[allow(clippy::result_large_err)]
pub(crate) fn identity<T>(req: &Request<T>) -> Result<Arc<PeerIdentity>, Status> {
    let conn = req.extensions().get::<ConnInfo>();
    if let Some(refused) = conn.and_then(|c| c.refused.as_ref()) {
        return Err(Status::resource_exhausted(refused.to_string()));
    }
    if conn.is_some_and(|c| c.nameless) {
        return Err(Status::unauthenticated(
            "the client certificate names no identity: it needs a URI or DNS subject alternative name, or a common name",
        ));
    }
    conn.and_then(|c| c.identity.clone())
        .ok_or_else(|| Status::unauthenticated("a client certificate signed by the agent's CA is required"))
}
