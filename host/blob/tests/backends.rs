//! Object storage behaviour, the same on local files and on S3 (each test runs on both; the S3
//! variant needs `MEDIAHOST_TEST_S3_ENDPOINT`, see `scripts/s3-server`).

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use mediahost_blob::test_support::{TestBlobs, TestS3};
use mediahost_blob::{BlobError, Blobs, PART_SIZE, PartRef};
use mediahost_core::config::{Placement, S3Config, StorageBackend, StorageConfig};
use sha2::{Digest, Sha256};

mediahost_blob::backend_tests!(
    staged_upload_is_hashed_and_promoted,
    interrupted_or_dropped_upload_leaves_nothing,
    ranges_and_validators,
    missing_object_and_prefix_delete,
    whole_objects_in_memory_and_single_deletes,
    large_file_goes_up_in_several_parts,
    finished_files_and_tus_parts_reach_the_store,
    tus_parts_in_object_storage_carry_an_upload_across_processes,
    a_file_fetched_for_reading_keeps_its_bytes_whatever_happens_to_the_object,
    storage_answers_readiness_probes,
);

fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::iter(
        parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p)))
            .collect::<Vec<_>>(),
    )
}

fn temp_files(t: &TestBlobs) -> usize {
    std::fs::read_dir(t.dir.path().join("tmp"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().unwrap().is_file())
        .count()
}

async fn read_all(blobs: &Blobs, key: &str) -> Vec<u8> {
    let body: Vec<Bytes> = blobs
        .get(key)
        .await
        .unwrap()
        .body
        .try_collect()
        .await
        .unwrap();
    body.concat()
}

async fn staged_upload_is_hashed_and_promoted(t: TestBlobs) {
    let blobs = &t.blobs;
    let staged = blobs.stage(chunks(&[b"hello ", b"world"])).await.unwrap();
    assert_eq!(staged.size, 11);
    // sha256("hello world")
    assert_eq!(
        staged.sha256,
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    blobs.promote(staged, "t/v/source").await.unwrap();
    let back = t.dir.path().join("back");
    assert_eq!(blobs.download("t/v/source", &back).await.unwrap(), 11);
    assert_eq!(std::fs::read(&back).unwrap(), b"hello world");
    assert_eq!(temp_files(&t), 0, "temp file removed after promotion");
}

async fn interrupted_or_dropped_upload_leaves_nothing(t: TestBlobs) {
    let broken = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("connection reset")),
    ]);
    let err = t.blobs.stage(broken).await.unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    drop(t.blobs.stage(chunks(&[b"x"])).await.unwrap());
    assert_eq!(temp_files(&t), 0);
}

async fn ranges_and_validators(t: TestBlobs) {
    let blobs = &t.blobs;
    blobs
        .put_bytes("k", Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    let info = blobs.head("k").await.unwrap();
    assert_eq!(info.size, 10);
    assert!(info.e_tag.is_some());
    let part = blobs.get_range("k", 2..5).await.unwrap();
    assert_eq!((part.range.clone(), part.info.size), (2..5, 10));
    let bytes: Vec<Bytes> = part.body.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), b"234");
    // A range past the end is cut at the end.
    let tail = blobs.get_range("k", 7..20).await.unwrap();
    assert_eq!(tail.range, 7..10);
    let bytes: Vec<Bytes> = tail.body.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), b"789");
    blobs
        .put_bytes("k", Bytes::from_static(b"changed!!!"))
        .await
        .unwrap();
    assert_ne!(
        blobs.head("k").await.unwrap().e_tag,
        info.e_tag,
        "rewrites change the tag"
    );
}

async fn missing_object_and_prefix_delete(t: TestBlobs) {
    let blobs = &t.blobs;
    assert!(matches!(
        blobs.get("nope").await,
        Err(BlobError::NotFound(_))
    ));
    assert!(matches!(
        blobs.head("nope").await,
        Err(BlobError::NotFound(_))
    ));
    for (key, body) in [
        ("a/b/1", "1"),
        ("a/b/c/2", "2"),
        ("a/bc", "3"),
        ("a/x", "4"),
    ] {
        blobs.put_bytes(key, Bytes::from(body)).await.unwrap();
    }
    blobs.delete_prefix("a/b").await.unwrap();
    for gone in ["a/b/1", "a/b/c/2"] {
        assert!(
            matches!(blobs.head(gone).await, Err(BlobError::NotFound(_))),
            "{gone} deleted"
        );
        assert!(matches!(blobs.get(gone).await, Err(BlobError::NotFound(_))));
    }
    // Prefixes are whole path segments: "a/bc" is not under "a/b".
    assert_eq!(read_all(blobs, "a/bc").await, b"3");
    assert_eq!(blobs.get("a/x").await.unwrap().info.size, 1);
    blobs.delete_prefix("a/b").await.unwrap();
    blobs.delete_prefix("never/written").await.unwrap();
}

