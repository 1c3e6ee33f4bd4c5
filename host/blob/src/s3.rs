//! The S3 backend: an `object_store` `AmazonS3` for a bucket of AWS S3 or any S3-compatible
//! server, and the checks that turn its failures into errors naming the setting to fix.
//!
//! Requests are path-style (`<endpoint>/<bucket>/<key>`): S3-compatible servers (MinIO, Ceph,
//! moto) rarely have the wildcard DNS that virtual-hosted style needs. An optional key prefix
//! wraps the store in a `PrefixStore`, so the rest of the crate never sees it.

use mediahost_core::config::S3Config;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

use crate::BlobError;

/// Region signed into requests when none is configured (what S3-compatible servers expect).
const DEFAULT_REGION: &str = "us-east-1";

/// Readiness checks give up after this long: a probe should say "down" quickly rather than hang
/// `/readyz` or the start-up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bucket as readiness checks reach it, and what to name in their errors.
#[derive(Debug)]
pub(crate) struct S3Probe {
    /// The same bucket and prefix as the main store, without retries.
    store: Arc<dyn ObjectStore>,
    /// Where its settings are, for messages.
    section: Section,
    /// The bucket's name, for messages.
    pub(crate) bucket: String,
    /// Where the bucket is served, for messages (`AWS S3 (<region>)` without an endpoint).
    pub(crate) endpoint: String,
}

/// The config section an S3 store comes from: the main store (`storage.s3`, with its
/// `MEDIAHOST_S3_*` variables) or a placement (`storage.placements.<name>.s3`, file only).
#[derive(Debug, Clone)]
pub(crate) struct Section(pub(crate) String);

impl Section {
    /// The main store's section.
    pub(crate) fn main() -> Self {
        Self("storage.s3".into())
    }

    /// The full name of `option` in this section.
    fn setting(&self, option: &str) -> String {
        format!("{}.{option}", self.0)
    }

    /// "set <setting>", with the variable that also sets it for the main store.
    fn set(&self, option: &str) -> String {
        let setting = self.setting(option);
        if self.0 == "storage.s3" {
            format!(
                "set {setting} (or MEDIAHOST_S3_{})",
                option.to_ascii_uppercase()
            )
        } else {
            format!("set {setting}")
        }
    }
}

/// Builds the store for `config` (from `section`) and its probe. Nothing is contacted yet;
/// settings that cannot work (no bucket, half the credentials, plain HTTP not allowed) are
/// refused here, naming the option.
pub(crate) fn build(
    config: &S3Config,
    section: &Section,
) -> Result<(Arc<dyn ObjectStore>, S3Probe), BlobError> {
    let bucket = non_blank(&config.bucket).ok_or_else(|| BlobError::Config {
        setting: section.setting("bucket"),
        message: format!(
            "the backend is \"s3\" but no bucket is configured; {}",
            section.set("bucket")
        ),
    })?;
    let region = non_blank(&config.region).unwrap_or(DEFAULT_REGION);
    let endpoint = non_blank(&config.endpoint);
    if let Some(endpoint) = endpoint {
        let scheme_ok = endpoint.starts_with("https://") || endpoint.starts_with("http://");
        if !scheme_ok {
            return Err(BlobError::Config {
                setting: section.setting("endpoint"),
                message: format!(
                    "{endpoint:?} is not an http:// or https:// URL (e.g. http://127.0.0.1:9000)"
                ),
            });
        }
        if endpoint.starts_with("http://") && !config.allow_http {
            return Err(BlobError::Config {
                setting: section.setting("allow_http"),
                message: format!(
                    "the endpoint {endpoint} is plain HTTP; use https:// or {} = true to allow \
                     unencrypted requests",
                    section.set("allow_http")
                ),
            });
        }
    }
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_virtual_hosted_style_request(false)
        .with_allow_http(config.allow_http);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    match (
        non_blank(&config.access_key_id),
        non_blank(&config.secret_access_key),
    ) {
        (Some(id), Some(secret)) => {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        // The EC2 instance's role, from instance metadata.
        (None, None) => {}
        (Some(_), None) => {
            return Err(BlobError::Config {
                setting: section.setting("secret_access_key"),
                message: format!(
                    "an access key id is set but no secret access key; {}",
                    section.set("secret_access_key")
                ),
            });
        }
        (None, Some(_)) => {
            return Err(BlobError::Config {
                setting: section.setting("access_key_id"),
                message: format!(
                    "a secret access key is set but no access key id; {}",
                    section.set("access_key_id")
                ),
            });
        }
    }
    let prefix = match non_blank(&config.prefix).map(|p| p.trim_matches('/')) {
        None | Some("") => None,
        Some(p) => Some(ObjectPath::parse(p).map_err(|e| BlobError::Config {
            setting: section.setting("prefix"),
            message: format!("{p:?} is not a valid key prefix: {e}"),
        })?),
    };
    let probe_builder = builder
        .clone()
        .with_retry(RetryConfig {
            max_retries: 0,
            retry_timeout: PROBE_TIMEOUT,
            ..RetryConfig::default()
        })
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(config.allow_http)
                .with_connect_timeout(PROBE_TIMEOUT / 2)
                .with_timeout(PROBE_TIMEOUT),
        );
    let built = |builder: AmazonS3Builder| {
        builder.build().map_err(|e| BlobError::Config {
            setting: section.0.clone(),
            message: format!("cannot set up the S3 client: {e}"),
        })
    };
    let store = with_prefix(built(builder)?, prefix.clone());
    let probe = S3Probe {
        store: with_prefix(built(probe_builder)?, prefix),
        section: section.clone(),
        bucket: bucket.to_owned(),
        endpoint: endpoint.map_or_else(|| format!("AWS S3 ({region})"), str::to_owned),
    };
    Ok((store, probe))
}

