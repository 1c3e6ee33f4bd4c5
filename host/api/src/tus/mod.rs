//! tus 1.0.0 resumable uploads at `/v1/uploads` (<https://tus.io/protocols/resumable-upload>).
//!
//! Extensions: creation, creation-with-upload, creation-defer-length, expiration, checksum
//! (sha1, md5, sha256), termination, concatenation. Every request except OPTIONS is
//! tenant-authenticated like the rest of `/v1` and must carry `Tus-Resumable: 1.0.0`.
//!
//! | module | concern |
//! |---|---|
//! | `headers` | parsing `Upload-*` headers, writing `Upload-Expires` |
//! | `checksum` | the checksum extension's digests |
//! | `lock` | the per-upload write lock: a lease in the metadata DB or in Redis |
//! | `write` | streaming a body with durable offsets, completion |
//! | `concat` | final uploads built from partial ones |
//!
//! An upload is a row in `uploads` (store) plus a temp file named after its id (blob). Creating
//! one (except a partial) creates its video; completing it promotes the file to the video's
//! source key and queues the transcode exactly like `PUT /v1/videos/{id}/source`.
//! A request carrying `X-HTTP-Method-Override` is taken for the method it names, as the spec
//! requires (clients that cannot send PATCH or DELETE, e.g. tus-js-client's
//! `overridePatchMethod`, send a POST with it).
//! Choices the spec leaves open: an expired, incomplete upload answers 410 until the sweep
//! removes it, then 404; terminating an incomplete upload deletes its video (a completed
//! upload's video lives on).

mod checksum;
mod concat;
mod headers;
pub mod lock;
mod write;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use mediahost_blob::Blobs;
use mediahost_core::Tenant;
use mediahost_store::{Concat, NewUpload, NewVideo, Store, Upload, now_ms};
use std::time::Duration;

use self::headers::{ConcatRequest, TUS_VERSION, names};
use self::lock::{Acquired, Lock, UploadLocks};
use self::write::{complete, terminate, upload_info, write_body};
use crate::auth::{self, AuthTenant};
use crate::ingest::validate;
use crate::quota;
use crate::{ApiError, SharedState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Extensions advertised on OPTIONS.
const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,expiration,\
                          checksum,termination,concatenation";
/// The content type of PATCH bodies.
const OFFSET_STREAM: &str = "application/offset+octet-stream";
/// Longest title taken from metadata, in bytes (as `POST /v1/videos`).
const MAX_TEXT: usize = 1024;

/// The tus routes, to be nested under `/v1`.
pub(crate) fn routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(create, discover_uploads))
        .routes(routes!(head, patch, delete, discover_upload))
        // Bodies are streamed to disk, never buffered.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(tus_resumable))
}

