//! Plugin bindings: the operator's `GET`/`PUT /v1/tenants/{tenant}/bindings`, the config file's
//! bindings written to the metadata DB at start-up ([`apply_config`]), and the refresh that keeps
//! this process's in-memory copy in step with the DB ([`refresh`], run by `crate::sync`).
//!
//! The DB is the source of truth shared by every process of a deployment; each process calls
//! plugins with its own copy ([`PluginHost::bindings`]), refreshed every
//! `plugins.sync_interval_seconds` and updated at once by a local `PUT`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use mediahost_core::config::PluginsConfig;
use mediahost_core::{Chains, Tenant};
use mediahost_runtime::{BindingError, PluginHost};
use mediahost_store::{Store, StoreError};
use serde::Serialize;

use crate::auth::Operator;
use crate::{ApiError, SharedState};

/// The answer of both routes: the tenant and its stored bindings, per world in call order.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantBindings {
    /// Which tenant (its id is what plugins and metrics see as `tenant`).
    pub tenant: Tenant,
    /// The tenant's chains, run after the global ones; every world is present.
    pub bindings: Chains,
}

/// `GET /v1/tenants/{tenant}/bindings`: the tenant's stored bindings.
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/bindings",
    operation_id = "get_tenant_bindings",
    tag = crate::openapi::ADMIN,
    security(("operator_key" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The tenant's plugin chains per world", body = TenantBindings),
        (status = 401, description = "Missing, malformed or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "No operator key configured, or a tenant key was sent", body = crate::error::ErrorBody),
        (status = 404, description = "No tenant of that name", body = crate::error::ErrorBody),
    )
)]
pub async fn show(
    _: Operator,
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<TenantBindings>, ApiError> {
    let tenant = crate::admin::tenant_named(&state, &name).await?;
    let bindings = state.store.tenant_bindings(&tenant.id).await?;
    Ok(Json(TenantBindings { tenant, bindings }))
}

/// `PUT /v1/tenants/{tenant}/bindings`: replaces the tenant's bindings with the body (per world
/// an ordered list of bindings; worlds left out become empty), after checking every bound
/// plugin is loaded and of its chain's world. Takes effect in this process at once and in the
/// others at their next sync.
#[utoipa::path(
    put,
    path = "/tenants/{tenant}/bindings",
    operation_id = "set_tenant_bindings",
    tag = crate::openapi::ADMIN,
    security(("operator_key" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    request_body(content = Chains, description = "Per world (`validator`, `metadata-extractor`, `router`, `edge-transform`) an ordered list of bindings: `plugin`, optional `on_failure` (`fail-closed`/`fail-open`), `config`, `limits` (`timeout_ms`, `fuel`, `memory_mib`), `record_failures`"),
    responses(
        (status = 200, description = "The stored chains", body = TenantBindings),
        (status = 400, description = "Malformed body", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "No operator key configured, or a tenant key was sent", body = crate::error::ErrorBody),
        (status = 404, description = "No tenant of that name", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_binding`: a plugin that is not loaded, of another world, or a bad limit", body = crate::error::ErrorBody),
    )
)]
pub async fn replace(
    _: Operator,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<TenantBindings>, ApiError> {
    let tenant = crate::admin::tenant_named(&state, &name).await?;
    let chains: Chains = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid bindings: {e}; expected {{\"validator\": [{{\"plugin\": \"...\", \
             \"on_failure\": \"fail-closed\", \"config\": {{}}, \"limits\": {{}}}}], ...}}"
        ))
    })?;
    state
        .plugins
        .check_bindings(&chains)
        .map_err(|e| ApiError::InvalidBinding(e.to_string()))?;
    state.store.set_tenant_bindings(&tenant.id, &chains).await?;
    state
        .plugins
        .set_tenant_bindings(&tenant.id, chains.clone());
    tracing::info!(tenant = %tenant.name, tenant_id = %tenant.id, "tenant bindings replaced");
    Ok(Json(TenantBindings {
        tenant,
        bindings: chains,
    }))
}

/// Why the config file's bindings cannot be used; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum BindingsConfigError {
    /// A global binding names a missing plugin, one of another world, or a bad limit.
    #[error("[plugins.bindings]: {0}")]
    Global(BindingError),
    /// A tenant's binding names a missing plugin, one of another world, or a bad limit.
    #[error("[plugins.tenants.{tenant}]: {source}")]
    Tenant {
        /// The tenant's name, as the config file writes it.
        tenant: String,
        /// What is wrong.
        source: BindingError,
    },
    /// The config file binds plugins for a tenant that does not exist.
    #[error(
        "[plugins.tenants.{0}]: no tenant named {0:?}; create it with `mediahost tenant create {0}`"
    )]
    NoSuchTenant(String),
    /// The metadata DB failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks the config file's bindings against the loaded plugins, writes them to the metadata DB
/// (the global ones replacing what was stored, each named tenant's replacing that tenant's) and
/// loads every stored binding into `plugins`.
pub async fn apply_config(
    store: &Store,
    plugins: &PluginHost,
    config: &PluginsConfig,
) -> Result<(), BindingsConfigError> {
    if let Some(global) = &config.bindings {
        plugins
            .check_bindings(global)
            .map_err(BindingsConfigError::Global)?;
    }
    let mut tenants = Vec::new();
    for (name, chains) in &config.tenants {
        plugins
            .check_bindings(chains)
            .map_err(|source| BindingsConfigError::Tenant {
                tenant: name.clone(),
                source,
            })?;
        let tenant = match store.tenant_by_name(name).await {
            Err(StoreError::NoSuchTenant(_)) => {
                return Err(BindingsConfigError::NoSuchTenant(name.clone()));
            }
            other => other?,
        };
        tenants.push((tenant, chains));
    }
    store
        .replace_global_bindings(config.bindings.as_ref())
        .await?;
    for (tenant, chains) in tenants {
        store.set_tenant_bindings(&tenant.id, chains).await?;
    }
    plugins.set_bindings(store.all_bindings().await?);
    Ok(())
}

/// Loads every binding stored in the metadata DB into `plugins` when they differ from what it
/// has, so bindings set through another process converge here. A failed read keeps the
/// current bindings.
pub async fn refresh(store: &Store, plugins: &PluginHost) -> Result<(), StoreError> {
    let bindings = store.all_bindings().await?;
    if *plugins.bindings() != bindings {
        tracing::info!("plugin bindings changed in the metadata DB; applied");
        plugins.set_bindings(bindings);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    use crate::{app, test_support};

    const OPERATOR: &str = "operator-secret";

    async fn call(
        app: &axum::Router,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn errors_come_with_the_right_status_and_code() {
        let dir = tempfile::tempdir().unwrap();
        let state = test_support::state(&dir).await;
        let (_, tenant_key) = state.store.create_tenant("acme").await.unwrap();
        let app = app(Arc::new(state.with_operator_key(Some(OPERATOR))));
        let path = "/v1/tenants/acme/bindings";

        let (status, body) = call(&app, "GET", path, Some(OPERATOR), "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["tenant"]["name"], "acme");
        assert_eq!(body["bindings"]["validator"], serde_json::json!([]));

        for (key, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("nope"), StatusCode::UNAUTHORIZED),
            (Some(tenant_key.as_str()), StatusCode::FORBIDDEN),
        ] {
            for method in ["GET", "PUT"] {
                let (status, _) = call(&app, method, path, key, "{}").await;
                assert_eq!(status, expected, "{method} with {key:?}");
            }
        }

        let (status, body) = call(
            &app,
            "PUT",
            "/v1/tenants/globex/bindings",
            Some(OPERATOR),
            "{}",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("globex")
        );

        for bad in [
            "{",
            r#"{"validators": []}"#,
            r#"{"validator": [{"on_failure": "fail-open"}]}"#,
        ] {
            let (status, body) = call(&app, "PUT", path, Some(OPERATOR), bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert_eq!(body["error"]["code"], "invalid_request");
        }

        let (status, body) = call(
            &app,
            "PUT",
            path,
            Some(OPERATOR),
            r#"{"router": [{"plugin": "no-such-router"}]}"#,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_binding");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("no-such-router") && message.contains("router"),
            "{message}"
        );

        // An empty set is valid and stored.
        let (status, body) = call(&app, "PUT", path, Some(OPERATOR), "{}").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    #[tokio::test]
    async fn bindings_written_by_another_process_reach_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = test_support::state(&dir).await;
        let (tenant, _) = state.store.create_tenant("acme").await.unwrap();
        let plugins = state.plugins.clone();
        let stop = tokio::sync::Notify::new();
        let sync = crate::sync::sync_loop(
            state.store.clone(),
            state.blobs.clone(),
            plugins.clone(),
            std::time::Duration::from_millis(20),
            stop.notified(),
        );
        // What another process's PUT leaves in the shared DB.
        let chains = mediahost_core::Chains {
            router: vec![mediahost_core::Binding::implicit(
                "router",
                mediahost_core::World::Router,
            )],
            ..Default::default()
        };
        state
            .store
            .set_tenant_bindings(&tenant.id, &chains)
            .await
            .unwrap();
        let converged = async {
            while plugins.bindings().tenants.get(&tenant.id) != Some(&chains) {
                tokio::task::yield_now().await;
            }
            stop.notify_one();
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(sync, converged)
        })
        .await
        .expect("the sync loop applies the stored bindings and stops when told");
    }
}
