//! The official tus client (tus-js-client from npm, driven by `tests/tus-js/upload.mjs` under
//! Node) against the real server: an upload interrupted mid-request, a server crash while it is
//! paused, and the client resuming from the URL it remembered, to a byte-exact source; its
//! PATCHes sent as POSTs with `X-HTTP-Method-Override`, as where PATCH cannot be sent; and its
//! parallel uploads, parts sent at once as partial uploads and joined by a final one.
//!
//! `scripts/setup` installs Node and the client (`npm ci` in `tests/tus-js`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tus::sha256_hex;
use common::{Client, Options, Server};

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tus-js")
}

/// Runs the Node client once with `options` and returns its JSON events.
fn run_client(options: serde_json::Value) -> Vec<serde_json::Value> {
    let dir = client_dir();
    assert!(
        dir.join("node_modules/tus-js-client").is_dir(),
        "tus-js-client is not installed in {}: run scripts/setup",
        dir.display()
    );
    let out = Command::new("node")
        .arg(dir.join("upload.mjs"))
        .arg(options.to_string())
        .output()
        .expect("cannot run node: run scripts/setup, which installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tus-js-client failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn event<'a>(events: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {events:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn tus_js_client_resumes_after_an_interruption_and_a_server_crash() {
    let mut server = Server::start(Options::default());
    let key = server.create_tenant("acme");
    let client = Client::new(&server, &key);
    let clip_path = common::clip(server.data_path(), "clip.mp4", 4.0);
    let clip = std::fs::read(&clip_path).unwrap();
    let len = clip.len() as u64;
    let chunk = len / 8 + 1;
    let endpoint = server.url("/v1/uploads");
    let storage = server.data_path().join("tus-js-urls.json");
    let options = |extra: serde_json::Value| {
        let mut o = serde_json::json!({
            "endpoint": endpoint,
            "file": clip_path,
            "key": key,
            "chunkSize": chunk,
            "storage": storage,
        });
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        o
    };

    // Stop in the middle of the fifth PATCH, as a closed laptop lid would.
    let first = run_client(options(
        serde_json::json!({"abortAt": chunk * 4 + chunk / 3}),
    ));
    let created = event(&first, "created");
    let video_id = created["videoId"].as_str().unwrap().to_owned();
    let location = created["url"].as_str().unwrap().to_owned();
    event(&first, "aborted");
    let durable = client.tus_offset(&location).await;
    assert!(
        (chunk * 4..len).contains(&durable),
        "offset {durable} of {len} after the interruption"
    );

    // The server crashes while the client is away; the offset it reported survives.
    server.kill9_and_restart();
    assert_eq!(client.tus_offset(&location).await, durable);

    let second = run_client(options(serde_json::json!({"resume": true})));
    assert_eq!(event(&second, "resumed")["offset"], durable);
    assert!(
        !second.iter().any(|e| e["event"] == "created"),
        "resumed, not restarted: {second:?}"
    );
    event(&second, "done");

    let video = client.wait_settled(&video_id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["sha256"], sha256_hex(&clip));
    assert_eq!(video["size"], len);
    assert_eq!(video["title"], "tus-js-client upload");
    assert_eq!(video["filename"], "clip.mp4");
}

/// What [`upload_clip`] leaves to look at.
struct Uploaded {
    /// Keeps the server running while the test looks.
    _server: Server,
    client: Client,
    clip: Vec<u8>,
    events: Vec<serde_json::Value>,
}

/// A fresh server, and one upload of a 2-second clip by the client in PATCHes of a
/// `1 / chunks` of it, with the tus-js-client options `tus` on top of the script's.
fn upload_clip(chunks: usize, tus: serde_json::Value) -> Uploaded {
    let server = Server::start(Options::default());
    let key = server.create_tenant("acme");
    let client = Client::new(&server, &key);
    let clip_path = common::clip(server.data_path(), "clip.mp4", 2.0);
    let clip = std::fs::read(&clip_path).unwrap();
    let events = run_client(serde_json::json!({
        "endpoint": server.url("/v1/uploads"),
        "file": clip_path,
        "key": key,
        "chunkSize": clip.len() / chunks + 1,
        "storage": server.data_path().join("tus-js-urls.json"),
        "tus": tus,
    }));
    Uploaded {
        _server: server,
        client,
        clip,
        events,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tus_js_client_can_send_its_patches_as_posts_with_a_method_override() {
    // `_server` is bound, so the server lives to the end of the test.
    let Uploaded {
        _server,
        client,
        clip,
        events,
    } = upload_clip(3, serde_json::json!({"overridePatchMethod": true}));
    let video_id = event(&events, "created")["videoId"]
        .as_str()
        .unwrap()
        .to_owned();
    let patches: Vec<_> = events.iter().filter(|e| e["event"] == "patched").collect();
    assert_eq!(patches.len(), 3, "{events:?}");
    assert!(patches.iter().all(|p| p["method"] == "POST"), "{patches:?}");
    assert_eq!(patches[2]["offset"], clip.len());
    event(&events, "done");

    let video = client.wait_settled(&video_id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["sha256"], sha256_hex(&clip));
}

#[tokio::test(flavor = "multi_thread")]
async fn tus_js_client_parallel_uploads_are_joined_by_concatenation() {
    // Two parts of two PATCHes each.
    // `_server` is bound, so the server lives to the end of the test.
    let Uploaded {
        _server,
        client,
        clip,
        events,
    } = upload_clip(4, serde_json::json!({"parallelUploads": 2}));
    let created: Vec<_> = events.iter().filter(|e| e["event"] == "created").collect();
    let partials: Vec<_> = created
        .iter()
        .filter(|e| e["concat"] == "partial")
        .collect();
    assert_eq!(partials.len(), 2, "{events:?}");
    assert!(
        partials.iter().all(|p| p["videoId"].is_null()),
        "{partials:?}"
    );
    let finals: Vec<_> = created
        .iter()
        .filter(|e| {
            e["concat"]
                .as_str()
                .is_some_and(|c| c.starts_with("final;"))
        })
        .collect();
    assert_eq!(finals.len(), 1, "{events:?}");
    let video_id = finals[0]["videoId"].as_str().unwrap();
    let patches = events.iter().filter(|e| e["event"] == "patched").count();
    assert_eq!(patches, 4, "{events:?}");
    event(&events, "done");

    let video = client.wait_settled(video_id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["sha256"], sha256_hex(&clip));
    assert_eq!(video["size"], clip.len());
    assert_eq!(video["title"], "tus-js-client upload");
}
