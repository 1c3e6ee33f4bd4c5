//! The distributed deployment of `examples/distributed` under load (issue 8): its own `up.sh`
//! starts 2 api, 2 worker and 2 edge processes of this build's release binary, nginx in front of
//! the apis and Prometheus, on this machine's PostgreSQL, RabbitMQ and Redis and a local S3
//! server (moto), exactly as an operator would start it.
//!
//! One run:
//! 1. **Uploads**: `DIST_BENCH_UPLOADS` (default 20) concurrent tus uploads of
//!    `DIST_BENCH_UPLOAD_MIB` (default 100) MiB of random bytes each, in `DIST_BENCH_CHUNK_MIB`
//!    (default 16) MiB PATCHes, HTTP/1.1 keep-alive, **through nginx** (round robin over both
//!    apis: consecutive PATCHes of one upload land on either) and **straight to api-1**. Both
//!    worker processes are paused (SIGSTOP) meanwhile: this part measures ingest, and random
//!    bytes would only fail their probe. `DIST_BENCH_ROUNDS` (default 2) rounds, the two cases
//!    alternating; after each case its videos are deleted (untimed), so the S3 server, which
//!    keeps objects in memory, never holds more than one case. A case runs from the first
//!    creating `POST` to the last answer, so it includes what the api does before answering the
//!    last PATCH: hashing the source and moving it to object storage. Besides MB/s, each case
//!    reports the CPU seconds every process of the path used (api-1, api-2, nginx, the S3
//!    server, this client) against the wall time × cores: what bounds it.
//! 2. **Jobs**: the topology is started afresh; a `DIST_BENCH_SOURCE_SECONDS` (default 30) s
//!    1280x720 30 fps source (see `support::make_source`) is uploaded `DIST_BENCH_JOBS`
//!    (default 6) times through nginx, one streaming `PUT` each, and every video is polled until
//!    `ready`: jobs per minute from the first `202` (the first job queued) to the last video
//!    ready, with both workers; then worker-2 is stopped (SIGTERM, graceful; the queue is empty
//!    by then) and the same again with worker-1 alone.
//!
//! `DIST_BENCH_UPLOADS=0` or `DIST_BENCH_JOBS=0` skips that part.
//!
//! Needs what `up.sh` needs (PostgreSQL, RabbitMQ, Redis running; nginx, prometheus, psql and
//! curl, which it installs; the moto server from `scripts/setup`), and the ports it uses free.
//! `DIST_BENCH_DIR` (default the temp dir) holds the random file, the source and the topology's
//! run dir.
//!
//! Run: `cargo bench -p mediahost --bench distributed` (see BENCHMARKS.md, "Distributed").

mod support;

use anyhow::{Context, bail, ensure};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{
    MEDIAHOST, MIB, Payload, clock_ticks_per_s, env_number, loadavg, make_source, median,
    put_upload, random_file, tree_cpu_ticks, tus_upload,
};

/// What one run measures, from the environment.
struct Settings {
    uploads: usize,
    upload_size: u64,
    chunk: u64,
    rounds: usize,
    jobs: usize,
    source_seconds: u64,
    dir: PathBuf,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            uploads: env_number("DIST_BENCH_UPLOADS", 20)? as usize,
            upload_size: env_number("DIST_BENCH_UPLOAD_MIB", 100)?.max(1) * MIB,
            chunk: env_number("DIST_BENCH_CHUNK_MIB", 16)?.max(1) * MIB,
            rounds: env_number("DIST_BENCH_ROUNDS", 2)?.max(1) as usize,
            jobs: env_number("DIST_BENCH_JOBS", 6)? as usize,
            source_seconds: env_number("DIST_BENCH_SOURCE_SECONDS", 30)?.max(1),
            dir: std::env::var_os("DIST_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        })
    }
}

/// The API through the load balancer, and api-1 alone (`up.sh`'s ports).
const NGINX: &str = "http://127.0.0.1:18080";
const API_1: &str = "http://127.0.0.1:18181";

