//! The edge's HTTP handlers: playback through the cache, purge, health and metrics.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use metrics::Counter;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Edge;
use crate::auth::{self, Refusal};
use crate::cache::{self, Cached, Found, Meta, Tier, X_CACHE};
use crate::disk;
use crate::flight::{End, Flight, Head};
use crate::signed::Signature;
use crate::transform;
use mediahost_core::http_range::{self, Ranged};

/// Origin response headers the edge keeps and serves again: what describes the
/// representation and how it may be cached. Hop-by-hop and length headers are the edge's own.
pub(crate) const KEPT_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::WWW_AUTHENTICATE,
];

/// `{"error": {"code", "message"}}` with `status`, like the origin's errors.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// Whether the URL's `exp` (unix seconds) has passed. Such a URL is never answered from the
/// cache: the origin decides (and answers 403).
pub(crate) fn expired(uri: &Uri) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    uri.query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.strip_prefix("exp="))
        .any(|exp| exp.parse::<u64>().map_or(true, |exp| exp < now))
}

/// `GET`/`HEAD /v1/videos/{id}/hls/{*path}` and `/v1/videos/{id}/dash/manifest.mpd`: through
/// the edge transforms of the video's
/// tenant when the edge runs plugins ([`crate::transform`]), else straight to [`serve`].
/// The request is taken whole, by value: extracting its parts one by one would clone them.
pub(crate) async fn playback(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    match &edge.transforms {
        Some(transforms) => {
            let client_ip = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip());
            let method = &parts.method;
            transform::playback(
                &edge,
                transforms,
                method,
                parts.uri,
                parts.headers,
                client_ip,
            )
            .await
        }
        None => serve(&edge, parts.uri, parts.headers).await,
    }
}

/// Where a playback request's answer comes from (see [`crate::signed`]).
enum Route {
    /// Straight from the origin, never stored: an expired URL, a media file without a
    /// signature, or one whose signature the origin refused.
    Bypass,
    /// The cache under `key`; a miss is fetched once for all concurrent requests of the key.
    /// `signature` (of a signed URL) is recorded as accepted when the origin answers `200`.
    Cache {
        key: String,
        signature: Option<Signature>,
    },
    /// A signed media file whose signature this edge has not seen accepted yet.
    Unverified(Signature),
}

