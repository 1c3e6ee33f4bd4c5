//! Transcoding, side by side in one run (issue 6): the same 1080p30 source through mediahost's
//! pipeline and through one `ffmpeg` CLI command making the same ladder with the same x264
//! settings.
//!
//! One run:
//! 1. writes the source with the ffmpeg CLI: lavfi `testsrc2` 1920x1080 at 30 fps and a `sine`
//!    tone, `TRANSCODE_BENCH_SECONDS` long (default 60), H.264 High (x264 `veryfast`,
//!    16 Mbit/s average and peak over a 2 s buffer, a keyframe every second) with AAC stereo
//!    48 kHz 192 kbit/s, in an mp4 with its index first: a phone camera's bitrate and GOP, so
//!    decoding it costs what decoding a real upload costs;
//! 2. for `TRANSCODE_BENCH_ROUNDS` rounds (default 2), both cases, in alternating order:
//!    - **mediahost**: `mediahost serve` (this build's release binary, every role, embedded
//!      defaults: SQLite, the embedded queue, local object storage under a fresh temp data dir;
//!      `RUST_LOG` unset) with a tenant; the source is uploaded the way `mediahost upload`
//!      sends it (one streaming `PUT /v1/videos/{id}/source`). The clock starts at the `PUT`'s
//!      `202` (the source stored, its job queued) and `GET /v1/videos/{id}` is polled every
//!      `TRANSCODE_BENCH_POLL_MS` (default 25): **first playable** is the first answer with
//!      `playable: true` (the master playlist and a first segment of every rendition stored;
//!      the bench then fetches those to be sure), **ready** the first with `status: ready`.
//!      The worker's own figures come from `/metrics`: `mediahost_time_to_first_segment_seconds`
//!      (from the source stored to playable), `mediahost_job_duration_seconds` (the job, from
//!      lease to settled) and `mediahost_transcode_realtime_factor`. Memory: the server's peak
//!      RSS (`VmHWM`) when the upload is answered, then reset (`clear_refs` 5) so the figure at
//!      the end is the transcode's own peak; CPU: the server's user + system time from `202` to
//!      ready;
//!    - **ffmpeg CLI**: one command (printed at the start of the run) decoding the source once,
//!      `split` to every video rendition mediahost made (`scale=W:H,setsar=1,format=yuv420p`, the
//!      chain the worker builds), libx264 with the worker's settings (`TranscodeConfig`'s
//!      defaults: preset, CRF, keyframes only where forced, on the worker's segment boundaries (a short
//!      first segment, then every `segment_seconds`) with `scenecut=0`, VBV maxrate and a
//!      2× bufsize per rung as `workers/transcode/src/ladder.rs` caps them), AAC at the same
//!      bitrate after the same resampling chain, muxed by the `hls` muxer as fMP4 segments of
//!      the same length with a master playlist (`var_stream_map`), plus an audio-only variant
//!      when mediahost's ladder has one. Threads are ffmpeg's defaults (`auto`) for the decoder
//!      and the encoders, as its operators run it. Wall time from spawn to exit; peak RSS and
//!      CPU time from `/usr/bin/time` (the child's `wait4` rusage);
//! 3. checks the comparison is fair: the x264 option string each encoder writes into its first
//!    frame (a SEI message) must be the same, rendition by rendition, on both sides, apart from
//!    thread counts (which are printed);
//! 4. on the first round's outputs (`TRANSCODE_BENCH_PSNR=0` skips it): each rendition of
//!    mediahost (fetched over HTTP, init segment + segments concatenated) and of the CLI against
//!    the source scaled to its size, and against each other, with the `psnr` filter
//!    (timestamps reset to start at 0 on every input), plus frame counts and bitrates;
//! 5. prints each round, the medians and the ratios the targets are about: wall time
//!    mediahost / CLI ≤ 1.0, first playable ≤ 3 s, PSNR within 0.5 dB of the CLI's.
//!
//! Needs `ffmpeg`/`ffprobe` (`scripts/setup`) and GNU `time` (`scripts/bench-setup`).
//! `TRANSCODE_BENCH_DIR` (default the temp dir) holds every file of the run.
//!
//! Run: `cargo bench -p mediahost --bench transcode` (see BENCHMARKS.md, "Transcoding").

mod support;

