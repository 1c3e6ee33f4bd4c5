//! Plugin bindings on the real binary: per-tenant bindings set and read through
//! `/v1/tenants/{tenant}/bindings`, tenant isolation of plugin settings, fail-open and
//! fail-closed with a plugin that traps, the API's error answers, and config-file bindings
//! checked at start-up.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Client, Options, Server};
use mediahost_testkit::{build_plugin, hostile_validator, repo_root};
use serde_json::json;

const OPERATOR_KEY: &str = "op-bindings-7c1d";

/// The reference plugin `name` as `Options::plugins` wants it.
fn reference(name: &str) -> (String, PathBuf, PathBuf) {
    let manifest = repo_root().join(format!("plugins/{name}/plugin.toml"));
    (name.to_owned(), build_plugin(name), manifest)
}

/// The `traps` hostile fixture as validator plugin `trap` (its `check-upload` traps), written
/// under `dir`.
fn trap_plugin(dir: &Path) -> (String, PathBuf, PathBuf) {
    let wasm = dir.join("trap.wasm");
    std::fs::write(&wasm, hostile_validator("traps")).unwrap();
    let manifest = dir.join("trap.toml");
    std::fs::write(
        &manifest,
        "name = \"trap\"\nversion = \"1.0.0\"\nworld = \"validator\"\ncomponent = \"trap.wasm\"\n",
    )
    .unwrap();
    ("trap".into(), wasm, manifest)
}

