//! `mediahost edge` in front of a real origin: coalescing, Range from the cache, purge,
//! origin outages, a real player (ffprobe) reading a whole stream through it, the disk tier
//! across a restart, and push/purge over gRPC.

mod common;

use common::edge::{Edge, OPERATOR_KEY, join, uris};
use common::{Client, Options, Server};
use mediahost_edge::grpc::proto::edge_control_client::EdgeControlClient;
use mediahost_edge::grpc::proto::{PurgeRequest, PushRequest, purge_request};
use std::process::Command;
use std::time::{Duration, Instant};

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
    assert!(
        edge.metric(r#"mediahost_edge_cache_bytes{tier="memory"}"#)
            .await
            >= expected.len() as f64
    );
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

/// The first segment of the signed master playlist's first rendition: its URL and bytes,
/// straight from the origin.
async fn first_segment(signed_master: &str) -> (String, bytes::Bytes) {
    let master = get(signed_master, None).await.text().await.unwrap();
    let media_url = join(signed_master, &uris(&master)[0]);
    let media = get(&media_url, None).await.text().await.unwrap();
    let segment_url = join(&media_url, &uris(&media)[0]);
    let body = get(&segment_url, None).await.bytes().await.unwrap();
    (segment_url, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_keeps_evicted_objects_on_disk_and_serves_them_after_a_restart() {
    let mut origin = Server::start(Options::default());
    let client = Client::new(&origin, &origin.create_tenant("acme"));
    let video = client.ready_clip(origin.data_path()).await;
    let signed = video["playback"]["signed_hls"].as_str().unwrap().to_owned();
    let (segment_url, expected) = first_segment(&signed).await;
    // Memory holds one copy of the segment: each new key evicts the one before to disk.
    let budget = (expected.len() + 1024).to_string();
    let mut edge = Edge::start_with(&origin, &["--cache-bytes", &budget]);
    let urls: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "{}&copy={i}",
                segment_url.replacen(&origin.base, &edge.base, 1)
            )
        })
        .collect();
    for url in &urls {
        let miss = get(url, None).await;
        assert_eq!(x_cache(&miss), "MISS");
        assert_eq!(miss.bytes().await.unwrap(), expected);
    }
    let disk = r#"mediahost_edge_cache_bytes{tier="disk"}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    while edge.metric(disk).await < 3.0 * expected.len() as f64 {
        assert!(
            Instant::now() < deadline,
            "evicted objects never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        edge.metric(r#"mediahost_edge_cache_bytes{tier="memory"}"#)
            .await
            < 2.0 * expected.len() as f64
    );

    // A disk hit, whole and ranged.
    let hit = get(&urls[0], None).await;
    assert_eq!(
        (hit.status().as_u16(), x_cache(&hit).as_str()),
        (200, "HIT")
    );
    assert_eq!(hit.headers()["content-type"], "video/iso.segment");
    assert_eq!(hit.bytes().await.unwrap(), expected);
    assert!(edge.metric("mediahost_edge_disk_hits_total").await >= 1.0);
    let n = expected.len();
    let ranged = get(&urls[1], Some("bytes=-7")).await;
    assert_eq!(ranged.status(), 206);
    assert_eq!(x_cache(&ranged), "HIT");
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes {}-{}/{n}", n - 7, n - 1).as_str()
    );
    assert_eq!(&ranged.bytes().await.unwrap()[..], &expected[n - 7..]);

    // The edge crashes and comes back with the origin down: the disk still serves.
    origin.stop();
    edge.restart();
    assert!(edge.metric(disk).await >= 2.0 * expected.len() as f64);
    let mut from_disk = 0;
    for url in &urls {
        let response = get(url, None).await;
        if response.status() == 200 {
            assert_eq!(x_cache(&response), "HIT");
            assert!(response.headers().contains_key("age"));
            assert_eq!(response.bytes().await.unwrap(), expected);
            from_disk += 1;
        } else {
            // Held only in memory before the crash.
            assert_eq!(response.status(), 502);
        }
    }
    assert!(
        from_disk >= 3,
        "{from_disk} of 4 copies survived the restart"
    );
}

/// A gRPC client of the edge's control service.
async fn control(edge: &Edge) -> EdgeControlClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(edge.base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    EdgeControlClient::new(channel)
}

