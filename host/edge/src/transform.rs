//! Edge-transform plugins on the playback path: `on-request` before the cache is consulted
//! (continue, possibly with a rewritten path or headers, or answer here, e.g. 403 for a bad
//! token) and `on-response` before the answer leaves (headers, and the body of manifests).
//!
//! The chain is the global edge-transform chain plus the chain of the tenant owning the
//! requested video, resolved through the metadata store's cached lookups (so a hot path costs
//! no database round trip). Calls run inline on the request's task, as proxy-wasm filters run
//! on their proxy's worker threads: one is tens of microseconds, and a runaway one is cut off
//! by its own time, fuel and memory limits. A failure under a fail-closed binding (the world's
//! default) refuses the request with 503 `plugin_failed`; fail-open bindings are skipped.
//!
//! A rewrite may only move a request within the same video's playback files, so no plugin can
//! hand one tenant's media out under another tenant's checks. The cache sees the rewritten
//! path, so two requests that a plugin maps to one object share one cached copy.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use mediahost_runtime::{
    PluginError, PluginHost, RequestAction, RequestHead, ResponseHead, ResponseUpdate,
};
use mediahost_store::Store;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Edge;
use crate::proxy::{self, error};

/// Manifests bigger than this are not handed to `on-response` whole (the plugin sees the
/// head only): no real playlist comes near it, and a plugin's memory limit would not either.
const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;

/// What the edge needs to run edge transforms: the plugins with their bindings (kept in step
/// with the metadata DB by the process's sync loop) and the store to find a video's tenant.
pub struct Transforms {
    plugins: PluginHost,
    store: Store,
}

impl Transforms {
    /// Runs `plugins`' edge-transform chains, resolving tenants through `store`.
    pub fn new(plugins: PluginHost, store: Store) -> Self {
        Self { plugins, store }
    }
}

/// The video id of a playback path (`/v1/videos/{id}/hls/…`, as routed).
fn video_id(path: &str) -> &str {
    path.trim_start_matches("/v1/videos/")
        .split('/')
        .next()
        .unwrap_or_default()
}

/// Serves a playback request through the edge-transform chain of its video's tenant.
pub(crate) async fn playback(
    edge: &Arc<Edge>,
    transforms: &Transforms,
    method: &Method,
    uri: Uri,
    headers: HeaderMap,
    client_ip: Option<IpAddr>,
) -> Response {
    let plugins = &transforms.plugins;
    if !plugins.runs_edge_transforms(None) {
        return proxy::serve(edge, uri, headers).await;
    }
    let video = video_id(uri.path()).to_owned();
    let tenant = match transforms.store.video_by_id_cached(&video).await {
        Ok(found) => found.map(|v| v.tenant_id.clone()),
        Err(e) => {
            tracing::error!(error = %e, %video, "cannot resolve the tenant of a playback request");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant_unavailable",
                format!(
                    "the edge could not look up which tenant owns video {video} ({e}), so its \
                     edge transforms cannot run; retry later"
                ),
            );
        }
    };
    if !plugins.runs_edge_transforms(tenant.as_deref()) {
        return proxy::serve(edge, uri, headers).await;
    }
    let request = RequestHead {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: pairs(&headers),
        client_ip: client_ip.map(|ip| ip.to_string()),
        tenant,
        received_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let mut plugin_time = Duration::ZERO;
    let started = Instant::now();
    let action = plugins.on_request(&request);
    plugin_time += started.elapsed();
    let response = match action {
        Err(e) => failed(&e),
        Ok(RequestAction::Respond(answer)) => {
            metrics::counter!("mediahost_edge_plugin_answers_total").increment(1);
            let body = Body::from(answer.body);
            build(answer.status, &answer.headers, body, None)
        }
        Ok(RequestAction::Continue(next)) => {
            // What the chain left as it was is served as it came, without re-parsing it.
            let target = if next.path == request.path && next.query == request.query {
                Ok(uri)
            } else {
                rewritten(&next, &video)
            };
            match target {
                Err(why) => {
                    tracing::warn!(path = %next.path, %video, "edge transform rewrote a request outside its video");
                    error(StatusCode::SERVICE_UNAVAILABLE, "plugin_failed", why)
                }
                Ok(uri) => {
                    let headers = if next.headers == request.headers {
                        headers
                    } else {
                        header_map(&next.headers)
                    };
                    let response = proxy::serve(edge, uri, headers).await;
                    respond(plugins, &next, response, &mut plugin_time).await
                }
            }
        }
    };
    edge.counters.plugin_seconds.record(plugin_time);
    response
}

/// The request's headers as plugins see them: lower-case names, values that are text.
fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.into())))
        .collect()
}

/// Headers a plugin handed back (already checked to be valid tokens and values).
fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// The URI a continued request is served from: its (possibly rewritten) path and query, which
/// must stay within the video's playback files; else why not.
fn rewritten(next: &RequestHead, video: &str) -> Result<Uri, String> {
    let inside = proxy::playback_file(&next.path).is_some_and(|(id, _)| id == video);
    let uri = match &next.query {
        Some(query) => format!("{}?{query}", next.path),
        None => next.path.clone(),
    };
    match uri.parse::<Uri>() {
        Ok(uri) if inside => Ok(uri),
        _ => Err(format!(
            "an edge transform rewrote the request to {uri:?}, outside video {video}'s \
             playback files (/v1/videos/{video}/hls/… and /v1/videos/{video}/{}); the request \
             is refused",
            proxy::DASH_MANIFEST_PATH
        )),
    }
}