/// How the request for `uri` (whose path and query are `whole`) is answered at `now`.
fn route(edge: &Edge, uri: &Uri, whole: &str, now: SystemTime) -> Route {
    if expired(uri) {
        return Route::Bypass;
    }
    let path = uri.path();
    let signature =
        playback_file(path).and_then(|(video, _)| Signature::of(path, video, uri.query()));
    // A playlist's bytes embed its signature: keyed by the whole URL.
    if is_playlist(path) {
        return Route::Cache {
            key: whole.to_owned(),
            signature,
        };
    }
    match signature {
        None => Route::Bypass,
        Some(signature) if edge.verdicts.accepts(&signature, unix_seconds(now)) => Route::Cache {
            key: signature.key.clone(),
            signature: Some(signature),
        },
        Some(signature) => Route::Unverified(signature),
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Serves a playback request from the cache, or from the origin once for all concurrent
/// requests of the same object.
pub(crate) async fn serve(edge: &Arc<Edge>, uri: Uri, headers: HeaderMap) -> Response {
    let whole = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let now = SystemTime::now();
    let fetch = match route(edge, &uri, whole, now) {
        Route::Bypass => Fetch::bypass(whole),
        Route::Cache { key, signature } => {
            if let Some(found) = edge.cache.get(&key, now).await {
                return cached(edge, &key, found, &headers, now).await;
            }
            Fetch {
                url: whole.to_owned(),
                flight_key: Some(key.clone()),
                cache_key: key,
                signature,
                verified: true,
            }
        }
        Route::Unverified(signature) => {
            if let Some(found) = edge.cache.get(&signature.key, now).await {
                let remembered = found.meta.signed_with.as_deref() == Some(&signature.verdict);
                if remembered || verify(edge, whole).await {
                    edge.verdicts.accept(&signature, unix_seconds(now));
                    return cached(edge, &signature.key, found, &headers, now).await;
                }
                Fetch::bypass(whole)
            } else {
                // Shared only with requests of this very URL: another signature must be
                // accepted before it reads what this one fetched.
                Fetch {
                    url: whole.to_owned(),
                    flight_key: Some(whole.to_owned()),
                    cache_key: signature.key.clone(),
                    signature: Some(signature),
                    verified: false,
                }
            }
        }
    };
    through_flight(edge, fetch, &headers, now).await
}

/// Answers from the origin fetch of `fetch.flight_key` under way, or leads a new one (a
/// bypass always leads one of its own).
async fn through_flight(
    edge: &Arc<Edge>,
    fetch: Fetch,
    headers: &HeaderMap,
    now: SystemTime,
) -> Response {
    let (flight, leader) = match &fetch.flight_key {
        None => (Arc::new(Flight::default()), Some(fetch)),
        Some(flight_key) => {
            let mut in_flight = edge.in_flight.lock().expect("in-flight lock");
            // Looked up again under the lock: a fetch that finished since the first look has
            // stored its object (in memory: the tier a fetch stores into) and left the map,
            // and must not be fetched a second time.
            let hit = fetch
                .verified
                .then(|| edge.cache.get_memory(&fetch.cache_key, now))
                .flatten();
            if let Some(hit) = hit {
                drop(in_flight);
                let key = &fetch.cache_key;
                return cached(edge, key, Found::in_memory(&hit), headers, now).await;
            }
            match in_flight.get(flight_key) {
                Some(flight) => (flight.clone(), None),
                None => {
                    let flight = Arc::new(Flight::default());
                    in_flight.insert(flight_key.clone(), flight.clone());
                    (flight, Some(fetch))
                }
            }
        }
    };
    match leader {
        Some(fetch) => {
            edge.counters.misses.increment(1);
            edge.counters.miss_count.fetch_add(1, Ordering::Relaxed);
            // Its own task, so the fetch completes (and is cached) even when this client leaves.
            tokio::spawn(self::fetch(edge.clone(), fetch, flight.clone()));
        }
        None => edge.counters.coalesced_waits.increment(1),
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    from_flight(flight, range, edge.counters.bytes_out.clone()).await
}

/// Asks the origin whether it serves `url` (a `HEAD`): whether its signature is accepted.
async fn verify(edge: &Edge, url: &str) -> bool {
    let answer = edge
        .client
        .head(format!("{}{url}", edge.origin))
        .send()
        .await;
    let outcome = match &answer {
        Ok(response) if response.status().is_success() => "accepted",
        Ok(_) => "refused",
        Err(_) => "unreachable",
    };
    metrics::counter!("mediahost_edge_signature_checks_total", "outcome" => outcome).increment(1);
    outcome == "accepted"
}
/// Answers from the cache: `HIT` while fresh, else `STALE` (only playlists are kept past
/// their `max-age`) while one background request refreshes the object.
async fn cached(
    edge: &Arc<Edge>,
    key: &str,
    found: Found,
    request: &HeaderMap,
    now: SystemTime,
) -> Response {
    let x_cache = if found.meta.is_fresh(now) {
        edge.counters.hits.increment(1);
        edge.counters.hit_count.fetch_add(1, Ordering::Relaxed);
        if found.tier == Tier::Disk {
            edge.counters.disk_hits.increment(1);
        }
        "HIT"
    } else {
        edge.counters.stale_served.increment(1);
        revalidate(edge, key);
        "STALE"
    };
    from_cache(edge, found, request, x_cache, now).await
}

/// Starts a background refresh of `key` unless a fetch of it is already under way, so a
/// stale object is refreshed once however many requests see it stale.
fn revalidate(edge: &Arc<Edge>, key: &str) {
    let mut in_flight = edge.in_flight.lock().expect("in-flight lock");
    // A refresh stores its result and leaves the map under this lock, so seeing neither a
    // fetch under way nor a fresh copy here means none finished since this request looked.
    let refreshed = || {
        let hit = edge.cache.get_memory(key, SystemTime::now());
        hit.is_some_and(|hit| hit.meta.is_fresh(SystemTime::now()))
    };
    if in_flight.contains_key(key) || refreshed() {
        return;
    }
    let flight = Arc::new(Flight::default());
    in_flight.insert(key.to_owned(), flight.clone());
    drop(in_flight);
    tracing::debug!(%key, "refreshing a stale object");
    // Only playlists go stale, and their key is their whole URL.
    let fetch = Fetch {
        url: key.to_owned(),
        flight_key: Some(key.to_owned()),
        cache_key: key.to_owned(),
        signature: None,
        verified: true,
    };
    tokio::spawn(self::fetch(edge.clone(), fetch, flight));
}

/// The DASH manifest's path under a video (`/v1/videos/{id}/` + this): the one playback file
/// outside `hls/`. Its segment URLs resolve to `hls/…`, so segments are cached once for both
/// protocols.
pub(crate) const DASH_MANIFEST_PATH: &str = "dash/manifest.mpd";

/// `(video id, file)` of a playback path the edge serves: `/v1/videos/{id}/hls/{file}` (a
/// plain relative path: no empty, `.` or `..` segments) or `/v1/videos/{id}/dash/manifest.mpd`;
/// `file` is what follows the id.
pub(crate) fn playback_file(path: &str) -> Option<(&str, &str)> {
    let (id, file) = path.strip_prefix("/v1/videos/")?.split_once('/')?;
    let plain = |rest: &str| {
        !rest.is_empty()
            && rest
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
    };
    let served = match file.strip_prefix("hls/") {
        Some(rest) => plain(rest),
        None => file == DASH_MANIFEST_PATH,
    };
    (!id.is_empty() && served).then_some((id, file))
}

/// Whether the object at `key` (path and query) is a playlist (HLS or DASH), the only kind
/// served stale: segments never change, playlists of a finished video rarely do, and a
/// player stalls without them.
pub(crate) fn is_playlist(key: &str) -> bool {
    let path = key.split_once('?').map_or(key, |(path, _)| path);
    path.ends_with(".m3u8") || path.ends_with(".mpd")
}

/// One origin fetch: what is asked and where the answer goes.
struct Fetch {
    /// The path and query asked of the origin: the request's own.
    url: String,
    /// The in-flight map key concurrent requests share the fetch under; `None` for a bypass,
    /// which is neither shared nor stored.
    flight_key: Option<String>,
    /// Where a cacheable answer is stored.
    cache_key: String,
    /// The URL's signature, recorded as accepted when the origin answers `200`.
    signature: Option<Signature>,
    /// Whether the request may read `cache_key` (its signature was accepted, or the key is
    /// the whole URL). An unverified request's refusal says nothing about the object, so it
    /// must not evict it.
    verified: bool,
}

impl Fetch {
    /// Straight from the origin to this request alone.
    fn bypass(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            flight_key: None,
            cache_key: url.to_owned(),
            signature: None,
            verified: false,
        }
    }
}

/// Fetches `fetch.url` from the origin into `flight`; unless it is a bypass, stores a
/// cacheable answer and removes the flight from the in-flight map.
async fn fetch(edge: Arc<Edge>, fetch: Fetch, flight: Arc<Flight>) {
    metrics::counter!("mediahost_edge_origin_fetches_total").increment(1);
    let purges = edge.cache.purges();
    let started = Instant::now();
    let result = fetch_into(&edge, &fetch.url, &flight).await;
    metrics::histogram!("mediahost_edge_origin_fetch_seconds").record(started.elapsed());
    let key = &fetch.cache_key;
    match result {
        Ok(head) => {
            let now = SystemTime::now();
            if let (Some(signature), StatusCode::OK) = (&fetch.signature, head.status) {
                edge.verdicts.accept(signature, unix_seconds(now));
            }
            // Stored before the flight completes, so a client that has read a whole response
            // finds the object in the cache with its next request.
            if let Some(flight_key) = &fetch.flight_key {
                let mut in_flight = edge.in_flight.lock().expect("in-flight lock");
                if let Some(fresh_for) = cacheable(&head) {
                    let stale_for = edge.stale_for(key);
                    let verdict = fetch.signature.map(|s| s.verdict);
                    let meta =
                        Meta::new(head.headers, now, fresh_for, stale_for).with_signature(verdict);
                    let entry = Cached::new(meta, flight.body());
                    edge.cache.insert(key, entry, Some(purges));
                } else if head.status.is_client_error() && fetch.verified {
                    // The origin no longer serves it (deleted video, revoked signature): a
                    // stale copy must not outlive that. 5xx answers keep it (stale-if-error).
                    edge.cache.remove(key);
                }
                in_flight.remove(flight_key);
            }
            flight.finish(End::Complete);
        }
        Err(why) => {
            metrics::counter!("mediahost_edge_origin_errors_total").increment(1);
            tracing::warn!(url = %fetch.url, %why, "origin fetch failed");
            if let Some(flight_key) = &fetch.flight_key {
                edge.in_flight
                    .lock()
                    .expect("in-flight lock")
                    .remove(flight_key);
            }
            flight.finish(End::Failed(why));
        }
    }
}

async fn fetch_into(edge: &Edge, path: &str, flight: &Flight) -> Result<Head, String> {
    let url = format!("{}{path}", edge.origin);
    let response = edge
        .client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("origin {} unreachable: {e}", edge.origin))?;
    let mut headers = HeaderMap::new();
    for name in KEPT_HEADERS {
        for value in response.headers().get_all(name) {
            headers.append(name, value.clone());
        }
    }
    let head = Head {
        status: response.status(),
        headers,
        length: response.content_length(),
    };
    flight.set_head(head.clone());
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("origin {} broke off: {e}", edge.origin))?;
        flight.push(chunk);
    }
    Ok(head)
}