/// Requires `Tus-Resumable: 1.0.0` (except on OPTIONS) and stamps it on every response.
async fn tus_resumable(request: Request, next: Next) -> Response {
    let version = request.headers().get(&names::TUS_RESUMABLE);
    let mut response = if request.method() != Method::OPTIONS
        && version.and_then(|v| v.to_str().ok()) != Some(TUS_VERSION)
    {
        let mut r = ApiError::PreconditionFailed(format!(
            "send `Tus-Resumable: {TUS_VERSION}`; this server speaks tus {TUS_VERSION}"
        ))
        .into_response();
        r.headers_mut()
            .insert(names::TUS_VERSION, HeaderValue::from_static(TUS_VERSION));
        r
    } else {
        next.run(request).await
    };
    response
        .headers_mut()
        .insert(names::TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    response
}

/// Whether `uri` is one of the tus paths (`/uploads…`, as nested under `/v1` or not).
fn is_uploads_path(uri: &axum::http::Uri) -> bool {
    ["/uploads", "/v1/uploads"]
        .iter()
        .any(|p| uri.path().starts_with(p))
}

/// Takes a tus request with `X-HTTP-Method-Override` for the method it names; wraps `/v1` as
/// one service (see `app`), so that the method is replaced before routing. A value that is not
/// a method is answered 400.
pub(crate) async fn method_override(mut request: Request, next: Next) -> Response {
    let Some(value) = request
        .headers()
        .get(&names::X_HTTP_METHOD_OVERRIDE)
        .filter(|_| is_uploads_path(request.uri()))
    else {
        return next.run(request).await;
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| Method::from_bytes(v.trim().to_ascii_uppercase().as_bytes()).ok())
    {
        Some(method) => {
            *request.method_mut() = method;
            next.run(request).await
        }
        None => {
            let mut r = ApiError::BadRequest(format!(
                "X-HTTP-Method-Override must name an HTTP method (PATCH, DELETE, HEAD), not {value:?}"
            ))
            .into_response();
            r.headers_mut()
                .insert(names::TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
            r
        }
    }
}

/// OPTIONS routes exist so routing reaches the CORS layer and [`discovery`], which answer
/// (this status is what a request that is neither a preflight nor for `/uploads` would get).
#[utoipa::path(
    options,
    path = "/uploads",
    operation_id = "tus_discover",
    tag = crate::openapi::UPLOADS,
    responses((status = 204, description = "tus discovery, no key needed",
        headers(
            ("Tus-Version" = String, description = "`1.0.0`"),
            ("Tus-Extension" = String, description = "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation"),
            ("Tus-Max-Size" = u64, description = "Largest Upload-Length (a tenant's quota may be lower)"),
            ("Tus-Checksum-Algorithm" = String, description = "sha1,md5,sha256"),
        )))
)]
async fn discover_uploads() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// As [`discover_uploads`], on an upload's URL.
#[utoipa::path(
    options,
    path = "/uploads/{id}",
    operation_id = "tus_discover_upload",
    tag = crate::openapi::UPLOADS,
    params(("id" = String, Path, description = "Upload id")),
    responses((status = 204, description = "tus discovery, no key needed (same headers as on /uploads)"))
)]
async fn discover_upload() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `OPTIONS /v1/uploads[/{id}]`: what this server supports, with no authentication (CORS
/// preflights and discovery carry no key). The CORS layer answers every OPTIONS request, so
/// this wraps it (see `app`) and adds the tus headers to its answer: one response serves both
/// a browser's preflight and a tus client's discovery.
pub(crate) async fn discovery(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let uploads = request.method() == Method::OPTIONS && is_uploads_path(request.uri());
    let mut response = next.run(request).await;
    if !uploads || !response.status().is_success() {
        return response;
    }
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(names::TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    h.insert(names::TUS_VERSION, HeaderValue::from_static(TUS_VERSION));
    h.insert(names::TUS_EXTENSION, HeaderValue::from_static(EXTENSIONS));
    h.insert(names::TUS_MAX_SIZE, HeaderValue::from(state.tus.max_size));
    h.insert(
        names::TUS_CHECKSUM_ALGORITHM,
        HeaderValue::from_static(checksum::ALGORITHMS),
    );
    response
}

fn location(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/uploads/{id}")).expect("ids are ASCII")
}

/// Headers naming a created upload (sent on success and on a failed initial write, so the
/// client can still resume or terminate it).
fn created_headers(upload: &Upload) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, location(&upload.id));
    if let Some(v) = &upload.video_id {
        h.insert(
            names::VIDEO_ID,
            HeaderValue::from_str(v).expect("ids are ASCII"),
        );
    }
    h.insert(names::UPLOAD_EXPIRES, headers::expires(upload.expires_at));
    h
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(OFFSET_STREAM))
        })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The upload for this tenant, 404 when unknown, 410 when expired before completing.
