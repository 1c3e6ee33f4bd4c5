//! Tenant quotas on the real binary: deployment defaults from the config, a tenant's own limits
//! from `mediahost tenant quota` and the admin API, and each limit refusing an upload with its
//! own status (413, 429, 403) before anything is stored, for that tenant only.

mod common;

use common::tus::{header, metadata};
use common::{Client, Options, Server};
use reqwest::{Method, Response};

const OPERATOR_KEY: &str = "quota-operator";
const MIB: u64 = 1 << 20;

async fn create(client: &Client, length: u64) -> Response {
    client
        .tus(Method::POST, "/v1/uploads")
        .header("Upload-Length", length)
        .header("Upload-Metadata", metadata(&[("filename", "clip.mp4")]))
        .send()
        .await
        .unwrap()
}

/// Asserts `res` is the JSON error `code` with `status`; returns its message.
async fn refused(res: Response, status: u16, code: &str) -> String {
    assert_eq!(res.status(), status);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

fn tenant_quota(server: &Server, args: &[&str]) -> String {
    let out = server.cli(&[&["tenant", "quota"], args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn each_limit_refuses_with_its_own_status_and_only_for_its_tenant() {
    let server = Server::start(Options {
        config: format!(
            "[admin]\noperator_key = \"{OPERATOR_KEY}\"\n[quotas]\nmax_concurrent_uploads = 2\n"
        ),
        ..Options::default()
    });
    let acme = Client::new(&server, &server.create_tenant("acme"));
    let other = Client::new(&server, &server.create_tenant("other"));
    let shown = tenant_quota(
        &server,
        &["acme", "--max-upload-size", "1MiB", "--max-storage", "3MiB"],
    );
    assert!(
        shown.contains("max upload size (bytes):  1048576\n"),
        "{shown}"
    );
    assert!(
        shown.contains("max concurrent uploads:   2 (default)"),
        "{shown}"
    );

    // One upload too big for acme (but not for the deployment, nor for other).
    let message = refused(create(&acme, 2 * MIB).await, 413, "too_large").await;
    assert!(
        message.contains("acme") && message.contains("1048576"),
        "{message}"
    );
    assert_eq!(create(&other, 2 * MIB).await.status(), 201);

    // Two open uploads is acme's limit (the default); terminating one frees its slot.
    let first = header(&create(&acme, 800 << 10).await, "location");
    assert_eq!(create(&acme, 800 << 10).await.status(), 201);
    let message = refused(create(&acme, 1000).await, 429, "too_many_uploads").await;
    assert!(message.contains("2 uploads open"), "{message}");
    let res = acme.tus(Method::DELETE, &first).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(create(&acme, 800 << 10).await.status(), 201);

    // The operator lifts the concurrency limit through the API; storage (3 MiB) now binds:
    // 1.6 MiB reserved by open uploads + 1 MiB fits, another 800 KiB does not.
    let res = acme
        .http
        .put(server.url("/v1/tenants/acme/quota"))
        .bearer_auth(OPERATOR_KEY)
        .json(&serde_json::json!({
            "max_upload_bytes": MIB,
            "max_storage_bytes": 3 * MIB,
            "max_concurrent_uploads": 10,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let view: serde_json::Value = res.json().await.unwrap();
    assert_eq!(view["quota"]["max_concurrent_uploads"], 10, "{view}");
    assert_eq!(create(&acme, MIB).await.status(), 201);
    let message = refused(create(&acme, 800 << 10).await, 403, "quota_exceeded").await;
    assert!(message.contains("max_storage_bytes"), "{message}");

    let usage: serde_json::Value = acme
        .get("/v1/usage")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["tenant"], "acme");
    assert_eq!(usage["usage"]["open_uploads"], 3, "{usage}");
    assert_eq!(
        usage["usage"]["reserved_bytes"],
        2 * (800 << 10) + MIB,
        "{usage}"
    );
    assert_eq!(usage["quota"]["max_storage_bytes"], 3 * MIB);

    // Tenants cannot change quotas; unknown tenants and bad bodies get clear errors.
    let res = acme
        .http
        .put(server.url("/v1/tenants/acme/quota"))
        .bearer_auth(&acme.key)
        .json(&serde_json::json!({"max_upload_bytes": null}))
        .send()
        .await
        .unwrap();
    refused(res, 403, "forbidden").await;
    let res = acme
        .http
        .get(server.url("/v1/tenants/nobody/quota"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    refused(res, 404, "not_found").await;
    let res = acme
        .http
        .put(server.url("/v1/tenants/acme/quota"))
        .bearer_auth(OPERATOR_KEY)
        .body(r#"{"max_upload_bytes": "lots"}"#)
        .send()
        .await
        .unwrap();
    refused(res, 400, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_source_past_the_tenants_limit_is_cut_off_and_nothing_is_kept() {
    let server = Server::start(Options::default());
    let acme = Client::new(&server, &server.create_tenant("acme"));
    tenant_quota(&server, &["acme", "--max-upload-size", "256KiB"]);

    // No Content-Length: the limit trips while streaming.
    let video = acme.create_video("too big", Some("clip.mp4")).await;
    let id = video["id"].as_str().unwrap();
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![0u8; 64 << 10])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(pieces));
    let message = refused(acme.put_source(id, body).await, 413, "too_large").await;
    assert!(message.contains("262144"), "{message}");
    let after = acme.video(id).await;
    assert_eq!(after["status"], "awaiting_upload", "{after}");
    assert!(after["size"].is_null(), "{after}");

    // With a Content-Length the refusal comes before any byte is read, and the connection,
    // with the unread rest of the body on it, is not offered for reuse.
    let res = acme.put_source(id, vec![0u8; 300 << 10].into()).await;
    assert_eq!(header(&res, "connection"), "close");
    refused(res, 413, "too_large").await;

    // Within the limit the same video still takes its source.
    let clip = common::clip(server.data_path(), "clip.mp4", 1.0);
    assert!(std::fs::metadata(&clip).unwrap().len() < 256 << 10);
    let res = acme
        .put_source(id, std::fs::read(&clip).unwrap().into())
        .await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
}