/// How long a response may be cached: only `200`s the origin marked `public` with a positive
/// `max-age` (signed playback), never `private` or `no-store` ones.
fn cacheable(head: &Head) -> Option<Duration> {
    if head.status != StatusCode::OK {
        return None;
    }
    let directives: Vec<String> = head
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    let has = |name: &str| directives.iter().any(|d| d == name);
    if !has("public") || has("private") || has("no-store") || has("no-cache") {
        return None;
    }
    directives
        .iter()
        .filter_map(|d| d.strip_prefix("max-age="))
        .filter_map(|s| s.parse::<u64>().ok())
        .find(|&s| s > 0)
        .map(Duration::from_secs)
}

/// The head of an answer streamed from an origin fetch: the origin's kept headers, `MISS`.
fn miss(status: StatusCode, headers: &HeaderMap) -> axum::http::response::Builder {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::AGE, 0)
        .header(X_CACHE, HeaderValue::from_static("MISS"))
}

fn unsatisfiable(size: u64) -> Response {
    let mut response = error(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
        format!("the object is {size} bytes; the requested range starts beyond its end"),
    );
    response.headers_mut().insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
    );
    response
}

/// Whether the request's `If-None-Match` (or, without one, `If-Modified-Since`) says the
/// client already holds the cached object, judged by the origin's `ETag` / `Last-Modified`
/// stored with it (RFC 9110 §13.2.2: `If-None-Match` takes precedence).
fn client_copy_is_current(request: &HeaderMap, cached: &HeaderMap) -> bool {
    if let Some(inm) = value(request, header::IF_NONE_MATCH) {
        return value(cached, header::ETAG).is_some_and(|etag| http_range::none_match(inm, etag));
    }
    let last_modified =
        value(cached, header::LAST_MODIFIED).and_then(|d| httpdate::parse_http_date(d).ok());
    match (value(request, header::IF_MODIFIED_SINCE), last_modified) {
        (Some(ims), Some(last_modified)) => http_range::not_modified_since(ims, last_modified),
        _ => false,
    }
}

