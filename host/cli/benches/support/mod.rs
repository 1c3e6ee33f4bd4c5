//! Helpers shared by the benches: settings from the environment, the machine's load, servers
//! run as child processes (readiness, memory, CPU time, pausing) and medians.

#![allow(dead_code)] // each bench uses a different part of this module

use anyhow::{Context, bail, ensure};
use base64::Engine;
use futures::StreamExt;
use rand::RngCore;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub const MIB: u64 = 1024 * 1024;

/// Read size of the client's file streams: big enough that the client's reads cost little.
pub const CLIENT_READ: usize = 1024 * 1024;

/// The mediahost binary of this build (release under `cargo bench`).
pub const MEDIAHOST: &str = env!("CARGO_BIN_EXE_mediahost");

/// Removes the environment variables that would point a mediahost command away from the
/// embedded defaults (SQLite and local files under its data dir, its own config file), whatever
/// the shell exports.
pub fn embedded_defaults(command: &mut Command) {
    for var in [
        "MEDIAHOST_DATABASE_URL",
        "DATABASE_URL",
        "MEDIAHOST_STORAGE_BACKEND",
        "MEDIAHOST_CONFIG",
    ] {
        command.env_remove(var);
    }
}

/// `mediahost serve --role api` on the data dir `data` (created when missing; embedded
/// defaults, the transcode worker off) with a tenant `bench`; returns the server and the
/// tenant's API key.
pub fn start_api(data: PathBuf) -> anyhow::Result<(Server, String)> {
    start_serve(data, "[worker]\nenabled = false\n", Some("api"))
}

/// `mediahost serve` (with `--role roles` when given, else every role) on the data dir `data`
/// (created when missing; embedded defaults) with the config file text `config` and a tenant
/// `bench`; the API, the edge and gRPC listen on free loopback ports. Returns the server and
/// the tenant's API key.
pub fn start_serve(
    data: PathBuf,
    config: &str,
    roles: Option<&str>,
) -> anyhow::Result<(Server, String)> {
    std::fs::create_dir_all(&data)?;
    let config_file = data.join("mediahost.toml");
    std::fs::write(&config_file, config)?;
    let command = |args: &[&str]| {
        let mut cmd = Command::new(MEDIAHOST);
        cmd.args(args)
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config_file);
        embedded_defaults(&mut cmd);
        cmd
    };
    let out = command(&["tenant", "create", "bench"]).output()?;
    ensure!(
        out.status.success(),
        "tenant create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .context("tenant create printed no key")?
        .trim()
        .to_owned();
    let port = free_port();
    let log = data.join("server.log");
    let listen = format!("127.0.0.1:{port}");
    let edge = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["serve", "--listen", &listen];
    args.extend(["--edge-listen", &edge, "--grpc-listen", &grpc]);
    if let Some(roles) = roles {
        args.extend(["--role", roles]);
    }
    let server = Server::start(&mut command(&args), "mediahost", port, data, &log)?;
    Ok((server, key))
}

/// What a bench client uploads: a file streamed from disk (never all in memory), or bytes
/// already in memory. The ingest bench sends from memory: on two cores the client shares the
/// CPU with the server it measures, and reading the file back (a copy per byte and fresh buffer
/// pages) was a third of the client's CPU.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// A file, read in [`CLIENT_READ`] pieces as it is sent.
    File(&'a Path),
    /// Bytes held by the client.
    Memory(&'a bytes::Bytes),
}

impl Payload<'_> {
    /// Its length in bytes.
    pub fn len(&self) -> anyhow::Result<u64> {
        Ok(match self {
            Payload::File(path) => std::fs::metadata(path)?.len(),
            Payload::Memory(bytes) => bytes.len() as u64,
        })
    }

    /// `len` bytes from `offset`, as a stream of chunks.
    async fn chunks(
        &self,
        offset: u64,
        len: u64,
    ) -> anyhow::Result<futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>> {
        Ok(match self {
            Payload::File(path) => {
                let mut file = tokio::fs::File::open(path).await?;
                file.seek(std::io::SeekFrom::Start(offset)).await?;
                tokio_util::io::ReaderStream::with_capacity(file.take(len), CLIENT_READ).boxed()
            }
            Payload::Memory(bytes) => {
                let range = bytes.slice(offset as usize..(offset + len) as usize);
                futures::stream::once(async move { Ok(range) }).boxed()
            }
        })
    }

    /// `len` bytes from `offset`, as a request body.
    async fn range(&self, offset: u64, len: u64) -> anyhow::Result<reqwest::Body> {
        Ok(reqwest::Body::wrap_stream(self.chunks(offset, len).await?))
    }

    /// The whole of it, `times` times over, as one streaming body.
    async fn repeated(&self, times: usize) -> anyhow::Result<reqwest::Body> {
        let len = self.len()?;
        let mut parts = Vec::new();
        for _ in 0..times {
            parts.push(self.chunks(0, len).await?);
        }
        Ok(reqwest::Body::wrap_stream(
            futures::stream::iter(parts).flatten(),
        ))
    }
}