fn with_prefix(store: AmazonS3, prefix: Option<ObjectPath>) -> Arc<dyn ObjectStore> {
    match prefix {
        Some(prefix) => Arc::new(PrefixStore::new(store, prefix)),
        None => Arc::new(store),
    }
}

fn non_blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl S3Probe {
    /// Lists `prefix` once (one request, no retries); an empty listing is a healthy answer.
    pub(crate) async fn check(&self, prefix: &ObjectPath) -> Result<(), BlobError> {
        use futures::StreamExt;
        match self.store.list(Some(prefix)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(self.diagnose(e)),
        }
    }

    /// Names the setting most likely wrong, from the S3 error code in the answer or, when no
    /// answer came, the failed connection.
    fn diagnose(&self, error: object_store::Error) -> BlobError {
        // One line: S3 error documents arrive with line breaks, and the connection's own reason
        // (e.g. "Connection refused") sits at the bottom of the chain, below a vague summary.
        let mut cause = error.to_string().replace(['\r', '\n'], " ");
        let root = root_cause(&error).replace(['\r', '\n'], " ");
        if !cause.contains(&root) {
            cause = format!("{cause}: {root}");
        }
        let (bucket, endpoint) = (&self.bucket, &self.endpoint);
        let section = &self.section;
        let credentials = format!(
            "{} and {}",
            section.setting("access_key_id"),
            section.setting("secret_access_key")
        );
        let (setting, problem) = match s3_error_code(&cause) {
            Some("NoSuchBucket") => (
                section.setting("bucket"),
                format!("the bucket {bucket:?} does not exist at {endpoint}"),
            ),
            Some(
                code @ ("InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AccessDenied"
                | "InvalidToken"
                | "ExpiredToken"
                | "InvalidClientTokenId"),
            ) => (
                credentials,
                format!("{endpoint} refused the credentials for bucket {bucket:?} ({code})"),
            ),
            Some(
                code @ ("AuthorizationHeaderMalformed"
                | "PermanentRedirect"
                | "IllegalLocationConstraintException"),
            ) => (
                section.setting("region"),
                format!("the bucket {bucket:?} is not in the configured region ({code})"),
            ),
            Some(code) => (
                section.0.clone(),
                format!("{endpoint} refused to list the bucket {bucket:?} ({code})"),
            ),
            None if matches!(
                error,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ) =>
            {
                (
                    credentials,
                    format!("{endpoint} refused the credentials for bucket {bucket:?}"),
                )
            }
            None if no_answer(&error) => (
                section.setting("endpoint"),
                format!("cannot reach the S3 endpoint {endpoint}"),
            ),
            None => (
                section.0.clone(),
                format!("the bucket {bucket:?} at {endpoint} cannot be listed"),
            ),
        };
        BlobError::Unusable {
            setting,
            problem,
            cause,
        }
    }
}

/// The `<Code>` of an S3 error document quoted in an error message.
fn s3_error_code(message: &str) -> Option<&str> {
    let start = message.find("<Code>")? + "<Code>".len();
    let len = message[start..].find("</Code>")?;
    Some(&message[start..start + len]).filter(|code| !code.is_empty())
}

