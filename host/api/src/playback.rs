//! Playback: the HLS master and media playlists, the DASH manifest over the same CMAF
//! segments, init segments and media segments, streamed from object storage.
//!
//! Every file lives under the video's HLS root and is served by [`hls_file`]; the DASH
//! manifest, stored there as `manifest.mpd`, is also served at
//! `/v1/videos/{id}/dash/manifest.mpd` ([`dash_manifest`]) with the same rules. Its `BaseURL`
//! (`../hls/`) makes players fetch the segments from the HLS routes either way.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use mediahost_blob::BlobError;
use mediahost_core::video::keys;
use mediahost_core::{Video, VideoStatus};
use serde::Deserialize;
use std::sync::Arc;

use crate::auth::AuthTenant;
use crate::signing;
use crate::{ApiError, SharedState};
use mediahost_core::http_range::{self as range, Ranged};
use mediahost_core::video::content_type;

/// Relative paths only, without `.`/`..` segments, so a request cannot reach outside the
/// video's HLS folder.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'))
}

/// How long clients may reuse a playback file. Segments, init segments and thumbnails never
/// change once written (a re-transcode writes the same names with the same content role), so
/// they are immutable; manifests (HLS playlists, the DASH MPD) of a ready video may be reused
/// briefly; anything else is revalidated: in particular the `EVENT` playlists of a video still
/// processing, which grow with every segment stored (`no-cache` also keeps edges from storing
/// them, see `mediahost_edge`).
/// `private` while playback is authenticated by tenant key: a shared cache must not hand one
/// tenant's media to a client without the key. `public` for signed URLs: the signature in the
/// URL is the credential, so a shared cache keying by the full URL hands the file only to
/// clients holding the same signature.
fn cache_control(path: &str, status: VideoStatus, signed: bool) -> &'static str {
    match (path.rsplit('.').next(), signed) {
        (Some("m4s" | "mp4" | "ts" | "jpg" | "vtt"), false) => {
            "private, max-age=31536000, immutable"
        }
        (Some("m4s" | "mp4" | "ts" | "jpg" | "vtt"), true) => "public, max-age=31536000, immutable",
        (Some("m3u8" | "mpd"), false) if status == VideoStatus::Ready => "private, max-age=60",
        (Some("m3u8" | "mpd"), true) if status == VideoStatus::Ready => "public, max-age=60",
        _ => "no-cache",
    }
}

/// The signature query of a signed playback URL.
#[derive(Debug, Deserialize)]
pub struct SignedQuery {
    /// Unix seconds after which the URL stops working.
    exp: Option<String>,
    /// Hex HMAC-SHA256 of `"<video id>/<exp>"` with the tenant's playback secret.
    sig: Option<String>,
}

/// The video a playback request may read, and the signature query when it came through a
/// signed URL. A request with an `Authorization` header is authenticated by tenant key as
/// before; one without it must carry a valid `exp`/`sig` pair.
async fn authorize(
    state: &SharedState,
    parts: &mut Parts,
    id: &str,
    query: &SignedQuery,
) -> Result<(Arc<Video>, Option<String>), ApiError> {
    let has_signature = query.exp.is_some() || query.sig.is_some();
    if !has_signature || parts.headers.contains_key(header::AUTHORIZATION) {
        let AuthTenant(tenant) = AuthTenant::from_request_parts(parts, state).await?;
        let video = state
            .store
            .video_cached(&tenant.id, id)
            .await?
            .ok_or_else(|| ApiError::video_not_found(id))?;
        return Ok((video, None));
    }
    let (Some(exp), Some(sig)) = (&query.exp, &query.sig) else {
        return Err(ApiError::InvalidSignature(
            "malformed signed URL: it needs both `exp` and `sig`".into(),
        ));
    };
    // An unknown video is answered like a forged signature, so signed URLs do not reveal
    // which ids exist.
    let secret = match state.store.video_by_id_cached(id).await? {
        Some(video) => Some((state.store.playback_secret(&video.tenant_id).await?, video)),
        None => None,
    };
    let Some((secret, video)) = secret else {
        return Err(signing::forged());
    };
    signing::verify(&secret, id, exp, sig, signing::unix_now())?;
    Ok((video, Some(format!("exp={exp}&sig={sig}"))))
}

