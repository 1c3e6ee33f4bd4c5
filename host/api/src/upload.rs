//! `PUT /v1/videos/{id}/source`: one streaming request carries the whole source file.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use mediahost_core::VideoStatus;
use mediahost_core::video::keys;
use mediahost_runtime::UploadInfo;

use crate::auth::AuthTenant;
use crate::ingest::{HEAD_BYTES, queue_transcode, validate};
use crate::quota;
use crate::videos::{VideoView, base_url};
use crate::{ApiError, SharedState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Removes a video from the in-flight set when the upload handler ends, however it ends.
struct InFlight<'a> {
    state: &'a SharedState,
    video_id: String,
}

impl<'a> InFlight<'a> {
    fn claim(state: &'a SharedState, tenant_id: &str, video_id: &str) -> Result<Self, ApiError> {
        let mut set = state
            .uploads_in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if set.contains_key(video_id) {
            return Err(ApiError::Conflict(format!(
                "an upload of video {video_id} is already in progress"
            )));
        }
        set.insert(video_id.to_owned(), tenant_id.to_owned());
        Ok(Self {
            state,
            video_id: video_id.to_owned(),
        })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state
            .uploads_in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.video_id);
    }
}

/// Reads up to [`HEAD_BYTES`] from the front of the body, returning them and the rest.
async fn split_head<S>(mut body: S) -> Result<(Bytes, S), ApiError>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    let mut head = BytesMut::new();
    while head.len() < HEAD_BYTES {
        match body.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return Err(ApiError::BadRequest(format!("upload interrupted: {e}")));
            }
            None => break,
        }
    }
    Ok((head.freeze(), body))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// `PUT /v1/videos/{id}/source`: stream the source, store it, queue the transcode.
#[utoipa::path(
    put,
    path = "/videos/{id}/source",
    operation_id = "upload_source",
    tag = crate::openapi::VIDEOS,
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "Video id, awaiting its source")),
    request_body(
        content = Vec<u8>,
        content_type = "application/octet-stream",
        description = "The video file, with Content-Length or chunked; streamed to storage, never buffered"
    ),
    responses(
        (status = 202, description = "Stored and queued for transcoding", body = VideoView),
        (status = 400, description = "Empty or interrupted body", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 403, description = "`quota_exceeded`: past the tenant's storage quota", body = crate::error::ErrorBody),
        (status = 404, description = "No such video for this tenant", body = crate::error::ErrorBody),
        (status = 409, description = "The video already has a source, or one is being uploaded", body = crate::error::ErrorBody),
        (status = 413, description = "Larger than the tenant's max upload size", body = crate::error::ErrorBody),
        (status = 422, description = "`rejected_by_plugin`: a validator refused it (the plugin may choose another 4xx)", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_uploads`: the tenant has as many uploads open as it may", body = crate::error::ErrorBody),
        (status = 503, description = "A validator plugin failed (fail-closed) or the queue is down", body = crate::error::ErrorBody),
    )
)]
pub async fn put_source(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<(StatusCode, Json<VideoView>), ApiError> {
    let video = state
        .store
        .video(&tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::video_not_found(&id))?;
    if video.status != VideoStatus::AwaitingUpload {
        return Err(ApiError::Conflict(format!(
            "video {id} already has a source (status: {})",
            video.status
        )));
    }
    let declared_size = header_str(&headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    // Admitted before this upload counts as one in flight, so it does not count against itself.
    let limit = quota::admit_upload(&state, &tenant, declared_size).await?;
    // A concurrent upload of the same video is refused here; one that finished in between
    // makes the final `mark_uploaded` (conditional on `awaiting_upload`) refuse this one.
    let _in_flight = InFlight::claim(&state, &tenant.id, &id)?;

    let info = UploadInfo {
        tenant: tenant.id.clone(),
        video_id: video.id.clone(),
        filename: video.filename.clone(),
        declared_size,
        content_type: header_str(&headers, header::CONTENT_TYPE),
        metadata: vec![("title".into(), video.title.clone())],
    };
    let check = info.clone();
    validate(&state, move |p| p.check_upload(&check)).await?;

    let (head, rest) = split_head(body.into_data_stream()).await?;
    if head.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body is empty; send the video file as the body".into(),
        ));
    }
    let sniffed = head.clone();
    validate(&state, move |p| p.check_head(&info, &sniffed)).await?;

    let body = futures::stream::once(async move { Ok::<_, axum::Error>(head) }).chain(rest);
    let over_limit = Arc::new(AtomicBool::new(false));
    let body = quota::capped(body, limit, over_limit.clone());
    let staged = state.blobs.stage(body).await.map_err(|e| match e {
        mediahost_blob::BlobError::Interrupted(_) if over_limit.load(Ordering::Relaxed) => {
            ApiError::TooLarge(format!(
                "the source is larger than {limit} bytes, the most tenant {} may upload at once",
                tenant.name
            ))
        }
        mediahost_blob::BlobError::Interrupted(m) => {
            ApiError::BadRequest(format!("upload interrupted: {m}"))
        }
        other => other.into(),
    })?;
    let (size, sha256) = (staged.size, staged.sha256.clone());
    state
        .blobs
        .promote(staged, &keys::source(&tenant.id, &video.id))
        .await?;

    queue_transcode(&state, &tenant, &video.id, size, &sha256).await?;

    // The answer describes the video as this request left it; re-reading it could already
    // show an in-process worker's `processing`.
    let mut video = video;
    video.status = VideoStatus::Queued;
    video.size = Some(size);
    video.sha256 = Some(sha256);
    Ok((
        StatusCode::ACCEPTED,
        Json(VideoView::new(video, &base_url(&state, &headers, &uri))),
    ))
}
