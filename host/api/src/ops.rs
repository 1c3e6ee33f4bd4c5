//! Operational endpoints: liveness, readiness, metrics, and JSON answers for unknown routes.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use mediahost_blob::Blobs;
use mediahost_core::Readiness;
use mediahost_queue::JobQueue;
use mediahost_store::Store;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use crate::{ApiError, SharedState};

/// `GET /healthz`: liveness. The process is up and serving; backends are not consulted, so a
/// database outage makes the process unready, not a restart candidate.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: readiness. 200 when every backend the process uses answers, else 503;
/// either way each backend's result is reported (see [`Readiness`]), so an operator sees
/// which one is down.
pub async fn readyz(State(state): State<SharedState>) -> impl IntoResponse {
    readiness_answer(&state.readiness).await
}

/// The `/readyz` answer of any role: 200 `{"status":"ready",…}` or 503 naming the failing
/// backends.
pub async fn readiness_answer(readiness: &Readiness) -> (StatusCode, Json<serde_json::Value>) {
    let report = readiness.report().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report.body))
}

/// The checks of the backends every api and worker process uses: `database` (a `SELECT 1`,
/// answered within 5 s), `queue` (its depth, when the process has one) and `object_storage`
/// (an empty listing, without retries).
pub fn backend_checks(
    store: &Store,
    queue: Option<&Arc<dyn JobQueue>>,
    blobs: &Blobs,
) -> Readiness {
    let mut readiness = Readiness::default().with_check("database", {
        let store = store.clone();
        move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        }
    });
    if let Some(queue) = queue {
        let queue = queue.clone();
        readiness = readiness.with_check("queue", move || {
            let queue = queue.clone();
            async move {
                match tokio::time::timeout(CHECK_TIMEOUT, queue.depth()).await {
                    Ok(depth) => depth.map(|_| ()).map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
                }
            }
        });
    }
    let blobs = blobs.clone();
    readiness.with_check("object_storage", move || {
        let blobs = blobs.clone();
        async move { blobs.ping().await.map_err(|e| e.to_string()) }
    })
}

/// How long a readiness check without a bound of its own may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    if let Ok(depth) = state.queue.depth().await {
        metrics::gauge!("mediahost_queue_depth").set(depth as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Any path no route matches.
pub async fn not_found() -> ApiError {
    ApiError::NotFound(
        "no such endpoint; see GET /v1/openapi.json or the API section of the README".into(),
    )
}

/// A known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use crate::{app, test_support};

    async fn readyz(app: axum::Router) -> (StatusCode, serde_json::Value) {
        let res = app
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn readiness_names_the_backend_that_is_down_while_liveness_holds() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(test_support::state(&dir).await);
        let (status, body) = readyz(app(state.clone())).await;
        assert_eq!((status, &body["status"]), (StatusCode::OK, &"ready".into()));

        // The database goes away: not ready, and the report says which backend failed.
        state.store.pool().close().await;
        let (status, body) = readyz(app(state.clone())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "unavailable");
        assert!(body["checks"]["database"]["error"].is_string(), "{body}");
        // The embedded queue lives in that database, so it is down too.
        assert_eq!(body["failing"], serde_json::json!(["database", "queue"]));
        assert_eq!(body["checks"]["object_storage"], "ok");

        let live = app(state)
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(live.status(), StatusCode::OK);
    }
}
