//! Hard inputs through the real binary (issue #6 point 7): each one ends `ready` with sensible
//! renditions, or `failed` with a reason a person understands, settled once (never retried,
//! never a crash loop). Every input is made at test time with the ffmpeg CLI, small and short.

mod common;

use common::{Client, Options, Server, rendition_sizes};
use mediahost_testkit::ffprobe;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `ffmpeg -y <args> <out>` quietly, asserting success; returns `out`.
fn ffmpeg<S: AsRef<OsStr> + std::fmt::Debug>(out: PathBuf, args: &[S]) -> PathBuf {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&out)
        .status()
        .expect("run ffmpeg (install Debian's ffmpeg package)");
    assert!(status.success(), "ffmpeg {args:?} failed");
    out
}

/// `out`: lavfi test video of `size` at 25 fps for `seconds` plus a sine track, as H.264
/// (libx264 ultrafast) and AAC, with `extra` output options.
fn av_clip(out: PathBuf, size: &str, seconds: f64, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "-f".to_owned(),
        "lavfi".into(),
        "-i".into(),
        format!("testsrc2=size={size}:rate=25:duration={seconds}"),
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
    ];
    args.extend(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"].map(String::from));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    ffmpeg(out, &args)
}

/// A server, a tenant's client, and a scratch folder for inputs.
struct Setup {
    server: Server,
    client: Client,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let server = Server::start(Options::default());
        let client = Client::new(&server, &server.create_tenant("acme"));
        Self {
            server,
            client,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Uploads `file` and waits until the video settles.
    async fn settle(&self, file: &Path) -> serde_json::Value {
        let name = file.file_name().unwrap().to_str().unwrap();
        let id = self.client.upload(name, name, file).await;
        self.client.wait_settled(&id).await
    }

    /// Asserts the video failed with a reason containing `reason`, settled by one attempt
    /// (a permanent failure is never retried).
    async fn assert_failed_once(&self, video: &serde_json::Value, reason: &str) {
        assert_eq!(video["status"], "failed", "{video}");
        let error = video["error"].as_str().unwrap();
        assert!(error.contains(reason), "{error:?} does not say {reason:?}");
        assert!(
            video["renditions"].as_array().unwrap().is_empty(),
            "{video}"
        );
        assert_eq!(video["playable"], false);
        // The job is counted once settled, just after the video is marked.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let metrics = loop {
            let metrics = self.server.metrics().await;
            if metrics.contains("mediahost_jobs_total{outcome=\"failed\"} 1\n")
                || std::time::Instant::now() > deadline
            {
                break metrics;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert!(
            metrics.contains("mediahost_jobs_total{outcome=\"failed\"} 1\n"),
            "{metrics}"
        );
        assert!(!metrics.contains("outcome=\"retried\""), "{metrics}");
    }

    /// Asserts the video is ready, and that a player reads `seconds` (±0.5) of it over HTTP.
    async fn assert_plays(&self, video: &serde_json::Value, seconds: f64) {
        assert_eq!(video["status"], "ready", "{video}");
        let master = video["playback"]["hls"].as_str().unwrap().to_owned();
        let headers = format!("Authorization: Bearer {}\r\n", self.client.key);
        let played = tokio::task::spawn_blocking(move || {
            mediahost_testkit::ffprobe_duration(&master, Some(&headers))
        })
        .await
        .unwrap();
        assert!(
            (played - seconds).abs() <= 0.5,
            "plays {played} s, expected {seconds}"
        );
    }
}

/// `(width, height)` of each rendition of `video`.
fn sizes(video: &serde_json::Value) -> Vec<(u64, u64)> {
    rendition_sizes(video)
        .into_iter()
        .map(|(_, w, h)| (w, h))
        .collect()
}

/// The `CODECS` of the video's first rendition.
fn codecs(video: &serde_json::Value) -> String {
    video["renditions"][0]["codecs"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_file_fails_with_a_reason() {
    let t = Setup::new();
    // A plain MP4 keeps its index (moov) at the end: cut in half, it has none.
    let full = av_clip(t.path("full.mp4"), "320x240", 4.0, &[]);
    let bytes = std::fs::read(&full).unwrap();
    let cut = t.path("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let video = t.settle(&cut).await;
    t.assert_failed_once(&video, "damaged or incomplete").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_bytes_fail_and_a_damaged_stream_plays_what_decodes() {
    let t = Setup::new();
    let garbage = t.path("garbage.mp4");
    // Not random: a deterministic byte soup that no demuxer recognises.
    let soup: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, soup).unwrap();
    let video = t.settle(&garbage).await;
    t.assert_failed_once(&video, "not a recognised audio/video format")
        .await;

    // MPEG-TS with a stretch of its middle overwritten: the demuxer resyncs, the decoder
    // conceals, and the video plays end to end.
    let t = Setup::new();
    let ts = av_clip(t.path("clip.ts"), "320x240", 6.0, &[]);
    let mut bytes = std::fs::read(&ts).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 20_000] {
        *b = 0x5a;
    }
    let damaged = t.path("damaged.ts");
    std::fs::write(&damaged, bytes).unwrap();
    let video = t.settle(&damaged).await;
    t.assert_plays(&video, 6.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zero_byte_upload_is_refused_with_a_reason() {
    let t = Setup::new();
    let video = t.client.create_video("empty", Some("empty.mp4")).await;
    let id = video["id"].as_str().unwrap();
    let res = t
        .client
        .put_source(id, reqwest::Body::from(Vec::new()))
        .await;
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("body is empty"), "{message}");
    // Nothing was queued; the client can upload again.
    assert_eq!(t.client.video(id).await["status"], "awaiting_upload");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audio_only_file_plays_as_one_audio_rendition() {
    let t = Setup::new();
    let tone = ffmpeg(
        t.path("tone.m4a"),
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=3",
            "-c:a",
            "aac",
        ],
    );
    let video = t.settle(&tone).await;
    t.assert_plays(&video, 3.0).await;
    assert_eq!(
        rendition_sizes(&video),
        [("audio".to_owned(), 0, 0)],
        "{video}"
    );
    assert_eq!(codecs(&video), "mp4a.40.2");
    assert!(video["playback"]["poster"].is_null(), "{video}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_only_file_plays_without_audio() {
    let t = Setup::new();
    let silent = ffmpeg(
        t.path("silent.mp4"),
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    let video = t.settle(&silent).await;
    t.assert_plays(&video, 3.0).await;
    assert_eq!(sizes(&video), [(320, 240)], "{video}");
    assert!(!codecs(&video).contains("mp4a"), "{video}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_odd_sized_source_gets_even_renditions() {
    let t = Setup::new();
    let odd = av_clip(t.path("odd.mp4"), "1279x719", 2.0, &["-pix_fmt", "yuv444p"]);
    let video = t.settle(&odd).await;
    t.assert_plays(&video, 2.0).await;
    assert_eq!(
        sizes(&video),
        [(1278, 718), (854, 480), (640, 360), (0, 0)],
        "{video}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_source_comes_out_upright() {
    let t = Setup::new();
    // Stored landscape, displayed portrait: the container's display matrix says 90° (set
    // when remuxing; ffmpeg 5.1 drops `rotate` on an encoding run).
    let stored = av_clip(t.path("stored.mp4"), "640x360", 2.0, &[]);
    let rotated = ffmpeg(
        t.path("rotated.mp4"),
        &[
            OsStr::new("-i"),
            stored.as_os_str(),
            OsStr::new("-c"),
            OsStr::new("copy"),
            OsStr::new("-metadata:s:v:0"),
            OsStr::new("rotate=90"),
        ],
    );
    let video = t.settle(&rotated).await;
    t.assert_plays(&video, 2.0).await;
    assert_eq!(
        sizes(&video),
        [(360, 640), (270, 480), (202, 360), (0, 0)],
        "{video}"
    );
    // The poster is upright too.
    let poster = video["playback"]["poster"].as_str().unwrap().to_owned();
    let headers = format!("Authorization: Bearer {}\r\n", t.client.key);
    let size = tokio::task::spawn_blocking(move || {
        ffprobe(
            &poster,
            Some(&headers),
            &["-show_entries", "stream=width,height", "-of", "csv=p=0"],
        )
    })
    .await
    .unwrap();
    assert_eq!(size.trim(), "360,640");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_variable_frame_rate_source_plays_in_full() {
    let t = Setup::new();
    // 30 fps for 3 s, then every third frame kept: 10 fps, timestamps as they were.
    let vfr = ffmpeg(
        t.path("vfr.mp4"),
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30:duration=6",
            "-vf",
            "select='lt(t\\,3)+not(mod(n\\,3))'",
            "-vsync",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    let video = t.settle(&vfr).await;
    t.assert_plays(&video, 6.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_bit_source_becomes_eight_bit_h264() {
    let t = Setup::new();
    let deep = av_clip(
        t.path("deep.mp4"),
        "320x240",
        2.0,
        &["-pix_fmt", "yuv420p10le"],
    );
    let video = t.settle(&deep).await;
    t.assert_plays(&video, 2.0).await;
    // 8-bit High profile or lower (High 10 would be avc1.6e…), which every player decodes.
    assert!(!codecs(&video).starts_with("avc1.6e"), "{video}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clip_shorter_than_a_second_plays() {
    let t = Setup::new();
    let short = av_clip(t.path("short.mp4"), "320x240", 0.4, &[]);
    let video = t.settle(&short).await;
    t.assert_plays(&video, 0.4).await;
}