/// `GET` (and `HEAD`) `/v1/videos/{id}/hls/{*path}`: a playback file with range and
/// conditional request support, authorised by tenant key or by a signed URL
/// (`?exp=&sig=`, see [`crate::signing`]). Playlists served through a signed URL have every URI
/// rewritten to carry the same signature; they are answered whole (no ranges or validators,
/// since their bytes depend on the signature).
///
/// Routed as `/videos/{id}/hls/{*path}` (the path may hold slashes), which OpenAPI cannot
/// spell; the document names the parameter `path`.
#[utoipa::path(
    get,
    path = "/videos/{id}/hls/{path}",
    operation_id = "get_playback_file",
    tag = crate::openapi::PLAYBACK,
    security((), ("tenant_key" = [])),
    params(
        ("id" = String, Path, description = "Video id"),
        ("exp" = Option<u64>, Query, description = "Signed URL: unix seconds until which it is valid; with `sig`, replaces the API key"),
        ("sig" = Option<String>, Query, description = "Signed URL: hex HMAC-SHA256 of `<video id>/<exp>` with the tenant's playback secret (`playback.signed_hls` of the video carries both)"),
        ("path" = String, Path, description = "`master.m3u8` or a file it names, e.g. `720p/index.m3u8`, `720p/seg_00001.m4s`, or `manifest.mpd` (the DASH manifest, also at `dash/manifest.mpd`); may contain slashes"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `a-` or `-n`"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a cached copy"),
        ("If-Modified-Since" = Option<String>, Header, description = "HTTP date of a cached copy"),
        ("If-Range" = Option<String>, Header, description = "ETag or date the Range depends on"),
    ),
    responses(
        (status = 200, description = "The file: playlists `application/vnd.apple.mpegurl`, init segments `video/mp4`, segments `video/iso.segment`, posters `image/jpeg`, storyboards `text/vtt`; with ETag, Last-Modified, Cache-Control. HEAD answers the same without a body"),
        (status = 206, description = "The requested range, with Content-Range"),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid path", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key (and no signature)", body = crate::error::ErrorBody),
        (status = 403, description = "`invalid_signature`: the signed URL expired, is malformed, or is not valid for this video", body = crate::error::ErrorBody),
        (status = 404, description = "No such video or file", body = crate::error::ErrorBody),
        (status = 416, description = "The range starts beyond the end (Content-Range: bytes */size)", body = crate::error::ErrorBody),
    )
)]
pub async fn hls_file(
    State(state): State<SharedState>,
    Path((id, path)): Path<(String, String)>,
    Query(query): Query<SignedQuery>,
    parts: Parts,
) -> Result<Response, ApiError> {
    if !safe_relative(&path) {
        return Err(ApiError::BadRequest(format!(
            "invalid playback path {path:?}"
        )));
    }
    serve_file(&state, &id, &path, &query, parts).await
}

/// `GET` (and `HEAD`) `/v1/videos/{id}/dash/manifest.mpd`: the DASH manifest of the video,
/// over the same CMAF segments as its HLS playlists, served as [`hls_file`] serves files (key
/// or signed URL, ETag/304, Cache-Control). Read through a signed URL, its segment templates
/// carry the same signature. Its `BaseURL` is `../hls/`, so the segments it names resolve to
/// `/v1/videos/{id}/hls/…`.
#[utoipa::path(
    get,
    path = "/videos/{id}/dash/manifest.mpd",
    operation_id = "get_dash_manifest",
    tag = crate::openapi::PLAYBACK,
    security((), ("tenant_key" = [])),
    params(
        ("id" = String, Path, description = "Video id"),
        ("exp" = Option<u64>, Query, description = "Signed URL: unix seconds until which it is valid; with `sig`, replaces the API key"),
        ("sig" = Option<String>, Query, description = "Signed URL: hex HMAC-SHA256 of `<video id>/<exp>` with the tenant's playback secret (`playback.signed_dash` of the video carries both)"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `a-` or `-n` (not with a signature)"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a cached copy (not with a signature)"),
        ("If-Modified-Since" = Option<String>, Header, description = "HTTP date of a cached copy (not with a signature)"),
    ),
    responses(
        (status = 200, description = "The static MPD (`application/dash+xml`, isoff-live profile): one representation per rendition, `SegmentTemplate` with `$Number%05d$` and a `SegmentTimeline` matching the HLS media playlists; with ETag, Last-Modified, Cache-Control. HEAD answers the same without a body", content_type = "application/dash+xml"),
        (status = 206, description = "The requested range, with Content-Range"),
        (status = 304, description = "Not modified"),
        (status = 401, description = "Missing, malformed, unknown or revoked key (and no signature)", body = crate::error::ErrorBody),
        (status = 403, description = "`invalid_signature`: the signed URL expired, is malformed, or is not valid for this video", body = crate::error::ErrorBody),
        (status = 404, description = "No such video, or no manifest (not ready yet, or transcoded before DASH existed)", body = crate::error::ErrorBody),
        (status = 416, description = "The range starts beyond the end (Content-Range: bytes */size)", body = crate::error::ErrorBody),
    )
)]
pub async fn dash_manifest(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(query): Query<SignedQuery>,
    parts: Parts,
) -> Result<Response, ApiError> {
    serve_file(&state, &id, keys::DASH_MANIFEST, &query, parts).await
}