async fn whole_objects_in_memory_and_single_deletes(t: TestBlobs) {
    let blobs = &t.blobs;
    let body = pattern(300_000);
    blobs
        .put_bytes("plugins/p/1.wasm", Bytes::from(body.clone()))
        .await
        .unwrap();
    blobs
        .put_bytes("plugins/p/2.wasm", Bytes::from("two"))
        .await
        .unwrap();
    assert_eq!(blobs.get_bytes("plugins/p/1.wasm").await.unwrap(), body);
    assert!(matches!(
        blobs.get_bytes("plugins/p/none.wasm").await,
        Err(BlobError::NotFound(_))
    ));

    blobs.delete("plugins/p/1.wasm").await.unwrap();
    assert!(matches!(
        blobs.get_bytes("plugins/p/1.wasm").await,
        Err(BlobError::NotFound(_))
    ));
    blobs.delete("plugins/p/1.wasm").await.unwrap();
    assert_eq!(read_all(blobs, "plugins/p/2.wasm").await, b"two");
}

/// A deterministic, non-repeating pattern (so a misplaced part would be noticed).
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .take(len)
        .collect()
}

async fn large_file_goes_up_in_several_parts(t: TestBlobs) {
    let blobs = &t.blobs;
    // Two full parts and a short last one.
    let data = pattern(2 * PART_SIZE + 123_457);
    let file = t.dir.path().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    blobs.put_file("t/v/big", &file).await.unwrap();

    let info = blobs.head("t/v/big").await.unwrap();
    assert_eq!(info.size, data.len() as u64);
    if t.s3.is_some() {
        // S3 names multipart objects "<md5 of the part md5s>-<number of parts>".
        let tag = info.e_tag.clone().unwrap();
        assert!(
            tag.trim_matches('"').ends_with("-3"),
            "multipart ETag {tag}"
        );
    }
    let back = t.dir.path().join("back.bin");
    assert_eq!(
        blobs.download("t/v/big", &back).await.unwrap(),
        data.len() as u64
    );
    let digest = |b: &[u8]| hex::encode(Sha256::digest(b));
    assert_eq!(digest(&std::fs::read(&back).unwrap()), digest(&data));

    // A range across the first part boundary.
    let start = PART_SIZE as u64 - 10;
    let range = blobs.get_range("t/v/big", start..start + 20).await.unwrap();
    let bytes: Vec<Bytes> = range.body.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), &data[start as usize..start as usize + 20]);
}

async fn finished_files_and_tus_parts_reach_the_store(t: TestBlobs) {
    let blobs = &t.blobs;
    // A transcode's segment: linked into local storage, copied to S3; either way the
    // worker's copy can go afterwards.
    let work = blobs.temp_workdir().unwrap();
    let segment = work.path().join("seg-1.m4s");
    std::fs::write(&segment, vec![7u8; 1000]).unwrap();
    blobs
        .put_finished_file("t/v/hls/v0/seg-1.m4s", &segment)
        .await
        .unwrap();
    drop(work);
    assert_eq!(
        read_all(blobs, "t/v/hls/v0/seg-1.m4s").await,
        vec![7u8; 1000]
    );

    // A tus upload's part lives on local disk, then moves to the store.
    let part = PartRef {
        tenant: "t",
        upload: "up1",
    };
    blobs.create_part(part).await.unwrap();
    assert!(t.dir.path().join("tmp/tus/up1").exists());
    let mut w = blobs.open_part(part, 0, 1).await.unwrap();
    w.write(bytes::Bytes::from_static(b"resumable"))
        .await
        .unwrap();
    w.sync().await.unwrap();
    let (size, sha) = blobs.store_part(part, 9, "t/v2/source").await.unwrap();
    assert_eq!((size, sha), (9, hex::encode(Sha256::digest(b"resumable"))));
    blobs.remove_part(part).await.unwrap();
    assert_eq!(read_all(blobs, "t/v2/source").await, b"resumable");
    assert!(!t.dir.path().join("tmp/tus/up1").exists());
}