/// `message` with `authorization: Bearer <key>` metadata when `key` is given.
fn authorized<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_push_prewarms_and_purge_by_video_over_grpc_need_the_operator_key_and_it_knows_its_group()
 {
    let origin = Server::start(Options::default());
    let edge = Edge::start_with(&origin, &["--cache-bytes", "65536", "--group", "eu-west"]);
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", edge.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["group"], "eu-west", "{health}");
    assert_eq!(
        edge.metric(r#"mediahost_edge_info{group="eu-west"}"#).await,
        1.0
    );
    let mut grpc = control(&edge).await;
    // Pushed under two files of a real video (by path: media files are cached without the
    // signature) and read with a signed URL of it, as a worker pushes and viewers read.
    let client = Client::new(&origin, &origin.create_tenant("acme"));
    let video = client.ready_clip(origin.data_path()).await;
    let id = video["id"].as_str().unwrap().to_owned();
    let signed = video["playback"]["signed_hls"].as_str().unwrap().to_owned();
    let (segment_url, _) = first_segment(&signed).await;
    let segment_path = segment_url.replacen(&origin.base, "", 1);
    let (big, query) = segment_path.split_once('?').unwrap();
    let small = format!("{}init.mp4", &big[..big.rfind('/').unwrap() + 1]);
    let (small, big) = (small.as_str(), big);
    let viewer = |path: &str| format!("{}{path}?{query}", edge.base);
    let push = |path: &str, body: Vec<u8>| PushRequest {
        path: path.into(),
        body,
        content_type: "video/iso.segment".into(),
        headers: Default::default(),
        max_age_seconds: 3600,
    };
    let small_body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let big_body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();

    // Without the operator key nothing is stored.
    for key in [None, Some("wrong")] {
        let refused = grpc
            .push(authorized(push(small, small_body.clone()), key))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    }
    let miss = get(&viewer(small), None).await;
    assert_eq!(x_cache(&miss), "MISS");
    let from_origin = miss.bytes().await.unwrap();
    assert_ne!(&from_origin[..], &small_body[..]);

    // Pushed objects are hits on the first request: small ones from memory, big ones from disk.
    for (path, body, tier) in [(small, &small_body, "memory"), (big, &big_body, "disk")] {
        let reply = grpc
            .push(authorized(push(path, body.clone()), Some(OPERATOR_KEY)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (reply.tier.as_str(), reply.bytes),
            (tier, body.len() as u64)
        );
        let hit = get(&viewer(path), None).await;
        assert_eq!(
            (hit.status().as_u16(), x_cache(&hit).as_str()),
            (200, "HIT")
        );
        assert_eq!(hit.headers()["content-type"], "video/iso.segment");
        assert_eq!(hit.headers()["cache-control"], "public, max-age=3600");
        assert!(hit.headers().contains_key("age"));
        assert_eq!(&hit.bytes().await.unwrap()[..], &body[..]);
    }
    let ranged = get(&viewer(big), Some("bytes=100-199")).await;
    assert_eq!(ranged.status(), 206);
    assert_eq!(&ranged.bytes().await.unwrap()[..], &big_body[100..200]);
    assert_eq!(
        edge.metric("mediahost_edge_origin_fetches_total").await,
        1.0
    );

    // Pushes the edge would never serve are refused.
    let outside = grpc
        .push(authorized(push("/v1/plugins", vec![1]), Some(OPERATOR_KEY)))
        .await
        .unwrap_err();
    assert_eq!(outside.code(), tonic::Code::InvalidArgument, "{outside}");

    // Purge by video: refused without the key (the objects stay), then both gone.
    let by_video = || PurgeRequest {
        target: Some(purge_request::Target::VideoId(id.clone())),
    };
    let refused = grpc
        .purge(authorized(by_video(), Some("wrong")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(x_cache(&get(&viewer(small), None).await), "HIT");
    let purged = grpc
        .purge(authorized(by_video(), Some(OPERATOR_KEY)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(purged.prefix, format!("/v1/videos/{id}/"));
    assert_eq!(purged.purged, 2);
    for path in [small, big] {
        let after = get(&viewer(path), None).await;
        assert_eq!(x_cache(&after), "MISS", "{path}");
        assert_eq!(after.status(), 200);
        let body = after.bytes().await.unwrap();
        assert_ne!(
            &body[..],
            &big_body[..],
            "the origin's bytes, not the pushed ones"
        );
        assert_ne!(
            &body[..],
            &small_body[..],
            "the origin's bytes, not the pushed ones"
        );
    }
}