async fn find(state: &SharedState, tenant: &Tenant, id: &str) -> Result<Upload, ApiError> {
    let upload = state
        .store
        .upload(&tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no upload with id {id}")))?;
    if upload.is_expired(now_ms()) {
        return Err(expired(id));
    }
    Ok(upload)
}

fn expired(id: &str) -> ApiError {
    ApiError::Gone(format!(
        "upload {id} expired before it completed; start a new one"
    ))
}

/// Writes `body` under the lock the caller took (given with the upload's row as it stands
/// under it) after checking the client's offset, completes the upload when all bytes are
/// there, and releases the lock. Returns the durable offset.
async fn write_locked(
    state: &SharedState,
    tenant: &Tenant,
    (lock, mut upload): (Lock, Upload),
    client_offset: u64,
    new_length: Option<u64>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Patched, ApiError> {
    let id = &upload.id.clone();
    let written = async {
        if upload.is_expired(now_ms()) {
            return Err(expired(id));
        }
        if upload.concat == Concat::Final {
            return Err(ApiError::Forbidden(
                "a final upload is built from its partials and takes no PATCH".into(),
            ));
        }
        if client_offset != upload.offset {
            return Err(ApiError::OffsetMismatch(format!(
                "Upload-Offset is {client_offset} but the upload is at {}; resume from HEAD's offset",
                upload.offset
            )));
        }
        if let Some(length) = new_length {
            match upload.length {
                Some(l) if l == length => {}
                Some(l) => {
                    return Err(ApiError::BadRequest(format!(
                        "Upload-Length is already {l}; it cannot change"
                    )));
                }
                None => {
                    if length < upload.offset {
                        return Err(ApiError::BadRequest(format!(
                            "Upload-Length {length} is below the offset {}",
                            upload.offset
                        )));
                    }
                    quota::check_length(state, tenant, length).await?;
                    if !state
                        .store
                        .set_upload_length(id, lock.writer(), length)
                        .await?
                    {
                        lock.check()?;
                        return Err(ApiError::Conflict(format!(
                            "upload {id} changed while its length was being set; retry"
                        )));
                    }
                    upload.length = Some(length);
                }
            }
        }
        if upload.completed_at.is_some() {
            return Ok(Patched {
                offset: upload.offset,
                expires_at: None,
            });
        }
        if let (Some(length), Some(cl)) = (upload.length, content_length(headers))
            && upload.offset + cl > length
        {
            return Err(ApiError::TooLarge(format!(
                "{cl} more bytes at offset {} go beyond Upload-Length ({length})",
                upload.offset
            )));
        }
        let checksum = headers::checksum(headers)?;
        let written = write_body(state, &lock, tenant, &upload, body, checksum).await?;
        // The row changed only by our hand while we hold the lock: no need to read it again.
        upload.offset = written.offset;
        upload.head_checked = written.head_checked;
        let expires_at = if upload.is_full() {
            complete(state, tenant, &upload).await?;
            None
        } else {
            Some(upload.expires_at)
        };
        Ok::<_, ApiError>(Patched {
            offset: written.offset,
            expires_at,
        })
    }
    .await;
    // Released before answering, on errors too: a client retrying at once must not run into
    // its own request's lock (a release left to `Drop` happens after the answer is sent, and
    // on a database server it can take longer than the client's next request).
    let released = lock.release().await;
    let patched = written?;
    released?;
    Ok(patched)
}

/// Where a request that wrote left its upload.
struct Patched {
    /// The durable offset.
    offset: u64,
    /// When the upload expires, unless it is complete.
    expires_at: Option<i64>,
}

/// Title and file name of the video an upload creates, from its metadata.
fn new_video(metadata: &headers::Metadata) -> Result<NewVideo, ApiError> {
    let filename = metadata.get("filename").map(str::to_owned);
    let title = metadata
        .get("title")
        .or(filename.as_deref())
        .unwrap_or("untitled")
        .trim()
        .to_owned();
    if title.len() > MAX_TEXT || filename.as_ref().is_some_and(|f| f.len() > MAX_TEXT) {
        return Err(ApiError::BadRequest(format!(
            "title and filename are limited to {MAX_TEXT} bytes"
        )));
    }
    Ok(NewVideo { title, filename })
}

/// Creates the row, temp file and (unless partial) video of a new upload, and runs the
/// validators' `check-upload`; a refusal deletes all of it.
async fn create_upload(
    state: &SharedState,
    tenant: &Tenant,
    metadata: &headers::Metadata,
    length: Option<u64>,
    concat: Concat,
) -> Result<Upload, ApiError> {
    let video = match concat {
        Concat::Partial => None,
        Concat::None | Concat::Final => Some(
            state
                .store
                .create_video(&tenant.id, &new_video(metadata)?)
                .await?,
        ),
    };
    let new = NewUpload {
        tenant_id: tenant.id.clone(),
        video_id: video.as_ref().map(|v| v.id.clone()),
        length,
        metadata: metadata.raw.clone(),
        concat,
        expires_at: now_ms() + (state.tus.expire_seconds as i64).saturating_mul(1000),
    };
    let upload = match state.store.create_upload(&new).await {
        Ok(u) => u,
        Err(e) => {
            if let Some(v) = &video {
                tracing::warn!(video = %v.id, "upload row not created; its video is left awaiting an upload");
            }
            return Err(e.into());
        }
    };
    let created = async {
        state.blobs.create_part(write::part_of(&upload)).await?;
        if video.is_some() {
            let info = upload_info(state, tenant, &upload).await?;
            validate(state, move |p| p.check_upload(&info)).await?;
        }
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(e) = created {
        terminate(state, &upload).await?;
        return Err(e);
    }
    Ok(upload)
}

/// `POST /v1/uploads`: creation (with or without an initial body, with or without a length)
/// and concatenation.
#[utoipa::path(
    post,
    path = "/uploads",
    operation_id = "tus_create",
    tag = crate::openapi::UPLOADS,
    security(("tenant_key" = [])),
    params(
        ("Tus-Resumable" = String, Header, description = "`1.0.0`; anything else is answered 412"),
        ("Upload-Length" = Option<u64>, Header, description = "Size of the whole file in bytes"),
        ("Upload-Defer-Length" = Option<u8>, Header, description = "`1`: the length comes with a later PATCH"),
        ("Upload-Metadata" = Option<String>, Header, description = "Comma-separated `key base64(value)` pairs; `filename`, `filetype`, `title` and free keys"),
        ("Upload-Concat" = Option<String>, Header, description = "`partial`, or `final;/v1/uploads/a /v1/uploads/b` to join completed partials"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream", description = "Optional first chunk (creation-with-upload)"),
    responses(
        (status = 201, description = "Created",
            headers(
                ("Location" = String, description = "`/v1/uploads/{id}`"),
                ("Mediahost-Video-Id" = String, description = "The video this upload becomes the source of"),
                ("Upload-Offset" = u64, description = "Bytes stored so far"),
                ("Upload-Expires" = String, description = "When an unfinished upload is collected (HTTP date)"),
            )),
        (status = 400, description = "Malformed headers or metadata", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 403, description = "`quota_exceeded`: past the tenant's storage quota", body = crate::error::ErrorBody),
        (status = 404, description = "A partial named in Upload-Concat does not exist", body = crate::error::ErrorBody),
        (status = 412, description = "Missing or unsupported Tus-Resumable (the answer carries Tus-Version)", body = crate::error::ErrorBody),
        (status = 413, description = "Upload-Length beyond Tus-Max-Size or the tenant's max upload size", body = crate::error::ErrorBody),
        (status = 422, description = "`rejected_by_plugin`: a validator refused it", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_uploads`: the tenant has as many uploads open as it may", body = crate::error::ErrorBody),
    )
)]
async fn create(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let metadata = headers::metadata(&headers)?;
    let concat = headers::concat(&headers)?;
    let length = headers::number(&headers, &names::UPLOAD_LENGTH)?;
    let deferred = headers::defer_length(&headers)?;

    if let ConcatRequest::Final(ids) = concat {
        if length.is_some() || deferred {
            return Err(ApiError::BadRequest(
                "a final upload takes its length from its partials; send no Upload-Length".into(),
            ));
        }
        let upload = concat::create_final(&state, &tenant, &metadata, &ids).await?;
        let mut h = created_headers(&upload);
        h.insert(names::UPLOAD_OFFSET, HeaderValue::from(upload.offset));
        return Ok((StatusCode::CREATED, h).into_response());
    }

    match (length, deferred) {
        (Some(_), true) => {
            return Err(ApiError::BadRequest(
                "send either Upload-Length or Upload-Defer-Length, not both".into(),
            ));
        }
        (None, false) => {
            return Err(ApiError::BadRequest(
                "Upload-Length (or Upload-Defer-Length: 1) is required".into(),
            ));
        }
        _ => {}
    }
    let concat = match concat {
        ConcatRequest::Partial => Concat::Partial,
        _ => Concat::None,
    };
    if length == Some(0) && concat == Concat::None {
        return Err(ApiError::BadRequest(
            "Upload-Length is 0; a video source cannot be empty".into(),
        ));
    }
    quota::admit_upload(&state, &tenant, length).await?;
    let upload = create_upload(&state, &tenant, &metadata, length, concat).await?;
    let mut h = created_headers(&upload);
    let mut offset = 0;
    if length == Some(0) {
        complete(&state, &tenant, &upload).await?;
    } else if is_offset_stream(&headers) && content_length(&headers) != Some(0) {
        // creation-with-upload: the body is the first chunk.
        let written = async {
            let locked = Lock::acquire_upload(&state, &tenant, &upload.id).await?;
            write_locked(&state, &tenant, locked, 0, None, &headers, body).await
        };
        match written.await {
            Ok(patched) => offset = patched.offset,
            Err(e) => {
                let mut r = e.into_response();
                if let Ok(u) = find(&state, &tenant, &upload.id).await {
                    r.headers_mut().extend(created_headers(&u));
                    r.headers_mut()
                        .insert(names::UPLOAD_OFFSET, HeaderValue::from(u.offset));
                }
                return Ok(r);
            }
        }
    }
    h.insert(names::UPLOAD_OFFSET, HeaderValue::from(offset));
    tracing::info!(tenant = %tenant.name, upload = %upload.id, video = ?upload.video_id, ?length, "tus upload created");
    Ok((StatusCode::CREATED, h).into_response())
}

/// `HEAD /v1/uploads/{id}`: the durable offset and what was declared.
#[utoipa::path(
    head,
    path = "/uploads/{id}",
    operation_id = "tus_head",
    tag = crate::openapi::UPLOADS,
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "Upload id"), ("Tus-Resumable" = String, Header, description = "`1.0.0`; anything else is answered 412")),
    responses(
        (status = 200, description = "The upload's state",
            headers(
                ("Upload-Offset" = u64, description = "Durable offset: resume from here"),
                ("Upload-Length" = u64, description = "Declared size (absent while deferred)"),
                ("Upload-Defer-Length" = u8, description = "`1` while the length is deferred"),
                ("Upload-Metadata" = String, description = "As sent at creation"),
                ("Upload-Expires" = String, description = "While incomplete"),
                ("Upload-Concat" = String, description = "`partial` or `final`"),
                ("Mediahost-Video-Id" = String, description = "The video it fills"),
            )),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown upload (or another tenant's)"),
        (status = 410, description = "Expired before it completed"),
        (status = 412, description = "Missing or unsupported Tus-Resumable (the answer carries Tus-Version)", body = crate::error::ErrorBody),
    )
)]
async fn head(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let upload = find(&state, &tenant, &id).await?;
    let mut h = HeaderMap::new();
    h.insert(names::UPLOAD_OFFSET, HeaderValue::from(upload.offset));
    match upload.length {
        Some(l) => h.insert(names::UPLOAD_LENGTH, HeaderValue::from(l)),
        None => h.insert(names::UPLOAD_DEFER_LENGTH, HeaderValue::from_static("1")),
    };
    if !upload.metadata.is_empty()
        && let Ok(v) = HeaderValue::from_str(&upload.metadata)
    {
        h.insert(names::UPLOAD_METADATA, v);
    }
    if upload.completed_at.is_none() {
        h.insert(names::UPLOAD_EXPIRES, headers::expires(upload.expires_at));
    }
    match upload.concat {
        Concat::Partial => {
            h.insert(names::UPLOAD_CONCAT, HeaderValue::from_static("partial"));
        }
        Concat::Final => {
            h.insert(names::UPLOAD_CONCAT, HeaderValue::from_static("final"));
        }
        Concat::None => {}
    }
    if let Some(v) = &upload.video_id {
        h.insert(
            names::VIDEO_ID,
            HeaderValue::from_str(v).expect("ids are ASCII"),
        );
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::OK, h).into_response())
}

/// `PATCH /v1/uploads/{id}`: append the body at `Upload-Offset`.
#[utoipa::path(
    patch,
    path = "/uploads/{id}",
    operation_id = "tus_patch",
    tag = crate::openapi::UPLOADS,
    security(("tenant_key" = [])),
    params(
        ("id" = String, Path, description = "Upload id"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`; anything else is answered 412"),
        ("Upload-Offset" = u64, Header, description = "Must equal the upload's offset"),
        ("Upload-Length" = Option<u64>, Header, description = "Once, when the length was deferred"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1|md5|sha256 <base64 digest>` of this request's body"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream", description = "The next bytes"),
    responses(
        (status = 204, description = "Stored", headers(("Upload-Offset" = u64, description = "The new durable offset"), ("Upload-Expires" = String, description = "When the upload expires (RFC 9110 date), while it is incomplete"))),
        (status = 400, description = "Malformed headers or an interrupted body", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 403, description = "PATCH of a final (concatenated) upload", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown upload", body = crate::error::ErrorBody),
        (status = 409, description = "`offset_mismatch` (HEAD tells where to resume) or `upload_locked` (another request writes it)", body = crate::error::ErrorBody),
        (status = 410, description = "Expired", body = crate::error::ErrorBody),
        (status = 412, description = "Missing or unsupported Tus-Resumable (the answer carries Tus-Version)", body = crate::error::ErrorBody),
        (status = 413, description = "Beyond Upload-Length or the size limits", body = crate::error::ErrorBody),
        (status = 415, description = "Body not application/offset+octet-stream", body = crate::error::ErrorBody),
        (status = 460, description = "`checksum_mismatch`: nothing of this request is kept", body = crate::error::ErrorBody),
    )
)]
async fn patch(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Authenticated with the lock below, in one database round trip; the headers are checked
    // first, so a malformed request costs no lock.
    let key = auth::tenant_key(&headers)?;
    if !is_offset_stream(&headers) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "PATCH bodies must be sent as Content-Type: {OFFSET_STREAM}"
        )));
    }
    let offset = headers::number(&headers, &names::UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::BadRequest("Upload-Offset is required".into()))?;
    let length = headers::number(&headers, &names::UPLOAD_LENGTH)?;
    let from = offset;
    // The row as it stands under the lock: the offset cannot move while we hold it.
    let (tenant, lock, upload) = Lock::acquire_with_key(&state, key, &id).await?;
    let patched = write_locked(
        &state,
        &tenant,
        (lock, upload),
        offset,
        length,
        &headers,
        body,
    )
    .await?;
    // Per process, so an operator sees how a load balancer spreads one upload's requests.
    metrics::counter!("mediahost_tus_patches_total").increment(1);
    metrics::counter!("mediahost_tus_received_bytes_total")
        .increment(patched.offset.saturating_sub(from));
    let mut h = HeaderMap::new();
    h.insert(names::UPLOAD_OFFSET, HeaderValue::from(patched.offset));
    // The expiration extension wants it on every PATCH answer of an upload that will expire.
    if let Some(at) = patched.expires_at {
        h.insert(names::UPLOAD_EXPIRES, headers::expires(at));
    }
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

/// `DELETE /v1/uploads/{id}`: termination. Frees the temp file and deletes the video when it
/// never got its source; 409 while a PATCH is writing.
#[utoipa::path(
    delete,
    path = "/uploads/{id}",
    operation_id = "tus_terminate",
    tag = crate::openapi::UPLOADS,
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "Upload id"), ("Tus-Resumable" = String, Header, description = "`1.0.0`; anything else is answered 412")),
    responses(
        (status = 204, description = "Terminated: temp bytes, row, and the video unless it already has its source, are gone"),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown upload", body = crate::error::ErrorBody),
        (status = 409, description = "`upload_locked`: a PATCH is writing", body = crate::error::ErrorBody),
        (status = 412, description = "Missing or unsupported Tus-Resumable (the answer carries Tus-Version)", body = crate::error::ErrorBody),
    )
)]
async fn delete(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (lock, upload) = Lock::acquire_upload(&state, &tenant, &id).await?;
    terminate(&state, &upload).await?;
    drop(lock);
    tracing::info!(tenant = %tenant.name, upload = %id, "tus upload terminated");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes expired uploads (temp file, row, and the video of one that never completed) and the
/// temp files of expired partials. Returns how many were collected. Locked uploads are skipped
/// (a writer is renewing them); they are collected by a later sweep.
pub async fn sweep_expired(
    store: &Store,
    blobs: &Blobs,
    locks: &dyn UploadLocks,
) -> Result<usize, ApiError> {
    let mut collected = 0;
    loop {
        let expired = store.expired_uploads(now_ms(), 100).await?;
        if expired.is_empty() {
            return Ok(collected);
        }
        let mut progressed = false;
        for upload in expired {
            // Held while deleting, so a PATCH arriving meanwhile is refused rather than
            // writing into a file being removed.
            let lease = Duration::from_secs(60);
            let Acquired::Locked { token, .. } = locks
                .acquire_upload(store, &upload.tenant_id, &upload.id, lease)
                .await?
            else {
                continue;
            };
            blobs.remove_part(write::part_of(&upload)).await?;
            store.delete_upload(&upload).await?;
            locks.release(&upload.id, &token).await?;
            tracing::info!(upload = %upload.id, tenant = %upload.tenant_id, "expired tus upload collected");
            collected += 1;
            progressed = true;
        }
        if !progressed {
            return Ok(collected);
        }
    }
}
