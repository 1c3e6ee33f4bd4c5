//! The HTTP API of mediahost: video CRUD, streaming source uploads, HLS playback from object
//! storage, health and Prometheus metrics.
//!
//! [`app`] builds the whole [`Router`] from an [`AppState`], so tests can drive it without a
//! socket and the binary serves it with `axum::serve` (HTTP/1.1 and h2c on one port).
//!
//! Flow of an upload: `POST /v1/videos` creates the record → `PUT /v1/videos/{id}/source` asks
//! the validator plugins (`check-upload`, then `check-head` on the first 64 KiB), streams the
//! body to temp storage while hashing, promotes it to permanent storage, marks the video
//! `queued` and enqueues a transcode job. Workers take it from there. Resumable uploads take the
//! same path in pieces through the tus protocol at `/v1/uploads` ([`tus`]).

mod admin;
mod auth;
pub mod bindings;
pub mod catalog;
pub mod control;
mod cors;
mod error;
mod ingest;
mod openapi;
mod ops;
mod playback;
mod quota;
mod refused_body;
mod request_id;
mod signing;
pub mod sync;
#[cfg(test)]
mod test_support;
pub mod tus;
mod upload;
mod videos;

pub use error::ApiError;
pub use ops::{CHECK_TIMEOUT, backend_checks, readiness_answer};

use axum::Extension;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use mediahost_blob::Blobs;
use mediahost_queue::JobQueue;
use mediahost_runtime::PluginHost;
use mediahost_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Everything a request handler needs; shared by all requests.
pub struct AppState {
    /// Tenants, keys and videos.
    pub store: Store,
    /// Where transcode jobs go.
    pub queue: Arc<dyn JobQueue>,
    /// Temp staging and permanent object storage.
    pub blobs: Blobs,
    /// Loaded plugins (validators run on uploads).
    pub plugins: PluginHost,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Base URL for playback links; from the request's Host when unset.
    pub public_url: Option<String>,
    /// Videos whose source is being received by this process (video id → tenant id), so a
    /// second concurrent upload of the same video is refused instead of racing the first, and
    /// streaming uploads count towards their tenant's concurrency quota.
    pub uploads_in_flight: Mutex<HashMap<String, String>>,
    /// tus limits, expiry and lock lease (`[tus]`); set with [`AppState::with_tus`].
    pub tus: mediahost_core::config::TusConfig,
    /// Where tus write locks are held (`[tus] lock`): the metadata DB unless set with
    /// [`AppState::with_upload_locks`].
    pub upload_locks: Arc<dyn tus::lock::UploadLocks>,
    /// The operator's Bearer key for the admin API (`/v1/plugins`); `None` turns the admin API
    /// off (403). Set with [`AppState::with_operator_key`].
    pub operator_key: Option<String>,
    /// Default tenant quotas (`[quotas]`); set with [`AppState::with_quotas`].
    pub quotas: mediahost_core::Quota,
    /// Seconds a signed playback URL handed out by `GET /v1/videos/{id}` stays valid
    /// (`[playback] signed_url_seconds`); set with [`AppState::with_signed_url_seconds`].
    pub signed_url_seconds: u64,
    /// The edges purged when a video is deleted; none unless set with
    /// [`AppState::with_edges`].
    pub edges: mediahost_edge::fleet::Fleet,
    /// The backends `/readyz` asks: the store, queue and object storage of this state unless
    /// set with [`AppState::with_readiness`] (the process adds Redis when it uses it).
    pub readiness: mediahost_core::Readiness,
}

