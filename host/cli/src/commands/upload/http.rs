//! The server as the upload command sees it: authenticated requests, its JSON errors, and
//! file ranges streamed from disk as request bodies.

use futures::TryStreamExt;
use indicatif::ProgressBar;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::io::SeekFrom;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Bytes read from disk per body chunk.
const READ_CHUNK: usize = 256 * 1024;

/// A server and the tenant key every request carries.
pub struct Server {
    /// Base URL without a trailing slash; request paths are appended to it.
    pub base: String,
    key: String,
    client: reqwest::Client,
}

impl Server {
    pub fn new(base: &str, key: &str) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).map_err(|e| anyhow::anyhow!("bad server URL {base}: {e}"))?;
        Ok(Self {
            base,
            key: key.to_owned(),
            client: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()?,
        })
    }

    /// An authenticated request to `path` (absolute on the server, e.g. `/v1/videos`), or to
    /// a full URL.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            path.to_owned()
        };
        self.client.request(method, url).bearer_auth(&self.key)
    }

    /// `location` (as in a `Location` header, possibly relative) as a full URL.
    pub fn resolve(&self, location: &str) -> anyhow::Result<String> {
        Ok(reqwest::Url::parse(&format!("{}/", self.base))?
            .join(location)?
            .to_string())
    }
}

/// An error answer: `{"error":{"code","message"}}` when the server sent one.
#[derive(Debug)]
pub struct ServerError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, HTTP {})",
            self.message,
            self.code,
            self.status.as_u16()
        )
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    /// Reads the error body of `res` (a non-success answer).
    pub async fn read(res: Response) -> Self {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|j| j["error"][name].as_str())
                .map(str::to_owned)
        };
        Self {
            status,
            code: field("code").unwrap_or_else(|| "http".into()),
            message: field("message").unwrap_or_else(|| {
                let text = body.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    text.chars().take(200).collect()
                }
            }),
        }
    }
}

/// `res` when it is a success, else the server's error.
pub async fn check(res: Response) -> Result<Response, ServerError> {
    if res.status().is_success() {
        Ok(res)
    } else {
        Err(ServerError::read(res).await)
    }
}

/// `len` bytes of `path` from `offset` as a streaming body (never in memory at once). `bar`
/// advances by each piece as it is handed to the connection.
pub async fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
    bar: ProgressBar,
) -> anyhow::Result<reqwest::Body> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(SeekFrom::Start(offset)).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK)
        .inspect_ok(move |piece| bar.inc(piece.len() as u64));
    Ok(reqwest::Body::wrap_stream(stream))
}
