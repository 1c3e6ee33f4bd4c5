//! `mediahost edge` in front of a real origin: coalescing, Range from the cache, purge,
//! origin outages, and a real player (ffprobe) reading a whole stream through it.

mod common;

use common::edge::{Edge, OPERATOR_KEY};
use common::{Client, Options, Server};
use std::process::Command;

/// The URI lines of a playlist (not tags, not blank).
fn uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `url` with its directory part kept and the last segment replaced by `relative`.
fn join(url: &str, relative: &str) -> String {
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    format!("{}{relative}", &path[..path.rfind('/').unwrap() + 1])
}

async fn get(url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    req.send().await.unwrap()
}

fn x_cache(response: &reqwest::Response) -> String {
    response.headers()["x-cache"].to_str().unwrap().to_owned()
}

/// ffprobe reading every packet of `url`; returns the packet count it reports.
fn ffprobe_packets(url: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_coalesces_serves_ranges_purges_and_outlives_the_origin() {
    let mut origin = Server::start(Options::default());
    let client = Client::new(&origin, &origin.create_tenant("acme"));
    let video = client.ready_clip(origin.data_path()).await;
    let id = video["id"].as_str().unwrap().to_owned();
    let signed = video["playback"]["signed_hls"].as_str().unwrap().to_owned();
    let edge = Edge::start(&origin);
    let via_edge = |origin_url: &str| origin_url.replacen(&origin.base, &edge.base, 1);

    // Find a segment from the origin directly, so the edge is cold for it.
    let master = get(&signed, None).await.text().await.unwrap();
    let media_url = join(&signed, &uris(&master)[0]);
    let media = get(&media_url, None).await.text().await.unwrap();
    let segment_url = join(&media_url, &uris(&media)[0]);
    let expected = get(&segment_url, None).await.bytes().await.unwrap();
    assert!(expected.len() > 100);

    // Coalescing: 100 concurrent requests for a cold segment → one origin fetch.
    let segment_edge = via_edge(&segment_url);
    let http = reqwest::Client::new();
    let requests = (0..100).map(|_| {
        let (http, url) = (http.clone(), segment_edge.clone());
        tokio::spawn(async move {
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap()
        })
    });
    for body in futures::future::join_all(requests).await {
        assert_eq!(body.unwrap(), expected);
    }
    assert_eq!(
        edge.metric("mediahost_edge_origin_fetches_total").await,
        1.0
    );
    assert_eq!(edge.metric("mediahost_edge_misses_total").await, 1.0);
    let shared = edge.metric("mediahost_edge_coalesced_waits_total").await
        + edge.metric("mediahost_edge_hits_total").await;
    assert_eq!(shared, 99.0);
    assert!(edge.metric("mediahost_edge_cache_bytes").await >= expected.len() as f64);
    assert!(edge.metric("mediahost_edge_bytes_out_total").await >= 100.0 * expected.len() as f64);

    // A hit: headers passed through, Age and X-Cache set.
    let hit = get(&segment_edge, None).await;
    assert_eq!(hit.status(), 200);
    assert_eq!(x_cache(&hit), "HIT");
    assert!(hit.headers().contains_key("age"));
    assert_eq!(
        hit.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(hit.headers()["content-type"], "video/iso.segment");
    assert_eq!(hit.bytes().await.unwrap(), expected);
    let head = http.head(&segment_edge).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(x_cache(&head), "HIT");
    assert_eq!(
        head.headers()["content-length"],
        expected.len().to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());

    // Ranges on misses (each a distinct cold URL: the cache key is the whole URL) and on hits.
    let n = expected.len();
    let cases: Vec<(String, Option<&[u8]>, String)> = vec![
        (
            "bytes=0-0".into(),
            Some(&expected[..1]),
            format!("bytes 0-0/{n}"),
        ),
        (
            format!("bytes={}-{}", n - 1, n - 1),
            Some(&expected[n - 1..]),
            format!("bytes {}-{}/{n}", n - 1, n - 1),
        ),
        (
            "bytes=-7".into(),
            Some(&expected[n - 7..]),
            format!("bytes {}-{}/{n}", n - 7, n - 1),
        ),
        (format!("bytes={n}-"), None, format!("bytes */{n}")),
    ];
    for (i, (range, body, content_range)) in cases.iter().enumerate() {
        let cold = format!("{segment_edge}&probe={i}");
        for expect_cache in ["MISS", "HIT"] {
            let response = get(&cold, Some(range)).await;
            let status = response.status();
            assert_eq!(
                response.headers()["content-range"],
                content_range.as_str(),
                "{range}"
            );
            match body {
                Some(body) => {
                    assert_eq!(status, 206, "{range} {expect_cache}");
                    assert_eq!(x_cache(&response), expect_cache, "{range}");
                    assert_eq!(&response.bytes().await.unwrap()[..], *body, "{range}");
                }
                None => {
                    assert_eq!(status, 416, "{range} {expect_cache}");
                    let error: serde_json::Value = response.json().await.unwrap();
                    assert_eq!(error["error"]["code"], "range_not_satisfiable");
                }
            }
            // A ranged response may end before the object's fetch does; reading it whole
            // ends only once the fetch completed and stored it.
            let whole = get(&cold, None).await;
            assert_eq!(whole.status(), 200);
            assert_eq!(whole.bytes().await.unwrap(), expected);
        }
    }

    // Purge by video (operator key) → the next request is a miss.
    let purge = |key: Option<&str>| {
        let mut req = http
            .post(format!("{}/v1/edge/purge", edge.base))
            .json(&serde_json::json!({"video_id": id}));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send()
    };
    assert_eq!(purge(None).await.unwrap().status(), 401);
    assert_eq!(purge(Some("wrong")).await.unwrap().status(), 401);
    let purged: serde_json::Value = purge(Some(OPERATOR_KEY))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(purged["purged"].as_u64().unwrap() >= 5, "{purged}");
    let after = get(&segment_edge, None).await;
    assert_eq!(x_cache(&after), "MISS");
    assert_eq!(after.bytes().await.unwrap(), expected);

    // A real player through the edge; the second pass is served from the cache alone.
    let master_edge = via_edge(&signed);
    let first = ffprobe_packets(&master_edge);
    assert!(!first.trim().is_empty(), "ffprobe saw no streams");
    let fetches = edge.metric("mediahost_edge_origin_fetches_total").await;
    let misses = edge.metric("mediahost_edge_misses_total").await;
    let hits = edge.metric("mediahost_edge_hits_total").await;
    let second = ffprobe_packets(&master_edge);
    assert_eq!(second, first, "both passes read the same packets");
    assert_eq!(
        edge.metric("mediahost_edge_origin_fetches_total").await,
        fetches
    );
    assert_eq!(edge.metric("mediahost_edge_misses_total").await, misses);
    assert!(edge.metric("mediahost_edge_hits_total").await >= hits + 3.0);

    // Signature checks still apply through the edge: forged → the origin's 403.
    let forged = master_edge.replace("sig=", "sig=00");
    let refused = get(&forged, None).await;
    assert_eq!(refused.status(), 403);
    let error: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_signature");

    // Origin down: cached objects still served, uncached ones 502 with a clear body.
    origin.stop();
    let cached = get(&segment_edge, None).await;
    assert_eq!(cached.status(), 200);
    assert_eq!(x_cache(&cached), "HIT");
    assert_eq!(cached.bytes().await.unwrap(), expected);
    let uncached = format!("{segment_edge}&probe=outage");
    let down = get(&uncached, None).await;
    assert_eq!(down.status(), 502);
    let error: serde_json::Value = down.json().await.unwrap();
    assert_eq!(error["error"]["code"], "origin_unavailable", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{error}"
    );
    // …and recovery once it is back.
    origin.start_again();
    let back = get(&uncached, None).await;
    assert_eq!(back.status(), 200);
    assert_eq!(x_cache(&back), "MISS");
    assert_eq!(back.bytes().await.unwrap(), expected);
}