/// `POST /v1/videos` then one `PUT …/source` whose body is `payload` sent `times` times, the
/// way `mediahost upload` sends a file. Returns the video's id and the time from the first
/// request to the `202` of the `PUT` (the source stored and its transcode queued).
pub async fn put_upload(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    payload: Payload<'_>,
    times: usize,
) -> anyhow::Result<(String, Duration)> {
    let size = payload.len()? * times as u64;
    let started = Instant::now();
    let res = http
        .post(format!("{base}/v1/videos"))
        .bearer_auth(key)
        .json(&serde_json::json!({"title": "bench", "filename": "bench.mp4"}))
        .send()
        .await?;
    ensure!(res.status() == 201, "create video: {}", res.text().await?);
    let video: serde_json::Value = res.json().await?;
    let id = video["id"].as_str().context("no video id")?.to_owned();
    let res = http
        .put(format!("{base}/v1/videos/{id}/source"))
        .bearer_auth(key)
        .header("Content-Length", size)
        .body(payload.repeated(times).await?)
        .send()
        .await?;
    ensure!(
        res.status() == 202,
        "PUT source: {} {}",
        res.status(),
        res.text().await?
    );
    Ok((id, started.elapsed()))
}

/// Writes `size` random bytes (incompressible, nothing for a disk or filesystem to shortcut).
pub fn random_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 8 * MIB as usize];
    let mut rng = rand::rng();
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.into_inner()?.sync_all()?;
    Ok(())
}

/// What one [`tus_upload`] took.
pub struct TusUpload {
    /// From the creating `POST` to the answer of the last `PATCH`.
    pub time: Duration,
    /// The `Mediahost-Video-Id` the creation answered with (mediahost only).
    pub video: Option<String>,
    /// Each `PATCH`'s time, from sending it to its answer, in order.
    pub patches: Vec<Duration>,
}

/// A tus 1.0 upload of `payload` (`size` bytes) in `chunk`-byte PATCHes, creation included,
/// one request at a time on the client's kept-alive connection.
pub async fn tus_upload(
    http: &reqwest::Client,
    endpoint: &str,
    key: Option<&str>,
    payload: Payload<'_>,
    size: u64,
    chunk: u64,
) -> anyhow::Result<TusUpload> {
    let auth = |req: reqwest::RequestBuilder| match key {
        Some(key) => req.bearer_auth(key),
        None => req,
    };
    let started = Instant::now();
    let filename = base64::engine::general_purpose::STANDARD.encode("bench.bin");
    let res = auth(http.post(endpoint))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", size)
        .header("Upload-Metadata", format!("filename {filename}"))
        .send()
        .await?;
    ensure!(res.status() == 201, "tus create: {}", res.text().await?);
    let location = res
        .headers()
        .get("location")
        .context("no Location")?
        .to_str()?;
    let url = reqwest::Url::parse(endpoint)?.join(location)?;
    let video = res
        .headers()
        .get("mediahost-video-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut patches = Vec::new();
    let mut offset = 0;
    while offset < size {
        let n = chunk.min(size - offset);
        let sent = Instant::now();
        let res = auth(http.patch(url.clone()))
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset)
            .header("Content-Length", n)
            .body(payload.range(offset, n).await?)
            .send()
            .await?;
        ensure!(
            res.status() == 204,
            "PATCH at {offset}: {} {}",
            res.status(),
            res.text().await?
        );
        let new_offset: u64 = res
            .headers()
            .get("upload-offset")
            .context("no Upload-Offset")?
            .to_str()?
            .parse()?;
        ensure!(
            new_offset == offset + n,
            "offset {new_offset} after PATCH at {offset}"
        );
        patches.push(sent.elapsed());
        offset = new_offset;
    }
    Ok(TusUpload {
        time: started.elapsed(),
        video,
        patches,
    })
}

/// Runs `command` to the end, failing with its stderr unless it succeeds.
pub fn run(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: start (is ffmpeg installed? scripts/setup)"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned())
}

pub fn ffmpeg() -> Command {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-nostats", "-y"]);
    command
}

/// Writes a source of `size` (`WxH`) at `fps`, `seconds` long, with the ffmpeg CLI: lavfi
/// `testsrc2` and a `sine` tone, H.264 High (x264 `veryfast`, 16 Mbit/s average and peak over a
/// 2 s buffer, a keyframe every second) with AAC stereo 48 kHz 192 kbit/s, in an mp4 with its
/// index first: a phone camera's bitrate and GOP, so decoding it costs what decoding a real
/// upload costs.
pub fn make_source(path: &Path, size: &str, fps: u32, seconds: u64) -> anyhow::Result<()> {
    run(
        ffmpeg()
            .args(["-loglevel", "error", "-f", "lavfi", "-i"])
            .arg(format!(
                "testsrc2=size={size}:rate={fps}:duration={seconds}"
            ))
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:beep_factor=4:sample_rate=48000:duration={seconds}"
            ))
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            ])
            .args(["-b:v", "16M", "-maxrate", "16M", "-bufsize", "32M"])
            .args(["-g", &fps.to_string()])
            .args(["-c:a", "aac", "-ac", "2", "-b:a", "192k"])
            .args(["-movflags", "+faststart"])
            .arg(path),
        "making the source",
    )?;
    Ok(())
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `/proc/<pid>/stat` CPU times.
pub fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The first line a tool prints about its version.
pub fn version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_else(|e| format!("{program} unavailable: {e} (run scripts/bench-setup)"))
}

