//! Video records: create, list, show, delete.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use mediahost_core::video::keys;
use mediahost_core::{MediaInfo, Progress, Rendition, Video, VideoStatus};
use mediahost_store::NewVideo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::auth::AuthTenant;
use crate::{ApiError, SharedState};

/// Longest title or file name accepted, in bytes.
const MAX_TEXT: usize = 1024;

/// Body of `POST /v1/videos`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVideo {
    /// Shown to people; not empty, at most 1024 bytes.
    title: String,
    /// The source's file name, if known (validator plugins check it).
    #[serde(default)]
    filename: Option<String>,
}

/// A video as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VideoView {
    /// Stable id (UUID v7).
    id: String,
    /// Title.
    title: String,
    /// The source's file name, if declared.
    filename: Option<String>,
    /// Where the video is in its life cycle.
    status: VideoStatus,
    /// Why processing failed, when `status` is `failed`.
    error: Option<String>,
    /// Source size in bytes, once stored.
    size: Option<u64>,
    /// Hex sha256 of the source, once stored.
    sha256: Option<String>,
    /// Duration in seconds, once probed.
    duration_s: Option<f64>,
    /// What probing the source found.
    source: Option<MediaInfo>,
    /// The renditions made: once ready, and while `processing` as soon as every rendition has
    /// its first segment stored (see `playable`).
    renditions: Vec<Rendition>,
    /// What metadata-extractor plugins returned.
    metadata: BTreeMap<String, String>,
    /// Transcoding progress while a worker runs.
    progress: Option<Progress>,
    /// Whether a player can start now: true once `ready`, and already while `processing` once
    /// the master playlist and a first segment of every rendition are stored. Until `ready`
    /// the media playlists are `EVENT` playlists (no `EXT-X-ENDLIST`, served with
    /// `Cache-Control: no-cache`) that grow as segments are stored; players reload them.
    playable: bool,
    /// Playback URLs: the HLS ones once `playable`, the others once `ready`.
    playback: Playback,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
}

/// `GET /v1/videos` answers `{"videos": [...]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VideoList {
    /// Newest first.
    videos: Vec<VideoView>,
}

/// Where to play a video.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Playback {
    /// HLS master playlist URL, once `playable` (while still processing too); needs the
    /// tenant's API key.
    hls: Option<String>,
    /// The master playlist as a signed URL that plays without an API key until it expires
    /// (`[playback] signed_url_seconds` after this response); every playlist fetched through it
    /// names its files with the same signature. Only in `GET /v1/videos/{id}`, once `playable`.
    signed_hls: Option<String>,
    /// DASH manifest URL (static MPD over the same segments as the HLS playlists), once
    /// ready; needs the tenant's API key.
    dash: Option<String>,
    /// The DASH manifest as a signed URL, like `signed_hls` (same signature, same expiry).
    signed_dash: Option<String>,
    /// Poster image URL (JPEG at the best rendition's size), once ready (not for a source
    /// without video).
    poster: Option<String>,
    /// Seek-preview storyboard: a WebVTT index whose cues point into one JPEG sprite (like
    /// `poster`, not for a source without video).
    storyboard: Option<String>,
}

/// The scheme and authority clients used to reach us, for absolute playback URLs.
pub(crate) fn base_url(state: &SharedState, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(url) = &state.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    // HTTP/2 carries the authority in the URI (`:authority`), HTTP/1.1 in `Host`.
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "localhost".into());
    format!("http://{host}")
}

impl VideoView {
    pub(crate) fn new(video: Video, base: &str) -> Self {
        let ready = video.status == VideoStatus::Ready;
        let playable = is_playable(&video);
        // Thumbnails need a picture: a sound-only video has none.
        let pictured = ready && video.renditions.iter().any(|r| r.width > 0);
        let file =
            |name: &str| pictured.then(|| format!("{base}/v1/videos/{}/hls/{name}", video.id));
        let playback = Playback {
            hls: playable.then(|| format!("{base}/v1/videos/{}/hls/master.m3u8", video.id)),
            signed_hls: None,
            dash: ready
                .then(|| format!("{base}/v1/videos/{}/dash/{}", video.id, keys::DASH_MANIFEST)),
            signed_dash: None,
            poster: file("poster.jpg"),
            storyboard: file("storyboard.vtt"),
        };
        Self {
            duration_s: video.duration_s(),
            id: video.id,
            title: video.title,
            filename: video.filename,
            status: video.status,
            error: video.error,
            size: video.size,
            sha256: video.sha256,
            source: video.source,
            renditions: video.renditions,
            metadata: video.metadata,
            progress: video.progress,
            playable,
            playback,
            created_at: video.created_at,
            updated_at: video.updated_at,
        }
    }
}

/// Ready, or processing with renditions listed: the worker lists them once their master
/// playlist and first segments are stored, and a video that goes back to the queue or fails
/// loses them.
pub(crate) fn is_playable(video: &Video) -> bool {
    match video.status {
        VideoStatus::Ready => true,
        VideoStatus::Processing => !video.renditions.is_empty(),
        _ => false,
    }
}

fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_TEXT {
        return Err(ApiError::BadRequest(format!(
            "`{field}` is {} bytes; the limit is {MAX_TEXT}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "`{field}` must not contain control characters"
        )));
    }
    Ok(())
}

