//! The API's one error type and its catalog of stable codes.
//!
//! Every error answers `{"error": {"code": "...", "message": "..."}}`. Codes are stable for
//! clients to match on; messages are for people. Internal failures are logged with their cause
//! and answered with a generic message, so storage paths or SQL never leak to clients.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API failure with its HTTP status and stable code.
#[derive(Debug)]
pub enum ApiError {
    /// 401 `unauthorized`: missing, malformed or unknown API key.
    Unauthorized(&'static str),
    /// 404 `not_found`: no such resource for this tenant.
    NotFound(String),
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 400 `invalid_request`: the request itself is malformed.
    BadRequest(String),
    /// 409 `conflict`: the resource is not in a state that allows this.
    Conflict(String),
    /// A validator plugin rejected the upload (`rejected_by_plugin`, status from the plugin).
    Rejected {
        /// HTTP status the plugin chose (4xx).
        status: StatusCode,
        /// The plugin's reason, verbatim.
        reason: String,
    },
    /// 503 `unavailable`: a dependency (plugin, queue) failed; retrying later may work.
    Unavailable(String),
    /// 500 `internal`: logged with its cause, answered generically.
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", (*m).to_owned()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this path".into(),
            ),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
            Self::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            Self::Rejected { status, reason } => (*status, "rejected_by_plugin", reason.clone()),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m.clone()),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; it has been logged".into(),
            ),
        }
    }

    /// 404 for a video id the tenant cannot see.
    pub fn video_not_found(id: &str) -> Self {
        Self::NotFound(format!("no video with id {id}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "internal error answering a request");
        }
        let (status, code, message) = self.parts();
        let mut response = (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

macro_rules! internal_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                Self::Internal(e.to_string())
            }
        }
    )*};
}
internal_from!(
    mediahost_store::StoreError,
    mediahost_queue::QueueError,
    mediahost_blob::BlobError
);
