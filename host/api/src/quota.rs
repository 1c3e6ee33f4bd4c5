//! Tenant quotas at the upload doors, and the routes that show and set them.
//!
//! Every way a source comes in (tus creation and concatenation, a deferred length being
//! declared, a streaming `PUT`) asks [`admit_upload`] first, so a tenant over its limits is
//! refused before a byte is stored: 413 `too_large` (one upload too big), 429
//! `too_many_uploads` (too many open at once), 403 `quota_exceeded` (storage full).
//!
//! Limits are checked against usage read from the database, so they hold across api processes;
//! two uploads admitted at the same instant may both pass the last free slot (the check and the
//! insert are not one transaction), which overshoots a limit by at most the number of racing
//! requests. Streaming `PUT` uploads count towards the concurrency limit of the process
//! receiving them.

use axum::Json;
use axum::extract::{Path, State};
use futures::{Stream, StreamExt};
use mediahost_core::{Quota, Tenant, Usage};
use mediahost_store::now_ms;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::auth::{AuthTenant, Operator};
use crate::{ApiError, SharedState};

/// The tenant's effective quota: its own limits over the deployment defaults.
async fn effective(state: &SharedState, tenant: &Tenant) -> Result<Quota, ApiError> {
    Ok(state
        .store
        .tenant_quota(&tenant.id)
        .await?
        .or(&state.quotas))
}

/// Usage as the database sees it plus this process's streaming uploads.
async fn usage(state: &SharedState, tenant: &Tenant) -> Result<Usage, ApiError> {
    let mut usage = state.store.tenant_usage(&tenant.id, now_ms()).await?;
    let streaming = state
        .uploads_in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|owner| **owner == tenant.id)
        .count();
    usage.open_uploads = usage.open_uploads.saturating_add(streaming as u32);
    Ok(usage)
}

/// The most bytes one upload of `tenant` may have: the tenant's limit or the deployment's
/// `Tus-Max-Size`, whichever is smaller.
pub(crate) async fn upload_limit(state: &SharedState, tenant: &Tenant) -> Result<u64, ApiError> {
    let quota = effective(state, tenant).await?;
    Ok(quota
        .max_upload_bytes
        .map_or(state.tus.max_size, |q| q.min(state.tus.max_size)))
}

/// 413 unless `length` fits in one upload of `tenant`.
pub(crate) async fn check_length(
    state: &SharedState,
    tenant: &Tenant,
    length: u64,
) -> Result<(), ApiError> {
    let limit = upload_limit(state, tenant).await?;
    if length > limit {
        return Err(too_large(state, tenant, length, limit));
    }
    Ok(())
}

fn too_large(state: &SharedState, tenant: &Tenant, length: u64, limit: u64) -> ApiError {
    if limit < state.tus.max_size {
        ApiError::TooLarge(format!(
            "the upload is {length} bytes but tenant {} may upload at most {limit} bytes at \
             once (its quota); ask the operator to raise max_upload_bytes",
            tenant.name
        ))
    } else {
        ApiError::TooLarge(format!(
            "Upload-Length {length} exceeds the maximum of {limit} bytes (Tus-Max-Size)"
        ))
    }
}

/// Admits a new upload of `declared` bytes (`None` when not known yet) for `tenant`, or says
/// which limit refuses it. Returns the byte cap its body must stay under.
pub(crate) async fn admit_upload(
    state: &SharedState,
    tenant: &Tenant,
    declared: Option<u64>,
) -> Result<u64, ApiError> {
    let limit = upload_limit(state, tenant).await?;
    if let Some(length) = declared
        && length > limit
    {
        return Err(too_large(state, tenant, length, limit));
    }
    let quota = effective(state, tenant).await?;
    if quota.max_concurrent_uploads.is_none() && quota.max_storage_bytes.is_none() {
        return Ok(limit);
    }
    let used = usage(state, tenant).await?;
    if let Some(max) = quota.max_concurrent_uploads
        && used.open_uploads >= max
    {
        return Err(ApiError::TooManyUploads(format!(
            "tenant {} already has {} uploads open (its limit is {max}); finish one, or end it \
             with DELETE /v1/uploads/{{id}}, then retry",
            tenant.name, used.open_uploads
        )));
    }
    if let Some(max) = quota.max_storage_bytes {
        let taken = used.stored_bytes.saturating_add(used.reserved_bytes);
        let needed = declared.unwrap_or(0);
        if taken.saturating_add(needed) > max {
            return Err(ApiError::QuotaExceeded(format!(
                "tenant {} stores {} bytes and has {} more on the way, of a {max}-byte storage \
                 quota; this upload needs {needed}: delete videos or ask the operator to raise \
                 max_storage_bytes",
                tenant.name, used.stored_bytes, used.reserved_bytes
            )));
        }
    }
    Ok(limit)
}

