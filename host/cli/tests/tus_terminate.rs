//! tus termination and expiration: DELETE frees everything; expired uploads answer 410 and are
//! swept (temp file, row, unfilled video).

mod common;

use common::tus::{header, upload_id};
use common::{Client, Options, Server};
use mediahost_blob::Blobs;
use mediahost_store::Store;
use reqwest::Method;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A 1000-byte upload holding its first 100 bytes: (location, video id, its temp file).
async fn started_upload(server: &Server, client: &Client) -> (String, String, PathBuf) {
    let (location, video_id) = client.tus_create(1000, &[]).await;
    let res = client.tus_patch(&location, 0, vec![1; 100]).await;
    assert_eq!(res.status(), 204);
    let part = server.tus_temp(&location);
    (location, video_id, part)
}

#[tokio::test(flavor = "multi_thread")]
async fn termination_frees_the_upload_and_its_video() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let (location, video_id, part) = started_upload(&server, &client).await;
    assert!(part.exists());

    let res = client.tus(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "tus-resumable"), "1.0.0");
    assert!(!part.exists());
    let res = client.tus(Method::HEAD, &location).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = client.tus_patch(&location, 100, vec![1; 10]).await;
    assert_eq!(res.status(), 404);
    let res = client
        .get(&format!("/v1/videos/{video_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "the never-filled video is deleted");
    let res = client.tus(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_uploads_answer_410_and_are_swept() {
    let server = Server::start(Options {
        config: "[tus]\nexpire_seconds = 1\nsweep_interval_seconds = 3600\n".into(),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));
    let (location, video_id, part) = started_upload(&server, &client).await;
    let id = upload_id(&location).to_owned();
    assert!(part.exists());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let res = client.tus(Method::HEAD, &location).send().await.unwrap();
    assert_eq!(res.status(), 410);
    let res = client.tus_patch(&location, 100, vec![1; 10]).await;
    assert_eq!(res.status(), 410);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upload_expired");

    // The sweep, called directly on the server's store and storage.
    let store = Store::connect(&server.database_url()).await.unwrap();
    let blobs = Blobs::local(server.data_path()).unwrap();
    let locks = mediahost_api::tus::lock::DatabaseLocks::new(store.clone());
    let swept = mediahost_api::tus::sweep_expired(&store, &blobs, &locks)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert!(!part.exists());
    let res = client.tus(Method::HEAD, &location).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = client
        .get(&format!("/v1/videos/{video_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // The row is gone, not just hidden: nothing expired is left to collect.
    let left = store
        .expired_uploads(mediahost_store::now_ms(), 10)
        .await
        .unwrap();
    assert!(left.iter().all(|u| u.id != id), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_periodic_sweep_collects_expired_uploads() {
    let server = Server::start(Options {
        config: "[tus]\nexpire_seconds = 1\nsweep_interval_seconds = 1\n".into(),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));
    let (location, _, part) = started_upload(&server, &client).await;
    // The sweep removes the part file, then the row (so a crash in between leaves a row the
    // next sweep collects, never a file nobody knows of): 410 until the row goes too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = client.tus(Method::HEAD, &location).send().await.unwrap();
        if !part.exists() && res.status() == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired upload never swept (HEAD answers {})",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