use anyhow::{Context, bail, ensure};
use mediahost_core::config::TranscodeConfig;
use mediahost_transcode::{Schedule, cap_kbps};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{
    Payload, Server, clock_ticks_per_s, env_number, ffmpeg, loadavg, make_source, median,
    put_upload, run, version,
};

/// The source's picture, as issue 6 states it.
const SOURCE_SIZE: &str = "1920x1080";
const SOURCE_FPS: u32 = 30;

/// What one run measures, from the environment.
struct Settings {
    /// Length of the source.
    seconds: u64,
    /// Rounds of both cases; medians are reported.
    rounds: usize,
    /// Whether to compare the first round's renditions with PSNR.
    psnr: bool,
    /// Interval between two `GET /v1/videos/{id}` while mediahost transcodes.
    poll: Duration,
    /// Where the source, the servers' data and the CLI's outputs go.
    dir: PathBuf,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            seconds: env_number("TRANSCODE_BENCH_SECONDS", 60)?.max(1),
            rounds: env_number("TRANSCODE_BENCH_ROUNDS", 2)?.max(1) as usize,
            psnr: env_number("TRANSCODE_BENCH_PSNR", 1)? != 0,
            poll: Duration::from_millis(env_number("TRANSCODE_BENCH_POLL_MS", 25)?.max(1)),
            dir: std::env::var_os("TRANSCODE_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        })
    }
}

/// A rendition as `GET /v1/videos/{id}` lists it.
#[derive(Clone, Debug, PartialEq)]
struct Rendition {
    name: String,
    /// 0 for the audio-only rendition.
    width: u32,
    height: u32,
}

impl Rendition {
    fn is_video(&self) -> bool {
        self.width > 0
    }
}

/// The CLI's arguments (after `ffmpeg`) for the ladder `renditions` from `source` into `out`.
fn cli_args(
    source: &Path,
    out: &Path,
    renditions: &[Rendition],
    cfg: &TranscodeConfig,
) -> Vec<String> {
    let video: Vec<&Rendition> = renditions.iter().filter(|r| r.is_video()).collect();
    let audio_only = renditions.iter().any(|r| !r.is_video());
    // One AAC encoder per output stream: the hls muxer puts a stream in one variant only.
    let audio_outputs = video.len() + usize::from(audio_only);

    let mut graph = format!("[0:v]split={}", video.len());
    for i in 0..video.len() {
        write!(graph, "[s{i}]").expect("a String");
    }
    for (i, r) in video.iter().enumerate() {
        write!(
            graph,
            ";[s{i}]scale={}:{},setsar=1,format=yuv420p[v{i}]",
            r.width, r.height
        )
        .expect("a String");
    }
    write!(
        graph,
        ";[0:a]aresample=48000:async=1:first_pts=0,\
         aformat=sample_fmts=fltp:channel_layouts=stereo,asplit={audio_outputs}"
    )
    .expect("a String");
    for i in 0..audio_outputs {
        write!(graph, "[a{i}]").expect("a String");
    }

    let mut args: Vec<String> = ["-loglevel", "error", "-i"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    args.push(source.display().to_string());
    args.extend(["-filter_complex".into(), graph]);
    let mut stream_map = Vec::new();
    for (i, r) in video.iter().enumerate() {
        args.extend(["-map".into(), format!("[v{i}]")]);
        args.extend(["-map".into(), format!("[a{i}]")]);
        stream_map.push(format!("v:{i},a:{i},name:{}", r.name));
    }
    if let Some(r) = renditions.iter().find(|r| !r.is_video()) {
        let i = video.len();
        args.extend(["-map".into(), format!("[a{i}]")]);
        stream_map.push(format!("a:{i},name:{}", r.name));
    }
    args.extend(
        ["-c:v", "libx264", "-preset", &cfg.x264_preset, "-crf"]
            .into_iter()
            .map(str::to_owned),
    );
    args.push(cfg.crf.to_string());
    // The worker's segment boundaries: a keyframe on the first frame at or after each.
    let schedule = Schedule::new(cfg);
    args.extend([
        "-force_key_frames".into(),
        format!(
            "expr:gte(t,{}+{}*n_forced)",
            schedule.first_s(),
            schedule.rest_s()
        ),
    ]);
    for (i, r) in video.iter().enumerate() {
        let kbps = cap_kbps(r.height);
        args.push(format!("-x264-params:v:{i}"));
        args.push(format!(
            "keyint=infinite:scenecut=0:vbv-maxrate={kbps}:vbv-bufsize={}",
            2 * kbps
        ));
    }
    args.extend(["-c:a".into(), "aac".into(), "-b:a".into()]);
    args.push(cfg.audio_bitrate.to_string());
    args.extend(
        [
            "-f",
            "hls",
            "-hls_time",
            &cfg.segment_seconds.to_string(),
            "-hls_playlist_type",
            "vod",
            "-hls_segment_type",
            "fmp4",
            "-hls_fmp4_init_filename",
            "init.mp4",
            "-hls_segment_filename",
        ]
        .into_iter()
        .map(str::to_owned),
    );
    args.push(out.join("%v/seg_%05d.m4s").display().to_string());
    args.extend(["-master_pl_name".into(), "master.m3u8".into()]);
    args.extend(["-var_stream_map".into(), stream_map.join(" ")]);
    args.push(out.join("%v/index.m3u8").display().to_string());
    args
}

/// `args` as one line a shell would run.
fn shell_line(program: &str, args: &[String]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        let plain = arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:./=%,+".contains(c));
        if plain {
            write!(line, " {arg}").expect("a String");
        } else {
            write!(line, " '{}'", arg.replace('\'', r"'\''")).expect("a String");
        }
    }
    line
}

