//! Video records: create, list, show.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use mediahost_core::{MediaInfo, Progress, Rendition, Video, VideoStatus};
use mediahost_store::NewVideo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::auth::AuthTenant;
use crate::{ApiError, SharedState};

/// Longest title or file name accepted, in bytes.
const MAX_TEXT: usize = 1024;

/// Body of `POST /v1/videos`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVideo {
    title: String,
    #[serde(default)]
    filename: Option<String>,
}

/// A video as clients see it.
#[derive(Debug, Serialize)]
pub struct VideoView {
    id: String,
    title: String,
    filename: Option<String>,
    status: VideoStatus,
    error: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    duration_s: Option<f64>,
    source: Option<MediaInfo>,
    renditions: Vec<Rendition>,
    metadata: BTreeMap<String, String>,
    progress: Option<Progress>,
    playback: Playback,
    created_at: String,
    updated_at: String,
}

/// Where to play a ready video.
#[derive(Debug, Serialize)]
pub struct Playback {
    /// HLS master playlist URL, once ready.
    hls: Option<String>,
    /// Poster image URL (JPEG at the best rendition's size), once ready.
    poster: Option<String>,
    /// Seek-preview storyboard: a WebVTT index whose cues point into one JPEG sprite.
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
        let file = |name: &str| {
            (video.status == VideoStatus::Ready)
                .then(|| format!("{base}/v1/videos/{}/hls/{name}", video.id))
        };
        let playback = Playback {
            hls: file("master.m3u8"),
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
            playback,
            created_at: video.created_at,
            updated_at: video.updated_at,
        }
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
    Ok(Json(VideoView::new(
        video,
        &base_url(&state, &headers, &uri),
    )))
}

/// Query of `GET /v1/videos`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
}

/// `GET /v1/videos`: the tenant's videos, newest first.
pub async fn list(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let base = base_url(&state, &headers, &uri);
    let videos: Vec<VideoView> = state
        .store
        .list_videos(&tenant.id, limit)
        .await?
        .into_iter()
        .map(|v| VideoView::new(v, &base))
        .collect();
    Ok(Json(serde_json::json!({ "videos": videos })))
}
