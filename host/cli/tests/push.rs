//! Workers push each stored media file to the push-mode edges of the video's group
//! (`[[cluster.edges]] mode = "push"`): checked against a recording gRPC endpoint (every file,
//! byte for byte, with the cluster token and the job's trace; none to pull-mode edges; an
//! unreachable edge costs the job nothing), and against a real edge, whose first viewer is
//! served every segment from its cache.

mod common;

use common::edge::{Edge, join, uris};
use common::{Client, Options, Server, free_port};
use mediahost_edge::grpc::proto::edge_control_server::{EdgeControl, EdgeControlServer};
use mediahost_edge::grpc::proto::{PurgeReply, PurgeRequest, PushReply, PushRequest};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

const TOKEN: &str = "push-test-cluster-token";

/// One push as the endpoint received it.
#[derive(Debug, Clone)]
struct Received {
    body: Vec<u8>,
    content_type: String,
    cache_control: Option<String>,
    max_age_seconds: u64,
    authorization: Option<String>,
    traceparent: Option<String>,
}

/// An `EdgeControl` endpoint that records every push by path.
#[derive(Clone, Default)]
struct Recorder {
    pushes: Arc<Mutex<BTreeMap<String, Vec<Received>>>>,
}

#[tonic::async_trait]
impl EdgeControl for Recorder {
    async fn purge(&self, _: Request<PurgeRequest>) -> Result<Response<PurgeReply>, Status> {
        Err(Status::unimplemented("the recorder only takes pushes"))
    }

    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushReply>, Status> {
        let text = |name: &str| {
            let value = request.metadata().get(name)?;
            Some(value.to_str().ok()?.to_owned())
        };
        let (authorization, traceparent) = (text("authorization"), text("traceparent"));
        let push = request.into_inner();
        let bytes = push.body.len() as u64;
        let received = Received {
            cache_control: push.headers.get("cache-control").cloned(),
            body: push.body,
            content_type: push.content_type,
            max_age_seconds: push.max_age_seconds,
            authorization,
            traceparent,
        };
        let mut pushes = self.pushes.lock().unwrap();
        pushes.entry(push.path).or_default().push(received);
        Ok(Response::new(PushReply {
            tier: "memory".into(),
            bytes,
        }))
    }
}

impl Recorder {
    /// Listens on a free port (gRPC over h2c, as edges serve it); returns its base URL.
    async fn listen(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = EdgeControlServer::new(self.clone()).max_decoding_message_size(64 << 20);
        let router = tonic::service::Routes::new(service).into_axum_router();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{addr}")
    }

    fn received(&self) -> BTreeMap<String, Vec<Received>> {
        self.pushes.lock().unwrap().clone()
    }
}

