//! The API's one error type and its catalog of stable codes.
//!
//! Every error answers `{"error": {"code": "...", "message": "..."}}`. Codes are stable for
//! clients to match on; messages are for people. Internal failures are logged with their cause
//! and answered with a generic message, so storage paths or SQL never leak to clients.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error's body: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an [`ErrorBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code for programs to match on, e.g. `not_found`, `too_large`, `quota_exceeded`.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// For people: what happened and what to do about it.
    pub message: String,
}

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
    /// 416 `range_not_satisfiable`: the requested byte range lies beyond the object's end.
    RangeNotSatisfiable(String),
    /// A validator plugin rejected the upload (`rejected_by_plugin`, status from the plugin).
    Rejected {
        /// HTTP status the plugin chose (4xx).
        status: StatusCode,
        /// The plugin's reason, verbatim.
        reason: String,
    },
    /// tus: 412 `precondition_failed`: missing or unsupported `Tus-Resumable`.
    PreconditionFailed(String),
    /// tus: 409 `offset_mismatch`: `Upload-Offset` differs from the stored offset.
    OffsetMismatch(String),
    /// tus: 409 `upload_locked`: another request is writing this upload.
    UploadLocked(String),
    /// tus: 460 `checksum_mismatch`: `Upload-Checksum` does not match the body (nothing kept).
    ChecksumMismatch(String),
    /// 413 `too_large`: beyond `Upload-Length` or the configured maximum size.
    TooLarge(String),
    /// 415 `unsupported_media_type`: a PATCH body that is not `application/offset+octet-stream`.
    UnsupportedMediaType(String),
    /// tus: 410 `upload_expired`: the upload expired before it completed.
    Gone(String),
    /// 403 `forbidden`: the operation is not allowed on this resource (PATCH of a final upload),
    /// or the admin API without the operator key (disabled, or called with a tenant key).
    Forbidden(String),
    /// 403 `invalid_signature`: a signed playback URL that expired, is malformed, or was not
    /// signed for this video with its tenant's secret; the message says which.
    InvalidSignature(String),
    /// 429 `too_many_uploads`: the tenant has as many uploads open as its quota allows.
    TooManyUploads(String),
    /// 403 `quota_exceeded`: the upload would take the tenant past its storage quota.
    QuotaExceeded(String),
    /// 422 `invalid_binding`: a plugin binding names a plugin that is not loaded or implements
    /// another world, or has a bad limit.
    InvalidBinding(String),
    /// 422 `invalid_plugin`: an uploaded plugin whose manifest is malformed or names another
    /// plugin, or whose component does not compile or does not fit its declared world.
    InvalidPlugin(String),
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
            Self::RangeNotSatisfiable(m) => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                m.clone(),
            ),
            Self::Rejected { status, reason } => (*status, "rejected_by_plugin", reason.clone()),
            Self::PreconditionFailed(m) => (
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                m.clone(),
            ),
            Self::OffsetMismatch(m) => (StatusCode::CONFLICT, "offset_mismatch", m.clone()),
            Self::UploadLocked(m) => (StatusCode::CONFLICT, "upload_locked", m.clone()),
            Self::ChecksumMismatch(m) => (
                StatusCode::from_u16(460).expect("valid status"),
                "checksum_mismatch",
                m.clone(),
            ),
            Self::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m.clone()),
            Self::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m.clone(),
            ),
            Self::Gone(m) => (StatusCode::GONE, "upload_expired", m.clone()),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            Self::InvalidSignature(m) => (StatusCode::FORBIDDEN, "invalid_signature", m.clone()),
            Self::TooManyUploads(m) => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_uploads", m.clone())
            }
            Self::QuotaExceeded(m) => (StatusCode::FORBIDDEN, "quota_exceeded", m.clone()),
            Self::InvalidBinding(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_binding",
                m.clone(),
            ),
            Self::InvalidPlugin(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_plugin",
                m.clone(),
            ),
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
        let body = ErrorBody {
            error: ErrorDetail { code, message },
        };
        let mut response = (status, Json(body)).into_response();
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
internal_from!(mediahost_store::StoreError, mediahost_queue::QueueError);

impl From<mediahost_blob::BlobError> for ApiError {
    fn from(e: mediahost_blob::BlobError) -> Self {
        match e {
            // The client may retry as after any lost race for the upload's lock.
            e @ mediahost_blob::BlobError::PartBusy(_) => Self::UploadLocked(e.to_string()),
            e => Self::Internal(e.to_string()),
        }
    }
}
