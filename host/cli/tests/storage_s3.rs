//! S3 as permanent storage, on the real binary: objects land in the bucket (nothing under the
//! data dir but temp files), readiness reports a vanished bucket, and a wrong endpoint or bucket
//! stops the start-up with an error naming the setting. The tests that need an S3 server are
//! skipped with a note when `MEDIAHOST_TEST_S3_ENDPOINT` is unset (and fail under `CI=true`).

mod common;

use common::{Client, Options, Server, clip, serve_failing};
use mediahost_blob::test_support::TestS3;

#[tokio::test(flavor = "multi_thread")]
async fn sources_and_renditions_are_stored_in_the_bucket() {
    let Some(s3) = TestS3::from_env("sources_and_renditions_are_stored_in_the_bucket") else {
        return;
    };
    let bucket = s3.create_bucket().await;
    let server = Server::start(Options {
        config: s3.config_toml(&bucket),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));
    let id = client
        .upload(
            "clip",
            "clip.mp4",
            &clip(server.data_path(), "clip.mp4", 2.0),
        )
        .await;
    let video = client.wait_settled(&id).await;
    assert_eq!(video["status"], "ready", "{video}");

    let keys = s3.object_keys(&bucket).await;
    let under_video = |suffix: &str| {
        keys.iter()
            .any(|k| k.contains(&format!("/{id}/")) && k.ends_with(suffix))
    };
    assert!(under_video("/source"), "source in the bucket: {keys:?}");
    assert!(under_video("/hls/master.m3u8"), "playlist: {keys:?}");
    assert!(under_video(".m4s"), "segments: {keys:?}");
    assert!(
        !server.data_path().join("objects").exists(),
        "nothing stored under the data dir"
    );

    // Played back from the bucket, ranges included.
    let master = video["playback"]["hls"].as_str().unwrap();
    let res = client
        .http
        .get(master)
        .bearer_auth(&client.key)
        .header("range", "bytes=0-6")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.text().await.unwrap(), "#EXTM3U");

    let ready: serde_json::Value = reqwest::get(server.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["object_storage"], "ok", "{ready}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_reports_a_vanished_bucket() {
    let Some(s3) = TestS3::from_env("readiness_reports_a_vanished_bucket") else {
        return;
    };
    let bucket = s3.create_bucket().await;
    let server = Server::start(Options {
        config: s3.config_toml(&bucket),
        ..Options::default()
    });
    let res = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 200);

    s3.delete_bucket(&bucket).await;
    let res = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    let error = body["checks"]["object_storage"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("object storage check fails: {body}"));
    assert!(error.contains("storage.s3.bucket"), "{error}");
    assert!(error.contains(&bucket), "{error}");
    assert!(error.contains("NoSuchBucket"), "{error}");
}

#[test]
fn a_missing_bucket_stops_the_start_up_naming_the_setting() {
    let Some(s3) = TestS3::from_env("a_missing_bucket_stops_the_start_up_naming_the_setting")
    else {
        return;
    };
    let bucket = TestS3::unique_bucket_name();
    let (status, log) = serve_failing(&s3.config_toml(&bucket), &[]);
    assert!(!status.success(), "{log}");
    assert!(log.contains("error: open object storage"), "{log}");
    assert!(log.contains("storage.s3.bucket"), "{log}");
    assert!(log.contains(&bucket), "{log}");
    assert!(log.contains("NoSuchBucket"), "the cause is shown: {log}");
}

#[test]
fn storage_settings_come_from_the_environment_too() {
    // The file says nothing about storage; the environment selects S3 on an endpoint where
    // nothing listens (loopback port 1), so the start-up must fail naming the endpoint.
    let (status, log) = serve_failing(
        "",
        &[
            ("MEDIAHOST_STORAGE_BACKEND", "s3"),
            ("MEDIAHOST_S3_BUCKET", "media"),
            ("MEDIAHOST_S3_ENDPOINT", "http://127.0.0.1:1"),
            ("MEDIAHOST_S3_ALLOW_HTTP", "true"),
            ("MEDIAHOST_S3_ACCESS_KEY_ID", "AKID"),
            ("MEDIAHOST_S3_SECRET_ACCESS_KEY", "secret"),
        ],
    );
    assert!(!status.success(), "{log}");
    assert!(log.contains("storage.s3.endpoint"), "{log}");
    assert!(log.contains("http://127.0.0.1:1"), "{log}");

    let (status, log) = serve_failing(
        "[storage]\nbackend = \"s3\"\n",
        &[("MEDIAHOST_S3_BUCKET", " ")],
    );
    assert!(!status.success(), "{log}");
    assert!(log.contains("no bucket is configured"), "{log}");
    assert!(log.contains("MEDIAHOST_S3_BUCKET"), "{log}");
}