fn value(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_range(start: u64, end: u64, size: u64) -> String {
    format!("bytes {start}-{}/{size}", end - 1)
}

/// A cached object, or the requested range of it, with `Age` and `X-Cache`. Its head is the
/// one built when the object was stored ([`Meta::served_headers`]), with this answer's
/// values set in place.
async fn from_cache(
    edge: &Edge,
    found: Found,
    request: &HeaderMap,
    x_cache: &'static str,
    now: SystemTime,
) -> Response {
    let size = found.len();
    let mut headers = found.meta.served_headers();
    headers.insert(
        header::AGE,
        HeaderValue::from(found.meta.age(now).as_secs()),
    );
    if x_cache != "HIT" {
        headers.insert(X_CACHE, HeaderValue::from_static(x_cache));
    }
    let answer = |status: StatusCode, mut headers: HeaderMap, body: Body| {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        std::mem::swap(response.headers_mut(), &mut headers);
        response
    };
    if client_copy_is_current(request, &found.meta.headers) {
        edge.counters.not_modified.increment(1);
        // A 304 has no body; the stored length describes the 200 it stands for.
        headers.remove(header::CONTENT_LENGTH);
        return answer(StatusCode::NOT_MODIFIED, headers, Body::empty());
    }
    let range = request.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match http_range::parse_range(range, size) {
        Ranged::Full => (StatusCode::OK, 0, size),
        Ranged::Partial(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end),
        Ranged::Unsatisfiable => return unsatisfiable(size),
    };
    let body = match found.body {
        cache::Body::Bytes(bytes) => Body::from(bytes.slice(start as usize..end as usize)),
        cache::Body::File(file, _) => match disk::stream(file, start, end).await {
            Ok(stream) => Body::from_stream(stream),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a cached file");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the edge could not read its cached copy; retry",
                );
            }
        },
    };
    edge.counters.bytes_out.increment(end - start);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = HeaderValue::from_str(&content_range(start, end, size)).expect("ascii");
        headers.insert(header::CONTENT_RANGE, range);
    }
    answer(status, headers, body)
}