/// The innermost error of `error`'s source chain, as text.
fn root_cause(error: &object_store::Error) -> String {
    let mut current: &(dyn std::error::Error + 'static) = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Whether the request never got an HTTP answer (refused connection, DNS, TLS, timeout).
fn no_answer(error: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_fields: &[(&str, &str)]) -> S3Config {
        let mut config = S3Config {
            bucket: Some("media".into()),
            ..S3Config::default()
        };
        for (field, value) in toml_fields {
            let value = Some((*value).to_owned());
            match *field {
                "bucket" => config.bucket = value,
                "endpoint" => config.endpoint = value,
                "access_key_id" => config.access_key_id = value,
                "secret_access_key" => config.secret_access_key = value,
                "prefix" => config.prefix = value,
                other => panic!("unknown field {other}"),
            }
        }
        config
    }

    fn refused_setting(config: &S3Config) -> String {
        match build(config, &Section::main()) {
            Err(BlobError::Config { setting, .. }) => setting,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("accepted {config:?}"),
        }
    }

    #[test]
    fn unusable_settings_are_refused_naming_the_option() {
        assert_eq!(
            refused_setting(&config(&[("bucket", " ")])),
            "storage.s3.bucket"
        );
        assert_eq!(
            refused_setting(&config(&[("endpoint", "http://127.0.0.1:9000")])),
            "storage.s3.allow_http"
        );
        assert_eq!(
            refused_setting(&config(&[("endpoint", "127.0.0.1:9000")])),
            "storage.s3.endpoint"
        );
        assert_eq!(
            refused_setting(&config(&[("access_key_id", "AKID")])),
            "storage.s3.secret_access_key"
        );
        assert_eq!(
            refused_setting(&config(&[("secret_access_key", "s")])),
            "storage.s3.access_key_id"
        );
        assert_eq!(
            refused_setting(&config(&[("prefix", "a/../b")])),
            "storage.s3.prefix"
        );
        // A placement's settings are named in its own section, without the main store's
        // environment variables.
        let placement = Section("storage.placements.vault.s3".into());
        match build(&config(&[("access_key_id", "AKID")]), &placement) {
            Err(BlobError::Config { setting, message }) => {
                assert_eq!(setting, "storage.placements.vault.s3.secret_access_key");
                assert!(!message.contains("MEDIAHOST_S3"), "{message}");
            }
            _ => panic!("half the credentials accepted"),
        }
        let (_, probe) = build(&config(&[("prefix", "/tenants/a/")]), &Section::main()).unwrap();
        assert_eq!(probe.endpoint, "AWS S3 (us-east-1)");
    }

    fn answered(body: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::other(format!(
                "Server returned non-2xx status code: 403 Forbidden: \n<Error>{body}</Error>"
            ))),
        }
    }

    fn diagnosed(error: object_store::Error) -> (String, String) {
        let (_, probe) = build(
            &config(&[
                ("endpoint", "https://s3.example.test"),
                ("access_key_id", "AKID"),
                ("secret_access_key", "secret"),
            ]),
            &Section::main(),
        )
        .unwrap();
        match probe.diagnose(error) {
            BlobError::Unusable {
                setting,
                problem,
                cause,
            } => (setting, format!("{problem}: {cause}")),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn failures_name_the_setting_to_check() {
        let credentials = "storage.s3.access_key_id and storage.s3.secret_access_key";
        for code in [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ] {
            let (setting, message) = diagnosed(answered(&format!("<Code>{code}</Code>")));
            assert_eq!(setting, credentials, "{code}");
            assert!(message.contains(code), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
        let (setting, message) = diagnosed(answered("<Code>NoSuchBucket</Code>"));
        assert_eq!(setting, "storage.s3.bucket");
        assert!(message.contains("\"media\""), "{message}");
        assert!(message.contains("https://s3.example.test"), "{message}");
        let (setting, _) = diagnosed(answered("<Code>AuthorizationHeaderMalformed</Code>"));
        assert_eq!(setting, "storage.s3.region");
        let (setting, _) = diagnosed(object_store::Error::PermissionDenied {
            path: "readyz-probe".into(),
            source: Box::new(std::io::Error::other("403 Forbidden")),
        });
        assert_eq!(setting, credentials);
        let (setting, _) = diagnosed(answered("<Code>SlowDown</Code>"));
        assert_eq!(setting, "storage.s3");
    }

    #[test]
    fn error_codes_are_read_from_s3_error_documents() {
        let message = "Generic S3 error: Server returned non-2xx status code: 404 Not Found: \
                       <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(s3_error_code(message), Some("NoSuchBucket"));
        assert_eq!(s3_error_code("connection refused"), None);
        assert_eq!(s3_error_code("<Code></Code>"), None);
    }
}
