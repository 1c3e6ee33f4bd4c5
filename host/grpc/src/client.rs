//! Endpoints of the other processes of a deployment, from the URLs in `[cluster]`.

use std::time::Duration;
use tonic::transport::Endpoint;

/// A configured gRPC URL that is not one.
#[derive(Debug, thiserror::Error)]
#[error("invalid URL {url:?} in {setting}: {message}")]
pub struct BadUrl {
    /// The URL as configured.
    pub url: String,
    /// The setting it came from (e.g. `cluster.api_urls`), for the operator to fix.
    pub setting: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Why clients of other processes cannot be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A configured URL is not a URL.
    #[error(transparent)]
    Url(#[from] BadUrl),
    /// The cluster token cannot be sent as metadata.
    #[error(transparent)]
    Token(#[from] crate::auth::InvalidToken),
}

/// The endpoint at `url`, configured as `setting`, with `timeout` on connecting and on every
/// call (a process that does not answer must not hold up its caller).
pub fn endpoint(url: &str, setting: &'static str, timeout: Duration) -> Result<Endpoint, BadUrl> {
    Endpoint::from_shared(url.trim().to_owned())
        .map(|e| e.connect_timeout(timeout).timeout(timeout))
        .map_err(|e| BadUrl {
            url: url.to_owned(),
            setting,
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_names_itself_and_its_setting() {
        let err = endpoint("not a url", "cluster.workers", Duration::from_secs(1)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("invalid URL \"not a url\" in cluster.workers: "),
            "{text}"
        );
        assert!(
            endpoint(
                " http://127.0.0.1:1 ",
                "cluster.workers",
                Duration::from_secs(1)
            )
            .is_ok()
        );
    }
}
