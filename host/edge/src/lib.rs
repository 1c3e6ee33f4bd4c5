//! The edge role of mediahost: a caching reverse proxy for playback files, in front of the
//! origin (the api role).
//!
//! Flow of `GET /v1/videos/{id}/hls/{path}?exp=…&sig=…`:
//! 1. **Cache key** = the request's path *and* query. The edge holds no signing secrets, so it
//!    cannot check a signature itself; keying by the full URL means a cached object is only ever
//!    served again to a request carrying the very signature the origin accepted. The expiry is
//!    checked at the edge (it is in the URL, and altering it changes the key): an expired URL
//!    is never answered from the cache but forwarded, and the origin answers 403.
//! 2. **Hit** ([`cache`]): answered from memory, `Range` included (206/416), with `Age` and
//!    `X-Cache: HIT`. Still served when the origin is down.
//! 3. **Miss** ([`flight`]): the first request starts one origin fetch (without its `Range`, so
//!    the whole object can be cached); concurrent requests for the same key join it
//!    (coalescing) and every one streams the body as it arrives, from its own offset.
//!    Responses are stored only when complete, `200`, and marked `Cache-Control: public` with a
//!    `max-age` (the origin marks only signed playback so); everything else passes through.
//! 4. **Origin down**: uncached objects answer 502 `origin_unavailable`.
//!
//! Operators purge by video or path prefix (`POST /v1/edge/purge`, operator key), scrape
//! `/metrics` (hits, misses, coalesced waits, bytes out, origin fetch latency, cache bytes) and
//! probe `/healthz`. [`run`] serves the edge on a listener until a cancellation token fires.

pub mod cache;
pub mod flight;
mod proxy;
pub mod range;

use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why the edge could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// `[edge] origin` / `--origin` is missing or not an http(s) URL.
    #[error(
        "invalid origin URL {0:?}: expected e.g. http://127.0.0.1:8080 (`--origin` or `[edge] origin`)"
    )]
    InvalidOrigin(String),
    /// The HTTP client for the origin could not be built.
    #[error("cannot build the origin HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// Serving the listener failed.
    #[error("edge listener failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Histogram buckets for `mediahost_edge_origin_fetch_seconds`: loopback fetches take
/// milliseconds, far origins and large segments seconds.
pub const ORIGIN_FETCH_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The edge's shared state: cache, fetches in flight and the origin client.
pub struct Edge {
    /// Origin base URL without a trailing slash; request paths are appended to it.
    origin: String,
    /// Talks to the origin (connection pooling, timeouts).
    client: reqwest::Client,
    /// Complete objects by cache key.
    cache: cache::Cache,
    /// Origin fetches under way by cache key, so concurrent misses share one.
    in_flight: Mutex<HashMap<String, Arc<flight::Flight>>>,
    /// Bearer key that may purge; `None` turns purging off (403).
    operator_key: Option<String>,
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
}

impl Edge {
    /// An edge in front of the origin of `config`, reporting to `metrics`; `operator_key`
    /// authorises purges.
    pub fn new(
        config: &mediahost_core::config::EdgeConfig,
        operator_key: Option<&str>,
        metrics: PrometheusHandle,
    ) -> Result<Self, EdgeError> {
        let origin = config.origin.as_deref().unwrap_or_default().trim();
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(EdgeError::InvalidOrigin(origin.to_owned()));
        }
        let timeout = Duration::from_secs(config.origin_timeout_seconds.max(1));
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            // Bounds the wait for headers and each body read, not the whole transfer, which
            // may legitimately take long for big segments on slow links.
            .read_timeout(timeout)
            .build()?;
        Ok(Self {
            origin: origin.trim_end_matches('/').to_owned(),
            client,
            cache: cache::Cache::new(config.cache_bytes),
            in_flight: Mutex::new(HashMap::new()),
            operator_key: operator_key
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            metrics,
        })
    }
}

/// The edge's routes: playback under `/v1/videos`, purge, health and metrics.
pub fn app(edge: Arc<Edge>) -> Router {
    Router::new()
        .route("/v1/videos/{id}/hls/{*path}", get(proxy::playback))
        .route("/v1/edge/purge", post(proxy::purge))
        .route("/healthz", get(proxy::healthz))
        .route("/metrics", get(proxy::metrics))
        .fallback(proxy::not_found)
        .with_state(edge)
}

/// Serves `edge` on `listener` until `shutdown` fires, then finishes requests in flight.
pub async fn run(
    edge: Arc<Edge>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    axum::serve(listener, app(edge))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn edge(operator_key: Option<&str>) -> Arc<Edge> {
        let config = mediahost_core::config::EdgeConfig {
            origin: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        Arc::new(Edge::new(&config, operator_key, metrics).unwrap())
    }

    async fn call(edge: Arc<Edge>, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = app(edge).oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn purge(key: Option<&str>, body: &str) -> Request<Body> {
        let mut request =
            Request::post("/v1/edge/purge").header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        request.body(Body::from(body.to_owned())).unwrap()
    }

    #[test]
    fn the_origin_must_be_an_http_url() {
        let config = mediahost_core::config::EdgeConfig::default();
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let err = Edge::new(&config, None, metrics).err().unwrap();
        assert!(matches!(err, EdgeError::InvalidOrigin(_)), "{err}");
    }

    #[tokio::test]
    async fn purge_needs_the_operator_key_and_one_target() {
        let (status, body) = call(edge(None), purge(Some("k"), r#"{"video_id":"v"}"#)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, _) = call(edge(Some("k")), purge(None, r#"{"video_id":"v"}"#)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = call(edge(Some("k")), purge(Some("k"), r#"{"video_id":"v"}"#)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["prefix"], "/v1/videos/v/");
        for bad in [
            r#"{}"#,
            r#"{"video_id":"v","prefix":"/x"}"#,
            r#"{"prefix":"x"}"#,
        ] {
            let (status, body) = call(edge(Some("k")), purge(Some("k"), bad)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(body["error"]["code"], "invalid_request");
        }
    }

    #[tokio::test]
    async fn unknown_paths_are_json_404s() {
        let request = Request::get("/v1/videos").body(Body::empty()).unwrap();
        let (status, body) = call(edge(None), request).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }
}
