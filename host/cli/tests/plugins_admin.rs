//! The admin API on the real binary: `GET /v1/plugins` with the operator key, refused to
//! tenants and anonymous callers, and showing a broken hot reload while the old version of the
//! plugin keeps serving uploads.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Options, Server};
use mediahost_testkit::{build_plugin, repo_root};
use sha2::{Digest, Sha256};

const OPERATOR_KEY: &str = "op-3f9c2a7d";

/// `GET /v1/plugins` with `key` (none when `None`): status and JSON body.
async fn list(server: &Server, key: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().get(server.url("/v1/plugins"));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The one listed plugin, with the operator key.
async fn validator_entry(server: &Server) -> serde_json::Value {
    let (status, body) = list(server, Some(OPERATOR_KEY)).await;
    assert_eq!(status, 200, "{body}");
    let plugins = body["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 1, "{body}");
    plugins[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_sees_plugins_and_a_broken_reload_while_the_old_version_serves() {
    let wasm = build_plugin("validator");
    let manifest = repo_root().join("plugins/validator/plugin.toml");
    let server = Server::start(Options {
        plugins: vec![("validator".into(), wasm.clone(), manifest)],
        config: format!("[admin]\noperator_key = \"{OPERATOR_KEY}\"\n"),
        ..Options::default()
    });
    let tenant_key = server.create_tenant("acme");

    let p = validator_entry(&server).await;
    let sha256 = hex::encode(Sha256::digest(std::fs::read(&wasm).unwrap()));
    assert_eq!(p["name"], "validator", "{p}");
    assert_eq!(p["world"], "validator", "{p}");
    assert_eq!(p["status"], "loaded", "{p}");
    assert_eq!(p["sha256"], sha256.as_str(), "{p}");
    assert_eq!(p["last_error"], serde_json::Value::Null, "{p}");
    assert_eq!(p["reloads"], 0, "{p}");
    assert!(
        p["version"].is_string() && p["loaded_at"].is_string(),
        "{p}"
    );

    let (status, body) = list(&server, Some(&tenant_key)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &"forbidden".into()),
        "{body}"
    );
    let (status, body) = list(&server, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &"unauthorized".into()),
        "{body}"
    );

    // A corrupt component: within 5 s the listing shows the error...
    let component = server
        .data_path()
        .join("plugins/validator")
        .join(wasm.file_name().unwrap());
    std::fs::write(&component, b"this is not a component").unwrap();
    let started = Instant::now();
    let p = loop {
        let p = validator_entry(&server).await;
        if p["status"] == "error" {
            break p;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = p["last_error"].as_str().unwrap();
    assert!(error.contains("validator"), "{error}");
    assert_eq!(
        p["sha256"],
        sha256.as_str(),
        "the old version still serves: {p}"
    );

    // ...and the old version still rejects what it should.
    let client = Client::new(&server, &tenant_key);
    let exe = client.create_video("malware", Some("setup.exe")).await;
    let res = client
        .put_source(exe["id"].as_str().unwrap(), vec![0u8; 1000].into())
        .await;
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rejected_by_plugin", "{body}");

    let metrics = server.metrics().await;
    for needle in [
        r#"mediahost_plugin_reloads_total{plugin="validator",outcome="error"}"#,
        r#"mediahost_plugin_calls_total{plugin="validator",world="validator",outcome="rejected"}"#,
        "mediahost_plugin_call_duration_seconds_bucket",
        "mediahost_plugin_fuel_consumed_total",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
}