/// `method` on `/v1/tenants/{tenant}/bindings` with `key` and `body`: status and JSON answer.
async fn bindings(
    server: &Server,
    method: reqwest::Method,
    tenant: &str,
    key: Option<&str>,
    body: Option<String>,
) -> (u16, serde_json::Value) {
    let url = server.url(&format!("/v1/tenants/{tenant}/bindings"));
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn put(server: &Server, tenant: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, answer) = bindings(
        server,
        reqwest::Method::PUT,
        tenant,
        Some(OPERATOR_KEY),
        Some(body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Creates a video named `filename` and uploads 1000 bytes as its source: status and body.
async fn upload(client: &Client, filename: &str) -> (u16, serde_json::Value) {
    let video = client.create_video(filename, Some(filename)).await;
    let res = client
        .put_source(video["id"].as_str().unwrap(), vec![0u8; 1000].into())
        .await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_bindings_isolate_settings_and_apply_their_failure_policy() {
    let fixtures = tempfile::tempdir().unwrap();
    let server = Server::start(Options {
        plugins: vec![
            reference("validator"),
            reference("router"),
            trap_plugin(fixtures.path()),
        ],
        // The operator's chain: the reference validator only, so the trap runs where bound.
        config: format!(
            "[admin]\noperator_key = \"{OPERATOR_KEY}\"\n\
             [[plugins.bindings.validator]]\nplugin = \"validator\"\n"
        ),
        ..Options::default()
    });
    let a = Client::new(&server, &server.create_tenant("a"));
    let b = Client::new(&server, &server.create_tenant("b"));

    // Tenant a: the reference validator again, allowing WebM only.
    let answer = put(
        &server,
        "a",
        json!({"validator": [{"plugin": "validator", "config": {"allowed_extensions": "webm"}}]}),
    )
    .await;
    let expected = json!([{
        "plugin": "validator",
        "on_failure": "fail-closed",
        "config": {"allowed_extensions": "webm"}
    }]);
    assert_eq!(answer["bindings"]["validator"], expected, "{answer}");
    let (status, read) =
        bindings(&server, reqwest::Method::GET, "a", Some(OPERATOR_KEY), None).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["tenant"]["name"], "a");
    assert_eq!(read["bindings"]["validator"], expected, "{read}");
    assert_eq!(read["bindings"]["router"], json!([]), "{read}");

    let (status, body) = upload(&a, "clip.mp4").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "rejected_by_plugin", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("mp4"),
        "{body}"
    );
    assert_eq!(upload(&a, "clip.webm").await.0, 202);
    // b never sees a's settings, before or after a's calls.
    for _ in 0..2 {
        let (status, body) = upload(&b, "clip.mp4").await;
        assert_eq!(status, 202, "{body}");
    }
    let (_, b_view) = bindings(&server, reqwest::Method::GET, "b", Some(OPERATOR_KEY), None).await;
    assert_eq!(b_view["bindings"]["validator"], json!([]), "{b_view}");
    let b_id = b_view["tenant"]["id"].as_str().unwrap().to_owned();

    // Fail-open: b's trapping plugin is skipped and counted (in both `check-upload` and
    // `check-head`, which trap alike), and the upload goes through.
    put(
        &server,
        "b",
        json!({"validator": [{"plugin": "trap", "on_failure": "fail-open"}]}),
    )
    .await;
    let (status, body) = upload(&b, "clip.mp4").await;
    assert_eq!(status, 202, "{body}");
    let metrics = server.metrics().await;
    let skipped = format!(
        r#"mediahost_plugin_skipped_total{{plugin="trap",world="validator",tenant="{b_id}"}} 2"#
    );
    assert!(metrics.contains(&skipped), "{skipped} not in\n{metrics}");
    assert!(
        metrics.contains(&format!(
            r#"mediahost_plugin_peak_memory_bytes_bucket{{plugin="trap",world="validator",tenant="{b_id}""#
        )),
        "{metrics}"
    );

    // Fail-closed: the upload is refused with an error naming plugin, world and tenant.
    put(
        &server,
        "b",
        json!({"validator": [{"plugin": "trap", "on_failure": "fail-closed"}]}),
    )
    .await;
    let (status, body) = upload(&b, "clip.mp4").await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "plugin trap 1.0.0 (validator world, tenant {b_id}) trapped"
        )) && message.contains("used wall time"),
        "{message}"
    );
    // a is untouched by b's bindings.
    assert_eq!(upload(&a, "clip.webm").await.0, 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bindings_api_answers_errors_with_status_and_code() {
    let server = Server::start(Options {
        plugins: vec![reference("validator"), reference("router")],
        config: format!("[admin]\noperator_key = \"{OPERATOR_KEY}\"\n"),
        ..Options::default()
    });
    let tenant_key = server.create_tenant("acme");
    let get = reqwest::Method::GET;
    let put = reqwest::Method::PUT;

    let (status, body) = bindings(&server, get.clone(), "nobody", Some(OPERATOR_KEY), None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("not_found")),
        "{body}"
    );

    let wrong_world = json!({"validator": [{"plugin": "router"}]}).to_string();
    let (status, body) = bindings(
        &server,
        put.clone(),
        "acme",
        Some(OPERATOR_KEY),
        Some(wrong_world.clone()),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_binding")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"router\"") && message.contains("validator chain"),
        "{message}"
    );
    let missing = json!({"router": [{"plugin": "nope"}]}).to_string();
    let (status, body) = bindings(
        &server,
        put.clone(),
        "acme",
        Some(OPERATOR_KEY),
        Some(missing),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"nope\""),
        "{body}"
    );

    let (status, body) = bindings(
        &server,
        put.clone(),
        "acme",
        Some(OPERATOR_KEY),
        Some("{\"validator\": [".into()),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_request")),
        "{body}"
    );

    for method in [get, put] {
        let (status, body) =
            bindings(&server, method.clone(), "acme", None, Some("{}".into())).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("unauthorized")),
            "{body}"
        );
        let (status, body) = bindings(
            &server,
            method,
            "acme",
            Some(&tenant_key),
            Some("{}".into()),
        )
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("forbidden")),
            "{body}"
        );
    }
    // Nothing was stored by the refused requests.
    let (_, body) = bindings(
        &server,
        reqwest::Method::GET,
        "acme",
        Some(OPERATOR_KEY),
        None,
    )
    .await;
    assert_eq!(body["bindings"]["validator"], json!([]), "{body}");
}