/// A fail-closed failure of the chain: the request is refused.
fn failed(e: &PluginError) -> Response {
    metrics::counter!("mediahost_edge_plugin_failures_total").increment(1);
    tracing::warn!(error = %e, "edge transform failed; request refused (fail-closed)");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "plugin_failed",
        format!("the request was refused because an edge transform failed: {e}"),
    )
}

/// Runs `on-response` on the edge's answer to `request`: manifests (`200` playlists) are
/// handed over whole, everything else by its head while the body streams on.
async fn respond(
    plugins: &PluginHost,
    request: &RequestHead,
    response: Response,
    plugin_time: &mut Duration,
) -> Response {
    let (parts, body) = response.into_parts();
    let head = ResponseHead {
        status: parts.status.as_u16(),
        headers: pairs(&parts.headers),
    };
    let manifest = parts.status == StatusCode::OK && proxy::is_playlist(&request.path);
    let (body, whole) = if manifest {
        match axum::body::to_bytes(body, MAX_MANIFEST_BYTES).await {
            Ok(bytes) => (Body::empty(), Some(bytes)),
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    "origin_unavailable",
                    format!("the edge could not read the manifest to transform: {e}; retry"),
                );
            }
        }
    } else {
        (body, None)
    };
    let started = Instant::now();
    let update = plugins.on_response(request, &head, whole.as_deref());
    *plugin_time += started.elapsed();
    match update {
        Err(e) => failed(&e),
        Ok(ResponseUpdate {
            head,
            body: Some(replaced),
        }) => build(head.status, &head.headers, Body::from(replaced), None),
        Ok(ResponseUpdate {
            head: next,
            body: None,
        }) => match whole {
            Some(bytes) => build(next.status, &next.headers, Body::from(bytes), None),
            None => match next.headers.strip_prefix(head.headers.as_slice()) {
                // Only headers added (the common case: a header injected into every answer):
                // the edge's own head stays as it was, with the additions appended.
                Some(added) if next.status == head.status => {
                    let mut response = Response::from_parts(parts, body);
                    let headers = response.headers_mut();
                    for (name, value) in &header_map(added) {
                        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
                            headers.append(name, value.clone());
                        }
                    }
                    response
                }
                // The body streams as it came: its length is the edge's, not the plugin's.
                _ => build(
                    next.status,
                    &next.headers,
                    body,
                    parts.headers.get(header::CONTENT_LENGTH),
                ),
            },
        },
    }
}

/// A response from a plugin's status and headers. `Content-Length` is the edge's to set:
/// `length` for a streamed body, else what the body's size says.
fn build(
    status: u16,
    headers: &[(String, String)],
    body: Body,
    length: Option<&HeaderValue>,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut map = header_map(headers);
    map.remove(header::CONTENT_LENGTH);
    map.remove(header::TRANSFER_ENCODING);
    if let Some(length) = length {
        map.insert(header::CONTENT_LENGTH, length.clone());
    }
    *response.headers_mut() = map;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(path: &str, query: Option<&str>) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            path: path.into(),
            query: query.map(str::to_owned),
            headers: vec![],
            client_ip: None,
            tenant: None,
            received_at: 0,
        }
    }

    #[test]
    fn rewrites_stay_within_the_video() {
        assert_eq!(video_id("/v1/videos/abc/hls/720p/a.m4s"), "abc");
        let ok = rewritten(&head("/v1/videos/abc/hls/360p/a.m4s", Some("x=1")), "abc").unwrap();
        assert_eq!(ok.to_string(), "/v1/videos/abc/hls/360p/a.m4s?x=1");
        let mpd = rewritten(&head("/v1/videos/abc/dash/manifest.mpd", None), "abc").unwrap();
        assert_eq!(mpd.to_string(), "/v1/videos/abc/dash/manifest.mpd");
        for bad in [
            "/v1/videos/other/hls/master.m3u8",
            "/v1/videos/abc/hls/",
            "/v1/videos/abc/hls/../../other/hls/master.m3u8",
            "/v1/videos/abc/source",
            "/v1/videos/abc/dash/360p/seg_00000.m4s",
            "/metrics",
        ] {
            let why = rewritten(&head(bad, None), "abc").unwrap_err();
            assert!(why.contains("outside video abc"), "{bad}: {why}");
        }
    }

    #[test]
    fn the_edge_sets_the_length() {
        let headers = vec![
            ("content-length".to_owned(), "999".to_owned()),
            ("x-served-by".to_owned(), "edge".to_owned()),
        ];
        let response = build(200, &headers, Body::from("abc"), None);
        assert_eq!(response.headers().get(header::CONTENT_LENGTH), None);
        assert_eq!(response.headers()["x-served-by"], "edge");
        let length = HeaderValue::from_static("3");
        let response = build(206, &headers, Body::from("abc"), Some(&length));
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "3");
    }
}