/// A tus upload kept in the object store, written by one process and continued by another
/// (a second `Blobs` on the same store and a data dir of its own): large enough that the pieces
/// become a multipart upload of the source.
async fn tus_parts_in_object_storage_carry_an_upload_across_processes(t: TestBlobs) {
    let first = t.blobs.clone().with_parts_in_object_storage();
    let other_dir = tempfile::tempdir().unwrap();
    let config = match &t.s3 {
        Some((s3, bucket)) => s3.storage_config(bucket),
        None => Default::default(),
    };
    // Local objects live under the data dir: the second process shares the first's.
    let second_data = if t.s3.is_some() {
        other_dir.path()
    } else {
        t.dir.path()
    };
    let second = Blobs::from_config(second_data, &config)
        .await
        .unwrap()
        .with_parts_in_object_storage();
    let part = PartRef {
        tenant: "t9",
        upload: "moving",
    };
    let body: Vec<u8> = (0..(PART_SIZE * 2 + 12345))
        .map(|i| (i % 251) as u8)
        .collect();
    let (a, b) = body.split_at(PART_SIZE + 777);

    first.create_part(part).await.unwrap();
    let mut w = first.open_part(part, 0, 1).await.unwrap();
    w.write(bytes::Bytes::copy_from_slice(a)).await.unwrap();
    assert_eq!(w.sync().await.unwrap(), a.len() as u64);
    drop(w);
    // Nothing of the upload stays on the first process's disk.
    assert!(!t.dir.path().join("tmp/tus").exists());

    let mut w = second.open_part(part, a.len() as u64, 2).await.unwrap();
    w.write(bytes::Bytes::copy_from_slice(b)).await.unwrap();
    assert_eq!(w.sync().await.unwrap(), body.len() as u64);
    drop(w);
    assert_eq!(second.read_part_head(part, 10).await.unwrap(), &body[..10]);
    // The second process never saw the start: it hashes what the store holds, on the way.
    let (size, sha) = second
        .store_part(part, body.len() as u64, "tenants/t9/videos/v/source")
        .await
        .unwrap();
    assert_eq!(size, body.len() as u64);
    assert_eq!(sha, hex::encode(Sha256::digest(&body)));
    second.remove_part(part).await.unwrap();
    assert_eq!(read_all(&second, "tenants/t9/videos/v/source").await, body);
    assert!(matches!(
        first.read_part_head(part, 1).await,
        Err(BlobError::NotFound(_))
    ));
}

/// What a worker fetches to read (the source): linked on local storage, downloaded from S3;
/// either way replacing or deleting the object afterwards does not change the fetched file.
async fn a_file_fetched_for_reading_keeps_its_bytes_whatever_happens_to_the_object(t: TestBlobs) {
    let blobs = &t.blobs;
    let work = blobs.temp_workdir().unwrap();
    blobs
        .put_bytes("t/v/source", Bytes::from("first"))
        .await
        .unwrap();
    let fetched = work.path().join("source");
    assert_eq!(
        blobs
            .fetch_for_reading("t/v/source", &fetched)
            .await
            .unwrap(),
        5
    );
    if t.s3.is_none() {
        use std::os::unix::fs::MetadataExt;
        let links = std::fs::metadata(&fetched).unwrap().nlink();
        assert_eq!(links, 2, "a hard link to the object, not a copy");
    }
    blobs
        .put_bytes("t/v/source", Bytes::from("second!"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&fetched).unwrap(), b"first");
    blobs.delete("t/v/source").await.unwrap();
    assert_eq!(std::fs::read(&fetched).unwrap(), b"first");
    assert!(matches!(
        blobs
            .fetch_for_reading("t/v/source", &work.path().join("again"))
            .await,
        Err(BlobError::NotFound(_))
    ));
}

async fn storage_answers_readiness_probes(t: TestBlobs) {
    t.blobs.ping().await.unwrap();
    let Some((s3, bucket)) = &t.s3 else { return };
    // The bucket vanishes under a running server: readiness reports it by name.
    s3.delete_bucket(bucket).await;
    let err = t.blobs.ping().await.unwrap_err().to_string();
    assert!(err.contains("storage.s3.bucket"), "{err}");
    assert!(err.contains(bucket.as_str()), "{err}");
    assert!(err.contains("NoSuchBucket"), "the cause is included: {err}");
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_startup_error() {
    let Some(s3) = TestS3::from_env("a_missing_bucket_is_a_clear_startup_error") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bucket = TestS3::unique_bucket_name();
    let err = Blobs::from_config(dir.path(), &s3.storage_config(&bucket))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, BlobError::Unusable { setting, .. } if setting == "storage.s3.bucket"),
        "{message}"
    );
    assert!(message.contains(&bucket), "{message}");
    assert!(message.contains(&s3.endpoint), "{message}");
    assert!(message.contains("NoSuchBucket"), "{message}");

    // A placement's missing bucket is named in the placement's own section.
    let mut config = StorageConfig::default();
    let placement = Placement {
        backend: StorageBackend::S3,
        dir: None,
        s3: s3.storage_config(&bucket).s3,
    };
    config.placements.insert("vault".into(), placement);
    let err = Blobs::from_config(dir.path(), &config).await.unwrap_err();
    assert!(
        matches!(&err, BlobError::Unusable { setting, .. }
            if setting == "storage.placements.vault.s3.bucket"),
        "{err}"
    );
}

