//! End to end on the real binary: upload → transcode → HLS playback over HTTP, plus the
//! error paths a client meets.

mod common;

use common::{Client, Options, Server, clip, file_body};
use mediahost_testkit::{Clip, build_plugin, ffprobe_duration, generate_clip, repo_root};
use std::path::Path;

/// Fetches `url` with the client's key, asserting 200 and returning (content type, body).
async fn fetch(client: &Client, url: &str) -> (String, Vec<u8>) {
    let res = client
        .http
        .get(url)
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "GET {url}");
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, res.bytes().await.unwrap().to_vec())
}

/// Every URI a playlist names: plain lines and `URI="..."` attributes (EXT-X-MAP).
fn playlist_uris(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            uris.push(line.to_owned());
        } else if let Some(start) = line.find("URI=\"") {
            let rest = &line[start + 5..];
            uris.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    uris
}

fn resolve(base: &str, rel: &str) -> String {
    format!("{}/{rel}", &base[..base.rfind('/').unwrap()])
}

/// Uploads `clip` through `client`, waits until ready, then walks and checks the whole HLS tree.
async fn upload_and_play(client: &Client, clip: &Path, sized: bool) -> serde_json::Value {
    let video = client.create_video("lavfi test", Some("clip.mp4")).await;
    let id = video["id"].as_str().unwrap();
    let res = client.put_source(id, file_body(clip, sized).await).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let accepted: serde_json::Value = res.json().await.unwrap();
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["size"], std::fs::metadata(clip).unwrap().len());

    let video = client.wait_settled(id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["error"], serde_json::Value::Null);
    assert_eq!(video["source"]["streams"].as_array().unwrap().len(), 2);
    assert!(
        (video["duration_s"].as_f64().unwrap() - 10.0).abs() < 0.5,
        "{video}"
    );
    assert!(!video["renditions"].as_array().unwrap().is_empty());

    let master_url = video["playback"]["hls"].as_str().unwrap().to_owned();
    let (ct, master) = fetch(client, &master_url).await;
    assert_eq!(ct, "application/vnd.apple.mpegurl");
    let master = String::from_utf8(master).unwrap();
    let media = playlist_uris(&master);
    assert!(!media.is_empty(), "{master}");
    for playlist in media {
        let url = resolve(&master_url, &playlist);
        let (ct, text) = fetch(client, &url).await;
        assert_eq!(ct, "application/vnd.apple.mpegurl");
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("#EXT-X-MAP:"),
            "fMP4 playlists name an init segment: {text}"
        );
        let files = playlist_uris(&text);
        assert!(files.len() >= 3, "init + several ~4 s segments: {text}");
        for file in files {
            let (ct, bytes) = fetch(client, &resolve(&url, &file)).await;
            assert!(
                ct == "video/mp4" || ct == "video/iso.segment",
                "{file}: {ct}"
            );
            assert!(!bytes.is_empty());
        }
    }

    let headers = format!("Authorization: Bearer {}\r\n", client.key);
    let played = tokio::task::spawn_blocking(move || ffprobe_duration(&master_url, Some(&headers)))
        .await
        .unwrap();
    let source = ffprobe_duration(clip.to_str().unwrap(), None);
    assert!(
        (played - source).abs() <= 0.5,
        "HLS plays {played} s, source is {source} s"
    );
    video
}