/// The number in environment variable `name`, or `default` when it is unset.
pub fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// The 1, 5 and 15 minute load averages, for the record of a run.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold spaces): the first is
/// the state, the second the parent's pid.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime from the fields of a `/proc/…/stat` line after the command name (fields 14
/// and 15 of the line, 11 and 12 after the name).
pub fn cpu_ticks_of(fields: &str) -> u64 {
    fields
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// Every process whose parent is `pid`, and theirs, and so on (nginx's workers and cache
/// processes are children of its master).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(ppid) = stat_fields(child).and_then(|f| f.get(1)?.parse().ok()) {
            parents.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// CPU time (user + system) process `pid` and every process it started have used so far, in
/// clock ticks (0 for a process that is gone).
pub fn tree_cpu_ticks(pid: u32) -> u64 {
    std::iter::once(pid)
        .chain(descendants(pid))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| Some(cpu_ticks_of(stat.rsplit_once(')')?.1)))
        .sum()
}

/// A line of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A server process, killed with every process it started on drop.
pub struct Server {
    pub child: Child,
    pub name: &'static str,
    pub port: u16,
    /// Where the server keeps its files.
    pub data: PathBuf,
}

impl Server {
    /// Starts `command` (stdout discarded, stderr into the file `log`) as the server `name`
    /// listening on `port`, and waits until it does; a failure shows the log.
    pub fn start(
        command: &mut Command,
        name: &'static str,
        port: u16,
        data: PathBuf,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        let mut server = Server {
            child,
            name,
            port,
            data,
        };
        server.wait_listening().with_context(|| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            format!("{}:\n{text}", log.display())
        })?;
        Ok(server)
    }

    fn kib(&self, field: &str) -> anyhow::Result<u64> {
        status_kib(self.child.id(), field)
            .with_context(|| format!("no {field} in the status of {}", self.name))
    }

    pub fn rss_mib(&self) -> anyhow::Result<f64> {
        Ok(self.kib("VmRSS")? as f64 / 1024.0)
    }

    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        Ok(self.kib("VmHWM")? as f64 / 1024.0)
    }

    /// The process and every process it started.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.child.id()];
        pids.extend(descendants(self.child.id()));
        pids
    }

    /// Peak RSS (`VmHWM`) of each process of the server, in MiB, the process itself first.
    pub fn peak_rss_mib_each(&self) -> Vec<f64> {
        self.pids()
            .into_iter()
            .filter_map(|pid| status_kib(pid, "VmHWM"))
            .map(|kib| kib as f64 / 1024.0)
            .collect()
    }

    /// CPU time (user + system) the server's processes have used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        tree_cpu_ticks(self.child.id())
    }

    /// CPU time (user + system) per thread name over all processes of the server, in clock
    /// ticks: which threads do the work.
    pub fn thread_cpu_ticks(&self) -> std::collections::BTreeMap<String, u64> {
        let mut ticks = std::collections::BTreeMap::new();
        for pid in self.pids() {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
            for task in tasks.into_iter().flatten().flatten() {
                let path = task.path();
                let used = std::fs::read_to_string(path.join("stat"))
                    .ok()
                    .and_then(|stat| Some(cpu_ticks_of(stat.rsplit_once(')')?.1)));
                let name = std::fs::read_to_string(path.join("comm"));
                let (Some(used), Ok(name)) = (used, name) else {
                    continue;
                };
                *ticks.entry(name.trim().to_owned()).or_insert(0) += used;
            }
        }
        ticks
    }

    /// The CPUs each process of the server may run on (`Cpus_allowed_list`, e.g. `0` or
    /// `0-3`), the process itself first.
    pub fn cpus_allowed(&self) -> Vec<String> {
        self.pids()
            .into_iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|status| {
                let line = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
                Some(line.trim().to_owned())
            })
            .collect()
    }

    /// Sends `signal` (a name `kill` knows, e.g. `STOP`, `CONT`) to every process of the server.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(self.pids().iter().map(u32::to_string))
            .status()?;
        ensure!(status.success(), "kill -{signal} {} failed", self.name);
        Ok(())
    }

    /// Waits until the port accepts connections (or the process died).
    pub fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited at start-up: {status}", self.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{} did not listen within 60 s", self.name)
    }
}

impl Drop for Server {
    /// SIGTERM first, so nginx's master stops and reaps its workers; SIGKILL for whatever is
    /// left after 10 s.
    fn drop(&mut self) {
        let others = descendants(self.child.id());
        let _ = self.signal("CONT");
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let left: Vec<String> = others
            .iter()
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
            .map(u32::to_string)
            .collect();
        if !left.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(left).status();
        }
    }
}
