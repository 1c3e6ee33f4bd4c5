//! tus PATCH: several chunks to completion and a transcoded video, offsets, checksums, limits.

mod common;

use common::tus::{OFFSET_STREAM, b64, header, sha256_hex};
use common::{Client, Options, Server};
use reqwest::Method;
use sha2::Digest;

#[tokio::test(flavor = "multi_thread")]
async fn several_patches_complete_and_the_video_transcodes() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let clip = std::fs::read(common::clip(server.data_path(), "clip.mp4", 2.0)).unwrap();
    let len = clip.len() as u64;
    let (location, video_id) = client
        .tus_create(
            len,
            &[
                ("filename", "clip.mp4"),
                ("title", "tus clip"),
                ("camera", "x"),
            ],
        )
        .await;
    assert!(location.starts_with("/v1/uploads/"), "{location}");
    assert_eq!(client.tus_offset(&location).await, 0);

    let cuts = [0, clip.len() / 3, 2 * clip.len() / 3, clip.len()];
    for pair in cuts.windows(2) {
        let piece = clip[pair[0]..pair[1]].to_vec();
        let res = client
            .tus_patch_request(&location, pair[0] as u64)
            .header(
                "Upload-Checksum",
                format!("sha256 {}", b64(&sha2::Sha256::digest(&piece))),
            )
            .body(piece)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
        assert_eq!(header(&res, "upload-offset"), pair[1].to_string());
        assert_eq!(header(&res, "tus-resumable"), "1.0.0");
        // Until the upload completes, each answer says when it expires.
        let expires = res.headers().get("upload-expires");
        match pair[1] < clip.len() {
            true => assert!(
                expires.is_some_and(|v| v.to_str().unwrap().ends_with(" GMT")),
                "{res:?}"
            ),
            false => assert!(expires.is_none(), "{res:?}"),
        }
        assert_eq!(client.tus_offset(&location).await, pair[1] as u64);
    }

    let video = client.wait_settled(&video_id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["sha256"], sha256_hex(&clip));
    assert_eq!(video["size"], len);
    assert_eq!(video["title"], "tus clip");
    assert_eq!(video["filename"], "clip.mp4");
    // The temp file is gone once promoted.
    assert!(!server.tus_temp(&location).exists());
    // A repeated PATCH at the end is harmless.
    let res = client.tus_patch(&location, len, Vec::new()).await;
    assert_eq!(res.status(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_checksums_and_limits_are_enforced() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let other = Client::new(&server, &server.create_tenant("other"));
    let (location, _) = client.tus_create(100, &[("filename", "x.bin")]).await;

    // Wrong offset → 409 offset_mismatch.
    let res = client.tus_patch(&location, 5, vec![1; 10]).await;
    assert_eq!(res.status(), 409);
    assert_eq!(header(&res, "tus-resumable"), "1.0.0");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "offset_mismatch");

    // Wrong content type → 415.
    let res = client
        .tus(Method::PATCH, &location)
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", 0)
        .body(vec![1; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);

    let patch = |offset: u64, bytes: Vec<u8>, checksum: String| {
        client
            .tus_patch_request(&location, offset)
            .header("Upload-Checksum", checksum)
            .body(bytes)
            .send()
    };
    // Good sha1.
    let a = vec![7u8; 20];
    let res = patch(
        0,
        a.clone(),
        format!("sha1 {}", b64(&sha1::Sha1::digest(&a))),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(client.tus_offset(&location).await, 20);
    // Bad md5 → 460, nothing kept.
    let b = vec![8u8; 20];
    let res = patch(
        20,
        b.clone(),
        format!("md5 {}", b64(&md5::Md5::digest(b"not it"))),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 460);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "checksum_mismatch");
    assert_eq!(client.tus_offset(&location).await, 20);
    // Good md5 and sha256.
    let res = patch(20, b.clone(), format!("md5 {}", b64(&md5::Md5::digest(&b))))
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let c = vec![9u8; 20];
    let res = patch(
        40,
        c.clone(),
        format!("sha256 {}", b64(&sha2::Sha256::digest(&c))),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(client.tus_offset(&location).await, 60);
    // Unknown algorithm or malformed digest → 400.
    let res = patch(60, c.clone(), "crc32 AAAA".into()).await.unwrap();
    assert_eq!(res.status(), 400);
    let res = patch(60, c.clone(), "sha1 %%%".into()).await.unwrap();
    assert_eq!(res.status(), 400);

    // Beyond Upload-Length → 413, offset unchanged.
    let res = client.tus_patch(&location, 60, vec![0; 41]).await;
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_large");
    assert_eq!(client.tus_offset(&location).await, 60);

    // Malformed Upload-Offset → 400; unknown upload and another tenant's → 404.
    let res = client
        .tus(Method::PATCH, &location)
        .header("Content-Type", OFFSET_STREAM)
        .header("Upload-Offset", "-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = client
        .tus(Method::HEAD, "/v1/uploads/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = other.tus(Method::HEAD, &location).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = other.tus_patch(&location, 60, vec![0; 5]).await;
    assert_eq!(res.status(), 404);
    let res = other.tus(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // No key → 401.
    let res = reqwest::Client::new()
        .head(server.url(&location))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // The rest completes the upload; the random bytes then fail transcoding with a reason.
    let res = client.tus_patch(&location, 60, vec![1; 40]).await;
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "upload-offset"), "100");
}

/// A PATCH whose body stalls has what it sent made durable (HEAD reports it) within the sync
/// interval, not only once more bytes arrive: a client whose connection hangs and is then cut
/// resumes from there.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_patch_still_makes_what_it_sent_durable() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let (location, _) = client
        .tus_create(1024 * 1024, &[("filename", "x.bin")])
        .await;
    let (open, patch) = client.gated_patch(&location);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while client.tus_offset(&location).await != 16 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled PATCH's first 16 KiB never became durable"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    open.send(()).unwrap();
    let res = patch.await.unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    assert_eq!(client.tus_offset(&location).await, 32 * 1024);
}

/// PATCHes longer than a durable step (16 MiB) have their durable points made while the body
/// keeps coming; every byte lands in place and the running digest handed from one PATCH to the
/// next is the digest of what is stored.
#[tokio::test(flavor = "multi_thread")]
async fn long_patches_keep_every_byte_and_the_digest_across_their_durable_points() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let (data, video_id) = client.tus_upload_in_long_patches().await;
    let video = client.wait_settled(&video_id).await;
    assert_eq!(video["size"], data.len());
    assert_eq!(video["sha256"], sha256_hex(&data), "{video}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_override_is_taken_for_the_method_it_names() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let (location, _) = client.tus_create(10, &[("filename", "x.bin")]).await;
    let overridden = |method: &str| {
        client
            .tus(Method::POST, &location)
            .header("X-HTTP-Method-Override", method)
    };

    // A POST that says PATCH writes.
    let res = overridden("PATCH")
        .header("Content-Type", OFFSET_STREAM)
        .header("Upload-Offset", 0)
        .body(vec![7; 4])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    assert_eq!(header(&res, "upload-offset"), "4");
    // One that says HEAD reads the offset (the name is taken in any case).
    let res = overridden("head").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "upload-offset"), "4");

    // One that names no method is refused, with what to send instead.
    let res = overridden("PATCH ME").send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(header(&res, "tus-resumable"), "1.0.0");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-HTTP-Method-Override"),
        "{body}"
    );
    assert_eq!(client.tus_offset(&location).await, 4);

    // One that says DELETE terminates.
    let res = overridden("DELETE").send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = client.tus(Method::HEAD, &location).send().await.unwrap();
    assert_eq!(res.status(), 404);
}