/// Serves the file at `path` under video `id`'s HLS root (a checked relative path).
async fn serve_file(
    state: &SharedState,
    id: &str,
    path: &str,
    query: &SignedQuery,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let (video, signature) = authorize(state, &mut parts, id, query).await?;
    let headers = parts.headers;
    let key = keys::hls(&video.tenant_id, &video.id, path);
    let missing = |e: BlobError| match e {
        BlobError::NotFound(_) => ApiError::NotFound(format!(
            "video {id} has no playback file {path} (status: {})",
            video.status
        )),
        e => e.into(),
    };
    if let Some(signature) = &signature
        && is_manifest(path)
    {
        let bytes = playlist_bytes(state, &video, &key).await.map_err(missing)?;
        return signed_playlist(&key, path, video.status, &bytes, signature);
    }
    let info = state.blobs.head(&key).await.map_err(missing)?;

    let etag = info.e_tag.as_deref().map(range::entity_tag);
    let last_modified = httpdate::fmt_http_date(info.last_modified);
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type(path))
        .header(
            header::CACHE_CONTROL,
            cache_control(path, video.status, signature.is_some()),
        )
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::LAST_MODIFIED, &last_modified);
    if let Some(etag) = &etag {
        builder = builder.header(header::ETAG, etag);
    }

    let fresh = match (header(header::IF_NONE_MATCH), &etag) {
        (Some(inm), Some(etag)) => range::none_match(inm, etag),
        (Some(_), None) => false,
        (None, _) => header(header::IF_MODIFIED_SINCE)
            .is_some_and(|ims| range::not_modified_since(ims, info.last_modified)),
    };
    if fresh {
        return Ok(builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response"));
    }

    let honour_range = header(header::IF_RANGE).is_none_or(|ir| {
        etag.as_deref()
            .is_some_and(|etag| range::if_range_holds(ir, etag, info.last_modified))
    });
    let requested = if honour_range {
        range::parse_range(header(header::RANGE), info.size)
    } else {
        Ranged::Full
    };
    let (status, object) = match requested {
        Ranged::Full => (StatusCode::OK, state.blobs.get(&key).await?),
        Ranged::Partial(r) => (
            StatusCode::PARTIAL_CONTENT,
            state.blobs.get_range(&key, r).await?,
        ),
        Ranged::Unsatisfiable => {
            let body = ApiError::RangeNotSatisfiable(format!(
                "{path} is {} bytes; the requested range starts beyond its end",
                info.size
            ));
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", info.size)).expect("ascii"),
            );
            return Ok(response);
        }
    };
    let length = object.range.end - object.range.start;
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{}",
                object.range.start,
                object.range.end - 1,
                object.info.size
            ),
        );
    }
    Ok(builder
        .status(status)
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(object.body))
        .expect("valid response"))
}

/// The playlist at `key` of `video`, through the lookup cache once the video is ready: every
/// viewer of a video reads its playlists again and again, and on S3 each read is a round trip.
/// Entries are keyed by the video's `updated_at`, so a video that changes (a re-transcode) is
/// read afresh at once; a deleted video never gets this far. The `EVENT` playlists of a video
/// still processing change without the video changing, so they are always read from storage.
async fn playlist_bytes(
    state: &SharedState,
    video: &Video,
    key: &str,
) -> Result<std::sync::Arc<[u8]>, BlobError> {
    let cache_key = format!("playlist:{}:{key}", video.updated_at);
    let cache = state
        .store
        .lookup_cache()
        .filter(|_| video.status == VideoStatus::Ready);
    if let Some((cache, _)) = cache
        && let Some(bytes) = cache.get(&cache_key).await
    {
        return Ok(bytes);
    }
    let object = state.blobs.get(key).await?;
    let bytes: Vec<u8> = object
        .body
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await?;
    let bytes: std::sync::Arc<[u8]> = bytes.into();
    if let Some((cache, ttl)) = cache {
        cache.put(&cache_key, bytes.clone(), ttl).await;
    }
    Ok(bytes)
}

/// HLS playlists and the DASH manifest: files naming other files, which a signed URL must
/// rewrite to carry its signature.
fn is_manifest(path: &str) -> bool {
    path.ends_with(".m3u8") || path.ends_with(".mpd")
}

/// A playlist or manifest read through a signed URL: whole, with every URI carrying
/// `signature`.
fn signed_playlist(
    key: &str,
    path: &str,
    status: VideoStatus,
    bytes: &[u8],
    signature: &str,
) -> Result<Response, ApiError> {
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::Internal(format!("playlist {key} is not UTF-8")))?;
    let body = if path.ends_with(".mpd") {
        signing::sign_mpd(&text, signature)
    } else {
        signing::sign_playlist(&text, signature)
    };
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, content_type(path))
        .header(header::CACHE_CONTROL, cache_control(path, status, true))
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .expect("valid response"))
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
        assert_eq!(content_type("manifest.mpd"), "application/dash+xml");
        assert_eq!(content_type("poster.jpg"), "image/jpeg");
        assert_eq!(
            cache_control("manifest.mpd", VideoStatus::Ready, true),
            "public, max-age=60"
        );
        // A growing EVENT playlist is revalidated on every use, by players and edges alike;
        // its segments are final.
        for signed in [false, true] {
            assert_eq!(
                cache_control("360p/index.m3u8", VideoStatus::Processing, signed),
                "no-cache"
            );
            assert!(
                cache_control("360p/seg_00000.m4s", VideoStatus::Processing, signed)
                    .contains("immutable")
            );
        }
    }
}
