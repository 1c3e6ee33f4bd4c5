//! Test helpers (feature `test-support`): the same test on local files and on a fresh bucket of
//! a real S3-compatible server.
//!
//! The server is named by `MEDIAHOST_TEST_S3_ENDPOINT` (with `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_REGION`), as `eval "$(scripts/s3-server start)"` sets them.
//! Without it the S3 variants are skipped with a note, except under `CI=true`, where a missing
//! or unreachable server fails the test: CI must never pass by testing one backend only.
//! Every test gets its own bucket, so tests run in parallel without seeing each other's objects.

use crate::Blobs;
use mediahost_core::config::{S3Config, StorageBackend, StorageConfig};
use object_store::ClientOptions;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
use std::sync::atomic::{AtomicU32, Ordering};

/// The variable naming the S3-compatible server tests use, e.g. `http://127.0.0.1:5000`.
pub const ENDPOINT_VAR: &str = "MEDIAHOST_TEST_S3_ENDPOINT";

/// An S3-compatible server to create test buckets on.
#[derive(Debug, Clone)]
pub struct TestS3 {
    /// Base URL (`http://host:port`).
    pub endpoint: String,
    /// Region requests are signed for.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// Bucket names made by this process, kept apart by this counter and the process id.
static BUCKETS: AtomicU32 = AtomicU32::new(0);

impl TestS3 {
    /// The server from the environment. Unset: `None` after printing that `test` was skipped on
    /// S3, or a panic when `CI=true`.
    pub fn from_env(test: &str) -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let Some(endpoint) = var(ENDPOINT_VAR) else {
            assert!(
                var("CI").as_deref() != Some("true"),
                "{ENDPOINT_VAR} is not set but CI=true: the S3 tests must run in CI; start a \
                 server with `eval \"$(scripts/s3-server start)\"`"
            );
            eprintln!(
                "note: {test}: skipped on S3 ({ENDPOINT_VAR} is not set; \
                 `eval \"$(scripts/s3-server start)\"` starts a local S3 server)"
            );
            return None;
        };
        Some(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
            access_key_id: var("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "testing".into()),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "testing".into()),
        })
    }

    /// A bucket name no other test (of this or a concurrent process) uses.
    pub fn unique_bucket_name() -> String {
        let n = BUCKETS.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        format!("mh-test-{}-{n}-{nanos:x}", std::process::id())
    }

