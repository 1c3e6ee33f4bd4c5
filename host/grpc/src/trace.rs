//! `traceparent` across gRPC calls: sent by [`attach`] (through [`crate::Outgoing`]) and
//! continued by [`TraceLayer`] on every server, so a call's log lines carry the trace id of the
//! request that caused it.

use mediahost_core::TraceParent;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::metadata::MetadataMap;
use tracing::Instrument;

/// The metadata key (and HTTP/2 header) of the W3C trace context.
const TRACEPARENT: &str = "traceparent";

/// Adds the running task's trace, as the next hop, to a call's metadata (nothing outside a
/// trace).
pub fn attach(metadata: &mut MetadataMap) {
    if let Some(value) =
        mediahost_core::trace::current().and_then(|trace| trace.child().to_string().parse().ok())
    {
        metadata.insert(TRACEPARENT, value);
    }
}

/// Runs every call of the services it wraps in the caller's trace (or a new one), inside a
/// `grpc` span with `trace_id` and the rpc path.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner }
    }
}

/// A service wrapped by [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let header = request
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok());
        let trace = TraceParent::continue_from(header);
        let span =
            tracing::info_span!("grpc", trace_id = %trace.trace_id(), rpc = %request.uri().path());
        let call = span.in_scope(|| self.inner.call(request));
        Box::pin(trace.scope(call.instrument(span)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, ServiceExt};

    #[tokio::test]
    async fn a_call_runs_in_the_callers_trace_or_a_new_one() {
        let service = TraceLayer.layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(mediahost_core::trace::current())
        }));
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let request = http::Request::builder()
            .header(TRACEPARENT, parent)
            .body(())
            .unwrap();
        let seen = service.clone().oneshot(request).await.unwrap().unwrap();
        assert_eq!(seen.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let fresh = service
            .oneshot(http::Request::new(()))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
