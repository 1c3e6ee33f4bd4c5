//! `mediahost upload`: a client of a running server. Uploads a file as a new video, in one
//! streamed `PUT` or resumably over tus, prints the video id and optionally follows processing.
//!
//! | module | concern |
//! |---|---|
//! | `http` | the server's JSON errors, streaming a file range as a request body with progress |
//! | `tus` | the resumable path: create, resume from `HEAD`, PATCH chunks with retries |
//! | `state` | resume state on disk: which upload URL belongs to which file |

mod http;
mod state;
mod tus;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::http::{Server, check};

/// Upload a video file to a running server and print its id.
#[derive(Debug, Args)]
pub struct Upload {
    /// The video file.
    file: PathBuf,
    /// Base URL of the server.
    #[arg(
        long,
        env = "MEDIAHOST_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// The tenant's API key (from `mediahost tenant create`).
    #[arg(long, env = "MEDIAHOST_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The video's title; defaults to the file name.
    #[arg(long)]
    title: Option<String>,
    /// Upload over tus in chunks, resuming an interrupted upload of the same file.
    #[arg(long)]
    resumable: bool,
    /// Bytes per tus PATCH request (with `--resumable`).
    #[arg(long, default_value_t = 8 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
    /// Follow processing until the video is ready (print its playback URL) or failed.
    #[arg(long)]
    wait: bool,
}

/// What an upload names the video: its title and file name.
struct Names {
    title: String,
    filename: String,
}

impl Upload {
    pub async fn run(self) -> anyhow::Result<()> {
        let key = self
            .key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .context(
                "no API key: pass --key KEY or set MEDIAHOST_KEY \
                 (`mediahost tenant create` prints one)",
            )?;
        let server = Server::new(&self.server, key)?;
        let meta = std::fs::metadata(&self.file)
            .with_context(|| format!("cannot read {}", self.file.display()))?;
        anyhow::ensure!(meta.is_file(), "{} is not a file", self.file.display());
        let filename = self
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".into());
        let names = Names {
            title: self.title.clone().unwrap_or_else(|| filename.clone()),
            filename,
        };
        let video_id = if self.resumable {
            tus::upload(&server, &self.file, &names, self.chunk_size).await?
        } else {
            put(&server, &self.file, meta.len(), &names).await?
        };
        println!("video {video_id}");
        if self.wait {
            wait(&server, &video_id).await?;
        }
        Ok(())
    }
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// The single-request path: `POST /v1/videos`, then the file as the body of
/// `PUT /v1/videos/{id}/source`. Returns the video id.
async fn put(server: &Server, file: &Path, len: u64, names: &Names) -> anyhow::Result<String> {
    let res = server
        .request(reqwest::Method::POST, "/v1/videos")
        .json(&serde_json::json!({"title": names.title, "filename": names.filename}))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", server.base))?;
    let video: serde_json::Value = check(res).await?.json().await?;
    let id = video["id"]
        .as_str()
        .context("the server's answer has no video id")?
        .to_owned();
    let bar = progress_bar(len);
    let body = http::file_body(file, 0, len, bar.clone()).await?;
    let res = server
        .request(reqwest::Method::PUT, &format!("/v1/videos/{id}/source"))
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(body)
        .send()
        .await
        .context("upload interrupted")?;
    let res = check(res).await;
    bar.finish_and_clear();
    res?;
    Ok(id)
}

/// Polls the video until it is `ready` (prints `ready <HLS URL>`) or `failed` (an error).
async fn wait(server: &Server, id: &str) -> anyhow::Result<()> {
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(100));
    loop {
        let res = server
            .request(reqwest::Method::GET, &format!("/v1/videos/{id}"))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", server.base))?;
        let video: serde_json::Value = check(res).await?.json().await?;
        let status = video["status"].as_str().unwrap_or("unknown");
        match status {
            "ready" => {
                spinner.finish_and_clear();
                let hls = video["playback"]["hls"]
                    .as_str()
                    .context("a ready video without playback.hls")?;
                println!("ready {hls}");
                return Ok(());
            }
            "failed" => {
                spinner.finish_and_clear();
                let reason = video["error"].as_str().unwrap_or("no reason given");
                anyhow::bail!("video {id} failed: {reason}");
            }
            _ => spinner.set_message(format!("video {id}: {status}")),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
