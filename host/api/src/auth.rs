//! Bearer-key authentication: every `/v1` call names its tenant by API key.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
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
        let key = tenant_key(&parts.headers)?;
        known_tenant(state.store.tenant_for_key(key).await?).map(AuthTenant)
    }
}

/// The tenant API key in `Authorization: Bearer <key>`; 401 when it is missing or malformed.
pub(crate) fn tenant_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    bearer_key(
        headers,
        "missing API key: send `Authorization: Bearer <key>`",
        "malformed Authorization header: expected `Bearer <key>`",
    )
}

/// The tenant a key lookup `found`; 401 when the key is unknown or revoked.
pub(crate) fn known_tenant(found: Option<Tenant>) -> Result<Tenant, ApiError> {
    found.ok_or(ApiError::Unauthorized("unknown or revoked API key"))
}

/// The operator, authenticated by the operator key from the config (`[admin] operator_key` or
/// `MEDIAHOST_OPERATOR_KEY`): the only caller the admin API answers.
///
/// No operator key configured → 403 `forbidden` (saying how to set one); missing or malformed
/// header → 401; a tenant's key → 403; any other key → 401. The key is compared in constant
/// time (both sides hashed first, so not even its length leaks).
pub struct Operator;

impl FromRequestParts<SharedState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = state.operator_key.as_deref() else {
            return Err(ApiError::Forbidden(
                "the admin API is disabled: set `[admin] operator_key` in the config file or \
                 the MEDIAHOST_OPERATOR_KEY environment variable"
                    .into(),
            ));
        };
        let key = bearer_key(
            &parts.headers,
            "missing operator key: send `Authorization: Bearer <operator key>`",
            "malformed Authorization header: expected `Bearer <operator key>`",
        )?;
        if same_secret(key, expected) {
            return Ok(Operator);
        }
        if state.store.tenant_for_key(key).await?.is_some() {
            return Err(ApiError::Forbidden(
                "tenant keys cannot use the admin API; use the operator key".into(),
            ));
        }
        Err(ApiError::Unauthorized("unknown operator key"))
    }
}

/// The key in `Authorization: Bearer <key>`; 401 with `missing` when there is no such header,
/// with `malformed` when it is not a non-empty Bearer credential.
fn bearer_key<'a>(
    headers: &'a HeaderMap,
    missing: &'static str,
    malformed: &'static str,
) -> Result<&'a str, ApiError> {
    headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(missing))?
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(ApiError::Unauthorized(malformed))
}

/// Constant-time equality of two secrets: equal-length digests compared with `subtle`.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.as_slice().ct_eq(b.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("op-key", "op-key"));
        assert!(!same_secret("op-key", "op-kex"));
        assert!(!same_secret("op", "op-key"));
    }
}