impl AppState {
    /// State with no upload in flight.
    pub fn new(
        store: Store,
        queue: Arc<dyn JobQueue>,
        blobs: Blobs,
        plugins: PluginHost,
        metrics: PrometheusHandle,
        public_url: Option<String>,
    ) -> Self {
        Self {
            readiness: ops::backend_checks(&store, Some(&queue), &blobs),
            upload_locks: Arc::new(tus::lock::DatabaseLocks::new(store.clone())),
            store,
            queue,
            blobs,
            plugins,
            metrics,
            public_url,
            uploads_in_flight: Mutex::new(HashMap::new()),
            tus: Default::default(),
            quotas: Default::default(),
            operator_key: None,
            signed_url_seconds: mediahost_core::config::PlaybackConfig::default()
                .signed_url_seconds,
            edges: Default::default(),
        }
    }

    /// Purges `edges` of a video's group when it is deleted.
    pub fn with_edges(mut self, edges: mediahost_edge::fleet::Fleet) -> Self {
        self.edges = edges;
        self
    }

    /// Reports `readiness` at `/readyz`: every backend the process uses.
    pub fn with_readiness(mut self, readiness: mediahost_core::Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Enables the admin API for `key` (`None` or blank keeps it off).
    pub fn with_operator_key(mut self, key: Option<&str>) -> Self {
        self.operator_key = key
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        self
    }
}

impl AppState {
    /// Uses these default tenant quotas (no limits otherwise).
    pub fn with_quotas(mut self, quotas: mediahost_core::Quota) -> Self {
        self.quotas = quotas;
        self
    }

    /// Signed playback URLs from `GET /v1/videos/{id}` last `seconds` (at least 1).
    pub fn with_signed_url_seconds(mut self, seconds: u64) -> Self {
        self.signed_url_seconds = seconds.max(1);
        self
    }

    /// Uses these tus settings instead of the defaults.
    pub fn with_tus(mut self, tus: mediahost_core::config::TusConfig) -> Self {
        self.tus = tus;
        self
    }

    /// Holds tus write locks in `locks` (see [`tus::lock::from_config`]) instead of the
    /// metadata DB's upload rows.
    pub fn with_upload_locks(mut self, locks: Arc<dyn tus::lock::UploadLocks>) -> Self {
        self.upload_locks = locks;
        self
    }
}

/// Shared state as handlers receive it.
pub type SharedState = Arc<AppState>;

/// The `/v1` routes, each registered with its OpenAPI entry (see [`openapi`]).
fn v1_routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(videos::list, videos::create))
        .routes(routes!(videos::show, videos::delete))
        .merge(
            // Sources are streamed to disk, never buffered, so no body limit applies.
            OpenApiRouter::new()
                .routes(routes!(upload::put_source))
                .layer(DefaultBodyLimit::disable()),
        )
        // Documented in `openapi::ApiDoc`: OpenAPI cannot spell the wildcard.
        .route("/videos/{id}/hls/{*path}", get(playback::hls_file))
        .routes(routes!(playback::dash_manifest))
        .routes(routes!(quota::own_usage))
        .routes(routes!(admin::list_plugins))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(admin::put_plugin, admin::delete_plugin))
                .layer(DefaultBodyLimit::max(admin::MAX_PLUGIN_UPLOAD_BYTES)),
        )
        .routes(routes!(quota::show, quota::set))
        .routes(routes!(bindings::show, bindings::replace))
        .routes(routes!(openapi::serve))
        .merge(tus::routes())
}

/// The complete HTTP API.
pub fn app(state: SharedState) -> Router {
    let (v1, doc) = v1_routes().split_for_parts();
    let v1 = v1
        .layer(Extension(Arc::new(openapi::document(doc))))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state.clone());
    // CORS and tus discovery wrap `/v1` as one service rather than each route, so a browser's
    // preflight is answered on every path, including those without an OPTIONS route; so does
    // tus's method override, which must act before routing.
    let v1 = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tus::discovery,
        ))
        .layer(cors::layer())
        .layer(axum::middleware::from_fn(
            refused_body::close_after_refused_body,
        ))
        .layer(axum::middleware::from_fn(tus::method_override))
        .service(v1);
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest_service("/v1", v1)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn(request_id::traced))
        .with_state(state)
}