/// `POST /v1/videos`: create a video awaiting its upload.
#[utoipa::path(
    post,
    path = "/videos",
    operation_id = "create_video",
    tag = crate::openapi::VIDEOS,
    security(("tenant_key" = [])),
    request_body = CreateVideo,
    responses(
        (status = 201, description = "Created, awaiting its source", body = VideoView),
        (status = 400, description = "Malformed JSON, empty or too long title", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
    )
)]
pub async fn create(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Json<CreateVideo>, JsonRejection>,
) -> Result<(StatusCode, Json<VideoView>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let title = body.title.trim();
    if title.is_empty() {
        return Err(ApiError::BadRequest("`title` must not be empty".into()));
    }
    check_text("title", title)?;
    if let Some(name) = &body.filename {
        check_text("filename", name)?;
    }
    let new = NewVideo {
        title: title.to_owned(),
        filename: body.filename.filter(|f| !f.is_empty()),
    };
    let video = state.store.create_video(&tenant.id, &new).await?;
    tracing::info!(tenant = %tenant.name, video = %video.id, "video created");
    let base = base_url(&state, &headers, &uri);
    Ok((StatusCode::CREATED, Json(VideoView::new(video, &base))))
}

/// `GET /v1/videos/{id}`.
#[utoipa::path(
    get,
    path = "/videos/{id}",
    operation_id = "get_video",
    tag = crate::openapi::VIDEOS,
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "Video id")),
    responses(
        (status = 200, description = "The video", body = VideoView),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 404, description = "No such video for this tenant", body = crate::error::ErrorBody),
    )
)]
pub async fn show(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<VideoView>, ApiError> {
    let video = state
        .store
        .video(&tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::video_not_found(&id))?;
    let playable = is_playable(&video);
    let mut view = VideoView::new(video, &base_url(&state, &headers, &uri));
    if playable {
        let secret = state.store.playback_secret(&tenant.id).await?;
        let exp = crate::signing::unix_now() + state.signed_url_seconds;
        let query = crate::signing::query(&secret, &view.id, exp);
        let signed = |url: &Option<String>| url.as_ref().map(|url| format!("{url}?{query}"));
        view.playback.signed_hls = signed(&view.playback.hls);
        view.playback.signed_dash = signed(&view.playback.dash);
    }
    Ok(Json(view))
}

/// Query of `GET /v1/videos`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many videos (1..=500, default 50).
    limit: Option<u32>,
}

/// `GET /v1/videos`: the tenant's videos, newest first.
#[utoipa::path(
    get,
    path = "/videos",
    operation_id = "list_videos",
    tag = crate::openapi::VIDEOS,
    security(("tenant_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The tenant's videos, newest first", body = VideoList),
        (status = 400, description = "Malformed query", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<VideoList>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let base = base_url(&state, &headers, &uri);
    let videos: Vec<VideoView> = state
        .store
        .list_videos(&tenant.id, limit)
        .await?
        .into_iter()
        .map(|v| VideoView::new(v, &base))
        .collect();
    Ok(Json(VideoList { videos }))
}

/// What `DELETE /v1/videos/{id}` did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The deleted video's id.
    id: String,
    /// Its edge group, whose edges were purged.
    edge_group: String,
    /// One entry per edge of the group: `edge` (`local` for the edge in the api's process,
    /// else its URL), `group`, `purged` (objects dropped) or `error` (why the purge failed;
    /// the video is deleted all the same).
    #[schema(value_type = Vec<Object>)]
    edges: Vec<mediahost_edge::fleet::PurgeOutcome>,
}

/// `DELETE /v1/videos/{id}`: deletes the video, its source and renditions and any unfinished
/// upload of it, then purges it from every edge of its group.
#[utoipa::path(
    delete,
    path = "/videos/{id}",
    operation_id = "delete_video",
    tag = crate::openapi::VIDEOS,
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "Video id")),
    responses(
        (status = 200, description = "Deleted; the edges' purge results", body = Deleted),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = crate::error::ErrorBody),
        (status = 404, description = "No such video for this tenant", body = crate::error::ErrorBody),
        (status = 409, description = "Its source is being uploaded in a single request right now", body = crate::error::ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let receiving = state
        .uploads_in_flight
        .lock()
        .map_err(|_| ApiError::Internal("uploads lock poisoned".into()))?
        .contains_key(&id);
    if receiving {
        return Err(ApiError::Conflict(format!(
            "video {id} is receiving its source right now; delete it once the upload ends"
        )));
    }
    let (video, uploads) = state
        .store
        .delete_video(&tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::video_not_found(&id))?;
    // The row went first, so nothing serves the video any more while its bytes go; a failure
    // here leaves orphaned objects (logged), never a video without its files.
    for upload in &uploads {
        let part = mediahost_blob::PartRef {
            tenant: &tenant.id,
            upload,
        };
        if let Err(e) = state.blobs.remove_part(part).await {
            tracing::error!(error = %e, %upload, "could not remove a deleted video's upload data");
        }
    }
    let prefix = mediahost_core::video::keys::video_prefix(&tenant.id, &id);
    if let Err(e) = state.blobs.delete_prefix(&prefix).await {
        tracing::error!(error = %e, %prefix, "could not delete a deleted video's objects");
    }
    let edges = state.edges.purge_video(&video.edge_group, &id).await;
    tracing::info!(tenant = %tenant.name, video = %id, edges = edges.len(), "video deleted");
    metrics::counter!("mediahost_videos_deleted_total").increment(1);
    Ok(Json(Deleted {
        id,
        edge_group: video.edge_group,
        edges,
    }))
}
