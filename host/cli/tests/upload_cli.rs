//! `mediahost upload`: the real binary as the client of a real server. Single-request and tus
//! uploads followed to `ready`, resuming after the client was killed mid-upload, key errors.

mod common;

use common::tus::sha256_hex;
use common::{BIN, Client, Options, Server};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// `mediahost upload FILE ARGS…` against `server` with `key` (none: `MEDIAHOST_KEY` unset),
/// resume state under `state`.
fn upload_cmd(
    server: &Server,
    key: Option<&str>,
    state: &Path,
    file: &Path,
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("upload")
        .arg(file)
        .args(args)
        .env("MEDIAHOST_SERVER", &server.base)
        .env("MEDIAHOST_STATE_DIR", state)
        .env_remove("MEDIAHOST_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(key) = key {
        cmd.env("MEDIAHOST_KEY", key);
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The id in the `video <id>` line of stdout.
fn video_id(out: &Output) -> String {
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("video "))
        .unwrap_or_else(|| panic!("no `video <id>` line in {stdout:?}"))
        .trim()
        .to_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The `ready <url>` line of stdout, checked to be an HLS master playlist URL.
fn assert_ready(out: &Output) {
    let stdout = text(&out.stdout);
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ready "))
        .unwrap_or_else(|| panic!("no `ready <url>` line in {stdout:?}"));
    assert!(
        url.starts_with("http") && url.ends_with("master.m3u8"),
        "{url}"
    );
}

/// The JSON state files under `dir`.
fn state_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `mediahost upload` with `args` on a fresh 2 s clip and checks the video ends ready with
/// the file's sha256; returns the video and the resume-state dir the CLI used.
async fn upload_until_ready(args: &[&str]) -> (serde_json::Value, tempfile::TempDir) {
    let server = Server::start(Options::default());
    let key = server.create_tenant("acme");
    let client = Client::new(&server, &key);
    let state = tempfile::tempdir().unwrap();
    let clip = common::clip(server.data_path(), "clip.mp4", 2.0);

    let out = upload_cmd(&server, Some(&key), state.path(), &clip, args)
        .output()
        .await
        .unwrap();
    assert_success(&out);
    assert_ready(&out);
    let video = client.video(&video_id(&out)).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["sha256"], sha256_hex(&std::fs::read(&clip).unwrap()));
    (video, state)
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_upload_waits_until_ready() {
    let (video, _) = upload_until_ready(&["--wait"]).await;
    assert_eq!(video["title"], "clip.mp4");
    assert_eq!(video["filename"], "clip.mp4");
}

#[tokio::test(flavor = "multi_thread")]
async fn resumable_upload_in_chunks_waits_until_ready() {
    let args = [
        "--resumable",
        "--chunk-size",
        "65536",
        "--title",
        "chunked",
        "--wait",
    ];
    let (video, state) = upload_until_ready(&args).await;
    assert_eq!(video["title"], "chunked");
    // Finished uploads leave no resume state behind.
    assert!(state_files(state.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_resumable_upload_resumes_where_it_stopped() {
    let server = Server::start(Options::default());
    let key = server.create_tenant("acme");
    let client = Client::new(&server, &key);
    let state = tempfile::tempdir().unwrap();
    // Random bytes (not a video: the transcode fails, which this test does not look at),
    // many small chunks so the first run is still going when it is killed.
    let len = 16 * 1024 * 1024;
    let file = server.data_path().join("noise.bin");
    let mut bytes = vec![0u8; len];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut bytes,
    )
    .unwrap();
    std::fs::write(&file, &bytes).unwrap();
    let args = ["--resumable", "--chunk-size", "65536"];

    let mut first = upload_cmd(&server, Some(&key), state.path(), &file, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The state file appears once the upload is created; kill the client once the server
    // has acknowledged some bytes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let saved: serde_json::Value = loop {
        assert!(Instant::now() < deadline, "no resume state was written");
        if let Some(path) = state_files(state.path()).first()
            && let Ok(saved) = serde_json::from_slice(&std::fs::read(path).unwrap())
        {
            break saved;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let upload_url = saved["upload_url"].as_str().unwrap().to_owned();
    let location = upload_url.strip_prefix(&server.base).unwrap().to_owned();
    let video_id_saved = saved["video_id"].as_str().unwrap().to_owned();
    let before = loop {
        assert!(Instant::now() < deadline, "the upload never progressed");
        let offset = client.tus_offset(&location).await;
        if offset > 0 {
            break offset;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    first.kill().await.unwrap();
    let killed_at = client.tus_offset(&location).await;
    assert!(
        killed_at < len as u64,
        "the first run finished before it was killed"
    );
    assert_eq!(state_files(state.path()).len(), 1);

    let out = upload_cmd(&server, Some(&key), state.path(), &file, &args)
        .output()
        .await
        .unwrap();
    assert_success(&out);
    let stderr = text(&out.stderr);
    let resumed_at: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("resuming at "))
        .and_then(|l| l.strip_suffix(" bytes"))
        .unwrap_or_else(|| panic!("no `resuming at N bytes` in {stderr:?}"))
        .parse()
        .unwrap();
    assert!(
        resumed_at >= before && resumed_at < len as u64,
        "resumed at {resumed_at}, had {before} before the kill"
    );
    assert_eq!(video_id(&out), video_id_saved);
    assert_eq!(client.tus_offset(&location).await, len as u64);
    let video = client.video(&video_id_saved).await;
    assert_eq!(video["sha256"], sha256_hex(&bytes), "{video}");
    assert_eq!(video["size"], len);
    assert!(state_files(state.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_wrong_key_is_a_clear_error() {
    let server = Server::start(Options::default());
    let state = tempfile::tempdir().unwrap();
    let file = server.data_path().join("tiny.mp4");
    std::fs::write(&file, b"not much").unwrap();

    let out = upload_cmd(&server, None, state.path(), &file, &[])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: no API key") && stderr.contains("MEDIAHOST_KEY"),
        "{stderr}"
    );

    for args in [&[][..], &["--resumable"][..]] {
        let out = upload_cmd(&server, Some("wrong"), state.path(), &file, args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains("(unauthorized, HTTP 401)"),
            "{args:?}: {stderr}"
        );
    }
}
