//! CORS for browser tus clients: preflights answer without a key and expose the tus headers.

mod common;

use common::tus::header;
use common::{Client, Options, Server};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn browser_preflight_and_exposed_headers() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let origin = "https://app.example.com";

    for path in ["/v1/uploads", "/v1/uploads/some-id"] {
        let res = reqwest::Client::new()
            .request(Method::OPTIONS, server.url(path))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "PATCH")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,upload-offset,upload-checksum,tus-resumable",
            )
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(header(&res, "access-control-allow-origin"), "*");
        let methods = header(&res, "access-control-allow-methods").to_lowercase();
        for m in ["patch", "head", "delete", "options", "post"] {
            assert!(methods.contains(m), "{methods}");
        }
        let allowed = header(&res, "access-control-allow-headers").to_lowercase();
        for h in [
            "authorization",
            "content-type",
            "upload-length",
            "upload-offset",
            "upload-metadata",
            "upload-checksum",
            "upload-concat",
            "upload-defer-length",
            "tus-resumable",
        ] {
            assert!(allowed.contains(h), "{h} not in {allowed}");
        }
    }

    // Actual responses carry the exposed headers list.
    let res = client
        .tus(Method::POST, "/v1/uploads")
        .header("Origin", origin)
        .header("Upload-Length", 10)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "access-control-allow-origin"), "*");
    let exposed = header(&res, "access-control-expose-headers").to_lowercase();
    for h in [
        "location",
        "upload-offset",
        "upload-length",
        "upload-expires",
        "upload-metadata",
        "tus-version",
        "tus-resumable",
        "tus-max-size",
        "tus-extension",
        "tus-checksum-algorithm",
        "mediahost-video-id",
    ] {
        assert!(exposed.contains(h), "{h} not in {exposed}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_are_answered_on_every_v1_path() {
    let server = Server::start(Options::default());
    // A browser uploading with PUT, and a player fetching playlists with a bearer key.
    for (path, method) in [
        ("/v1/videos/some-id/source", "PUT"),
        ("/v1/videos/some-id/hls/master.m3u8", "GET"),
        ("/v1/videos", "POST"),
    ] {
        let res = reqwest::Client::new()
            .request(Method::OPTIONS, server.url(path))
            .header("Origin", "https://player.example.com")
            .header("Access-Control-Request-Method", method)
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(header(&res, "access-control-allow-origin"), "*", "{path}");
        let methods = header(&res, "access-control-allow-methods").to_lowercase();
        assert!(
            methods.contains(&method.to_lowercase()),
            "{path}: {methods}"
        );
    }
    // Unknown paths under /v1 still answer the JSON 404.
    let res = reqwest::get(server.url("/v1/nope")).await.unwrap();
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}