/// Runs `mediahost serve` over a fresh data dir with the reference router installed and
/// `config`; it must exit with an error within a minute. Returns its stderr.
fn serve_refuses(config: &str, tenant: Option<&str>) -> String {
    let data = tempfile::tempdir().unwrap();
    let (_, wasm, manifest) = reference("router");
    let folder = data.path().join("plugins/router");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(manifest, folder.join("plugin.toml")).unwrap();
    std::fs::copy(&wasm, folder.join(wasm.file_name().unwrap())).unwrap();
    let config_path = data.path().join("mediahost.toml");
    std::fs::write(&config_path, config).unwrap();
    if let Some(tenant) = tenant {
        let out = Command::new(BIN)
            .args(["tenant", "create", tenant, "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let stderr = data.path().join("stderr.log");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--edge-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "serve kept running with a bad binding:\n{}",
                std::fs::read_to_string(&stderr).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    std::fs::read_to_string(&stderr).unwrap()
}

#[test]
fn config_file_bindings_are_checked_at_start_up() {
    let log = serve_refuses(
        "[[plugins.bindings.validator]]\nplugin = \"router\"\n",
        None,
    );
    assert!(
        log.contains("[plugins.bindings]")
            && log.contains("plugin \"router\" implements the router world and cannot be bound in the validator chain"),
        "{log}"
    );
    let log = serve_refuses(
        "[[plugins.tenants.acme.router]]\nplugin = \"ghost\"\n",
        Some("acme"),
    );
    assert!(
        log.contains("[plugins.tenants.acme]")
            && log.contains("plugin \"ghost\" bound in the router chain is not loaded"),
        "{log}"
    );
    let log = serve_refuses(
        "[[plugins.tenants.nobody.router]]\nplugin = \"router\"\n",
        None,
    );
    assert!(log.contains("no tenant named \"nobody\""), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fail_closed_extractor_fails_the_video_with_its_report() {
    let server = Server::start(Options {
        plugins: vec![reference("metadata-extractor")],
        // Starved of fuel and bound fail-closed: every extraction fails the job.
        config: "[[plugins.bindings.metadata-extractor]]\nplugin = \"metadata-extractor\"\n\
                 on_failure = \"fail-closed\"\nlimits = { fuel = 10 }\n"
            .into(),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));
    let media = tempfile::tempdir().unwrap();
    let clip = common::clip(media.path(), "clip.mp4", 1.0);
    let id = client.upload("starved", "clip.mp4", &clip).await;
    let video = client.wait_settled(&id).await;
    assert_eq!(video["status"], "failed", "{video}");
    let error = video["error"].as_str().unwrap();
    assert!(
        error.starts_with("plugin metadata-extractor 0.1.0 (metadata-extractor world, tenant ")
            && error.contains("ran out of fuel (limit 10); used wall time"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_failure_replays_locally_with_plugin_run() {
    let fixtures = tempfile::tempdir().unwrap();
    let trap = trap_plugin(fixtures.path());
    let component = trap.1.clone();
    let server = Server::start(Options {
        plugins: vec![reference("validator"), trap],
        config: format!(
            "[admin]\noperator_key = \"{OPERATOR_KEY}\"\n\
             [[plugins.bindings.validator]]\nplugin = \"validator\"\n"
        ),
        ..Options::default()
    });
    let a = Client::new(&server, &server.create_tenant("a"));
    let b = Client::new(&server, &server.create_tenant("b"));
    put(
        &server,
        "a",
        json!({"validator": [{"plugin": "trap", "on_failure": "fail-open", "record_failures": true}]}),
    )
    .await;
    put(
        &server,
        "b",
        json!({"validator": [{"plugin": "trap", "on_failure": "fail-open"}]}),
    )
    .await;
    assert_eq!(upload(&a, "clip.mp4").await.0, 202);
    assert_eq!(upload(&b, "clip.mp4").await.0, 202);

    // Only the binding that opted in recorded its failures: check-upload and check-head.
    let folder = server.data_path().join("plugin-failures/trap");
    let mut recorded: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().path())
        .collect();
    recorded.sort();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    let upload_input = recorded
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-check-upload.json"))
        .expect("a check-upload recording");
    let input: serde_json::Value =
        serde_json::from_slice(&std::fs::read(upload_input).unwrap()).unwrap();
    let a_view = bindings(&server, reqwest::Method::GET, "a", Some(OPERATOR_KEY), None)
        .await
        .1;
    assert_eq!(
        input["check-upload"]["info"]["tenant"], a_view["tenant"]["id"],
        "{input}"
    );

    // The recording is a `plugin run` input: the same failure, on the author's machine.
    let out = Command::new(BIN)
        .args(["plugin", "run"])
        .arg(&component)
        .arg("--input")
        .arg(upload_input)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("trapped"), "{stdout}");
}
