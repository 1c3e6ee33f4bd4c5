//! The operator's admin API: what plugins are loaded and how their latest reload went, and
//! installing or removing plugins (see [`crate::catalog`]). Every route takes the [`Operator`]
//! extractor; tenant keys never reach it.

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mediahost_runtime::{PluginPackage, PluginSummary, check_plugin_name};
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
    /// `api`: installed with `PUT /v1/plugins/{name}` (and removable with `DELETE`); `files`:
    /// placed in the plugin folder by hand (changed only there).
    pub managed_by: &'static str,
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
            managed_by: if p.installed_via_api { "api" } else { "files" },
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

/// Largest plugin upload (manifest and component) `PUT /v1/plugins/{name}` accepts. Components
/// are typically tens of KiB to a few MiB; this leaves room for ones embedding large tables.
pub const MAX_PLUGIN_UPLOAD_BYTES: usize = 64 << 20;

/// The `multipart/form-data` body of `PUT /v1/plugins/{name}`.
#[derive(utoipa::ToSchema)]
pub struct PluginUpload {
    /// `plugin.toml`: `name` (must equal the path's name), `version`, `world`, `component` (a
    /// plain file name), optional `[limits]` and `[config]`.
    #[schema(value_type = String, format = Binary)]
    pub manifest: String,
    /// The WebAssembly component implementing the manifest's world.
    #[schema(value_type = String, format = Binary)]
    pub component: Vec<u8>,
}

impl PluginUpload {
    /// Reads the two parts; anything else in the form is refused so a typo in a part name
    /// does not pass silently.
    async fn read(mut form: Multipart) -> Result<Self, ApiError> {
        let bad =
            |e: MultipartError| ApiError::BadRequest(format!("malformed multipart body: {e}"));
        let (mut manifest, mut component) = (None, None);
        while let Some(field) = form.next_field().await.map_err(bad)? {
            match field.name() {
                Some("manifest") => {
                    let bytes = field.bytes().await.map_err(bad)?;
                    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        ApiError::BadRequest("the manifest part is not UTF-8 text".into())
                    })?;
                    manifest = Some(text);
                }
                Some("component") => component = Some(field.bytes().await.map_err(bad)?.to_vec()),
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unexpected form part {:?}: send exactly `manifest` (plugin.toml) and `component` (the .wasm file)",
                        other.unwrap_or("")
                    )));
                }
            }
        }
        let missing = |part: &str, file: &str| {
            ApiError::BadRequest(format!(
                "missing form part `{part}`; e.g. curl -X PUT -F manifest=@plugin.toml -F component=@{file} ..."
            ))
        };
        Ok(Self {
            manifest: manifest.ok_or_else(|| missing("manifest", "plugin.wasm"))?,
            component: component.ok_or_else(|| missing("component", "plugin.wasm"))?,
        })
    }
}

/// `PUT /v1/plugins/{name}`: installs or replaces a plugin from a component and its manifest.
#[utoipa::path(
    put,
    path = "/plugins/{name}",
    operation_id = "put_plugin",
    tag = crate::openapi::ADMIN,
    security(("operator_key" = [])),
    params(("name" = String, Path, description = "Plugin name: 1-64 of a-z, 0-9, '-' and '_'; must equal the manifest's `name`")),
    request_body(content = PluginUpload, content_type = "multipart/form-data", description = "The manifest and the component. Checked before anything is stored: the component must compile and implement the manifest's world. Stored in object storage and the metadata DB so every process of the deployment installs it; serving in this process when the answer arrives, in the others after their next sync (`plugins.sync_interval_seconds`)."),
    responses(
        (status = 201, description = "Installed; the plugin was new", body = PluginView),
        (status = 200, description = "Replaced the previous version; calls already running finished on it", body = PluginView),
        (status = 400, description = "Malformed form: missing or unexpected part", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "No operator key configured, or a tenant key was sent", body = crate::error::ErrorBody),
        (status = 409, description = "A plugin of that name is served from hand-made files in the plugin folder", body = crate::error::ErrorBody),
        (status = 413, description = "Upload larger than 64 MiB", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_plugin`: bad name or manifest, or a component that does not compile or fit its world; the serving version, if any, is untouched", body = crate::error::ErrorBody),
    )
)]
pub async fn put_plugin(
    _: Operator,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    form: Multipart,
) -> Result<(StatusCode, Json<PluginView>), ApiError> {
    check_plugin_name(&name)?;
    let upload = PluginUpload::read(form).await?;
    let package = PluginPackage {
        manifest: upload.manifest,
        component: upload.component,
    };
    let (summary, created) = crate::catalog::publish(&state, &name, package).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(summary.into())))
}

/// `DELETE /v1/plugins/{name}`: removes a plugin installed through the API.
#[utoipa::path(
    delete,
    path = "/plugins/{name}",
    operation_id = "delete_plugin",
    tag = crate::openapi::ADMIN,
    security(("operator_key" = [])),
    params(("name" = String, Path, description = "Plugin name")),
    responses(
        (status = 204, description = "Removed here at once, from the other processes at their next sync"),
        (status = 401, description = "Missing, malformed or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "No operator key configured, or a tenant key was sent", body = crate::error::ErrorBody),
        (status = 404, description = "No plugin of that name was installed", body = crate::error::ErrorBody),
        (status = 409, description = "A binding still names the plugin, or it is served from hand-made files", body = crate::error::ErrorBody),
    )
)]
pub async fn delete_plugin(
    _: Operator,
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    crate::catalog::withdraw(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
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