/// A miss: the body streamed from the shared fetch as it arrives, counted into `bytes_out`.
async fn from_flight(flight: Arc<Flight>, range: Option<&str>, bytes_out: Counter) -> Response {
    let unavailable = |why: String| {
        error(
            StatusCode::BAD_GATEWAY,
            "origin_unavailable",
            format!(
                "the edge could not fetch this object from the origin and has no cached copy: \
                 {why}; retry later"
            ),
        )
    };
    let head = match flight.head().await {
        Ok(head) => head,
        Err(why) => return unavailable(why),
    };
    let counted =
        |stream: futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>| {
            Body::from_stream(stream.inspect_ok(move |chunk| {
                bytes_out.increment(chunk.len() as u64);
            }))
        };
    if head.status != StatusCode::OK {
        // Errors (403 for a bad signature, 404, …) pass through whole and are never cached.
        let mut builder = miss(head.status, &head.headers);
        if let Some(length) = head.length {
            builder = builder.header(header::CONTENT_LENGTH, length);
        }
        return builder
            .body(counted(flight.stream(0, None).boxed()))
            .expect("valid response");
    }
    let size = match head.length {
        Some(size) => size,
        // Without a Content-Length the size, and so any range, is known only at the end.
        None => match flight.complete_length().await {
            Ok(size) => size,
            Err(why) => return unavailable(why),
        },
    };
    let (status, start, end) = match http_range::parse_range(range, size) {
        Ranged::Full => (StatusCode::OK, 0, size),
        Ranged::Partial(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end),
        Ranged::Unsatisfiable => return unsatisfiable(size),
    };
    let mut builder = miss(status, &head.headers).header(header::CONTENT_LENGTH, end - start);
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(header::CONTENT_RANGE, content_range(start, end, size));
    }
    builder
        .body(counted(flight.stream(start, Some(end)).boxed()))
        .expect("valid response")
}

/// Body of `POST /v1/edge/purge`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Purge {
    /// Purges every cached file of this video (`/v1/videos/{id}/`).
    video_id: Option<String>,
    /// Purges every cached URL starting with this path, e.g. `/v1/videos/abc/hls/720p/`.
    prefix: Option<String>,
}

/// The refusal unless `headers` carry `Authorization: Bearer <operator key>`.
fn refuse_non_operator(edge: &Edge, headers: &HeaderMap) -> Option<Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let refusal = auth::check(edge.operator_key.as_deref(), authorization).err()?;
    let (status, code) = match refusal {
        Refusal::Disabled => (StatusCode::FORBIDDEN, "forbidden"),
        Refusal::Missing | Refusal::Wrong => (StatusCode::UNAUTHORIZED, "unauthorized"),
    };
    Some(error(status, code, refusal.message()))
}

/// The path prefix a purge of exactly one of `video_id` or `prefix` covers.
pub(crate) fn purge_prefix(
    video_id: Option<String>,
    prefix: Option<String>,
) -> Result<String, &'static str> {
    match (video_id, prefix) {
        (Some(id), None) if !id.is_empty() && !id.contains('/') => Ok(format!("/v1/videos/{id}/")),
        (None, Some(prefix)) if prefix.starts_with('/') => Ok(prefix),
        _ => Err(
            "send exactly one of `video_id` (a video id) or `prefix` (a path starting with `/`)",
        ),
    }
}

/// `POST /v1/edge/purge` `{"video_id"}` or `{"prefix"}` (operator key): drops matching
/// objects from the cache; answers `{"purged": n, "prefix": …}`.
pub(crate) async fn purge(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Result<Json<Purge>, JsonRejection>,
) -> Response {
    if let Some(response) = refuse_non_operator(&edge, &headers) {
        return response;
    }
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()),
    };
    let prefix = match purge_prefix(body.video_id, body.prefix) {
        Ok(prefix) => prefix,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let purged = edge.purge(&prefix);
    Json(json!({"purged": purged, "prefix": prefix})).into_response()
}

/// `GET /healthz`: the edge process is up (the origin is not consulted), and its group.
pub(crate) async fn healthz(State(edge): State<Arc<Edge>>) -> Response {
    Json(json!({"status": "ok", "group": edge.group})).into_response()
}

/// `GET /readyz`: 200 when every backend the edge's process uses answers (see
/// [`Edge::with_readiness`]), else 503 naming the failing ones. The origin is not one of
/// them: an edge whose origin is down still serves what it cached.
pub(crate) async fn readyz(State(edge): State<Arc<Edge>>) -> Response {
    let report = edge.readiness.report().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report.body)).into_response()
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        edge.metrics.render(),
    )
        .into_response()
}

/// Any other path: 404 JSON.
pub(crate) async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "the edge serves only /v1/videos/{{id}}/hls/…, /v1/videos/{{id}}/{DASH_MANIFEST_PATH}, /v1/edge/purge, /healthz and /metrics, not {}",
            uri.path()
        ),
    )
}
