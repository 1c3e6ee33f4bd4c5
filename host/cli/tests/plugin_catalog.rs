//! `PUT` and `DELETE /v1/plugins/{name}` on the real binary: an uploaded plugin serves as soon
//! as the answer arrives, a bad upload changes nothing, the plugin survives a restart that lost
//! the plugin folder (it comes back from the catalog and object storage), another process of
//! the deployment picks it up, and removing it is refused while a binding names it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Client, Options, Server};
use mediahost_blob::test_support::TestS3;
use mediahost_testkit::{build_plugin, repo_root};
use sha2::{Digest, Sha256};

const OPERATOR_KEY: &str = "op-7c1e90aa";

fn validator() -> (PathBuf, String) {
    let manifest = std::fs::read_to_string(repo_root().join("plugins/validator/plugin.toml"))
        .expect("read the validator's manifest");
    (build_plugin("validator"), manifest)
}

fn form(manifest: &str, component: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("manifest", manifest.to_owned())
        .part(
            "component",
            reqwest::multipart::Part::bytes(component).file_name("validator.wasm"),
        )
}

/// `PUT /v1/plugins/{name}` with `form` and `key`: status and JSON body.
async fn put(
    server: &Server,
    name: &str,
    key: &str,
    form: reqwest::multipart::Form,
) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .put(server.url(&format!("/v1/plugins/{name}")))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// `DELETE /v1/plugins/{name}`: status and body (`null` when empty).
async fn delete(server: &Server, name: &str) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .delete(server.url(&format!("/v1/plugins/{name}")))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.bytes().await.unwrap();
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, body)
}

