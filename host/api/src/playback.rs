//! HLS playback: master and media playlists, init segments and media segments, streamed from
//! object storage.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mediahost_blob::BlobError;
use mediahost_core::video::keys;

use crate::auth::AuthTenant;
use crate::{ApiError, SharedState};

/// Content type by file extension, as HLS players expect.
fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("m4s") => "video/iso.segment",
        Some("mp4") => "video/mp4",
        Some("ts") => "video/mp2t",
        Some("vtt") => "text/vtt",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// Relative paths only, without `.`/`..` segments, so a request cannot reach outside the
/// video's HLS folder.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'))
}

/// `GET /v1/videos/{id}/hls/{*path}`.
pub async fn hls_file(
    State(state): State<SharedState>,
    AuthTenant(tenant): AuthTenant,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !safe_relative(&path) {
        return Err(ApiError::BadRequest(format!(
            "invalid playback path {path:?}"
        )));
    }
    let video = state
        .store
        .video(&tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::video_not_found(&id))?;
    let key = keys::hls(&video.tenant_id, &video.id, &path);
    let object = match state.blobs.get(&key).await {
        Ok(o) => o,
        Err(BlobError::NotFound(_)) => {
            return Err(ApiError::NotFound(format!(
                "video {id} has no playback file {path} (status: {})",
                video.status
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let mut response = Body::from_stream(object.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.size));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served() {
        assert!(safe_relative("master.m3u8"));
        assert!(safe_relative("720p/seg_00001.m4s"));
        for bad in [
            "",
            "../source",
            "720p/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\b",
        ] {
            assert!(!safe_relative(bad), "{bad}");
        }
    }

    #[test]
    fn hls_content_types() {
        assert_eq!(content_type("master.m3u8"), "application/vnd.apple.mpegurl");
        assert_eq!(content_type("360p/seg_00001.m4s"), "video/iso.segment");
        assert_eq!(content_type("360p/init.mp4"), "video/mp4");
    }
}
