//! Every request runs in a trace ([`mediahost_core::trace`]): the caller's `traceparent` when it
//! sends a valid one, a new trace otherwise. The trace id is in every log line the request
//! causes (its span's `trace_id` field) and travels on in the jobs it enqueues; the answer's
//! `traceparent` header names this hop, so a client can quote it when reporting a problem.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use mediahost_core::TraceParent;
use tracing::Instrument;

/// The W3C trace-context header, asked for and answered.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Runs the request in its trace and answers with this hop's `traceparent`.
pub(crate) async fn traced(request: Request, next: Next) -> Response {
    let trace = TraceParent::continue_from(
        request
            .headers()
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
    );
    let span = tracing::info_span!(
        "request",
        trace_id = %trace.trace_id(),
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = trace.scope(next.run(request)).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&trace.to_string()) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}
