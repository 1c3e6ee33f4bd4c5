//! Playback files over HTTP on the real binary: byte ranges, validators and caching headers.

mod common;

use common::{Client, Options, Server};

/// A ready 2 s video; returns the client, the URL of its first media segment, and the video.
async fn ready_video(server: &Server) -> (Client, String, serde_json::Value) {
    let client = Client::new(server, &server.create_tenant("acme"));
    let video = client.ready_clip(server.data_path()).await;
    let master = video["playback"]["hls"].as_str().unwrap().to_owned();
    let playlist = video["renditions"][0]["playlist"].as_str().unwrap();
    let base = master.trim_end_matches("master.m3u8");
    let media = client
        .http
        .get(format!("{base}{playlist}"))
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let segment = media
        .lines()
        .find(|l| l.ends_with(".m4s"))
        .expect("a segment line");
    let dir = playlist.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    (client, format!("{base}{dir}/{segment}"), video)
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_validators_and_cache_headers() {
    let server = Server::start(Options::default());
    let (client, segment, video) = ready_video(&server).await;
    let master = video["playback"]["hls"].as_str().unwrap().to_owned();
    let get = |range: Option<&str>| {
        let mut req = client.http.get(&segment).bearer_auth(&client.key);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send()
    };

    let full = get(None).await.unwrap();
    assert_eq!(full.status(), 200);
    let h = full.headers().clone();
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["cache-control"], "private, max-age=31536000, immutable");
    assert_eq!(h["content-type"], "video/iso.segment");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong etag: {etag}"
    );
    let last_modified = h["last-modified"].to_str().unwrap().to_owned();
    let body = full.bytes().await.unwrap();
    let n = body.len();
    assert!(n > 100);
    assert_eq!(h["content-length"], n.to_string().as_str());

    // First byte, last byte, a middle slice, a suffix, an open end: on the same object.
    for (range, want, content_range) in [
        (
            "bytes=0-0".to_owned(),
            body.slice(0..1),
            format!("bytes 0-0/{n}"),
        ),
        (
            format!("bytes={}-{}", n - 1, n - 1),
            body.slice(n - 1..n),
            format!("bytes {}-{}/{n}", n - 1, n - 1),
        ),
        (
            "bytes=10-19".to_owned(),
            body.slice(10..20),
            format!("bytes 10-19/{n}"),
        ),
        (
            "bytes=-10".to_owned(),
            body.slice(n - 10..n),
            format!("bytes {}-{}/{n}", n - 10, n - 1),
        ),
        (
            format!("bytes={}-", n - 5),
            body.slice(n - 5..n),
            format!("bytes {}-{}/{n}", n - 5, n - 1),
        ),
        (
            format!("bytes=0-{}", n + 100),
            body.clone(),
            format!("bytes 0-{}/{n}", n - 1),
        ),
    ] {
        let res = get(Some(&range)).await.unwrap();
        assert_eq!(res.status(), 206, "{range}");
        assert_eq!(
            res.headers()["content-range"],
            content_range.as_str(),
            "{range}"
        );
        assert_eq!(
            res.headers()["content-length"],
            want.len().to_string().as_str()
        );
        assert_eq!(res.bytes().await.unwrap(), want, "{range}");
    }

    // Beyond the end → 416 naming the size.
    let res = get(Some(&format!("bytes={n}-"))).await.unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes */{n}").as_str()
    );
    let err: serde_json::Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "range_not_satisfiable");

    // Conditional requests.
    let cond = |name: &'static str, value: String| {
        client
            .http
            .get(&segment)
            .bearer_auth(&client.key)
            .header(name, value)
            .send()
    };
    let res = cond("if-none-match", etag.clone()).await.unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert!(res.bytes().await.unwrap().is_empty());
    assert_eq!(
        cond("if-none-match", "\"other\"".into())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        cond("if-modified-since", last_modified.clone())
            .await
            .unwrap()
            .status(),
        304
    );
    assert_eq!(
        cond("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT".into())
            .await
            .unwrap()
            .status(),
        200
    );
    // A stale If-Range gets the whole object, not the range.
    let res = client
        .http
        .get(&segment)
        .bearer_auth(&client.key)
        .header("range", "bytes=0-0")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().len(), n);

    // HEAD: headers without the body.
    let res = client
        .http
        .head(&segment)
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], n.to_string().as_str());

    // Thumbnails: a JPEG poster and a WebVTT storyboard pointing into its sprite.
    let poster = client
        .http
        .get(video["playback"]["poster"].as_str().unwrap())
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(poster.headers()["content-type"], "image/jpeg");
    assert!(
        poster.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]),
        "JPEG magic"
    );
    let storyboard_url = video["playback"]["storyboard"].as_str().unwrap().to_owned();
    let vtt = client
        .http
        .get(&storyboard_url)
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(vtt.headers()["content-type"], "text/vtt");
    let vtt = vtt.text().await.unwrap();
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    let sprite = vtt.lines().find(|l| l.contains("#xywh=")).unwrap();
    let sprite_url = storyboard_url.replace("storyboard.vtt", sprite.split('#').next().unwrap());
    let res = client
        .http
        .get(&sprite_url)
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");

    // Playlists of a ready video: short-lived, right type.
    let res = client
        .http
        .get(&master)
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "private, max-age=60");
    assert_eq!(
        res.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
}
