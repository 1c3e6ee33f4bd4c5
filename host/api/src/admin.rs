//! The operator's admin API: what plugins are loaded and how their latest reload went.
//! Every route takes the [`Operator`] extractor; tenant keys never reach it.

use axum::Json;
use axum::extract::State;
use mediahost_runtime::PluginSummary;
use serde::Serialize;

use crate::auth::Operator;
use crate::{ApiError, SharedState};

/// `GET /v1/plugins` answers `{"plugins": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PluginList {
    /// Every known plugin, sorted by name.
    pub plugins: Vec<PluginView>,
}

/// One plugin as the admin API shows it. The version fields describe the version serving
/// calls and are `null` when none ever loaded.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PluginView {
    /// Name from the manifest.
    pub name: String,
    /// Serving version.
    pub version: Option<String>,
    /// WIT world of the serving version.
    pub world: Option<&'static str>,
    /// Hex SHA-256 of the serving component file.
    pub sha256: Option<String>,
    /// When the serving version was loaded (RFC 3339, UTC).
    pub loaded_at: Option<String>,
    /// `loaded`: the files on disk serve; `error`: the latest files failed to load and the
    /// previous version, if any, still serves.
    pub status: &'static str,
    /// Why the latest files failed to load.
    pub last_error: Option<String>,
    /// Successful reloads since the first load.
    pub reloads: u64,
}

impl From<PluginSummary> for PluginView {
    fn from(p: PluginSummary) -> Self {
        let serving = p.serving.as_ref();
        Self {
            version: serving.map(|v| v.version.clone()),
            world: serving.map(|v| v.world.as_str()),
            sha256: serving.map(|v| v.sha256.clone()),
            loaded_at: serving.map(|v| {
                v.loaded_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            }),
            status: p.status.as_str(),
            last_error: p.last_error,
            reloads: p.reloads,
            name: p.name,
        }
    }
}

/// The tenant called `name`, for the operator's per-tenant routes; 404 when there is none.
pub(crate) async fn tenant_named(
    state: &SharedState,
    name: &str,
) -> Result<mediahost_core::Tenant, ApiError> {
    match state.store.tenant_by_name(name).await {
        Ok(tenant) => Ok(tenant),
        Err(mediahost_store::StoreError::NoSuchTenant(_)) => {
            Err(ApiError::NotFound(format!("no tenant named {name:?}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/plugins`: every plugin with its serving version and reload status.
#[utoipa::path(
    get,
    path = "/plugins",
    operation_id = "list_plugins",
    tag = crate::openapi::ADMIN,
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "Every plugin, sorted by name", body = PluginList),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 403, description = "No operator key configured, or a tenant key was sent", body = crate::error::ErrorBody),
    )
)]
pub async fn list_plugins(_: Operator, State(state): State<SharedState>) -> Json<PluginList> {
    let plugins = state
        .plugins
        .plugins()
        .into_iter()
        .map(Into::into)
        .collect();
    Json(PluginList { plugins })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    use crate::{app, test_support};

    const OPERATOR: &str = "operator-secret";

    /// An app over a fresh data dir; returns it with a tenant's key.
    async fn setup(operator_key: Option<&str>) -> (tempfile::TempDir, axum::Router, String) {
        let dir = tempfile::tempdir().unwrap();
        let state = test_support::state(&dir).await;
        let (_, tenant_key) = state.store.create_tenant("acme").await.unwrap();
        let state = state.with_operator_key(operator_key);
        (dir, app(Arc::new(state)), tenant_key)
    }

    async fn get(app: &axum::Router, key: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = Request::get("/v1/plugins");
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn only_the_operator_key_lists_plugins() {
        let (_dir, app, tenant_key) = setup(Some(OPERATOR)).await;
        let (status, body) = get(&app, Some(OPERATOR)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, serde_json::json!({"plugins": []}));

        let (status, body) = get(&app, Some(&tenant_key)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "forbidden");
        for (key, message) in [(None, "missing"), (Some("nope"), "unknown")] {
            let (status, body) = get(&app, key).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
            assert!(body["error"]["message"].as_str().unwrap().contains(message));
        }
    }

    #[tokio::test]
    async fn without_an_operator_key_the_admin_api_says_how_to_enable_it() {
        for configured in [None, Some("  ")] {
            let (_dir, app, tenant_key) = setup(configured).await;
            for key in [None, Some(tenant_key.as_str()), Some(OPERATOR)] {
                let (status, body) = get(&app, key).await;
                assert_eq!(status, StatusCode::FORBIDDEN);
                assert_eq!(body["error"]["code"], "forbidden");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("MEDIAHOST_OPERATOR_KEY"), "{message}");
            }
        }
    }
}
