//! The resumable path, tus 1.0: `POST /v1/uploads` once (remembered in the state dir), then
//! PATCH chunks streamed from the file. A run that finds its file's state asks the server
//! (`HEAD`) where the upload stands and continues there; failed chunks are retried after
//! re-reading the offset, since the server keeps whatever part of a chunk arrived.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use std::path::Path;
use std::time::Duration;

use super::http::{Server, ServerError, check, file_body};
use super::state::Entry;
use super::{Names, progress_bar};

/// Retries of one chunk before giving up (the state stays, so a rerun resumes). With the
/// backoff below they span about a minute: longer than the lock of a crashed server's PATCH
/// takes to lapse (`tus.lock_seconds`, 30 s by default).
const ATTEMPTS: u32 = 10;
/// Wait before the first retry; doubled on each further one up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A tus request (every one but OPTIONS carries `Tus-Resumable`).
fn tus(server: &Server, method: Method, url: &str) -> reqwest::RequestBuilder {
    server.request(method, url).header("Tus-Resumable", "1.0.0")
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Where an upload stands according to `HEAD`.
enum Head {
    /// Alive at this offset.
    At(u64),
    /// Unknown (404) or expired (410): start over.
    Gone,
}

async fn head(server: &Server, url: &str) -> anyhow::Result<Head> {
    let res = tus(server, Method::HEAD, url).send().await?;
    match res.status() {
        StatusCode::NOT_FOUND | StatusCode::GONE => Ok(Head::Gone),
        s if s.is_success() => Ok(Head::At(
            header(&res, "upload-offset")
                .and_then(|v| v.parse().ok())
                .context("HEAD answered without a valid Upload-Offset")?,
        )),
        _ => Err(ServerError::read(res).await.into()),
    }
}

/// `POST /v1/uploads`; returns (upload URL, video id).
async fn create(server: &Server, len: u64, names: &Names) -> anyhow::Result<(String, String)> {
    let metadata = format!(
        "filename {},title {}",
        STANDARD.encode(&names.filename),
        STANDARD.encode(&names.title)
    );
    let res = tus(server, Method::POST, "/v1/uploads")
        .header("Upload-Length", len)
        .header("Upload-Metadata", metadata)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", server.base))?;
    let res = check(res).await?;
    let location = header(&res, "location").context("tus creation without a Location")?;
    let video = header(&res, "mediahost-video-id").context("tus creation without a video id")?;
    Ok((server.resolve(location)?, video.to_owned()))
}

/// Why a PATCH did not move the upload forward.
enum Failed {
    /// Worth another try after re-reading the offset: the connection broke, the server
    /// failed (5xx) or another request holds the upload's lock.
    Retry(anyhow::Error),
    /// Our offset was stale: re-read it and go on at once.
    Resync,
    /// No point retrying (bad key, refused by a plugin, upload gone, ...).
    Fatal(anyhow::Error),
}

/// One PATCH of `len` bytes at `offset`; the new offset on success.
async fn patch(
    server: &Server,
    url: &str,
    file: &Path,
    offset: u64,
    len: u64,
    bar: &indicatif::ProgressBar,
) -> Result<u64, Failed> {
    let body = file_body(file, offset, len, bar.clone())
        .await
        .map_err(Failed::Fatal)?;
    let res = tus(server, Method::PATCH, url)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", offset)
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(body)
        .send()
        .await
        .map_err(|e| Failed::Retry(e.into()))?;
    if res.status().is_success() {
        return header(&res, "upload-offset")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Failed::Fatal(anyhow::anyhow!("PATCH answered without Upload-Offset")));
    }
    let error = ServerError::read(res).await;
    Err(match (error.status, error.code.as_str()) {
        (StatusCode::CONFLICT, "offset_mismatch") => Failed::Resync,
        (StatusCode::CONFLICT, "upload_locked") => Failed::Retry(error.into()),
        (s, _) if s.is_server_error() => Failed::Retry(error.into()),
        _ => Failed::Fatal(error.into()),
    })
}

/// Uploads `file` over tus, resuming a saved upload of it; returns the video id.
pub async fn upload(
    server: &Server,
    file: &Path,
    names: &Names,
    chunk_size: u64,
) -> anyhow::Result<String> {
    let entry = Entry::for_file(&server.base, file)?;
    let len = entry.size;
    let mut resumed = None;
    if let Some(saved) = entry.load() {
        match head(server, &saved.upload_url).await? {
            Head::At(offset) => resumed = Some((saved.upload_url, saved.video_id, offset)),
            Head::Gone => {
                eprintln!("the earlier upload of this file is gone from the server; starting over");
                entry.remove();
            }
        }
    }
    let (url, video_id, mut offset) = match resumed {
        Some((url, video, offset)) => {
            eprintln!("resuming at {offset} bytes");
            (url, video, offset)
        }
        None => {
            let (url, video) = create(server, len, names).await?;
            entry.save(&url, &video)?;
            (url, video, 0)
        }
    };

    let bar = progress_bar(len);
    bar.set_position(offset);
    let mut failures = 0;
    while offset < len {
        let n = chunk_size.min(len - offset);
        let retry = match patch(server, &url, &entry.file, offset, n, &bar).await {
            Ok(next) => {
                offset = next;
                failures = 0;
                bar.set_position(offset);
                continue;
            }
            Err(Failed::Fatal(e)) => {
                bar.abandon();
                if let Some(se) = e.downcast_ref::<ServerError>()
                    && matches!(se.status, StatusCode::NOT_FOUND | StatusCode::GONE)
                {
                    // The upload is no more; the next run starts a new one.
                    entry.remove();
                }
                return Err(e);
            }
            Err(Failed::Resync) => None,
            Err(Failed::Retry(e)) => Some(e),
        };
        failures += 1;
        if failures > ATTEMPTS {
            bar.abandon();
            let e = retry.unwrap_or_else(|| anyhow::anyhow!("the upload's offset keeps moving"));
            return Err(e.context(format!(
                "giving up after {ATTEMPTS} retries; run the same command again to resume"
            )));
        }
        if let Some(e) = &retry {
            let wait = (FIRST_BACKOFF * 2u32.pow(failures.min(6) - 1)).min(MAX_BACKOFF);
            bar.suspend(|| eprintln!("chunk at {offset} failed ({e:#}); retrying in {wait:?}"));
            tokio::time::sleep(wait).await;
        }
        match head(server, &url).await {
            Ok(Head::At(at)) => {
                offset = at;
                bar.set_position(offset);
            }
            Ok(Head::Gone) => {
                bar.abandon();
                entry.remove();
                anyhow::bail!(
                    "the upload expired or was removed on the server; run again to start over"
                );
            }
            // Still unreachable: the next PATCH (at the old offset) fails the same way.
            Err(_) => {}
        }
    }
    bar.finish_and_clear();
    entry.remove();
    Ok(video_id)
}
