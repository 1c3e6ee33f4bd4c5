//! S3 as permanent storage, on the real binary: objects land in the bucket (nothing under the
//! data dir but temp files), readiness reports a vanished bucket, and a wrong endpoint or bucket
//! stops the start-up with an error naming the setting. The tests that need an S3 server are
//! skipped with a note when `MEDIAHOST_TEST_S3_ENDPOINT` is unset (and fail under `CI=true`).

mod common;

use common::tus::sha256_hex;
use common::{Client, Options, Server, serve_failing};
use mediahost_blob::test_support::TestS3;
use mediahost_blob::{Blobs, PART_SIZE};

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
    let video = client.ready_clip(server.data_path()).await;
    let id = video["id"].as_str().unwrap().to_owned();

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
async fn a_large_tus_upload_reaches_the_bucket_as_a_multipart_upload() {
    let Some(s3) = TestS3::from_env("a_large_tus_upload_reaches_the_bucket_as_a_multipart_upload")
    else {
        return;
    };
    let bucket = s3.create_bucket().await;
    let server = Server::start(Options {
        config: s3.config_toml(&bucket),
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));
    // Two full parts and a short last one, in a non-repeating pattern.
    let data: Vec<u8> = (0..(2 * PART_SIZE + 1_000_003) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (location, video_id) = client
        .tus_create(data.len() as u64, &[("filename", "big.bin")])
        .await;
    let cuts = [0, data.len() / 3, 2 * data.len() / 3, data.len()];
    for pair in cuts.windows(2) {
        let res = client
            .tus_patch(&location, pair[0] as u64, data[pair[0]..pair[1]].to_vec())
            .await;
        assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    }

    // Completion moved the bytes from the temp file to the bucket before answering.
    let keys = s3.object_keys(&bucket).await;
    let source = keys
        .iter()
        .find(|k| k.ends_with(&format!("/{video_id}/source")))
        .unwrap_or_else(|| panic!("source in the bucket: {keys:?}"));
    let scratch = tempfile::tempdir().unwrap();
    let blobs = Blobs::from_config(scratch.path(), &s3.storage_config(&bucket))
        .await
        .unwrap();
    let info = blobs.head(source).await.unwrap();
    assert_eq!(info.size, data.len() as u64);
    let tag = info.e_tag.unwrap();
    assert!(tag.trim_matches('"').ends_with("-3"), "three parts: {tag}");
    let back = scratch.path().join("source");
    blobs.download(source, &back).await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(&back).unwrap()),
        sha256_hex(&data)
    );
    let video = client.video(&video_id).await;
    assert_eq!(video["sha256"], sha256_hex(&data), "{video}");
    let temp = server.data_path().join("tmp").join("tus");
    let left = std::fs::read_dir(&temp).map_or(0, |d| d.count());
    assert_eq!(left, 0, "the temp part is removed");
}

/// A server storing in `bucket`, with the bytes of uploads in progress kept there too.
fn parts_in_the_bucket(s3: &TestS3, bucket: &str) -> Options {
    Options {
        config: format!(
            "{}\n[tus]\nparts = \"object_storage\"\n",
            s3.config_toml(bucket)
        ),
        ..Options::default()
    }
}

/// Asserts that `bucket` holds no upload's piece any more.
async fn no_pieces_left_in(s3: &TestS3, bucket: &str) {
    let keys = s3.object_keys(bucket).await;
    assert!(
        !keys.iter().any(|k| k.contains("/uploads/")),
        "the upload's pieces are deleted: {keys:?}"
    );
}

/// With `tus.parts = "object_storage"`, two api processes sharing only the metadata DB and the
/// bucket (no folder) take turns on one upload's PATCHes, as behind a round-robin load
/// balancer: the video transcodes from the whole source, and nothing of the upload is left in
/// the bucket or on either disk.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_kept_in_the_bucket_let_any_api_process_take_the_next_patch() {
    let Some(s3) =
        TestS3::from_env("uploads_kept_in_the_bucket_let_any_api_process_take_the_next_patch")
    else {
        return;
    };
    let bucket = s3.create_bucket().await;
    let options = || parts_in_the_bucket(&s3, &bucket);
    let a = Server::start(options());
    let b = Server::start_sharing_database(options(), &a);
    let key = a.create_tenant("acme");
    let (on_a, on_b) = (Client::new(&a, &key), Client::new(&b, &key));
    let clip = std::fs::read(common::clip(a.data_path(), "clip.mp4", 2.0)).unwrap();
    let (location, video_id) = on_a
        .tus_create(clip.len() as u64, &[("filename", "clip.mp4")])
        .await;
    let cuts = [0, clip.len() / 3, 2 * clip.len() / 3, clip.len()];
    for (turn, pair) in cuts.windows(2).enumerate() {
        let (writer, reader) = if turn % 2 == 0 {
            (&on_a, &on_b)
        } else {
            (&on_b, &on_a)
        };
        let res = writer
            .tus_patch(&location, pair[0] as u64, clip[pair[0]..pair[1]].to_vec())
            .await;
        assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
        if pair[1] < clip.len() {
            // The other process sees the offset and, in the bucket, the bytes before it.
            assert_eq!(reader.tus_offset(&location).await, pair[1] as u64);
            let pieces = s3.object_keys(&bucket).await;
            assert!(
                pieces.iter().any(|k| k.contains("/uploads/")),
                "pieces in the bucket: {pieces:?}"
            );
        }
    }

    let video = on_b.wait_settled(&video_id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["sha256"], sha256_hex(&clip), "{video}");
    no_pieces_left_in(&s3, &bucket).await;
    for server in [&a, &b] {
        assert!(
            !server.data_path().join("tmp/tus").exists(),
            "no tus folder"
        );
    }
}

/// With the parts in the bucket, the pieces of PATCHes longer than the durable step are stored
/// while their bodies keep coming: every byte arrives in the source, and neither the bucket nor
/// the disk keeps anything of the upload.
#[tokio::test(flavor = "multi_thread")]
async fn long_patches_store_their_pieces_as_the_bytes_come_and_leave_nothing() {
    let Some(s3) =
        TestS3::from_env("long_patches_store_their_pieces_as_the_bytes_come_and_leave_nothing")
    else {
        return;
    };
    let bucket = s3.create_bucket().await;
    let server = Server::start(parts_in_the_bucket(&s3, &bucket));
    let client = Client::new(&server, &server.create_tenant("acme"));
    let (data, video_id) = client.tus_upload_in_long_patches().await;
    let video = client.wait_settled(&video_id).await;
    assert_eq!(video["sha256"], sha256_hex(&data), "{video}");
    no_pieces_left_in(&s3, &bucket).await;
    let pending = std::fs::read_dir(server.data_path().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with("tus-piece-"))
        .count();
    assert_eq!(pending, 0, "no piece's file is left on disk");
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
