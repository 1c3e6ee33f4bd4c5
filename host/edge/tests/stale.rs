//! Stale-while-revalidate and stale-if-error for playlists, and conditional requests answered
//! from the cache, over HTTP against a scripted origin. Staleness comes from objects placed in
//! the cache with a storage time in the past, so nothing here waits for a clock.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing;
use bytes::Bytes;
use mediahost_core::config::EdgeConfig;
use mediahost_edge::Edge;
use mediahost_edge::cache::{Cached, Meta};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// An origin that counts requests, answers with a settable status and can hold its answers
/// until released.
struct Origin {
    requests: AtomicUsize,
    status: AtomicU16,
    open: watch::Sender<bool>,
}

impl Origin {
    async fn start(open: bool) -> (Arc<Origin>, String) {
        let origin = Arc::new(Origin {
            requests: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            open: watch::channel(open).0,
        });
        let app = Router::new()
            .route("/v1/videos/{id}/hls/{*path}", routing::get(answer))
            .with_state(origin.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (origin, base)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn answer(
    State(origin): State<Arc<Origin>>,
    Path((_, path)): Path<(String, String)>,
) -> impl IntoResponse {
    let n = origin.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let mut open = origin.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    let status = StatusCode::from_u16(origin.status.load(Ordering::SeqCst)).unwrap();
    (
        status,
        [
            (header::CACHE_CONTROL, "public, max-age=60"),
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
        ],
        format!("{path} v{n}"),
    )
}

/// An edge (memory only) in front of `origin`, serving on a free port.
async fn start_edge(origin: &str, stale_if_error_seconds: u64) -> (Arc<Edge>, String) {
    let config = EdgeConfig {
        origin: Some(origin.to_owned()),
        disk_cache_bytes: 0,
        stale_if_error_seconds,
        ..EdgeConfig::default()
    };
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let edge =
        Arc::new(Edge::new(&config, std::path::Path::new("/nonexistent"), None, metrics).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mediahost_edge::run(
        edge.clone(),
        listener,
        CancellationToken::new(),
    ));
    (edge, base)
}

const PLAYLIST: &str = "/v1/videos/v/hls/media_0.m3u8?exp=99999999999&sig=ab";

/// Puts `body` in the edge's cache as stored `age` ago with a 60 s max-age and a 300 s stale
/// window.
fn stale(edge: &Edge, key: &str, body: &'static str, age: Duration) {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, "public, max-age=60".parse().unwrap());
    let meta = Meta::new(
        headers,
        SystemTime::now() - age,
        Duration::from_secs(60),
        Duration::from_secs(300),
    );
    let entry = Cached::new(meta, Bytes::from_static(body.as_bytes()));
    edge.cache().insert(key, entry, None);
}

struct Answer {
    status: u16,
    x_cache: String,
    age: u64,
    body: String,
}

async fn get(base: &str, key: &str) -> Answer {
    let response = reqwest::get(format!("{base}{key}")).await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Answer {
        status: response.status().as_u16(),
        x_cache: header("x-cache").unwrap_or_default(),
        age: header("age").map_or(0, |age| age.parse().unwrap()),
        body: response.text().await.unwrap(),
    }
}

/// Polls `done` until it holds; the deadline only keeps a broken build from hanging.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_playlist_is_served_while_one_refresh_runs() {
    let (origin, origin_base) = Origin::start(false).await;
    let (edge, base) = start_edge(&origin_base, 300).await;
    stale(&edge, PLAYLIST, "old", Duration::from_secs(90));

    // The origin holds its answer: every request is answered at once from the stale copy.
    let answers = futures::future::join_all((0..20).map(|_| get(&base, PLAYLIST))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.x_cache, "STALE");
        assert_eq!(answer.body, "old");
        assert!((90..120).contains(&answer.age), "Age {}", answer.age);
    }
    eventually("the refresh reaches the origin", || async {
        origin.requests() > 0
    })
    .await;

    origin.open.send_replace(true);
    eventually("the refreshed playlist is a hit", || async {
        get(&base, PLAYLIST).await.x_cache == "HIT"
    })
    .await;
    let fresh = get(&base, PLAYLIST).await;
    assert_eq!(fresh.body, "media_0.m3u8 v1");
    assert!(fresh.age < 30, "Age {} of a fresh copy", fresh.age);
    assert_eq!(origin.requests(), 1, "one refresh for 20 stale answers");
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_errors_keep_stale_playlists_within_the_window_and_4xx_drop_them() {
    // Origin unreachable: served stale within the window, 502 beyond it.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (edge_down, base) = start_edge(&dead, 300).await;
    stale(&edge_down, PLAYLIST, "kept", Duration::from_secs(90));
    for _ in 0..3 {
        let answer = get(&base, PLAYLIST).await;
        assert_eq!((answer.status, answer.x_cache.as_str()), (200, "STALE"));
        assert_eq!(answer.body, "kept");
    }
    let too_old = "/v1/videos/v/hls/media_1.m3u8?exp=99999999999&sig=ab";
    stale(
        &edge_down,
        too_old,
        "expired",
        Duration::from_secs(60 + 300 + 1),
    );
    let answer = get(&base, too_old).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(
        answer.body.contains("origin_unavailable"),
        "{}",
        answer.body
    );

    // Origin failing with 503: the stale copy stays after the failed refresh.
    let (origin, origin_base) = Origin::start(true).await;
    origin.status.store(503, Ordering::SeqCst);
    let (edge, base) = start_edge(&origin_base, 300).await;
    stale(&edge, PLAYLIST, "kept", Duration::from_secs(90));
    assert_eq!(get(&base, PLAYLIST).await.x_cache, "STALE");
    eventually("a refresh fails", || async { origin.requests() > 0 }).await;
    let answer = get(&base, PLAYLIST).await;
    assert_eq!(
        (answer.x_cache.as_str(), answer.body.as_str()),
        ("STALE", "kept")
    );

    // The origin says it is gone (404): the stale copy is dropped.
    origin.status.store(404, Ordering::SeqCst);
    eventually("the 404 reaches the viewer", || async {
        let answer = get(&base, PLAYLIST).await;
        answer.status == 404 && answer.x_cache == "MISS"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_playlists_are_kept_past_their_max_age() {
    let (_origin, origin_base) = Origin::start(true).await;
    // Media files are cached without the signature (see the edge's `signed` module).
    let key = "/v1/videos/v/hls/seg-1.m4s";
    let segment = "/v1/videos/v/hls/seg-1.m4s?exp=99999999999&sig=ab";
    let (edge, base) = start_edge(&origin_base, 300).await;
    let (off, off_base) = start_edge(&origin_base, 0).await;
    for (base, key) in [(&base, PLAYLIST), (&base, segment), (&off_base, PLAYLIST)] {
        assert_eq!(get(base, key).await.x_cache, "MISS");
        let hit = get(base, key).await;
        assert_eq!((hit.x_cache.as_str(), hit.age), ("HIT", 0));
    }
    let later = SystemTime::now() + Duration::from_secs(90);
    assert!(edge.cache().get(PLAYLIST, later).await.is_some());
    assert!(edge.cache().get(key, later).await.is_none());
    assert!(
        off.cache().get(PLAYLIST, later).await.is_none(),
        "stale_if_error_seconds = 0 turns it off"
    );
}

/// `GET` of `key` with extra request headers: status, `X-Cache` and body.
async fn get_with(base: &str, key: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(format!("{base}{key}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let x_cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
    (
        response.status().as_u16(),
        x_cache,
        response.text().await.unwrap(),
    )
}

#[tokio::test]
async fn cached_objects_answer_conditional_requests_with_304() {
    let (origin, origin_base) = Origin::start(true).await;
    let (edge, base) = start_edge(&origin_base, 300).await;
    // Media files are cached without the signature (see the edge's `signed` module).
    let key = "/v1/videos/v/hls/seg-1.m4s";
    let segment = "/v1/videos/v/hls/seg-1.m4s?exp=99999999999&sig=ab";
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, "public, max-age=60".parse().unwrap());
    headers.insert(header::ETAG, "\"abc\"".parse().unwrap());
    headers.insert(
        header::LAST_MODIFIED,
        "Tue, 01 Dec 2026 10:00:00 GMT".parse().unwrap(),
    );
    let meta = Meta::new(
        headers,
        SystemTime::now(),
        Duration::from_secs(60),
        Duration::ZERO,
    );
    let entry = Cached::new(meta, Bytes::from_static(b"segment bytes"));
    edge.cache().insert(key, entry, None);

    let not_modified = (304, "HIT".to_owned(), String::new());
    let full = (200, "HIT".to_owned(), "segment bytes".to_owned());
    let cases: [(&[(&str, &str)], _); 7] = [
        (&[("if-none-match", "\"abc\"")], &not_modified),
        (&[("if-none-match", "\"x\", W/\"abc\"")], &not_modified),
        (&[("if-none-match", "*")], &not_modified),
        (&[("if-none-match", "\"other\"")], &full),
        (
            &[("if-modified-since", "Tue, 01 Dec 2026 10:00:00 GMT")],
            &not_modified,
        ),
        (
            &[("if-modified-since", "Mon, 30 Nov 2026 10:00:00 GMT")],
            &full,
        ),
        // If-None-Match decides when both are sent.
        (
            &[
                ("if-none-match", "\"other\""),
                ("if-modified-since", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ],
            &full,
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            &get_with(&base, segment, request).await,
            expected,
            "{request:?}"
        );
    }
    assert_eq!(
        origin.requests(),
        1,
        "one check of the signature (a HEAD), then all answered from the cache"
    );
}