/// A topology started by `examples/distributed/up.sh`; stopped by `down.sh` on drop.
struct Topology {
    run: PathBuf,
    /// Process name (as in the run dir's `pids` file) → pid.
    pids: BTreeMap<String, u32>,
    /// The tenant `bench`'s API key.
    key: String,
}

fn example_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/distributed")
        .join(name)
}

impl Topology {
    fn up(run: &Path) -> anyhow::Result<Topology> {
        let mut up = Command::new(example_script("up.sh"));
        up.env("MEDIAHOST_BIN", MEDIAHOST)
            .env("MEDIAHOST_DIST_DIR", run)
            // A fresh S3 server of its own, whatever the shell points at.
            .env_remove("MEDIAHOST_S3_ENDPOINT");
        let status = up.status().context("run up.sh")?;
        ensure!(status.success(), "up.sh failed: {status}");
        let pids = std::fs::read_to_string(run.join("pids"))?
            .lines()
            .filter_map(|l| {
                let (name, pid) = l.split_once(' ')?;
                Some((name.to_owned(), pid.trim().parse().ok()?))
            })
            .collect();
        let mut topology = Topology {
            run: run.to_owned(),
            pids,
            key: String::new(),
        };
        topology.key = topology.create_tenant()?;
        Ok(topology)
    }

    /// A value `up.sh` wrote to the run dir's `env` file.
    fn var(&self, name: &str) -> anyhow::Result<String> {
        let env = std::fs::read_to_string(self.run.join("env"))?;
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(str::to_owned)
            .with_context(|| format!("{name} not in {}/env", self.run.display()))
    }

    fn create_tenant(&self) -> anyhow::Result<String> {
        let out = Command::new(MEDIAHOST)
            .args(["tenant", "create", "bench", "--database-url"])
            .arg(self.var("MEDIAHOST_DIST_DATABASE_URL")?)
            .output()?;
        ensure!(
            out.status.success(),
            "tenant create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?
            .lines()
            .last()
            .context("tenant create printed no key")?
            .trim()
            .to_owned())
    }

    fn pid(&self, name: &str) -> anyhow::Result<u32> {
        self.pids
            .get(name)
            .copied()
            .with_context(|| format!("no process {name} in {}/pids", self.run.display()))
    }

    /// The S3 server `up.sh` started (its pid file is in the folder `s3-server-dir` names).
    fn s3_pid(&self) -> anyhow::Result<u32> {
        let dir = std::fs::read_to_string(self.run.join("s3-server-dir"))?;
        let pid = std::fs::read_to_string(Path::new(dir.trim()).join("pid"))?;
        Ok(pid.trim().parse()?)
    }

    fn signal(&self, name: &str, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid(name)?.to_string())
            .status()?;
        ensure!(status.success(), "kill -{signal} {name}");
        Ok(())
    }

    /// SIGTERM to `name`, then waits (up to 60 s) until it has exited.
    fn stop(&self, name: &str) -> anyhow::Result<()> {
        self.signal(name, "TERM")?;
        let pid = self.pid(name)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Path::new(&format!("/proc/{pid}")).exists() {
            ensure!(
                Instant::now() < deadline,
                "{name} still runs 60 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Paused processes must run again to act on down.sh's SIGTERM.
        for (name, pid) in &self.pids {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = self.signal(name, "CONT");
            }
        }
        let status = Command::new(example_script("down.sh"))
            .env("MEDIAHOST_DIST_DIR", &self.run)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("down.sh failed ({status:?}); see {}", self.run.display());
        }
    }
}

/// CPU seconds used so far by each named process (and what it started), this bench included.
struct CpuMeter {
    processes: Vec<(String, u32)>,
    ticks_per_s: f64,
}

impl CpuMeter {
    fn sample(&self) -> Vec<u64> {
        self.processes
            .iter()
            .map(|(_, pid)| tree_cpu_ticks(*pid))
            .collect()
    }

