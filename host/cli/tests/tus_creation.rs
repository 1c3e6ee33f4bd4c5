//! tus creation: OPTIONS discovery, Tus-Resumable, creation, creation-with-upload, deferred
//! length, metadata, limits.

mod common;

use common::tus::{OFFSET_STREAM, created, header, metadata, sha256_hex};
use common::{Client, Options, Server};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn options_tus_resumable_and_creation() {
    let server = Server::start(Options {
        config: "[tus]\nmax_size = 1000000\n".into(),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));

    // OPTIONS needs no key and advertises the protocol.
    let res = reqwest::Client::new()
        .request(Method::OPTIONS, server.url("/v1/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "tus-resumable"), "1.0.0");
    assert_eq!(header(&res, "tus-version"), "1.0.0");
    assert_eq!(header(&res, "tus-max-size"), "1000000");
    assert_eq!(header(&res, "tus-checksum-algorithm"), "sha1,md5,sha256");
    let extensions = header(&res, "tus-extension");
    for ext in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "expiration",
        "checksum",
        "termination",
        "concatenation",
    ] {
        assert!(extensions.split(',').any(|e| e == ext), "{extensions}");
    }

    // Missing or unsupported Tus-Resumable → 412 with Tus-Version.
    for version in [None, Some("0.2.2")] {
        let mut req = client
            .http
            .post(server.url("/v1/uploads"))
            .bearer_auth(&client.key)
            .header("Upload-Length", 10);
        if let Some(v) = version {
            req = req.header("Tus-Resumable", v);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 412);
        assert_eq!(header(&res, "tus-version"), "1.0.0");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "precondition_failed");
    }

    // Plain creation: Location, video id, expiry; HEAD echoes the metadata.
    let meta = metadata(&[
        ("filename", "clip.mp4"),
        ("filetype", "video/mp4"),
        ("k", "v"),
    ]);
    let res = client
        .tus(Method::POST, "/v1/uploads")
        .header("Upload-Length", 1000)
        .header("Upload-Metadata", &meta)
        .send()
        .await
        .unwrap();
    let (location, video_id) = created(&res);
    assert!(httpdate_parses(&header(&res, "upload-expires")));
    let res = client.tus(Method::HEAD, &location).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "upload-offset"), "0");
    assert_eq!(header(&res, "upload-length"), "1000");
    assert_eq!(header(&res, "upload-metadata"), meta);
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert!(httpdate_parses(&header(&res, "upload-expires")));
    // The video exists, titled after the file name.
    let video = client.video(&video_id).await;
    assert_eq!(video["title"], "clip.mp4");
    assert_eq!(video["filename"], "clip.mp4");
    assert_eq!(video["status"], "awaiting_upload");

    // No metadata at all → "untitled".
    let (_, untitled) = client.tus_create(10, &[]).await;
    let video = client.video(&untitled).await;
    assert_eq!(video["title"], "untitled");

    // Malformed requests → 400; beyond Tus-Max-Size → 413.
    for (name, value) in [
        ("Upload-Metadata", "filename !!notbase64"),
        ("Upload-Length", "ten"),
        ("Upload-Defer-Length", "2"),
    ] {
        let mut req = client.tus(Method::POST, "/v1/uploads").header(name, value);
        if name != "Upload-Length" {
            req = req.header("Upload-Length", 10);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 400, "{name}: {value}");
    }
    let res = client
        .tus(Method::POST, "/v1/uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "no length");
    let res = client
        .tus(Method::POST, "/v1/uploads")
        .header("Upload-Length", 1_000_001)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(header(&res, "tus-resumable"), "1.0.0");
}

fn httpdate_parses(s: &str) -> bool {
    s.ends_with(" GMT") && s.len() == 29
}

#[tokio::test(flavor = "multi_thread")]
async fn creation_with_upload_and_deferred_length() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();

    // creation-with-upload: the POST body is the first chunk.
    let res = client
        .tus(Method::POST, "/v1/uploads")
        .header("Upload-Length", data.len())
        .header("Content-Type", OFFSET_STREAM)
        .header("Upload-Metadata", metadata(&[("filename", "a.bin")]))
        .body(data[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    let (location, video_id) = created(&res);
    assert_eq!(header(&res, "upload-offset"), "100000");
    assert_eq!(client.tus_offset(&location).await, 100_000);
    let res = client
        .tus_patch(&location, 100_000, data[100_000..].to_vec())
        .await;
    assert_eq!(res.status(), 204);
    let video = client.wait_settled(&video_id).await;
    assert_eq!(video["sha256"], sha256_hex(&data));

    // Deferred length: HEAD says so until a PATCH declares it.
    let res = client
        .tus(Method::POST, "/v1/uploads")
        .header("Upload-Defer-Length", "1")
        .send()
        .await
        .unwrap();
    let (location, video_id) = created(&res);
    let res = client.tus(Method::HEAD, &location).send().await.unwrap();
    assert_eq!(header(&res, "upload-defer-length"), "1");
    assert!(res.headers().get("upload-length").is_none());
    let res = client
        .tus_patch(&location, 0, data[..200_000].to_vec())
        .await;
    assert_eq!(res.status(), 204);
    let res = client
        .tus_patch_request(&location, 200_000)
        .header("Upload-Length", data.len())
        .body(data[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = client.tus(Method::HEAD, &location).send().await.unwrap();
    assert_eq!(header(&res, "upload-length"), data.len().to_string());
    assert_eq!(header(&res, "upload-offset"), data.len().to_string());
    let video = client.wait_settled(&video_id).await;
    assert_eq!(video["sha256"], sha256_hex(&data));
    assert_eq!(video["size"], data.len());
}
