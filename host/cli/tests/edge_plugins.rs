//! Edge-transform plugins on the edge that runs beside the API (the one-process default), per
//! tenant: the reference `edge-token` plugin denies requests without a valid token and
//! rewrites playlists so the player's next requests carry it; a plugin that loops forever is
//! cut off at its deadline, its request gets the fail-closed answer and the edge keeps serving.
//! And deleting a video purges it from every edge of its group: the one in the API's process
//! and an edge process named in `[[cluster.edges]]`.

mod common;

use common::edge::{Edge, OPERATOR_KEY, join, uris};
use common::{Client, Options, Server};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN_SECRET: &str = "edge plugins e2e secret";

/// An `edge-token` token for the scope `/v1/videos/{video}/hls/`, valid for an hour.
fn token(video: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut mac = Hmac::<Sha256>::new_from_slice(TOKEN_SECRET.as_bytes()).unwrap();
    mac.update(format!("/v1/videos/{video}/hls/\n{exp}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{exp}.{hex}")
}

/// The reference edge-token plugin: (name, component, manifest).
fn edge_token() -> (String, PathBuf, PathBuf) {
    let wasm = mediahost_testkit::build_plugin("edge-token");
    let manifest = mediahost_testkit::repo_root().join("plugins/edge-token/plugin.toml");
    ("edge-token".into(), wasm, manifest)
}

/// A plugin whose calls never end, with a 50 ms deadline.
fn edge_loop(dir: &Path) -> (String, PathBuf, PathBuf) {
    let wasm = dir.join("edge_loop.wasm");
    std::fs::write(&wasm, mediahost_testkit::looping_edge_transform()).unwrap();
    let manifest = dir.join("plugin.toml");
    std::fs::write(
        &manifest,
        "name = \"edge-loop\"\nversion = \"1.0.0\"\nworld = \"edge-transform\"\n\
         component = \"edge_loop.wasm\"\n[limits]\ntimeout_ms = 50\n",
    )
    .unwrap();
    ("edge-loop".into(), wasm, manifest)
}

async fn bind(server: &Server, tenant: &str, plugin: &str) {
    let response = reqwest::Client::new()
        .put(server.url(&format!("/v1/tenants/{tenant}/bindings")))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({"edge-transform": [{"plugin": plugin}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_edge_transforms_deny_rewrite_and_a_runaway_one_is_cut_off() {
    let fixtures = tempfile::tempdir().unwrap();
    let server = Server::start(Options {
        plugins: vec![edge_token(), edge_loop(fixtures.path())],
        // No global edge transforms: each tenant's own chain decides.
        config: format!(
            "[admin]\noperator_key = \"{OPERATOR_KEY}\"\n\
             [plugins.bindings]\nedge-transform = []\n\
             [plugins.config.edge-token]\nsecret = \"{TOKEN_SECRET}\"\n"
        ),
        ..Options::default()
    });
    let guarded = Client::new(&server, &server.create_tenant("guarded"));
    let runaway = Client::new(&server, &server.create_tenant("runaway"));
    bind(&server, "guarded", "edge-token").await;
    bind(&server, "runaway", "edge-loop").await;
    let guarded_video = guarded.ready_clip(server.data_path()).await;
    let runaway_video = runaway.ready_clip(server.data_path()).await;
    let via_edge = |video: &serde_json::Value| {
        video["playback"]["signed_hls"].as_str().unwrap().replacen(
            &server.base,
            &server.edge_base,
            1,
        )
    };
    let http = reqwest::Client::new();

    // Denied: no token.
    let master = via_edge(&guarded_video);
    let denied = http.get(&master).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    let body: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");

    // With a token: the playlist comes rewritten, every URI carrying the token, with the
    // plugin's header; the player's next requests pass with it.
    let id = guarded_video["id"].as_str().unwrap();
    let token = token(id);
    let master = format!("{master}&token={token}");
    let answer = http.get(&master).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-served-by"], "mediahost");
    let playlist = answer.text().await.unwrap();
    let media_uris = uris(&playlist);
    assert!(!media_uris.is_empty(), "{playlist}");
    for uri in &media_uris {
        assert!(uri.contains(&format!("token={token}")), "{playlist}");
    }
    let media_url = join(&master, &media_uris[0]);
    let media = http.get(&media_url).send().await.unwrap();
    assert_eq!(media.status(), 200);
    let media = media.text().await.unwrap();
    let segment_url = join(&media_url, &uris(&media)[0]);
    let segment = http.get(&segment_url).send().await.unwrap();
    assert_eq!(segment.status(), 200);
    assert_eq!(segment.headers()["x-served-by"], "mediahost");
    let segment = segment.bytes().await.unwrap();
    // The same bytes as the origin serves.
    let origin_segment = http
        .get(segment_url.replacen(&server.edge_base, &server.base, 1))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(segment, origin_segment);
    // A forged token is refused.
    let forged = master.replace(&token, &format!("{token}0"));
    assert_eq!(http.get(&forged).send().await.unwrap().status(), 403);

    // The runaway plugin: cut at its 50 ms deadline, the request refused (fail-closed)...
    let started = Instant::now();
    let cut = http.get(via_edge(&runaway_video)).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(cut.status(), 503);
    let body: serde_json::Value = cut.json().await.unwrap();
    assert_eq!(body["error"]["code"], "plugin_failed", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("edge-loop"), "{message}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // ... and the edge goes on serving, the guarded tenant's requests included.
    for _ in 0..3 {
        let again = http.get(&master).send().await.unwrap();
        assert_eq!(again.status(), 200);
    }
    let metrics = reqwest::get(format!("{}/metrics", server.edge_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "mediahost_edge_plugin_failures_total",
        "mediahost_edge_plugin_answers_total",
        "mediahost_edge_plugin_seconds_count",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_video_purges_it_from_every_edge_of_its_group() {
    let edge_addr = format!("127.0.0.1:{}", common::free_port());
    let server = Server::start(Options {
        config: format!(
            "[admin]\noperator_key = \"{OPERATOR_KEY}\"\n\
             [[cluster.edges]]\nurl = \"http://{edge_addr}\"\ngroup = \"default\"\n"
        ),
        ..Options::default()
    });
    let edge = Edge::start_at(&server, &edge_addr, &[]);
    let client = Client::new(&server, &server.create_tenant("acme"));
    let video = client.ready_clip(server.data_path()).await;
    let id = video["id"].as_str().unwrap().to_owned();
    let signed = video["playback"]["signed_hls"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();

    // Both edges cache the master playlist.
    let urls = [
        signed.replacen(&server.base, &server.edge_base, 1),
        signed.replacen(&server.base, &edge.base, 1),
    ];
    for url in &urls {
        for expected in ["MISS", "HIT"] {
            let response = http.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["x-cache"], expected, "{url}");
            // Read whole: the edge stores the object once its fetch has ended, so a request
            // sent before the miss's body is read may still join that fetch.
            response.bytes().await.unwrap();
        }
    }

    let response = reqwest::Client::new()
        .delete(server.url(&format!("/v1/videos/{id}")))
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["edge_group"], "default", "{body}");
    let edges = body["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{body}");
    for edge in edges {
        assert!(edge["purged"].as_u64().unwrap() >= 1, "{body}");
    }

    // No edge serves it any more, and the origin has forgotten it.
    for url in &urls {
        let response = http.get(url).send().await.unwrap();
        assert_ne!(response.status(), 200, "{url}");
        assert_eq!(response.headers()["x-cache"], "MISS", "{url}");
    }
    let gone = client
        .get(&format!("/v1/videos/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let again = reqwest::Client::new()
        .delete(server.url(&format!("/v1/videos/{id}")))
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}
