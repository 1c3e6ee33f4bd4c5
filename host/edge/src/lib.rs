//! The edge role of mediahost: a caching reverse proxy for playback files, in front of the
//! origin (the api role).
//!
//! Flow of `GET /v1/videos/{id}/hls/{path}?exp=…&sig=…` (and of the DASH manifest,
//! `/v1/videos/{id}/dash/manifest.mpd`, whose segment URLs lead to the same `hls/` files):
//! 1. **Cache key** ([`signed`]): a playlist is keyed by its path *and* query, as its bytes
//!    embed the signature. Media files (segments, init files, images) are keyed without `exp`
//!    and `sig`, so every viewer's signature shares one copy and pushed objects serve every
//!    viewer; such an object is served only to a request whose signature the origin accepted
//!    for that video (learned from the origin's answers, else asked with a `HEAD`), as the
//!    edge holds no signing secrets. The expiry is checked at the edge (it is in the URL): an
//!    expired URL is never answered from the cache but forwarded, and the origin answers 403.
//! 2. **Hit** ([`cache`]): answered from memory, else from disk ([`disk`], promoted back into
//!    memory when it fits), `Range` included (206/416), with `Age` and `X-Cache: HIT`. Still
//!    served when the origin is down. A playlist past its `max-age` is answered
//!    `X-Cache: STALE` while one background fetch refreshes it, for at most
//!    `stale_if_error_seconds` past it (players stall without playlists; segments never change).
//! 3. **Miss** ([`flight`]): the first request starts one origin fetch (without its `Range`, so
//!    the whole object can be cached); concurrent requests for the same key join it
//!    (coalescing) and every one streams the body as it arrives, from its own offset.
//!    Responses are stored only when complete, `200`, and marked `Cache-Control: public` with a
//!    `max-age` (the origin marks only signed playback so); everything else passes through.
//! 4. **Origin down**: uncached objects answer 502 `origin_unavailable`.
//!
//! Operators purge by video or path prefix (`POST /v1/edge/purge` with the operator key, or
//! gRPC [`grpc`] which also pushes objects ahead of viewers, with the operator key or the
//! cluster token), scrape `/metrics` (hits,
//! misses, stale answers, coalesced waits, bytes out, origin fetch latency, cache bytes per
//! tier, plugin time) and probe `/healthz` (liveness) and `/readyz` (the process's backends). Edge-transform plugins ([`transform`]) run on
//! every playback request when the edge is given them. [`run`] serves the edge, gRPC included, on one listener until a
//! cancellation token fires.

mod auth;
pub mod cache;
mod counters;
pub mod disk;
pub mod fleet;
pub mod flight;
pub mod grpc;
mod lru;
mod proxy;
mod signed;
pub mod transform;

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
    /// The disk cache's folder cannot be created or read.
    #[error("disk cache {dir} (`[edge] disk_cache_dir`): {source}")]
    DiskCache {
        /// The folder.
        dir: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
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
    /// Complete objects by cache key, in memory and on disk.
    cache: cache::Cache,
    /// How long playlists are served stale past their `max-age` (`edge.stale_if_error_seconds`).
    playlist_stale_for: Duration,
    /// The edge group this edge belongs to, reported so operators see which edges answer.
    group: String,
    /// Origin fetches under way by cache key, so concurrent misses share one.
    in_flight: Mutex<HashMap<String, Arc<flight::Flight>>>,
    /// Signatures the origin accepted, which may read media objects cached without theirs.
    verdicts: signed::Verdicts,
    /// Bearer key that may purge; `None` turns purging off (403).
    operator_key: Option<String>,
    /// The deployment's shared secret, accepted on the gRPC control service besides the
    /// operator key (see [`grpc`]).
    cluster_token: Option<String>,
    /// `Node.Status` of the process, served beside the control service when set with
    /// [`Edge::with_node`].
    node: Option<mediahost_grpc::node::NodeService>,
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
    /// Edge-transform plugins run on every playback request, when the edge has them.
    transforms: Option<transform::Transforms>,
    /// The per-request metrics, registered once.
    counters: counters::Counters,
    /// The backends `/readyz` asks (those the process opened: database, object storage,
    /// Redis); none unless set with [`Edge::with_readiness`].
    readiness: mediahost_core::Readiness,
}

impl Edge {
    /// An edge in front of the origin of `config`, reporting to `metrics`; `operator_key`
    /// authorises purges. Opens the disk tier (under `data_dir` unless configured elsewhere),
    /// indexing what an earlier run left there.
    pub fn new(
        config: &mediahost_core::config::EdgeConfig,
        data_dir: &std::path::Path,
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
        let disk = match config.disk_cache_bytes {
            0 => None,
            budget => {
                let dir = config.disk_cache_dir(data_dir);
                let disk = disk::Disk::open(&dir, budget)
                    .map_err(|source| EdgeError::DiskCache { dir, source })?;
                Some(disk)
            }
        };
        metrics::gauge!("mediahost_edge_info", "group" => config.group.clone()).set(1.0);
        Ok(Self {
            origin: origin.trim_end_matches('/').to_owned(),
            client,
            cache: cache::Cache::new(config.cache_bytes, disk),
            playlist_stale_for: Duration::from_secs(config.stale_if_error_seconds),
            group: config.group.clone(),
            in_flight: Mutex::new(HashMap::new()),
            verdicts: Default::default(),
            operator_key: operator_key
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            cluster_token: None,
            node: None,
            metrics,
            transforms: None,
            counters: counters::Counters::register(),
            readiness: Default::default(),
        })
    }

