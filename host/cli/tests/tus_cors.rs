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
