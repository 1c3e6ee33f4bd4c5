//! Bearer-key authentication: every `/v1` call names its tenant by API key.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use mediahost_core::Tenant;

use crate::{ApiError, SharedState};

/// The tenant whose key authenticated the request.
pub struct AuthTenant(pub Tenant);

impl FromRequestParts<SharedState> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing API key: send `Authorization: Bearer <key>`",
            ))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized(
                "malformed Authorization header: expected `Bearer <key>`",
            ))?;
        state
            .store
            .tenant_for_key(key)
            .await?
            .map(AuthTenant)
            .ok_or(ApiError::Unauthorized("unknown or revoked API key"))
    }
}