    /// `name: seconds` for each process between two samples, and their sum.
    fn report(&self, before: &[u64], after: &[u64]) -> (String, f64) {
        let mut total = 0.0;
        let parts: Vec<String> = self
            .processes
            .iter()
            .zip(before.iter().zip(after))
            .map(|((name, _), (b, a))| {
                let seconds = a.saturating_sub(*b) as f64 / self.ticks_per_s;
                total += seconds;
                format!("{name} {seconds:.1}")
            })
            .collect();
        (parts.join(", "), total)
    }
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// `settings.uploads` tus uploads of `file` at once to `base`; returns the case's time and the
/// videos they filled.
async fn concurrent_uploads(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    file: &Path,
    settings: &Settings,
) -> anyhow::Result<(Duration, Vec<String>)> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..settings.uploads {
        let (http, endpoint, key, file) = (
            http.clone(),
            format!("{base}/v1/uploads"),
            key.to_owned(),
            file.to_owned(),
        );
        let (size, chunk) = (settings.upload_size, settings.chunk);
        tasks.spawn(async move {
            tus_upload(
                &http,
                &endpoint,
                Some(&key),
                Payload::File(&file),
                size,
                chunk,
            )
            .await
        });
    }
    let mut videos = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let upload = done??;
        videos.push(
            upload
                .video
                .context("no Mediahost-Video-Id on the tus creation")?,
        );
    }
    Ok((started.elapsed(), videos))
}

async fn delete_videos(http: &reqwest::Client, key: &str, videos: &[String]) -> anyhow::Result<()> {
    for id in videos {
        let res = http
            .delete(format!("{NGINX}/v1/videos/{id}"))
            .bearer_auth(key)
            .send()
            .await?;
        ensure!(res.status().is_success(), "delete {id}: {}", res.status());
    }
    Ok(())
}

async fn upload_part(settings: &Settings, file: &Path, run: &Path) -> anyhow::Result<()> {
    let topology = Topology::up(run)?;
    for worker in ["worker-1", "worker-2"] {
        topology.signal(worker, "STOP")?;
    }
    let meter = CpuMeter {
        processes: vec![
            ("api-1".into(), topology.pid("api-1")?),
            ("api-2".into(), topology.pid("api-2")?),
            ("nginx".into(), topology.pid("nginx")?),
            ("s3".into(), topology.s3_pid()?),
            ("client".into(), std::process::id()),
        ],
        ticks_per_s: clock_ticks_per_s(),
    };
    let http = reqwest::Client::new();
    let total = settings.upload_size * settings.uploads as u64;
    let cases = [
        ("through nginx, 2 apis", NGINX),
        ("straight to api-1", API_1),
    ];
    let mut speeds: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 1..=settings.rounds {
        for (i, (label, base)) in cases.iter().enumerate() {
            let before = meter.sample();
            let (time, videos) =
                concurrent_uploads(&http, base, &topology.key, file, settings).await?;
            let (cpu, cpu_total) = meter.report(&before, &meter.sample());
            let speed = total as f64 / 1e6 / time.as_secs_f64();
            speeds[i].push(speed);
            println!(
                "round {round}: {label:<22} {speed:>7.1} MB/s ({:.2} s); CPU s: {cpu}; \
                 {:.0}% of {} cores",
                time.as_secs_f64(),
                100.0 * cpu_total / (time.as_secs_f64() * cores()),
                cores()
            );
            delete_videos(&http, &topology.key, &videos).await?;
        }
    }
    let nginx = median(speeds[0].clone());
    let direct = median(speeds[1].clone());
    println!(
        "\n| {} concurrent tus uploads of {} MiB ({} MiB PATCHes) | MB/s (median) |\n|---|---:|",
        settings.uploads,
        settings.upload_size / MIB,
        settings.chunk / MIB
    );
    println!(
        "| {} | {nginx:.1} |\n| {} | {direct:.1} |",
        cases[0].0, cases[1].0
    );
    println!("| ratio nginx + 2 apis / 1 api | {:.2} |\n", nginx / direct);
    Ok(())
}