/// Caps a body stream at `limit` bytes: past it the stream ends in an error and `tripped`
/// tells the caller the cause was the limit, not the client.
pub(crate) fn capped<S, E>(
    body: S,
    limit: u64,
    tripped: Arc<AtomicBool>,
) -> impl Stream<Item = Result<bytes::Bytes, String>>
where
    S: Stream<Item = Result<bytes::Bytes, E>>,
    E: std::fmt::Display,
{
    let mut seen = 0u64;
    body.map(move |chunk| {
        let chunk = chunk.map_err(|e| e.to_string())?;
        seen += chunk.len() as u64;
        if seen > limit {
            tripped.store(true, Ordering::Relaxed);
            return Err(format!("the body exceeds {limit} bytes"));
        }
        Ok(chunk)
    })
}

/// A tenant's quota and usage as the API shows them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct QuotaView {
    /// Tenant name.
    pub tenant: String,
    /// The limits that apply (the tenant's own over the deployment defaults; `null` =
    /// unlimited).
    pub quota: Quota,
    /// The tenant's own limits as set by the operator (`null` = the default applies).
    pub own: Quota,
    /// What it uses now.
    pub usage: Usage,
}

async fn view(state: &SharedState, tenant: Tenant) -> Result<QuotaView, ApiError> {
    let own = state.store.tenant_quota(&tenant.id).await?;
    Ok(QuotaView {
        quota: own.or(&state.quotas),
        own,
        usage: usage(state, &tenant).await?,
        tenant: tenant.name,
    })
}

/// `GET /v1/usage`: the calling tenant's quota and usage.
#[utoipa::path(
    get,
    path = "/usage",
    operation_id = "get_usage",
    tag = crate::openapi::VIDEOS,
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "The tenant's limits and usage", body = QuotaView),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
    )
)]
pub async fn own_usage(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
) -> Result<Json<QuotaView>, ApiError> {
    Ok(Json(view(&state, tenant).await?))
}

/// `GET /v1/tenants/{tenant}/quota` (operator).
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/quota",
    operation_id = "get_tenant_quota",
    tag = crate::openapi::ADMIN,
    security(("operator_key" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The tenant's limits and usage", body = QuotaView),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 403, description = "No operator key configured, or a tenant key was sent", body = crate::error::ErrorBody),
        (status = 404, description = "No tenant of that name", body = crate::error::ErrorBody),
    )
)]
pub async fn show(
    _: Operator,
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<QuotaView>, ApiError> {
    let tenant = crate::admin::tenant_named(&state, &name).await?;
    Ok(Json(view(&state, tenant).await?))
}

/// `PUT /v1/tenants/{tenant}/quota` (operator): replaces the tenant's own limits; a limit left
/// out or `null` falls back to the deployment default.
#[utoipa::path(
    put,
    path = "/tenants/{tenant}/quota",
    operation_id = "set_tenant_quota",
    tag = crate::openapi::ADMIN,
    security(("operator_key" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    request_body = Quota,
    responses(
        (status = 200, description = "The tenant's new limits and usage", body = QuotaView),
        (status = 400, description = "Malformed body", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 403, description = "No operator key configured, or a tenant key was sent", body = crate::error::ErrorBody),
        (status = 404, description = "No tenant of that name", body = crate::error::ErrorBody),
    )
)]
pub async fn set(
    _: Operator,
    State(state): State<SharedState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<QuotaView>, ApiError> {
    let tenant = crate::admin::tenant_named(&state, &name).await?;
    let quota: Quota = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid quota: {e}; expected {{\"max_upload_bytes\", \"max_storage_bytes\", \
             \"max_concurrent_uploads\"}} with numbers or null"
        ))
    })?;
    state.store.set_tenant_quota(&tenant.id, &quota).await?;
    tracing::info!(tenant = %tenant.name, ?quota, "tenant quota set");
    Ok(Json(view(&state, tenant).await?))
}