/// `GET /v1/plugins`: the listed plugins.
async fn listed(server: &Server) -> Vec<serde_json::Value> {
    let res = reqwest::Client::new()
        .get(server.url("/v1/plugins"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    body["plugins"].as_array().unwrap().clone()
}

/// Whether an upload of `setup.exe` is refused by a validator plugin (the reference validator
/// allows only video extensions); without one it is taken.
async fn exe_rejected(client: &Client) -> bool {
    let video = client.create_video("installer", Some("setup.exe")).await;
    let res = client
        .put_source(video["id"].as_str().unwrap(), vec![0u8; 1000].into())
        .await;
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    match status {
        422 if body["error"]["code"] == "rejected_by_plugin" => true,
        200..=299 => false,
        _ => panic!("unexpected answer {status}: {body}"),
    }
}

/// Polls `check` every 100 ms until it holds; fails after `limit`.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut check: F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts an error answer: `status`, `code`, and a message containing `part`.
#[track_caller]
fn assert_error(answer: &(u16, serde_json::Value), status: u16, code: &str, part: &str) {
    let (got, body) = answer;
    assert_eq!(
        (*got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(part), "{part:?} not in {body}");
}

/// `PUT /v1/tenants/acme/bindings` with `chains`.
async fn bind(server: &Server, chains: serde_json::Value) {
    let res = reqwest::Client::new()
        .put(server.url("/v1/tenants/acme/bindings"))
        .bearer_auth(OPERATOR_KEY)
        .json(&chains)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

fn operator_config(extra: &str) -> String {
    format!("sync_interval_seconds = 1\n[admin]\noperator_key = \"{OPERATOR_KEY}\"\n{extra}")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_plugin_serves_at_once_survives_a_lost_folder_and_can_be_removed() {
    let (wasm, manifest) = validator();
    let component = std::fs::read(&wasm).unwrap();
    let sha256 = hex::encode(Sha256::digest(&component));
    let mut server = Server::start(Options {
        config: operator_config(""),
        ..Options::default()
    });
    let tenant_key = server.create_tenant("acme");
    let client = Client::new(&server, &tenant_key);
    assert!(!exe_rejected(&client).await, "no plugin yet");

    // Tenants cannot install plugins.
    assert_error(
        &put(
            &server,
            "validator",
            &tenant_key,
            form(&manifest, component.clone()),
        )
        .await,
        403,
        "forbidden",
        "",
    );

    // The first upload installs it (201), the same again replaces it (200); either way it
    // serves when the answer arrives.
    for expected in [201, 200] {
        let (status, p) = put(
            &server,
            "validator",
            OPERATOR_KEY,
            form(&manifest, component.clone()),
        )
        .await;
        assert_eq!(status, expected, "{p}");
        assert_eq!(p["name"], "validator", "{p}");
        assert_eq!(p["world"], "validator", "{p}");
        assert_eq!(p["version"], "0.1.0", "{p}");
        assert_eq!(p["sha256"], sha256.as_str(), "{p}");
        assert_eq!(p["status"], "loaded", "{p}");
        assert_eq!(p["managed_by"], "api", "{p}");
        assert!(exe_rejected(&client).await, "serving when the PUT answered");
    }

    // Bad uploads are refused and change nothing.
    let renamed = manifest.replace("name = \"validator\"", "name = \"other\"");
    let broken_manifest = manifest.replace("world = \"validator\"", "world = \"router\"");
    let refused = [
        (
            form(&manifest, b"not a component".to_vec()),
            422,
            "invalid_plugin",
            "compile",
        ),
        (
            form(&renamed, component.clone()),
            422,
            "invalid_plugin",
            "must match",
        ),
        (
            form(&broken_manifest, component.clone()),
            422,
            "invalid_plugin",
            "router world",
        ),
        (
            reqwest::multipart::Form::new().text("manifest", manifest.clone()),
            400,
            "invalid_request",
            "missing form part `component`",
        ),
    ];
    for (form, status, code, message) in refused {
        let answer = put(&server, "validator", OPERATOR_KEY, form).await;
        assert_error(&answer, status, code, message);
    }
    assert_error(
        &put(
            &server,
            "Bad Name",
            OPERATOR_KEY,
            form(&manifest, component.clone()),
        )
        .await,
        422,
        "invalid_plugin",
        "invalid plugin name",
    );
    let plugins = listed(&server).await;
    assert_eq!(plugins.len(), 1, "{plugins:?}");
    assert_eq!(plugins[0]["sha256"], sha256.as_str());
    assert_eq!(plugins[0]["status"], "loaded");
    assert_eq!(
        plugins[0]["reloads"], 0,
        "same bytes: nothing recompiled or swapped"
    );

    // The plugin folder is lost (a new machine, a wiped disk): the restart installs the plugin
    // again from the catalog and object storage.
    std::fs::remove_dir_all(server.data_path().join("plugins/validator")).unwrap();
    server.restart(Duration::from_secs(30));
    let plugins = listed(&server).await;
    assert_eq!(plugins.len(), 1, "{plugins:?}");
    assert_eq!(plugins[0]["sha256"], sha256.as_str());
    assert_eq!(plugins[0]["managed_by"], "api");
    let client = Client::new(&server, &tenant_key);
    assert!(exe_rejected(&client).await, "restored after the restart");

    // Removal waits until no binding names the plugin.
    bind(
        &server,
        serde_json::json!({"validator": [{"plugin": "validator"}]}),
    )
    .await;
    assert_error(
        &delete(&server, "validator").await,
        409,
        "conflict",
        "validator chain",
    );
    assert!(
        exe_rejected(&client).await,
        "still serving after the refused removal"
    );
    bind(&server, serde_json::json!({})).await;

    assert_eq!(
        delete(&server, "validator").await,
        (204, serde_json::Value::Null)
    );
    assert!(listed(&server).await.is_empty());
    assert!(
        !exe_rejected(&client).await,
        "gone when the DELETE answered"
    );
    assert_error(&delete(&server, "validator").await, 404, "not_found", "");

    // And it stays gone after a restart.
    server.restart(Duration::from_secs(30));
    assert!(listed(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_made_plugins_cannot_be_replaced_or_removed_through_the_api() {
    let (wasm, manifest) = validator();
    let server = Server::start(Options {
        plugins: vec![(
            "validator".into(),
            wasm.clone(),
            repo_root().join("plugins/validator/plugin.toml"),
        )],
        config: operator_config(""),
        ..Options::default()
    });
    assert_error(
        &put(
            &server,
            "validator",
            OPERATOR_KEY,
            form(&manifest, std::fs::read(&wasm).unwrap()),
        )
        .await,
        409,
        "conflict",
        "not installed through the API",
    );
    assert_error(&delete(&server, "validator").await, 409, "conflict", "");
    let plugins = listed(&server).await;
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0]["managed_by"], "files");
    assert_eq!(plugins[0]["status"], "loaded");
}

/// Two api processes on one metadata DB and one bucket, as a deployment runs them.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_uploaded_to_one_process_reaches_the_others() {
    let Some(s3) = TestS3::from_env("a_plugin_uploaded_to_one_process_reaches_the_others") else {
        return;
    };
    let bucket = s3.create_bucket().await;
    let options = || Options {
        config: operator_config(&s3.config_toml(&bucket)),
        ..Options::default()
    };
    let a = Server::start(options());
    let b = Server::start_sharing_database(options(), &a);
    let tenant_key = a.create_tenant("acme");
    let on_b = Client::new(&b, &tenant_key);

    let (wasm, manifest) = validator();
    let (status, p) = put(
        &a,
        "validator",
        OPERATOR_KEY,
        form(&manifest, std::fs::read(&wasm).unwrap()),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let sync = Duration::from_secs(30);
    eventually("the plugin reaches process b", sync, async || {
        listed(&b)
            .await
            .first()
            .is_some_and(|q| q["sha256"] == p["sha256"])
    })
    .await;
    assert!(exe_rejected(&on_b).await, "process b runs the plugin");

    assert_eq!(delete(&a, "validator").await.0, 204);
    eventually("the removal reaches process b", sync, async || {
        listed(&b).await.is_empty()
    })
    .await;
    assert!(!exe_rejected(&on_b).await);
}