    /// Reports these backend checks at `/readyz`.
    pub fn with_readiness(mut self, readiness: mediahost_core::Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Accepts `token` (the cluster token, if set and not blank) on the gRPC control service.
    pub fn with_cluster_token(mut self, token: Option<&str>) -> Self {
        self.cluster_token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        self
    }

    /// Serves `node` (the process's `Node.Status`) on the edge's listener.
    pub fn with_node(mut self, node: mediahost_grpc::node::NodeService) -> Self {
        self.node = Some(node);
        self
    }

    /// Runs edge-transform plugins on every playback request (see [`transform`]).
    pub fn with_transforms(mut self, transforms: transform::Transforms) -> Self {
        self.transforms = Some(transforms);
        self
    }
}

impl Edge {
    /// The cache figures `Node.Status` reports.
    pub fn cache_figures(&self) -> mediahost_grpc::proto::control::EdgeCache {
        let (memory_bytes, disk_bytes) = self.cache.bytes();
        mediahost_grpc::proto::control::EdgeCache {
            group: self.group.clone(),
            memory_bytes,
            disk_bytes,
            hits: self
                .counters
                .hit_count
                .load(std::sync::atomic::Ordering::Relaxed),
            misses: self
                .counters
                .miss_count
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The cache, e.g. to pre-warm it in process.
    pub fn cache(&self) -> &cache::Cache {
        &self.cache
    }

    /// How long past its `max-age` the object at `key` may be served stale: playlists only.
    fn stale_for(&self, key: &str) -> Duration {
        if proxy::is_playlist(key) {
            self.playlist_stale_for
        } else {
            Duration::ZERO
        }
    }

    /// Drops every cached object whose key starts with `prefix` (memory and disk); returns
    /// how many.
    pub fn purge(&self, prefix: &str) -> usize {
        let purged = self.cache.purge(prefix);
        self.verdicts.clear();
        tracing::info!(%prefix, purged, "purged");
        purged
    }
}

/// The edge's routes: playback under `/v1/videos`, purge, health, metrics and the gRPC
/// endpoint (control service, health until `shutdown`, reflection).
pub fn app(edge: Arc<Edge>, shutdown: CancellationToken) -> Router {
    let router = Router::new()
        .route("/v1/videos/{id}/hls/{*path}", get(proxy::playback))
        .route(
            &format!("/v1/videos/{{id}}/{}", proxy::DASH_MANIFEST_PATH),
            get(proxy::playback),
        )
        .route("/v1/edge/purge", post(proxy::purge))
        .route("/healthz", get(proxy::healthz))
        .route("/readyz", get(proxy::readyz))
        .route("/metrics", get(proxy::metrics))
        .fallback(proxy::not_found)
        .with_state(edge.clone());
    grpc::route(router, edge, shutdown)
}

/// Serves `edge` on `listener` until `shutdown` fires, then finishes requests in flight.
pub async fn run(
    edge: Arc<Edge>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    // The peer address is what edge transforms see as `client-ip`.
    let app =
        app(edge, shutdown.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::path::Path;
    use tower::ServiceExt;

    fn edge(operator_key: Option<&str>) -> Arc<Edge> {
        let config = mediahost_core::config::EdgeConfig {
            origin: Some("http://127.0.0.1:9".into()),
            disk_cache_bytes: 0,
            ..Default::default()
        };
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        Arc::new(Edge::new(&config, Path::new("/nonexistent"), operator_key, metrics).unwrap())
    }

    async fn call(edge: Arc<Edge>, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = app(edge, CancellationToken::new())
            .oneshot(request)
            .await
            .unwrap();
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
        let err = Edge::new(&config, Path::new("/nonexistent"), None, metrics)
            .err()
            .unwrap();
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
    async fn readiness_reports_the_backends_it_was_given() {
        let (status, body) = call(
            edge(None),
            Request::get("/readyz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!((status, &body["status"]), (StatusCode::OK, &"ready".into()));
        let failing = mediahost_core::Readiness::default()
            .with_check("database", || async { Ok(()) })
            .with_check("redis", || async { Err("connection refused".to_owned()) });
        let edge = Arc::new(Arc::into_inner(edge(None)).unwrap().with_readiness(failing));
        let (status, body) = call(edge, Request::get("/readyz").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["failing"], serde_json::json!(["redis"]));
        assert_eq!(body["checks"]["redis"]["error"], "connection refused");
    }

    #[tokio::test]
    async fn unknown_paths_are_json_404s() {
        let request = Request::get("/v1/videos").body(Body::empty()).unwrap();
        let (status, body) = call(edge(None), request).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }
}