#[tokio::test]
async fn a_key_prefix_keeps_deployments_apart_in_one_bucket() {
    let Some(s3) = TestS3::from_env("a_key_prefix_keeps_deployments_apart_in_one_bucket") else {
        return;
    };
    let bucket = s3.create_bucket().await;
    let open = |prefix: Option<&str>| {
        let mut config = s3.storage_config(&bucket);
        config.s3.prefix = prefix.map(str::to_owned);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let blobs = Blobs::from_config(dir.path(), &config).await.unwrap();
            (dir, blobs)
        }
    };
    let (_a_dir, a) = open(Some("/deployments/a/")).await;
    let (_b_dir, b) = open(Some("deployments/b")).await;
    let (_root_dir, root) = open(None).await;
    a.put_bytes("t/v/source", Bytes::from_static(b"A"))
        .await
        .unwrap();
    b.put_bytes("t/v/source", Bytes::from_static(b"B"))
        .await
        .unwrap();
    assert_eq!(read_all(&a, "t/v/source").await, b"A");
    assert_eq!(read_all(&b, "t/v/source").await, b"B");
    assert_eq!(
        read_all(&root, "deployments/a/t/v/source").await,
        b"A",
        "the prefix is a key prefix in the bucket"
    );
    a.delete_prefix("t").await.unwrap();
    assert!(matches!(
        a.head("t/v/source").await,
        Err(BlobError::NotFound(_))
    ));
    assert_eq!(read_all(&b, "t/v/source").await, b"B");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_clear_startup_error() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let config = StorageConfig {
        backend: StorageBackend::S3,
        s3: S3Config {
            bucket: Some("media".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("secret".into()),
            allow_http: true,
            ..S3Config::default()
        },
        ..StorageConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = Blobs::from_config(dir.path(), &config)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("storage.s3.endpoint"), "{err}");
    assert!(err.contains("http://127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn each_tenant_s_objects_go_to_its_placement_and_unknown_placements_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let vault = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::default();
    config.placements.insert(
        "vault".into(),
        Placement {
            backend: StorageBackend::Local,
            dir: Some(vault.path().to_owned()),
            s3: S3Config::default(),
        },
    );
    let lookups = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = lookups.clone();
    let blobs = Blobs::from_config(data.path(), &config)
        .await
        .unwrap()
        .with_placement_lookup(std::sync::Arc::new(move |tenant: String| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                match tenant.as_str() {
                    "placed" => Ok(Some("vault".to_owned())),
                    "elsewhere" => Ok(Some("gone".to_owned())),
                    "broken" => Err("database unreachable".to_owned()),
                    _ => Ok(None),
                }
            })
        }));
    assert_eq!(blobs.placement_names(), vec!["vault".to_owned()]);
    let body = || bytes::Bytes::from_static(b"object");
    for key in [
        "tenants/placed/videos/v/source",
        "tenants/placed/videos/v/hls/a",
    ] {
        blobs.put_bytes(key, body()).await.unwrap();
        assert!(vault.path().join(key).is_file(), "{key}");
        assert!(!data.path().join("objects").join(key).exists(), "{key}");
    }
    for key in ["tenants/plain/videos/v/source", "plugins/p/abc.wasm"] {
        blobs.put_bytes(key, body()).await.unwrap();
        assert!(data.path().join("objects").join(key).is_file(), "{key}");
        assert!(!vault.path().join(key).exists(), "{key}");
    }
    assert_eq!(
        blobs
            .get_bytes("tenants/placed/videos/v/source")
            .await
            .unwrap(),
        body()
    );
    // Asked once per tenant: the placement never changes.
    assert_eq!(lookups.load(std::sync::atomic::Ordering::SeqCst), 2);
    blobs
        .delete_prefix("tenants/placed/videos/v")
        .await
        .unwrap();
    assert!(!vault.path().join("tenants/placed/videos/v/source").exists());

    // Neither an unconfigured placement nor a failed lookup falls back to the main store.
    for (tenant, expected) in [
        ("elsewhere", "add [storage.placements.gone]"),
        ("broken", "database unreachable"),
    ] {
        let key = format!("tenants/{tenant}/videos/v/source");
        let err = blobs.put_bytes(&key, body()).await.unwrap_err();
        assert!(matches!(err, BlobError::Placement(_)), "{err}");
        assert!(err.to_string().contains(expected), "{err}");
        assert!(!data.path().join("objects").join(&key).exists());
    }
}