fn ten_second_clip(dir: &Path) -> std::path::PathBuf {
    let clip = dir.join("clip.mp4");
    generate_clip(&clip, &Clip::default());
    clip
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_transcode_and_play_over_http1() {
    let server = Server::start(Options::default());
    let key = server.create_tenant("acme");
    let client = Client::new(&server, &key);
    let clip = ten_second_clip(server.data_path());
    upload_and_play(&client, &clip, true).await;

    let metrics = server.metrics().await;
    assert!(
        metrics.contains("mediahost_uploads_total{outcome=\"stored\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mediahost_upload_bytes_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mediahost_jobs_total{outcome=\"ready\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mediahost_job_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_over_h2c_prior_knowledge() {
    let server = Server::start(Options::default());
    let key = server.create_tenant("acme");
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let client = Client::with(http, &server, &key);
    let health = client.get("/healthz").send().await.unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    let clip = ten_second_clip(server.data_path());
    let video = upload_and_play(&client, &clip, false).await;
    let expected_sha = {
        use std::process::Command;
        let out = Command::new("sha256sum").arg(&clip).output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_owned()
    };
    assert_eq!(video["sha256"], expected_sha);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_video_bytes_end_failed_with_a_reason() {
    let server = Server::start(Options::default());
    let key = server.create_tenant("acme");
    let client = Client::new(&server, &key);
    let junk = server.data_path().join("notes.mp4");
    std::fs::write(
        &junk,
        "these are not the frames you are looking for\n".repeat(5000),
    )
    .unwrap();
    let video = client.create_video("junk", Some("notes.mp4")).await;
    let id = video["id"].as_str().unwrap();
    // Chunked transfer encoding (no Content-Length).
    let res = client.put_source(id, file_body(&junk, false).await).await;
    assert_eq!(res.status(), 202);
    let video = client.wait_settled(id).await;
    assert_eq!(video["status"], "failed", "{video}");
    let error = video["error"].as_str().unwrap();
    assert!(
        error.contains("not a recognised") || error.contains("format"),
        "{error}"
    );
    assert_eq!(video["playback"]["hls"], serde_json::Value::Null);

    // A second upload to the same video is refused; nothing stored is lost.
    let again = client.put_source(id, reqwest::Body::from("x")).await;
    assert_eq!(again.status(), 409);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_tenants_are_enforced() {
    let server = Server::start(Options::default());
    let ready: serde_json::Value = reqwest::get(server.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    for check in ["database", "queue", "object_storage"] {
        assert_eq!(ready["checks"][check], "ok", "{ready}");
    }
    let acme = Client::new(&server, &server.create_tenant("acme"));
    let globex = Client::new(&server, &server.create_tenant("globex"));
    let video = acme.create_video("private", None).await;
    let id = video["id"].as_str().unwrap();

    let anonymous = reqwest::get(server.url(&format!("/v1/videos/{id}")))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );

    let forged = Client::new(&server, "mh_not-a-real-key");
    assert_eq!(
        forged
            .get(&format!("/v1/videos/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let theirs = globex
        .get(&format!("/v1/videos/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    let body: serde_json::Value = theirs.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let upload = globex.put_source(id, reqwest::Body::from("x")).await;
    assert_eq!(upload.status(), 404);

    let unknown = acme
        .get("/v1/videos/0190aaaa-0000-7000-8000-000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        acme.get(&format!("/v1/videos/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let bad_json = acme
        .http
        .post(server.url("/v1/videos"))
        .bearer_auth(&acme.key)
        .header("content-type", "application/json")
        .body("{\"name\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    let body: serde_json::Value = bad_json.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn validator_plugin_rejections_answer_422_with_the_reason() {
    let wasm = build_plugin("validator");
    let manifest = repo_root().join("plugins/validator/plugin.toml");
    let server = Server::start(Options {
        plugins: vec![("validator".into(), wasm, manifest)],
        config: "[plugins.config.validator]\nmax_size = \"1000000\"\n".into(),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));

    let exe = client.create_video("malware", Some("setup.exe")).await;
    let res = client
        .put_source(
            exe["id"].as_str().unwrap(),
            reqwest::Body::from(vec![0u8; 1000]),
        )
        .await;
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rejected_by_plugin");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("exe"),
        "{body}"
    );

    let big = client.create_video("too big", Some("big.mp4")).await;
    let res = client
        .put_source(
            big["id"].as_str().unwrap(),
            reqwest::Body::from(vec![0u8; 2_000_000]),
        )
        .await;
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1000000"),
        "{body}"
    );

    // Rejected uploads store nothing and leave the video awaiting a proper upload.
    let video = client.video(big["id"].as_str().unwrap()).await;
    assert_eq!(video["status"], "awaiting_upload");
    let temp_files = std::fs::read_dir(server.data_path().join("tmp"))
        .unwrap()
        .count();
    assert_eq!(temp_files, 0);

    // An allowed upload still goes through the same plugin.
    let ok = clip(server.data_path(), "ok.mp4", 2.0);
    client.upload("fine", "ok.mp4", &ok).await;

    let metrics = server.metrics().await;
    assert!(
        metrics.contains("mediahost_uploads_total{outcome=\"rejected\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mediahost_uploads_total{outcome=\"stored\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_extractor_and_router_plugins_shape_the_output() {
    let plugin = |name: &str| {
        let manifest = repo_root().join(format!("plugins/{name}/plugin.toml"));
        (name.to_owned(), build_plugin(name), manifest)
    };
    let server = Server::start(Options {
        plugins: vec![plugin("metadata-extractor"), plugin("router")],
        config: "[plugins.config.router]\ndefault_tier = \"pro\"\n".into(),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));
    let clip = server.data_path().join("hd.mp4");
    let hd = Clip {
        seconds: 3.0,
        width: 1280,
        height: 720,
        ..Clip::default()
    };
    generate_clip(&clip, &hd);
    let id = client.upload("hd", "hd.mp4", &clip).await;
    let video = client.wait_settled(&id).await;
    assert_eq!(video["status"], "ready", "{video}");

    let metadata = &video["metadata"];
    assert_eq!(metadata["orientation"], "landscape", "{video}");
    assert_eq!(metadata["aspect_ratio"], "16:9", "{video}");
    assert_eq!(metadata["audio_only"], "false", "{video}");
    assert_eq!(metadata["hdr"], "false", "{video}");

    // The router's pro ladder for a 720p source: never upscaled, so 720p, 480p, 360p; then
    // the audio-only rendition the pipeline adds.
    let rungs = common::rendition_sizes(&video);
    assert_eq!(
        rungs,
        [
            ("720p".to_owned(), 1280, 720),
            ("480p".to_owned(), 854, 480),
            ("360p".to_owned(), 640, 360),
            ("audio".to_owned(), 0, 0)
        ]
    );
    let master_url = video["playback"]["hls"].as_str().unwrap().to_owned();
    let (_, master) = fetch(&client, &master_url).await;
    let master = String::from_utf8(master).unwrap();
    assert_eq!(playlist_uris(&master).len(), 4, "{master}");
    let headers = format!("Authorization: Bearer {}\r\n", client.key);
    let played = tokio::task::spawn_blocking(move || ffprobe_duration(&master_url, Some(&headers)))
        .await
        .unwrap();
    assert!((played - 3.0).abs() <= 0.5, "plays {played} s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_s_traceparent_follows_the_upload_into_the_worker_s_log_lines() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let source = clip(server.data_path(), "short.mp4", 2.0);
    let video = client.create_video("traced", Some("short.mp4")).await;
    let id = video["id"].as_str().unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let res = client
        .http
        .put(server.url(&format!("/v1/videos/{id}/source")))
        .bearer_auth(&client.key)
        .header("traceparent", &sent)
        .body(file_body(&source, true).await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // The answer names this hop: the same trace, the server's own span id.
    let answered = res.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        answered.starts_with(&format!("00-{trace_id}-")),
        "{answered}"
    );
    assert_ne!(answered, sent);
    assert_eq!(client.wait_settled(id).await["status"], "ready");

    // The worker logs the job's end just after it marks the video ready.
    let traced = |log: &str, message: &str| {
        log.lines()
            .any(|line| line.contains(trace_id) && line.contains(message))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let log = server.log();
        if traced(&log, "job finished") || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for message in ["source stored, job queued", "job started", "job finished"] {
        assert!(
            traced(&log, message),
            "no {message:?} line in the trace:\n{log}"
        );
    }

    // Without (or with a broken) traceparent, a request starts its own trace.
    for header in [None, Some("00-not-a-trace")] {
        let mut request = client.http.get(server.url("/healthz"));
        if let Some(value) = header {
            request = request.header("traceparent", value);
        }
        let res = request.send().await.unwrap();
        let answered = res.headers()["traceparent"].to_str().unwrap();
        let parts: Vec<&str> = answered.split('-').collect();
        assert_eq!(parts.len(), 4, "{answered}");
        assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
        assert_ne!(parts[1], trace_id);
    }
}