/// What one run of the CLI measured.
struct CliRun {
    wall: Duration,
    peak_rss_mib: f64,
    cpu_s: f64,
}

/// Runs the ladder command into a fresh `out`, under GNU time for its rusage.
fn run_cli(args: &[String], out: &Path) -> anyhow::Result<CliRun> {
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::create_dir_all(out)?;
    let rusage = out.with_extension("time");
    let started = Instant::now();
    let result = Command::new("/usr/bin/time")
        .args(["-f", "%M %U %S", "-o"])
        .arg(&rusage)
        .arg("ffmpeg")
        .args(["-hide_banner", "-nostats", "-y"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("start /usr/bin/time (apt install time; scripts/bench-setup)")?;
    let wall = started.elapsed();
    ensure!(
        result.status.success(),
        "the ffmpeg CLI failed ({}):\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    let usage = std::fs::read_to_string(&rusage)?;
    let fields: Vec<f64> = usage
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("GNU time wrote {usage:?}"))?;
    ensure!(fields.len() == 3, "GNU time wrote {usage:?}");
    Ok(CliRun {
        wall,
        peak_rss_mib: fields[0] / 1024.0,
        cpu_s: fields[1] + fields[2],
    })
}

/// What one run of mediahost measured.
struct OursRun {
    /// From `POST /v1/videos` to the `PUT`'s `202`.
    upload: Duration,
    /// From the `202` to `playable: true`.
    first_playable: Duration,
    /// From the `202` to `status: ready`.
    ready: Duration,
    /// The worker's `mediahost_time_to_first_segment_seconds`.
    ttfs_metric: Option<f64>,
    /// The worker's `mediahost_job_duration_seconds`.
    job_metric: Option<f64>,
    /// The worker's `mediahost_transcode_realtime_factor`.
    realtime_metric: Option<f64>,
    /// Peak RSS of the server up to the `202` (start-up and upload).
    upload_rss_mib: f64,
    /// Peak RSS of the server from the `202` to ready (the whole life when the peak could not
    /// be reset).
    peak_rss_mib: f64,
    peak_reset: bool,
    /// Server CPU time from the `202` to ready.
    cpu_s: f64,
    renditions: Vec<Rendition>,
}

/// A mediahost server for one round, and how to reach it.
struct Ours {
    server: Server,
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Ours {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new()
            .prefix("mediahost-")
            .tempdir_in(dir)?
            .keep();
        let (server, key) = support::start_serve(data, "", None)?;
        let base = format!("http://127.0.0.1:{}", server.port);
        Ok(Self {
            server,
            http: reqwest::Client::new(),
            base,
            key,
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await?;
        ensure!(res.status().is_success(), "GET {path}: {}", res.status());
        Ok(res)
    }

    async fn video(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.get(&format!("/v1/videos/{id}")).await?.json().await?)
    }

    /// The files of rendition `name` in playlist order: the init segment, then the segments.
    async fn rendition_files(&self, id: &str, name: &str) -> anyhow::Result<Vec<String>> {
        let playlist = self
            .get(&format!("/v1/videos/{id}/hls/{name}/index.m3u8"))
            .await?
            .text()
            .await?;
        playlist_files(&playlist)
            .with_context(|| format!("the media playlist of {name}:\n{playlist}"))
    }

    /// Fetches the master playlist and the first segment of every rendition, as a player
    /// starting now would.
    async fn check_playable(&self, id: &str, renditions: &[Rendition]) -> anyhow::Result<()> {
        self.get(&format!("/v1/videos/{id}/hls/master.m3u8"))
            .await?;
        for r in renditions {
            let files = self.rendition_files(id, &r.name).await?;
            ensure!(files.len() >= 2, "{} is listed without a segment", r.name);
            for file in &files[..2] {
                self.get(&format!("/v1/videos/{id}/hls/{}/{file}", r.name))
                    .await?;
            }
        }
        Ok(())
    }

    /// Writes rendition `name` as one fMP4 file (init segment + segments) to `path`.
    async fn download(&self, id: &str, name: &str, path: &Path) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        for file in self.rendition_files(id, name).await? {
            let res = self
                .get(&format!("/v1/videos/{id}/hls/{name}/{file}"))
                .await?;
            bytes.extend_from_slice(&res.bytes().await?);
        }
        std::fs::write(path, bytes)?;
        Ok(())
    }

    /// The `_sum` of the metric `name` (one job per server: the value itself).
    async fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        let text = self.get("/metrics").await?.text().await?;
        let sum = format!("{name}_sum");
        Ok(text
            .lines()
            .filter(|l| {
                l.strip_prefix(&sum)
                    .is_some_and(|r| r.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(|a, b| a + b))
    }

    /// Uploads `source`, follows the transcode to ready and measures it; with `keep`, writes
    /// each rendition there as `<name>.mp4` afterwards.
    async fn run(
        &self,
        settings: &Settings,
        source: &Path,
        keep: Option<&Path>,
    ) -> anyhow::Result<OursRun> {
        let (id, upload) =
            put_upload(&self.http, &self.base, &self.key, Payload::File(source), 1).await?;
        let uploaded = Instant::now();
        let pid = self.server.child.id();
        let upload_rss_mib = self.server.peak_rss_mib()?;
        let peak_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let cpu_before = self.server.cpu_ticks();

        let deadline = uploaded + Duration::from_secs(120 + 30 * settings.seconds);
        let mut first_playable = None;
        let (ready, video) = loop {
            let video = self.video(&id).await?;
            if first_playable.is_none() && video["playable"] == true {
                first_playable = Some(uploaded.elapsed());
                self.check_playable(&id, &renditions(&video)?).await?;
            }
            match video["status"].as_str() {
                Some("ready") => break (uploaded.elapsed(), video),
                Some("failed") => bail!("the transcode failed: {}", video["error"]),
                _ => {}
            }
            ensure!(Instant::now() < deadline, "not ready in time: {video}");
            tokio::time::sleep(settings.poll).await;
        };
        let cpu_s = (self.server.cpu_ticks() - cpu_before) as f64 / clock_ticks_per_s();
        let renditions = renditions(&video)?;
        if let Some(dir) = keep {
            for r in &renditions {
                self.download(&id, &r.name, &dir.join(format!("{}.mp4", r.name)))
                    .await?;
            }
        }
        // The job's duration is recorded just after the video turns ready.
        let mut job_metric = None;
        for _ in 0..40 {
            job_metric = self.metric("mediahost_job_duration_seconds").await?;
            if job_metric.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(OursRun {
            upload,
            first_playable: first_playable.unwrap_or(ready),
            ready,
            ttfs_metric: self
                .metric("mediahost_time_to_first_segment_seconds")
                .await?,
            job_metric,
            realtime_metric: self.metric("mediahost_transcode_realtime_factor").await?,
            upload_rss_mib,
            peak_rss_mib: self.server.peak_rss_mib()?,
            peak_reset,
            cpu_s,
            renditions,
        })
    }
}

fn renditions(video: &serde_json::Value) -> anyhow::Result<Vec<Rendition>> {
    video["renditions"]
        .as_array()
        .context("no renditions")?
        .iter()
        .map(|r| {
            let number = |k: &str| r[k].as_u64().map(|n| n as u32).context("size");
            Ok(Rendition {
                name: r["name"].as_str().context("name")?.to_owned(),
                width: number("width")?,
                height: number("height")?,
            })
        })
        .collect()
}

/// The init segment and the segments a media playlist names, in order.
fn playlist_files(playlist: &str) -> anyhow::Result<Vec<String>> {
    let init = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|rest| rest.split('"').next())
        .context("no EXT-X-MAP")?;
    let mut files = vec![init.to_owned()];
    files.extend(
        playlist
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned),
    );
    Ok(files)
}

/// The CLI's rendition `name` under `out` as one fMP4 file at `path`.
fn concat_cli(out: &Path, name: &str, path: &Path) -> anyhow::Result<()> {
    let dir = out.join(name);
    let playlist = std::fs::read_to_string(dir.join("index.m3u8"))?;
    let mut bytes = Vec::new();
    for file in playlist_files(&playlist)? {
        bytes.extend(std::fs::read(dir.join(file))?);
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

/// The x264 settings an encoder wrote into its first frame (the `options:` of its SEI
/// message), as key → value.
fn x264_options(mp4: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(mp4)?;
    let marker = b"x264 - core";
    let start = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .with_context(|| format!("no x264 SEI in {}", mp4.display()))?;
    let end = bytes[start..]
        .iter()
        .position(|&b| b == 0)
        .map_or(bytes.len(), |n| start + n);
    let text = String::from_utf8_lossy(&bytes[start..end]);
    let options = text.split("options: ").nth(1).context("no x264 options")?;
    Ok(options
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Options that may differ without changing the encoding's quality: how x264 spreads its work.
const THREAD_OPTIONS: [&str; 3] = ["threads", "lookahead_threads", "sliced_threads"];

/// The options whose values differ between `ours` and `cli`, as `key ours/cli`.
fn option_differences(
    ours: &BTreeMap<String, String>,
    cli: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let keys: std::collections::BTreeSet<&String> = ours.keys().chain(cli.keys()).collect();
    keys.into_iter()
        .filter(|k| ours.get(*k) != cli.get(*k))
        .map(|k| {
            let side = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or("-".into());
            (k.clone(), format!("{}/{}", side(ours), side(cli)))
        })
        .collect()
}

/// Packets of the first video stream of `mp4` (one per frame).
fn video_frames(mp4: &Path) -> anyhow::Result<u64> {
    let out = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
            .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
            .arg(mp4),
        "ffprobe",
    )?;
    Ok(out.trim().parse()?)
}

/// PSNR (dB, all planes, as ffmpeg's `average`) of one comparison.
struct Psnr {
    ours_source: f64,
    cli_source: f64,
    ours_cli: f64,
}

/// Compares `ours` and `cli` (renditions of `width`x`height`) with the source scaled to that
/// size, and with each other, in one ffmpeg run.
fn psnr(source: &Path, ours: &Path, cli: &Path, width: u32, height: u32) -> anyhow::Result<Psnr> {
    let graph = format!(
        "[0:v]scale={width}:{height},setsar=1,format=yuv420p,setpts=PTS-STARTPTS,split[r0][r1];\
         [1:v]setpts=PTS-STARTPTS,split[o0][o1];[2:v]setpts=PTS-STARTPTS[c0];\
         [o0][r0]psnr@ours_source[x0];[c0][r1]psnr@cli_source[x1];[o1][x1]psnr@ours_cli[x2]"
    );
    let log = run(
        ffmpeg()
            .args(["-loglevel", "info", "-i"])
            .arg(source)
            .arg("-i")
            .arg(ours)
            .arg("-i")
            .arg(cli)
            .args(["-filter_complex", &graph])
            .args([
                "-map", "[x0]", "-f", "null", "-", "-map", "[x2]", "-f", "null", "-",
            ]),
        "psnr",
    )?;
    let average = |name: &str| -> anyhow::Result<f64> {
        let prefix = format!("[psnr@{name} @");
        let line = log
            .lines()
            .find(|l| l.starts_with(&prefix) && l.contains("average:"))
            .with_context(|| format!("no PSNR of {name} in:\n{log}"))?;
        let value = line
            .split("average:")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .context("average")?;
        Ok(value.parse()?)
    };
    Ok(Psnr {
        ours_source: average("ours_source")?,
        cli_source: average("cli_source")?,
        ours_cli: average("ours_cli")?,
    })
}

/// Average bitrate of a file of `seconds` of media, in kbit/s.
fn kbps(path: &Path, seconds: u64) -> anyhow::Result<f64> {
    Ok(std::fs::metadata(path)?.len() as f64 * 8.0 / 1000.0 / seconds as f64)
}

/// Compares the first round's outputs (under `cmp`) rendition by rendition: x264 settings,
/// frames, bitrate and PSNR.
fn compare(
    settings: &Settings,
    source: &Path,
    cli_out: &Path,
    cmp: &Path,
    renditions: &[Rendition],
) -> anyhow::Result<()> {
    let source_frames = video_frames(source)?;
    println!("\nrenditions (first round), source {source_frames} frames:");
    println!(
        "| rendition | frames ours / CLI | kbit/s ours / CLI (video + audio) | x264 options that differ (ours/CLI) |"
    );
    println!("|---|---:|---:|---|");
    let mut files = Vec::new();
    for r in renditions.iter().filter(|r| r.is_video()) {
        let ours = cmp.join(format!("{}.mp4", r.name));
        let cli = cmp.join(format!("cli-{}.mp4", r.name));
        concat_cli(cli_out, &r.name, &cli)?;
        let differences = option_differences(&x264_options(&ours)?, &x264_options(&cli)?);
        let unfair: Vec<_> = differences
            .iter()
            .filter(|(k, _)| !THREAD_OPTIONS.contains(&k.as_str()))
            .collect();
        ensure!(
            unfair.is_empty(),
            "{}: the two sides encode with different x264 settings ({unfair:?}); the CLI command \
             must follow the worker's (TranscodeConfig defaults, ladder.rs caps)",
            r.name
        );
        let listed: Vec<String> = differences
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "| {} ({}x{}) | {} / {} | {:.0} / {:.0} | {} |",
            r.name,
            r.width,
            r.height,
            video_frames(&ours)?,
            video_frames(&cli)?,
            kbps(&ours, settings.seconds)?,
            kbps(&cli, settings.seconds)?,
            if listed.is_empty() {
                "none".to_owned()
            } else {
                listed.join(", ")
            }
        );
        files.push((r, ours, cli));
    }
    if !settings.psnr {
        return Ok(());
    }
    println!(
        "\nPSNR (dB, ffmpeg `psnr` average over Y, U, V), each against the source scaled to the rendition's size:"
    );
    println!(
        "| rendition | ours vs source | CLI vs source | ours − CLI | ours vs CLI | within 0.5 dB |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for (r, ours, cli) in files {
        let p = psnr(source, &ours, &cli, r.width, r.height)?;
        let difference = p.ours_source - p.cli_source;
        println!(
            "| {} | {:.2} | {:.2} | {:+.2} | {:.2} | {} |",
            r.name,
            p.ours_source,
            p.cli_source,
            difference,
            p.ours_cli,
            if difference.abs() <= 0.5 {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    Ok(())
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let work = tempfile::Builder::new()
        .prefix("transcode-bench-")
        .tempdir_in(&settings.dir)?;
    let dir = work.path();
    println!(
        "transcode bench: {} s {SOURCE_SIZE}@{SOURCE_FPS} source, {} round(s), in {} (load average at start: {})",
        settings.seconds,
        settings.rounds,
        dir.display(),
        loadavg()
    );
    println!("{}", version("ffmpeg", "-version"));
    let source = dir.join("source.mp4");
    let made = Instant::now();
    make_source(&source, SOURCE_SIZE, SOURCE_FPS, settings.seconds)?;
    println!(
        "source: {:.1} MB, {:.0} kbit/s, written in {:.1} s",
        std::fs::metadata(&source)?.len() as f64 / 1e6,
        kbps(&source, settings.seconds)?,
        made.elapsed().as_secs_f64()
    );
    let cfg = TranscodeConfig::default();
    let cli_out = dir.join("cli");
    let cmp = dir.join("compare");
    std::fs::create_dir_all(&cmp)?;

    let mut ours_runs: Vec<OursRun> = Vec::new();
    let mut cli_runs: Vec<CliRun> = Vec::new();
    let mut cli_command: Option<Vec<String>> = None;
    for round in 1..=settings.rounds {
        // The CLI makes the ladder mediahost made; in round 1 mediahost goes first to learn it.
        let ours_first = round % 2 == 1;
        for ours_turn in [ours_first, !ours_first] {
            if ours_turn {
                let ours = Ours::start(dir)?;
                let keep = (round == 1).then_some(cmp.as_path());
                let r = ours.run(&settings, &source, keep).await?;
                println!(
                    "round {round}: mediahost   upload {:.2} s; first playable {:.2} s, ready {:.2} s after it \
                     (worker: first segment {} s, job {} s, realtime {}x); CPU {:.1} s; peak RSS {:.1} MiB \
                     (upload {:.1} MiB); load {}",
                    r.upload.as_secs_f64(),
                    r.first_playable.as_secs_f64(),
                    r.ready.as_secs_f64(),
                    opt_s(r.ttfs_metric),
                    opt_s(r.job_metric),
                    opt_s(r.realtime_metric),
                    r.cpu_s,
                    r.peak_rss_mib,
                    r.upload_rss_mib,
                    loadavg()
                );
                if let Some(first) = ours_runs.first() {
                    ensure!(
                        first.renditions == r.renditions,
                        "the ladder changed between rounds"
                    );
                }
                ours_runs.push(r);
            } else {
                let args = cli_command.get_or_insert_with(|| {
                    let args = cli_args(&source, &cli_out, &ours_runs[0].renditions, &cfg);
                    println!("CLI command: {}", shell_line("ffmpeg", &args));
                    args
                });
                let r = run_cli(args, &cli_out)?;
                println!(
                    "round {round}: ffmpeg CLI  {:.2} s; CPU {:.1} s; peak RSS {:.1} MiB; load {}",
                    r.wall.as_secs_f64(),
                    r.cpu_s,
                    r.peak_rss_mib,
                    loadavg()
                );
                if round == 1 {
                    compare(&settings, &source, &cli_out, &cmp, &ours_runs[0].renditions)?;
                }
                cli_runs.push(r);
            }
        }
    }

    let secs = settings.seconds as f64;
    let ours_med = |f: fn(&OursRun) -> f64| median(ours_runs.iter().map(f).collect());
    let cli_med = |f: fn(&CliRun) -> f64| median(cli_runs.iter().map(f).collect());
    let ours_wall = ours_med(|r| r.ready.as_secs_f64());
    let cli_wall = cli_med(|r| r.wall.as_secs_f64());
    let ours_rss = ours_med(|r| r.peak_rss_mib);
    let cli_rss = cli_med(|r| r.peak_rss_mib);
    let ours_cpu = ours_med(|r| r.cpu_s);
    let cli_cpu = cli_med(|r| r.cpu_s);
    let first = ours_med(|r| r.first_playable.as_secs_f64());
    let ladder: Vec<&str> = ours_runs[0]
        .renditions
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    println!(
        "\nmedians of {} round(s), ladder {}:",
        settings.rounds,
        ladder.join(" + ")
    );
    println!("| figure | mediahost | ffmpeg CLI | mediahost / CLI | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| wall time (s): upload complete → ready / CLI run | {ours_wall:.2} | {cli_wall:.2} | {:.2} | ≤ 1.0: {} |",
        ours_wall / cli_wall,
        if ours_wall <= cli_wall {
            "met"
        } else {
            "**missed**"
        }
    );
    println!(
        "| realtime factor (source s / wall s) | {:.2} | {:.2} | | |",
        secs / ours_wall,
        secs / cli_wall
    );
    println!(
        "| CPU time (s, user + system) | {ours_cpu:.1} | {cli_cpu:.1} | {:.2} | |",
        ours_cpu / cli_cpu
    );
    println!(
        "| cores busy (CPU time / wall) | {:.2} | {:.2} | | |",
        ours_cpu / ours_wall,
        cli_cpu / cli_wall
    );
    println!(
        "| peak RSS (MiB){} | {ours_rss:.1} | {cli_rss:.1} | {:.2} | |",
        if ours_runs.iter().all(|r| r.peak_reset) {
            ", mediahost's from the upload's end"
        } else {
            ""
        },
        ours_rss / cli_rss
    );
    println!(
        "| upload complete → first playable (s) | {first:.2} | | | ≤ 3: {} |",
        if first <= 3.0 { "met" } else { "**missed**" }
    );
    println!(
        "| worker: source stored → first segment (s) | {} | | | |",
        opt_s(
            ours_runs
                .iter()
                .map(|r| r.ttfs_metric)
                .collect::<Option<Vec<_>>>()
                .map(median)
        )
    );
    println!(
        "| worker: job duration (s) | {} | | | |",
        opt_s(
            ours_runs
                .iter()
                .map(|r| r.job_metric)
                .collect::<Option<Vec<_>>>()
                .map(median)
        )
    );
    println!("load average at the end: {}", loadavg());
    Ok(())
}