/// Uploads `source` `jobs` times through nginx and waits until every video is ready; returns
/// the time from the first `202` to the last video ready.
async fn run_jobs(
    http: &reqwest::Client,
    key: &str,
    source: &Path,
    jobs: usize,
) -> anyhow::Result<Duration> {
    let mut first_queued = None;
    let mut pending = Vec::new();
    for _ in 0..jobs {
        let (id, _) = put_upload(http, NGINX, key, Payload::File(source), 1).await?;
        first_queued.get_or_insert_with(Instant::now);
        pending.push(id);
    }
    let first_queued = first_queued.context("no jobs")?;
    let deadline = Instant::now() + Duration::from_secs(60 * 60);
    while !pending.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "videos {pending:?} not ready in 1 h"
        );
        let mut still = Vec::new();
        for id in pending {
            let video: serde_json::Value = http
                .get(format!("{NGINX}/v1/videos/{id}"))
                .bearer_auth(key)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            match video["status"].as_str() {
                Some("ready") => {}
                Some("failed") => bail!("video {id} failed: {video}"),
                _ => still.push(id),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(first_queued.elapsed())
}

async fn jobs_part(settings: &Settings, source: &Path, run: &Path) -> anyhow::Result<()> {
    let topology = Topology::up(run)?;
    let http = reqwest::Client::new();
    let meter = CpuMeter {
        processes: vec![
            ("worker-1".into(), topology.pid("worker-1")?),
            ("worker-2".into(), topology.pid("worker-2")?),
            ("api-1".into(), topology.pid("api-1")?),
            ("api-2".into(), topology.pid("api-2")?),
            ("s3".into(), topology.s3_pid()?),
        ],
        ticks_per_s: clock_ticks_per_s(),
    };
    let mut per_minute = Vec::new();
    for workers in [2, 1] {
        if workers == 1 {
            topology.stop("worker-2")?;
        }
        let before = meter.sample();
        let time = run_jobs(&http, &topology.key, source, settings.jobs).await?;
        let (cpu, cpu_total) = meter.report(&before, &meter.sample());
        let rate = settings.jobs as f64 * 60.0 / time.as_secs_f64();
        per_minute.push(rate);
        println!(
            "{workers} worker process(es): {} jobs in {:.1} s = {rate:.2} jobs/min; CPU s: {cpu}; \
             {:.0}% of {} cores",
            settings.jobs,
            time.as_secs_f64(),
            100.0 * cpu_total / (time.as_secs_f64() * cores()),
            cores()
        );
    }
    println!(
        "\n| {} s 1280x720 source, {} jobs | jobs/min |\n|---|---:|",
        settings.source_seconds, settings.jobs
    );
    println!(
        "| 2 worker processes | {:.2} |\n| 1 worker process | {:.2} |",
        per_minute[0], per_minute[1]
    );
    println!("| ratio 2 / 1 | {:.2} |", per_minute[0] / per_minute[1]);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let dir = tempfile::Builder::new()
        .prefix("mediahost-distributed-bench")
        .tempdir_in(&settings.dir)?;
    println!(
        "distributed bench: {} cores, load {}; {} × {} MiB tus uploads, {} jobs of a {} s 720p source",
        cores(),
        loadavg(),
        settings.uploads,
        settings.upload_size / MIB,
        settings.jobs,
        settings.source_seconds
    );
    let file = dir.path().join("random.bin");
    random_file(&file, settings.upload_size)?;
    let source = dir.path().join("source-720p.mp4");
    make_source(&source, "1280x720", 30, settings.source_seconds)?;
    let run = dir.path().join("run");
    if settings.uploads > 0 {
        upload_part(&settings, &file, &run).await?;
    }
    if settings.jobs > 0 {
        jobs_part(&settings, &source, &run).await?;
    }
    println!("load at the end: {}", loadavg());
    Ok(())
}