    /// Creates a new, empty bucket and returns its name; panics (naming the endpoint) when the
    /// server cannot be reached or refuses.
    pub async fn create_bucket(&self) -> String {
        let bucket = Self::unique_bucket_name();
        let body = if self.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint>\
                 </CreateBucketConfiguration>",
                self.region
            )
        };
        self.request(http::Method::PUT, &bucket, body).await;
        bucket
    }

    /// [`Self::create_bucket`] for synchronous callers (such as a test harness starting a
    /// server), on a thread of its own so it works inside and outside a runtime.
    pub fn create_bucket_blocking(&self) -> String {
        let s3 = self.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("start a runtime")
                .block_on(s3.create_bucket())
        })
        .join()
        .expect("create a test bucket")
    }

    /// Deletes an empty bucket (to test what a server with a vanished bucket does).
    pub async fn delete_bucket(&self, bucket: &str) {
        self.request(http::Method::DELETE, bucket, String::new())
            .await;
    }

    /// Every key in `bucket` (up to the 1000 of one listing page), sorted.
    pub async fn object_keys(&self, bucket: &str) -> Vec<String> {
        let listing = self
            .request(
                http::Method::GET,
                &format!("{bucket}?list-type=2"),
                String::new(),
            )
            .await;
        let mut keys: Vec<String> = listing
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect();
        keys.sort();
        keys
    }

    /// Sends one signed request for `path` (`<bucket>[?query]`), panicking unless it succeeds;
    /// returns the answer's body.
    async fn request(&self, method: http::Method, path: &str, body: String) -> String {
        let credential = AwsCredential {
            key_id: self.access_key_id.clone(),
            secret_key: self.secret_access_key.clone(),
            token: None,
        };
        let url = format!("{}/{path}", self.endpoint);
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(HttpRequestBody::from(body))
            .expect("valid request");
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .expect("sign the request");
        let client = ReqwestConnector::default()
            .connect(&ClientOptions::new().with_allow_http(true))
            .expect("HTTP client");
        let response = client.execute(request).await.unwrap_or_else(|e| {
            panic!(
                "{method} {url}: the S3 server at {} does not answer ({e}); is it running? \
                 (`eval \"$(scripts/s3-server start)\"`)",
                self.endpoint
            )
        });
        let status = response.status();
        let text = response.into_body().bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text).into_owned();
        assert!(status.is_success(), "{method} {url}: {status}: {text}");
        text
    }

    /// `[storage]` for `bucket` on this server.
    pub fn storage_config(&self, bucket: &str) -> StorageConfig {
        StorageConfig {
            backend: StorageBackend::S3,
            s3: S3Config {
                bucket: Some(bucket.to_owned()),
                endpoint: Some(self.endpoint.clone()),
                region: Some(self.region.clone()),
                access_key_id: Some(self.access_key_id.clone()),
                secret_access_key: Some(self.secret_access_key.clone()),
                prefix: None,
                allow_http: self.endpoint.starts_with("http://"),
            },
            placements: Default::default(),
        }
    }

    /// The same as TOML, to append to a config file.
    pub fn config_toml(&self, bucket: &str) -> String {
        let storage = self.storage_config(bucket);
        let s3 = &storage.s3;
        let quoted = |v: &Option<String>| format!("{:?}", v.as_deref().unwrap_or_default());
        format!(
            "\n[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = {}\nendpoint = {}\n\
             region = {}\naccess_key_id = {}\nsecret_access_key = {}\nallow_http = {}\n",
            quoted(&s3.bucket),
            quoted(&s3.endpoint),
            quoted(&s3.region),
            quoted(&s3.access_key_id),
            quoted(&s3.secret_access_key),
            s3.allow_http
        )
    }
}

/// A backend under test: its [`Blobs`] and the data dir holding its temp files (and, for the
/// local backend, its objects), removed on drop.
pub struct TestBlobs {
    /// The storage under test.
    pub blobs: Blobs,
    /// `Blobs`' data dir.
    pub dir: tempfile::TempDir,
    /// The bucket, on S3.
    pub s3: Option<(TestS3, String)>,
}

/// Local files in a fresh data dir.
pub async fn local_blobs() -> TestBlobs {
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = Blobs::from_config(dir.path(), &StorageConfig::default())
        .await
        .expect("local storage");
    TestBlobs {
        blobs,
        dir,
        s3: None,
    }
}

/// A fresh bucket on the test S3 server, or `None` when there is none (see [`TestS3::from_env`]).
pub async fn s3_blobs(test: &str) -> Option<TestBlobs> {
    let s3 = TestS3::from_env(test)?;
    let bucket = s3.create_bucket().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = Blobs::from_config(dir.path(), &s3.storage_config(&bucket))
        .await
        .unwrap_or_else(|e| panic!("S3 storage on bucket {bucket}: {e}"));
    Some(TestBlobs {
        blobs,
        dir,
        s3: Some((s3, bucket)),
    })
}

/// Runs each named `async fn(TestBlobs)` twice: `local::<name>` on local files and
/// `s3::<name>` on a fresh bucket (skipped with a note when no S3 server is configured).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::test_support::local_blobs().await).await;
                }
            )+
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    if let Some(blobs) =
                        $crate::test_support::s3_blobs(concat!("s3::", stringify!($name))).await
                    {
                        super::$name(blobs).await;
                    }
                }
            )+
        }
    };
}