/// The body of `url` as text.
async fn text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Every media file of the video of the signed master playlist (its renditions' init files
/// and segments, the poster and the storyboard): playback path (no query) → the origin's bytes.
async fn media_files(signed_master: &str) -> BTreeMap<String, bytes::Bytes> {
    let http = reqwest::Client::new();
    let mut files = BTreeMap::new();
    let fetch = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
            let path = url.split_once("://").unwrap().1;
            let path = &path[path.find('/').unwrap()..];
            let path = path.split('?').next().unwrap().to_owned();
            (path, response.bytes().await.unwrap())
        }
    };
    for image in [
        mediahost_transcode::POSTER,
        mediahost_transcode::STORYBOARD_IMAGE,
        mediahost_transcode::STORYBOARD_VTT,
    ] {
        let query = signed_master.split_once('?').unwrap().1;
        let (path, body) = fetch(format!("{}?{query}", join(signed_master, image))).await;
        files.insert(path, body);
    }
    let master = text(&http, signed_master).await;
    for media_uri in uris(&master) {
        let media_url = join(signed_master, &media_uri);
        let media = text(&http, &media_url).await;
        let init = media
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
            .map(|rest| rest.split('"').next().unwrap().to_owned());
        for file in init.chain(uris(&media)) {
            let (path, body) = fetch(join(&media_url, &file)).await;
            files.insert(path, body);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_push_every_media_file_to_push_edges_only_and_a_dead_edge_costs_nothing() {
    let (push_edge, pull_edge) = (Recorder::default(), Recorder::default());
    let (push_url, pull_url) = (push_edge.listen().await, pull_edge.listen().await);
    let dead_url = format!("http://127.0.0.1:{}", free_port());
    let server = Server::start(Options {
        config: format!(
            "[cluster]\ntoken = \"{TOKEN}\"\n\
             [[cluster.edges]]\nurl = \"{push_url}\"\nmode = \"push\"\n\
             [[cluster.edges]]\nurl = \"{pull_url}\"\n\
             [[cluster.edges]]\nurl = \"{dead_url}\"\nmode = \"push\"\n\
             [[cluster.edges]]\nurl = \"{pull_url}\"\ngroup = \"elsewhere\"\nmode = \"push\"\n"
        ),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));
    let video = client.ready_clip(server.data_path()).await;
    let signed = video["playback"]["signed_hls"].as_str().unwrap();
    let expected = media_files(signed).await;
    assert!(expected.len() >= 5, "{:?}", expected.keys());

    // Pushes run beside the job: wait until every file has arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    while push_edge.received().len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "pushed {:?}, expected {:?}",
            push_edge.received().keys(),
            expected.keys()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = push_edge.received();
    assert_eq!(
        received.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "exactly the media files, by their playback paths"
    );
    let mut traces = Vec::new();
    for (path, body) in &expected {
        let pushes = &received[path];
        assert_eq!(pushes.len(), 1, "{path} pushed once");
        let push = &pushes[0];
        assert_eq!(&push.body[..], &body[..], "{path}: the stored bytes");
        let content_type = match path.rsplit('.').next().unwrap() {
            "m4s" => "video/iso.segment",
            "mp4" => "video/mp4",
            "jpg" => "image/jpeg",
            _ => "text/vtt",
        };
        assert_eq!(push.content_type, content_type, "{path}");
        assert_eq!(
            push.cache_control.as_deref(),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(push.max_age_seconds, 31_536_000);
        assert_eq!(
            push.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let trace = push.traceparent.as_deref().expect("traceparent sent");
        traces.push(trace.split('-').nth(1).unwrap().to_owned());
    }
    traces.dedup();
    assert_eq!(traces.len(), 1, "every push continues the job's trace");

    // Pull-mode edges, and push edges of another group, get nothing.
    assert!(pull_edge.received().is_empty());

    // The dead edge: every push failed, counted, and the video is ready all the same.
    let metrics = server.metrics().await;
    let counter = |name: &str, edge: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{edge=\"{edge}\"}} ")))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    let files = expected.len() as f64;
    assert_eq!(
        counter("mediahost_edge_pushes_sent_total", &push_url),
        files
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = server.metrics().await;
        let failed = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "mediahost_edge_push_failures_total{{edge=\"{dead_url}\"}} "
                ))
            })
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap());
        if failed == files {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{failed} of {files} pushes to the dead edge failed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server
            .log()
            .contains("push failed; the edge will pull this file"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_edge_serves_new_viewers_from_its_cache_and_only_to_accepted_signatures() {
    let edge_addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start(Options {
        config: format!(
            "[cluster]\ntoken = \"{TOKEN}\"\n\
             [[cluster.edges]]\nurl = \"http://{edge_addr}\"\nmode = \"push\"\n"
        ),
        ..Options::default()
    });
    let edge_config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        edge_config.path(),
        format!("[cluster]\ntoken = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let config_arg = edge_config.path().display().to_string();
    let edge = Edge::start_at(&server, &edge_addr, &["--config", &config_arg]);
    let client = Client::new(&server, &server.create_tenant("acme"));
    let video = client.ready_clip(server.data_path()).await;
    let id = video["id"].as_str().unwrap().to_owned();
    let signed = video["playback"]["signed_hls"].as_str().unwrap().to_owned();
    let files = media_files(&signed).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while edge.metric("mediahost_edge_pushes_total").await < files.len() as f64 {
        assert!(Instant::now() < deadline, "pushes never reached the edge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A viewer plays through the edge: only the playlists come from the origin; the master
    // playlist's answer tells the edge the signature is good, so no extra check either.
    let http = reqwest::Client::new();
    let via_edge = |url: &str| url.replacen(&server.base, &edge.base, 1);
    let master_url = via_edge(&signed);
    let master = http.get(&master_url).send().await.unwrap();
    assert_eq!(master.headers()["x-cache"], "MISS");
    let master = master.text().await.unwrap();
    let media_url = join(&master_url, &uris(&master)[0]);
    let media = text(&http, &media_url).await;
    let segments = uris(&media);
    for segment in &segments {
        let url = join(&media_url, segment);
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(response.headers()["x-cache"], "HIT", "{url}");
        let path = format!(
            "/v1/videos/{id}/hls/{}",
            url.split("/hls/")
                .nth(1)
                .unwrap()
                .split('?')
                .next()
                .unwrap()
        );
        assert_eq!(response.bytes().await.unwrap(), files[&path], "{path}");
    }
    assert_eq!(
        edge.metric("mediahost_edge_origin_fetches_total").await,
        2.0,
        "master and media playlist only"
    );
    let checks = r#"mediahost_edge_signature_checks_total{outcome="accepted"}"#;
    assert_eq!(edge.metric(checks).await, 0.0);

    // The cache opens only to signatures the origin accepts.
    let segment_url = join(&media_url, &segments[0]);
    let unsigned = segment_url.split('?').next().unwrap().to_owned();
    let forged = segment_url.replace("sig=", "sig=00");
    for (url, status) in [(&unsigned, 401), (&forged, 403)] {
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), status, "{url}");
        assert_eq!(response.headers()["x-cache"], "MISS", "{url}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert!(error["error"]["message"].is_string(), "{error}");
    }
    // A second viewer's own signature (another expiry) reads the same copy: asked of the
    // origin once, with a HEAD, when its first request is a segment.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = client.video(&id).await;
    let other = again["playback"]["signed_hls"].as_str().unwrap();
    assert_ne!(other, signed, "a new expiry");
    let query = other.split_once('?').unwrap().1;
    let second_viewer = format!("{}?{query}", segment_url.split('?').next().unwrap());
    for _ in 0..3 {
        let response = http.get(&second_viewer).send().await.unwrap();
        assert_eq!(response.headers()["x-cache"], "HIT");
    }
    assert_eq!(edge.metric(checks).await, 1.0);
    assert_eq!(
        edge.metric("mediahost_edge_origin_fetches_total").await,
        4.0,
        "the playlists and the two refused requests; no segment"
    );
}
