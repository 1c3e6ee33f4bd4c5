//! tus under concurrency and crashes: the DB write lock, and durable offsets across `kill -9`.

mod common;

use common::tus::{header, sha256_hex, slow_body};
use common::{Client, Options, Server};
use reqwest::Method;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn a_second_patch_while_one_writes_gets_409() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let (location, _) = client.tus_create(1_000_000, &[]).await;

    // A slow first PATCH: 10 × 16 KiB over ~2 s.
    let first = {
        let req = client.tus_patch_request(&location, 0).body(slow_body(
            vec![3u8; 160 * 1024],
            16 * 1024,
            Duration::from_millis(200),
        ));
        tokio::spawn(async move { req.send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let res = client.tus_patch(&location, 0, vec![4u8; 1024]).await;
    assert_eq!(res.status(), 409);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upload_locked");
    // Termination waits for the writer too.
    let res = client.tus(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(res.status(), 409);

    let res = first.await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "upload-offset"), (160 * 1024).to_string());
    // The lock is released: the next PATCH goes through.
    let res = client
        .tus_patch(&location, 160 * 1024, vec![5u8; 1024])
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(client.tus_offset(&location).await, 161 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_patch_keeps_a_durable_offset_and_the_upload_resumes() {
    let mut server = Server::start(Options {
        config: "[tus]\nlock_seconds = 2\n".into(),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));
    let clip = std::fs::read(common::clip(server.data_path(), "clip.mp4", 2.0)).unwrap();
    let (location, video_id) = client
        .tus_create(clip.len() as u64, &[("filename", "clip.mp4")])
        .await;

    // Stream slowly (8 KiB every 50 ms) and kill the server while bytes are still arriving.
    let sending = {
        let req = client.tus_patch_request(&location, 0).body(slow_body(
            clip.clone(),
            8 * 1024,
            Duration::from_millis(50),
        ));
        tokio::spawn(async move { req.send().await })
    };
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(!sending.is_finished(), "the PATCH must still be running");
    server.kill9_and_restart();
    let _ = sending.await;

    let offset = client.tus_offset(&location).await;
    assert!(offset > 0, "some bytes were durable before the kill");
    assert!(offset < clip.len() as u64);
    let on_disk = std::fs::read(server.tus_temp(&location)).unwrap();
    assert!(on_disk.len() as u64 >= offset);
    assert_eq!(&on_disk[..offset as usize], &clip[..offset as usize]);

    // The crashed writer's lock lapses with its lease (2 s); then the upload resumes.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = client
            .tus_patch(&location, offset, clip[offset as usize..].to_vec())
            .await;
        if res.status() == 409 {
            assert!(Instant::now() < deadline, "lock never lapsed");
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
        break;
    }
    let video = client.wait_settled(&video_id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["sha256"], sha256_hex(&clip));
}
