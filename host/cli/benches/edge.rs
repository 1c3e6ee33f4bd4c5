//! Cache hits through `mediahost edge` vs nginx's `proxy_cache`, with Debian's `wrk` on
//! loopback (issue 7): the same connections, duration and objects for both, side by side in
//! one run, then the edge again with a one-plugin edge-transform chain on every request.
//!
//! One run:
//! 1. writes segment-sized objects of random bytes, 64 KiB and 2 MiB `.m4s` files
//!    (`EDGE_BENCH_OBJECT_KIB`, default `64,2048`), under
//!    `/v1/videos/<id>/hls/` of a temp dir, served by an **origin** nginx as static files with
//!    `Cache-Control: public, max-age=3600` (what the edge caches: a `200` marked public with a
//!    max-age), `ETag` and `Last-Modified`;
//! 2. starts, in front of that one origin:
//!    - **nginx `proxy_cache`**, tuned as its operators would: one worker per CPU it gets,
//!      `sendfile`, `tcp_nodelay`, `access_log off`, `open_file_cache`,
//!      `keepalive_requests 100000`, upstream keepalive, `proxy_cache_valid 200 1h`,
//!      `proxy_cache_lock`, `proxy_buffering`, `X-Cache: $upstream_cache_status`, and its
//!      cache on tmpfs (`/dev/shm`, when there is one; the run says where), so a hit costs no
//!      disk read either. `tcp_nopush` is **off**: with it on (and `sendfile`), Debian's
//!      nginx 1.22 answers keep-alive cache hits of 64 KiB after a ~40 ms stall (p50 47 ms,
//!      ~1,600 req/s instead of ~11,000 here), which no operator who measured would keep;
//!      `EDGE_BENCH_NGINX_TCP_NOPUSH=1` turns it on to see that;
//!    - **the mediahost edge** (`mediahost edge`, this build's release binary,
//!      `RUST_LOG=warn`) with a 1 GiB memory cache and no disk tier, so hits come from memory;
//!    - **the mediahost edge with the reference `edge-token` plugin** (`plugins/edge-token`,
//!      built for wasm32-wasip2 in release) bound as the global edge-transform chain
//!      (`[[plugins.bindings.edge-transform]]`): every request carries a valid token (HMAC
//!      computed here as `plugins/edge-token/src/rules.rs` specifies), so `on-request` checks
//!      an HMAC and `on-response` adds `X-Served-By` on every request. The video exists in
//!      that edge's metadata DB (created beforehand through `mediahost serve --role api` on
//!      its data dir), so each request also resolves its video's tenant and chain as in
//!      production. The run fails unless a probe shows the plugin at work (`X-Served-By`
//!      present, a request without a token 403);
//!    - **the axum floor**, a reference without a target (`EDGE_BENCH_FLOOR=0` leaves it
//!      out): this bench binary started again as a server of the same bytes from memory
//!      through axum on a tokio runtime built as mediahost's, with an edge hit's headers and
//!      none of the edge's code, so the table shows what the stack costs and what the edge
//!      adds to it;
//! 3. warms every cache: each object is requested until the server answers `X-Cache: HIT` with
//!    the origin's bytes, then every case gets an untimed `wrk` warm-up;
//! 4. for `EDGE_BENCH_ROUNDS` rounds (default 3), each case in turn (object × server):
//!    `wrk -t1 -c64 -d10s --latency` (`EDGE_BENCH_THREADS`, `EDGE_BENCH_CONNECTIONS`,
//!    `EDGE_BENCH_SECONDS`). Requests/sec, the 99th percentile latency and bytes read come
//!    from wrk's report; a run with any non-2xx answer or socket error, or whose bytes per
//!    request are not the object's size, fails the bench (a fast 404 measures nothing). The
//!    server's and wrk's CPU time over the run are read from `/proc` (as shares of one core):
//!    a server well below 100% of its core was waiting on the client (or on other work on its
//!    CPU), not the other way round. Each round's line also names the server threads that used
//!    more than 5% of a core;
//! 5. prints the medians, the ratios the targets are about (req/s ≥ 1.0× nginx without
//!    plugins, ≥ 0.7× with one plugin) and each server's peak RSS (`VmHWM`).
//!
//! Fairness on a small machine: the server under test is pinned with `taskset` to
//! `EDGE_BENCH_SERVER_CPUS` (default CPU 0) and wrk to `EDGE_BENCH_CLIENT_CPUS` (default CPU
//! 1); an empty value leaves that side unpinned. nginx gets `worker_processes` = the number of
//! server CPUs and the edge as many tokio worker threads (`TOKIO_WORKER_THREADS`, which
//! mediahost's runtime honours; tokio would pick the same from the process's CPU affinity).
//! The run prints and checks every server process's `Cpus_allowed_list`. The servers not
//! under test are paused (`SIGSTOP`), so their timers and background tasks (the plugin edge's
//! bindings sync) cannot take time from the one measured. The origin is unpinned and idle once
//! the caches are warm.
//!
//! Needs `wrk` and `nginx` (Debian's): `scripts/bench-setup` installs them (CI does not need
//! them, so `scripts/setup` does not), and the wasm32-wasip2 target (`scripts/setup`) for the
//! plugin. `EDGE_BENCH_PLUGIN=0` leaves the plugin case out; `EDGE_BENCH_WARMUP_SECONDS`
//! (default 2) sets the untimed run.
//!
//! Run: `cargo bench -p mediahost --bench edge` (see BENCHMARKS.md, "Edge").

mod support;

use anyhow::{Context, bail, ensure};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{
    MEDIAHOST, Server, clock_ticks_per_s, env_number, free_port, loadavg, median, version,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// The video the objects belong to without the plugin case (the plugin case creates one in
/// its edge's metadata DB): any id does, the origin serves plain files.
const VIDEO: &str = "0190b6f2-7c1e-7d3a-9a5e-5f1d2c3b4a59";
/// The edge-token plugin's HMAC key, set in the edge's config and used here to sign.
const SECRET: &str = "edge-bench-secret";
/// The edge's memory cache: far more than the objects, so every hit is a memory hit.
const EDGE_CACHE_BYTES: u64 = 1024 * MIB;

/// What one run measures, from the environment.
struct Settings {
    /// Seconds of each measured wrk run.
    seconds: u64,
    /// wrk's connections (`-c`).
    connections: u64,
    /// wrk's threads (`-t`).
    threads: u64,
    /// Rounds of every case; medians are reported.
    rounds: usize,
    /// Seconds of the untimed wrk run per case before the first round.
    warmup: u64,
    /// `taskset -c` list for the server under test; empty: unpinned.
    server_cpus: String,
    /// `taskset -c` list for wrk; empty: unpinned.
    client_cpus: String,
    /// Whether to run the edge with the edge-token plugin.
    plugin: bool,
    /// The objects' sizes in KiB.
    object_kib: Vec<u64>,
    /// Whether to measure the axum floor too.
    floor: bool,
    /// Whether nginx's proxy sets `tcp_nopush on` (off by default; see the module docs).
    nginx_tcp_nopush: bool,
    /// The unit of CPU times in `/proc`.
    clock_ticks: f64,
}

fn env_string(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            seconds: env_number("EDGE_BENCH_SECONDS", 10)?.max(1),
            connections: env_number("EDGE_BENCH_CONNECTIONS", 64)?.max(1),
            threads: env_number("EDGE_BENCH_THREADS", 1)?.max(1),
            rounds: env_number("EDGE_BENCH_ROUNDS", 3)?.max(1) as usize,
            warmup: env_number("EDGE_BENCH_WARMUP_SECONDS", 2)?,
            server_cpus: env_string("EDGE_BENCH_SERVER_CPUS", "0").trim().to_owned(),
            client_cpus: env_string("EDGE_BENCH_CLIENT_CPUS", "1").trim().to_owned(),
            plugin: env_number("EDGE_BENCH_PLUGIN", 1)? != 0,
            object_kib: env_string("EDGE_BENCH_OBJECT_KIB", "64,2048")
                .split(',')
                .map(|k| {
                    k.trim()
                        .parse()
                        .with_context(|| format!("EDGE_BENCH_OBJECT_KIB: {k:?}"))
                })
                .collect::<anyhow::Result<_>>()?,
            floor: env_number("EDGE_BENCH_FLOOR", 1)? != 0,
            nginx_tcp_nopush: env_number("EDGE_BENCH_NGINX_TCP_NOPUSH", 0)? != 0,
            clock_ticks: clock_ticks_per_s(),
        })
    }

    /// `program` run under `taskset -c cpus`, or as is when `cpus` is empty.
    fn pinned(cpus: &str, program: &str) -> Command {
        if cpus.is_empty() {
            return Command::new(program);
        }
        let mut command = Command::new("taskset");
        command.args(["-c", cpus, program]);
        command
    }
}

/// How many CPUs a `taskset -c` list names (`0`, `0-3`, `0,2`); `None` when it is empty.
fn cpu_count(cpus: &str) -> anyhow::Result<Option<usize>> {
    if cpus.is_empty() {
        return Ok(None);
    }
    let mut count = 0;
    for part in cpus.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (usize, usize) = (lo.trim().parse()?, hi.trim().parse()?);
        ensure!(lo <= hi, "CPU list {cpus:?}: {part:?}");
        count += hi - lo + 1;
    }
    Ok(Some(count))
}

/// A segment-sized object the origin serves.
struct Object {
    /// Its size, e.g. `64 KiB`.
    label: String,
    /// Its path under the origin (and every proxy).
    path: String,
    /// Its bytes, to check what the proxies answer.
    body: Vec<u8>,
}

/// Writes objects of random bytes of `video`, one of each size in `kib`, under `root` (the
/// origin's document root).
fn write_objects(root: &Path, video: &str, kib: &[u64]) -> anyhow::Result<Vec<Object>> {
    let mut objects = Vec::new();
    for &kib in kib {
        let label = match kib {
            k if k >= 1024 && k % 1024 == 0 => format!("{} MiB", k / 1024),
            k => format!("{k} KiB"),
        };
        let path = format!("/v1/videos/{video}/hls/{kib}k/chunk-stream0-00001.m4s");
        let mut body = vec![0u8; (kib * KIB) as usize];
        rand::rng().fill_bytes(&mut body);
        let file = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().expect("a folder"))?;
        std::fs::write(&file, &body)?;
        objects.push(Object { label, path, body });
    }
    Ok(objects)
}

/// The servers measured, in the order they run within a round.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Nginx,
    Edge,
    EdgePlugin,
    Floor,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Nginx => "nginx proxy_cache",
            Target::Edge => "mediahost edge",
            Target::EdgePlugin => "mediahost edge + edge-token",
            Target::Floor => "axum floor (no edge code)",
        }
    }
}

/// Set (to `<port> <folder>`) in the environment of the bench binary started again as the
/// floor server.
const FLOOR_ENV: &str = "EDGE_BENCH_FLOOR_SERVE";

/// The floor: what the edge's stack alone costs. Every file under the folder, held in memory
/// as `Bytes`, answered to `GET <its path>` with the headers an edge hit carries, by axum on
/// a tokio runtime built as mediahost's `main` builds it, served by `axum::serve` as the edge
/// is. No cache lookup, no metrics, no range or conditional handling.
fn floor_serve(spec: &str) -> anyhow::Result<()> {
    use axum::http::{HeaderValue, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use std::collections::HashMap;
    use std::sync::Arc;

    let (port, root) = spec.split_once(' ').context("`<port> <folder>`")?;
    let mut files = HashMap::new();
    let mut folders = vec![PathBuf::from(root)];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let key = format!("/{}", path.strip_prefix(root)?.display());
                files.insert(key, bytes::Bytes::from(std::fs::read(&path)?));
            }
        }
    }
    let files = Arc::new(files);
    let answer = move |uri: Uri| {
        let files = files.clone();
        async move {
            let Some(body) = files.get(uri.path()) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let mut response = Response::new(axum::body::Body::from(body.clone()));
            let headers = response.headers_mut();
            for (name, value) in [
                (header::CONTENT_TYPE, "video/iso.segment"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::ETAG, "\"6b11125d-10000\""),
                (header::LAST_MODIFIED, "Thu, 03 Dec 2026 06:55:25 GMT"),
                (header::ACCEPT_RANGES, "bytes"),
                (header::AGE, "0"),
                (header::HeaderName::from_static("x-cache"), "HIT"),
            ] {
                headers.insert(name, HeaderValue::from_static(value));
            }
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            response
        }
    };
    let router = axum::Router::new().fallback(answer);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
        axum::serve(listener, router).await?;
        Ok(())
    })
}

/// One tokio worker thread per server CPU (`TOKIO_WORKER_THREADS`, which tokio's runtime
/// builder reads), like nginx's one worker process per CPU; unpinned, tokio's default.
fn tokio_workers(settings: &Settings, command: &mut Command) -> anyhow::Result<()> {
    match cpu_count(&settings.server_cpus)? {
        Some(cpus) => command.env("TOKIO_WORKER_THREADS", cpus.to_string()),
        None => command.env_remove("TOKIO_WORKER_THREADS"),
    };
    Ok(())
}

/// The bench binary again, as the floor server of the files under `root`.
fn start_floor(settings: &Settings, dir: &Path, root: &Path) -> anyhow::Result<Server> {
    let port = free_port();
    let exe = std::env::current_exe()?;
    let mut command = Settings::pinned(&settings.server_cpus, &exe.display().to_string());
    command.env(FLOOR_ENV, format!("{port} {}", root.display()));
    tokio_workers(settings, &mut command)?;
    Server::start(
        &mut command,
        "axum floor",
        port,
        root.to_owned(),
        &dir.join("floor.log"),
    )
}

/// The edge-token plugin's token for `path`, valid until `exp`: the hex HMAC-SHA256 of the
/// path up to and including `/hls/`, a newline and `exp` (`plugins/edge-token/src/rules.rs`).
fn token(path: &str, exp: u64) -> String {
    let scope = path
        .find("/hls/")
        .map_or(path, |i| &path[..i + "/hls/".len()]);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(scope.as_bytes());
    mac.update(b"\n");
    mac.update(exp.to_string().as_bytes());
    format!("{exp}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// The URL `target` serves `object` at; requests to the plugin edge carry a token valid for a
/// day.
fn url(target: Target, server: &Server, object: &Object) -> String {
    let base = format!("http://127.0.0.1:{}{}", server.port, object.path);
    if target != Target::EdgePlugin {
        return base;
    }
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 86_400;
    format!("{base}?token={}", token(&object.path, exp))
}

/// `user root;` when the bench runs as root: nginx's workers would otherwise drop to `nobody`,
/// who may not read the bench's temp dirs.
fn nginx_user() -> anyhow::Result<&'static str> {
    Ok(if std::fs::metadata("/proc/self")?.uid() == 0 {
        "user root;"
    } else {
        ""
    })
}

/// `nginx -c <dir>/nginx.conf` in the foreground, with everything it writes under `dir`.
fn start_nginx(
    name: &'static str,
    dir: &Path,
    cpus: &str,
    port: u16,
    tcp_nopush: bool,
    http: &str,
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let d = dir.display();
    let conf = format!(
        "{user}
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    sendfile on;
    tcp_nopush {nopush};
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 100000;
{http}}}
",
        user = nginx_user()?,
        nopush = if tcp_nopush { "on" } else { "off" },
        workers = cpu_count(cpus)?.map_or("auto".to_owned(), |n| n.to_string()),
    );
    let conf_file = dir.join("nginx.conf");
    std::fs::write(&conf_file, conf)?;
    let mut command = Settings::pinned(cpus, "nginx");
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_file)
        .arg("-e")
        .arg(dir.join("error.log"));
    Server::start(
        &mut command,
        name,
        port,
        dir.to_owned(),
        &dir.join("stderr.log"),
    )
    .context("nginx (scripts/bench-setup installs it)")
}

/// The origin: static files from `root` with the origin's caching headers.
fn start_origin(dir: &Path, root: &Path) -> anyhow::Result<Server> {
    let port = free_port();
    let http = format!(
        "    types {{ video/iso.segment m4s; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /v1/videos/ {{
            add_header Cache-Control \"public, max-age=3600\";
        }}
    }}
",
        root = root.display()
    );
    start_nginx(
        "origin nginx",
        &dir.join("origin-nginx"),
        "",
        port,
        true,
        &http,
    )
}

/// nginx `proxy_cache` in front of `origin`, its cache in `cache` (tmpfs when there is one).
fn start_nginx_cache(
    settings: &Settings,
    dir: &Path,
    cache: &Path,
    origin: u16,
) -> anyhow::Result<Server> {
    let port = free_port();
    let http = format!(
        "    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    open_file_cache_errors on;
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive 32;
    }}
    proxy_cache_path {cache} levels=1:2 keys_zone=edge:16m max_size=2g inactive=1h use_temp_path=off;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_cache edge;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            proxy_buffering on;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
",
        cache = cache.display()
    );
    start_nginx(
        "nginx proxy_cache",
        &dir.join("nginx-cache"),
        &settings.server_cpus,
        port,
        settings.nginx_tcp_nopush,
        &http,
    )
}

/// The edge-token plugin folder (manifest + component) under `plugins`, built from
/// `plugins/edge-token`.
fn install_edge_token(plugins: &Path) -> anyhow::Result<()> {
    let wasm = mediahost_testkit::build_plugin("edge-token");
    let folder = plugins.join("edge-token");
    std::fs::create_dir_all(&folder)?;
    std::fs::copy(
        mediahost_testkit::repo_root().join("plugins/edge-token/plugin.toml"),
        folder.join("plugin.toml"),
    )?;
    std::fs::copy(&wasm, folder.join("edge_token.wasm"))?;
    Ok(())
}

/// `mediahost edge` in front of `origin` on a fresh data dir under `dir`; with `plugin`, the
/// edge-token plugin is the global edge-transform chain.
fn start_edge(
    settings: &Settings,
    dir: &Path,
    origin: u16,
    plugin: bool,
) -> anyhow::Result<Server> {
    let data = dir.join(if plugin { "edge-plugin" } else { "edge" });
    std::fs::create_dir_all(&data)?;
    let mut config = format!("[edge]\ncache_bytes = {EDGE_CACHE_BYTES}\ndisk_cache_bytes = 0\n");
    if plugin {
        let plugins = data.join("plugins");
        install_edge_token(&plugins)?;
        write!(
            config,
            "\n[plugins]\ndir = {:?}\n\n[plugins.config.edge-token]\nsecret = {SECRET:?}\n\n\
             [[plugins.bindings.edge-transform]]\nplugin = \"edge-token\"\n",
            plugins.display().to_string()
        )?;
    }
    let config_file = data.join("edge.toml");
    std::fs::write(&config_file, config)?;
    let port = free_port();
    let mut command = Settings::pinned(&settings.server_cpus, MEDIAHOST);
    command
        .arg("edge")
        .args(["--origin", &format!("http://127.0.0.1:{origin}")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config_file)
        .env("RUST_LOG", "warn");
    support::embedded_defaults(&mut command);
    tokio_workers(settings, &mut command)?;
    let name = if plugin {
        "mediahost edge + edge-token"
    } else {
        "mediahost edge"
    };
    Server::start(
        &mut command,
        name,
        port,
        data.clone(),
        &data.join("edge.log"),
    )
}

/// Creates a video (metadata only) of a tenant in the metadata DB under the data dir `data`,
/// through a `mediahost serve --role api` run on it for the purpose; returns its id.
async fn create_video(data: &Path) -> anyhow::Result<String> {
    let (api, key) = support::start_api(data.to_owned())?;
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/videos", api.port))
        .bearer_auth(key)
        .json(&serde_json::json!({"title": "edge bench", "filename": "bench.mp4"}))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    ensure!(status == 201, "create a video: {status} {body}");
    let video: serde_json::Value = serde_json::from_str(&body)?;
    Ok(video["id"].as_str().context("no video id")?.to_owned())
}

/// Requests `url` until `server` answers `X-Cache: HIT`, checking every answer is the object.
async fn warm(
    http: &reqwest::Client,
    server: &Server,
    url: &str,
    object: &Object,
) -> anyhow::Result<()> {
    for _ in 0..20 {
        let response = http.get(url).send().await?;
        let status = response.status();
        let x_cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.bytes().await?;
        ensure!(
            status == 200,
            "{}: GET {url} answered {status}: {}",
            server.name,
            String::from_utf8_lossy(&body)
        );
        ensure!(
            body == object.body,
            "{}: GET {url} answered {} bytes that are not the object's {}",
            server.name,
            body.len(),
            object.body.len()
        );
        if x_cache == "HIT" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{}: {url} never answered X-Cache: HIT", server.name)
}

/// Fails unless the edge-token plugin runs on `server`'s requests: a request without a token
/// is refused, one with a token carries the header the plugin adds.
async fn check_plugin_runs(
    http: &reqwest::Client,
    server: &Server,
    object: &Object,
) -> anyhow::Result<()> {
    let not_running = "the edge does not run its edge-transform chain: this build's edge \
                       does not load `[plugins] dir` or apply `[[plugins.bindings.edge-transform]]` \
                       (run with EDGE_BENCH_PLUGIN=0 to measure the rest)";
    let bare = format!("http://127.0.0.1:{}{}", server.port, object.path);
    let response = http.get(&bare).send().await?;
    let status = response.status();
    ensure!(
        status == 403,
        "{}: GET {bare} without a token answered {status}, not 403: {not_running}",
        server.name
    );
    let signed = url(Target::EdgePlugin, server, object);
    let response = http.get(&signed).send().await?;
    let served_by = response.headers().get("x-served-by").cloned();
    ensure!(
        response.status() == 200 && served_by.is_some_and(|v| v == "mediahost"),
        "{}: GET {signed} answered {} without `X-Served-By: mediahost` (edge-token's \
         add_headers): {not_running}",
        server.name,
        response.status()
    );
    Ok(())
}

/// What one wrk run reports.
#[derive(Debug, Clone)]
struct Run {
    requests_per_s: f64,
    p99_ms: f64,
    /// Payload throughput: requests/s × object size, 10^6 bytes/s.
    mb_s: f64,
    /// The server's CPU time over the run as a share of one core.
    server_cpu: f64,
    /// wrk's CPU time over the run as a share of one core (of `EDGE_BENCH_THREADS`).
    client_cpu: f64,
    /// The server's threads that used more than 5% of a core, by name, with their share.
    busy_threads: Vec<(String, f64)>,
}

/// A number with a unit from wrk's report, split.
fn number_and_unit(s: &str) -> anyhow::Result<(f64, &str)> {
    let split = s
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {s:?}"))?;
    let (number, unit) = s.split_at(split);
    Ok((number.parse().with_context(|| format!("{s:?}"))?, unit))
}

/// wrk's time (`812.00us`, `3.21ms`, `1.02s`, `1.50m`) in milliseconds.
fn wrk_time_ms(s: &str) -> anyhow::Result<f64> {
    let (number, unit) = number_and_unit(s)?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => bail!("unknown time unit in {s:?}"),
    };
    Ok(number * scale)
}

/// wrk's byte count (`512.00KB`, `7.55GB`; powers of 1024) in bytes.
fn wrk_bytes(s: &str) -> anyhow::Result<f64> {
    let (number, unit) = number_and_unit(s)?;
    let power = ["B", "KB", "MB", "GB", "TB"]
        .iter()
        .position(|u| *u == unit)
        .with_context(|| format!("unknown size unit in {s:?}"))?;
    Ok(number * 1024f64.powi(power as i32))
}

/// Runs wrk against `url` for `seconds` while reading `server`'s CPU time; fails on any
/// error or non-2xx answer, and unless the bytes read match `size` per request.
fn wrk(
    settings: &Settings,
    server: &Server,
    url: &str,
    size: usize,
    seconds: u64,
) -> anyhow::Result<Run> {
    let ticks_before = server.cpu_ticks();
    let threads_before = server.thread_cpu_ticks();
    let client_before = children_cpu_ticks()?;
    let output = Settings::pinned(&settings.client_cpus, "wrk")
        .arg(format!("-t{}", settings.threads))
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg(url)
        .output()
        .context("run wrk (scripts/bench-setup installs it)")?;
    let ticks = server.cpu_ticks() - ticks_before;
    let client_ticks = children_cpu_ticks()? - client_before;
    let share = |ticks: u64| ticks as f64 / settings.clock_ticks / seconds as f64;
    let busy_threads = server
        .thread_cpu_ticks()
        .into_iter()
        .map(|(name, after)| {
            let before = threads_before.get(&name).copied().unwrap_or(0);
            (name, share(after.saturating_sub(before)))
        })
        .filter(|(_, share)| *share > 0.05)
        .collect();
    let report = String::from_utf8_lossy(&output.stdout);
    let fail = |why: &str| {
        anyhow::anyhow!(
            "{}: wrk {url}: {why}\n{report}{}",
            server.name,
            String::from_utf8_lossy(&output.stderr)
        )
    };
    if !output.status.success() {
        return Err(fail(&format!("exited with {}", output.status)));
    }
    for bad in ["Non-2xx or 3xx responses", "Socket errors"] {
        if let Some(line) = report.lines().find(|l| l.trim_start().starts_with(bad)) {
            return Err(fail(line.trim()));
        }
    }
    let value_after = |prefix: &str| {
        report
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(prefix))
            .map(str::trim)
            .ok_or_else(|| fail(&format!("no `{prefix}` line")))
    };
    let requests_per_s: f64 = value_after("Requests/sec:")?.parse()?;
    let p99_ms = wrk_time_ms(value_after("99%")?)?;
    // `123456 requests in 10.00s, 7.55GB read`
    let totals = report
        .lines()
        .find(|l| l.contains(" requests in "))
        .ok_or_else(|| fail("no totals line"))?;
    let words: Vec<&str> = totals.split_whitespace().collect();
    let requests: f64 = words.first().context("totals")?.parse()?;
    let read = wrk_bytes(words.get(4).context("totals")?)?;
    ensure!(
        requests > 0.0,
        "{}: wrk {url} completed no request",
        server.name
    );
    // Every answer is the object and a few hundred bytes of head; requests still under way
    // when wrk stopped add at most one object per connection.
    let (size, connections) = (size as f64, settings.connections as f64);
    let (least, most) = (
        requests * size * 0.99,
        (requests + connections) * (size + 1024.0),
    );
    if !(least..=most).contains(&read) {
        return Err(fail(&format!(
            "{read} bytes read for {requests} requests of a {size}-byte object"
        )));
    }
    Ok(Run {
        requests_per_s,
        p99_ms,
        mb_s: requests_per_s * size / 1e6,
        server_cpu: share(ticks),
        client_cpu: share(client_ticks),
        busy_threads,
    })
}

/// CPU time (user + system) of this process's waited-for children so far, in clock ticks:
/// wrk's, once it has exited (`taskset` execs it, so it is the child).
fn children_cpu_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let (_, rest) = stat.rsplit_once(')').context("/proc/self/stat")?;
    // cutime and cstime: fields 16 and 17 of the stat line, 13 and 14 after the name.
    Ok(rest
        .split_whitespace()
        .skip(13)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

/// A folder on tmpfs for nginx's cache when `/dev/shm` is one we can write, else under `dir`.
fn cache_dir(dir: &Path) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    match tempfile::Builder::new()
        .prefix("edge-bench-nginx-cache-")
        .tempdir_in("/dev/shm")
    {
        Ok(shm) => {
            let path = shm.path().to_owned();
            Ok((Some(shm), path))
        }
        Err(e) => {
            println!(
                "no tmpfs at /dev/shm ({e}): nginx's cache goes to {}",
                dir.display()
            );
            Ok((None, dir.join("nginx-cache-files")))
        }
    }
}

/// One case's runs: `target` serving `objects[object]`.
struct Case {
    target: Target,
    object: usize,
    runs: Vec<Run>,
}

impl Case {
    fn median(&self, f: impl Fn(&Run) -> f64) -> f64 {
        median(self.runs.iter().map(f).collect())
    }
}

fn main() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var(FLOOR_ENV) {
        return floor_serve(&spec);
    }
    tokio::runtime::Runtime::new()?.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let work = tempfile::Builder::new().prefix("edge-bench-").tempdir()?;
    let dir = work.path();
    println!(
        "edge bench: wrk -t{} -c{} -d{}s --latency, {} round(s); server on CPUs {:?}, wrk on CPUs {:?}; \
         load average at start: {}",
        settings.threads,
        settings.connections,
        settings.seconds,
        settings.rounds,
        settings.server_cpus,
        settings.client_cpus,
        loadavg()
    );
    println!("{}; {}", version("wrk", "-v"), version("nginx", "-v"));

    // The plugin edge resolves each request's tenant by its video, as in production: the
    // video exists in that edge's metadata DB.
    let video = match settings.plugin {
        true => create_video(&dir.join("edge-plugin")).await?,
        false => VIDEO.to_owned(),
    };
    let objects = write_objects(&dir.join("origin-root"), &video, &settings.object_kib)?;
    let origin = start_origin(dir, &dir.join("origin-root"))?;
    let (_shm, cache) = cache_dir(dir)?;
    println!(
        "nginx proxy_cache_path: {}; tcp_nopush {}",
        cache.display(),
        if settings.nginx_tcp_nopush {
            "on"
        } else {
            "off"
        }
    );
    let mut servers = vec![(
        Target::Nginx,
        start_nginx_cache(&settings, dir, &cache, origin.port)?,
    )];
    servers.push((
        Target::Edge,
        start_edge(&settings, dir, origin.port, false)?,
    ));
    if settings.plugin {
        servers.push((
            Target::EdgePlugin,
            start_edge(&settings, dir, origin.port, true)?,
        ));
    }
    if settings.floor {
        servers.push((
            Target::Floor,
            start_floor(&settings, dir, &dir.join("origin-root"))?,
        ));
    }

    let http = reqwest::Client::new();
    for (target, server) in &servers {
        if *target == Target::EdgePlugin {
            check_plugin_runs(&http, server, &objects[0]).await?;
        }
        for object in &objects {
            warm(&http, server, &url(*target, server, object), object).await?;
        }
        let allowed = server.cpus_allowed();
        println!("{}: processes on CPUs {allowed:?}", server.name);
        if let Some(cpus) = cpu_count(&settings.server_cpus)? {
            for list in &allowed {
                ensure!(
                    cpu_count(list)? == Some(cpus),
                    "{} runs on CPUs {list}, not {}",
                    server.name,
                    settings.server_cpus
                );
            }
        }
    }
    println!("caches warm: every object answered X-Cache: HIT by every server");

    let mut cases: Vec<Case> = (0..objects.len())
        .flat_map(|object| {
            servers.iter().map(move |(target, _)| Case {
                target: *target,
                object,
                runs: Vec::new(),
            })
        })
        .collect();
    // Only the server under test runs; the others are stopped until their turn.
    let only = |wanted: Target| -> anyhow::Result<()> {
        for (target, server) in &servers {
            server.signal(if *target == wanted { "CONT" } else { "STOP" })?;
        }
        Ok(())
    };
    let server_of = |wanted: Target| {
        &servers
            .iter()
            .find(|(t, _)| *t == wanted)
            .expect("a server per target")
            .1
    };
    if settings.warmup > 0 {
        for case in &cases {
            only(case.target)?;
            let (server, object) = (server_of(case.target), &objects[case.object]);
            let url = url(case.target, server, object);
            wrk(&settings, server, &url, object.body.len(), settings.warmup)?;
        }
    }
    for round in 1..=settings.rounds {
        for case in cases.iter_mut() {
            only(case.target)?;
            let (server, object) = (server_of(case.target), &objects[case.object]);
            let url = url(case.target, server, object);
            let run = wrk(&settings, server, &url, object.body.len(), settings.seconds)?;
            println!(
                "round {round}: {:<7} {:<28} {:>9.0} req/s  p99 {:>7.2} ms  {:>7.1} MB/s  CPU server {:>3.0}% wrk {:>3.0}%  (load {}; busy threads: {})",
                object.label,
                case.target.label(),
                run.requests_per_s,
                run.p99_ms,
                run.mb_s,
                run.server_cpu * 100.0,
                run.client_cpu * 100.0,
                loadavg(),
                run.busy_threads
                    .iter()
                    .map(|(name, share)| format!("{name} {:.0}%", share * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            case.runs.push(run);
        }
    }
    for (_, server) in &servers {
        server.signal("CONT")?;
    }

    println!(
        "\nmedians of {} round(s) of wrk -t{} -c{} -d{}s; MB/s = 10^6 payload bytes/s:",
        settings.rounds, settings.threads, settings.connections, settings.seconds
    );
    println!(
        "| object | server | req/s | (min-max) | p99 (ms) | MB/s | server CPU | wrk CPU | req per server CPU-second |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in &cases {
        let (min, max) = case.runs.iter().fold((f64::MAX, 0f64), |(lo, hi), r| {
            (lo.min(r.requests_per_s), hi.max(r.requests_per_s))
        });
        println!(
            "| {} | {} | {:.0} | {min:.0}-{max:.0} | {:.2} | {:.1} | {:.0}% | {:.0}% | {:.0} |",
            objects[case.object].label,
            case.target.label(),
            case.median(|r| r.requests_per_s),
            case.median(|r| r.p99_ms),
            case.median(|r| r.mb_s),
            case.median(|r| r.server_cpu) * 100.0,
            case.median(|r| r.client_cpu) * 100.0,
            case.median(|r| r.requests_per_s / r.server_cpu),
        );
    }
    let find = |target: Target, object: usize| {
        cases
            .iter()
            .find(|c| c.target == target && c.object == object)
    };
    println!(
        "\n| ratio | object | req/s | p99 | req per server CPU-second | target (req/s) |\n\
         |---|---|---:|---:|---:|---|"
    );
    for (numerator, denominator, what, goal) in [
        (Target::Edge, Target::Nginx, "mediahost / nginx", Some(1.0)),
        (
            Target::EdgePlugin,
            Target::Nginx,
            "mediahost + 1 plugin / nginx",
            Some(0.7),
        ),
        (Target::Edge, Target::Floor, "mediahost / axum floor", None),
        (Target::Floor, Target::Nginx, "axum floor / nginx", None),
    ] {
        for (index, object) in objects.iter().enumerate() {
            let (Some(a), Some(b)) = (find(numerator, index), find(denominator, index)) else {
                continue;
            };
            let ratio = |f: &dyn Fn(&Run) -> f64| a.median(f) / b.median(f);
            let requests = ratio(&|r| r.requests_per_s);
            let verdict = match goal {
                Some(goal) if requests >= goal => format!("≥ {goal:.1}: **met**"),
                Some(goal) => format!("≥ {goal:.1}: **missed**"),
                None => "—".to_owned(),
            };
            println!(
                "| {what} | {} | {requests:.2} | {:.2} | {:.2} | {verdict} |",
                object.label,
                ratio(&|r| r.p99_ms),
                ratio(&|r| r.requests_per_s / r.server_cpu),
            );
        }
    }
    println!("\npeak RSS (VmHWM, MiB):");
    for (_, server) in &servers {
        let each: Vec<String> = server
            .peak_rss_mib_each()
            .iter()
            .map(|m| format!("{m:.1}"))
            .collect();
        println!(
            "  {}: {} (the process{})",
            server.name,
            each.join(" + "),
            if each.len() > 1 {
                " first, then the processes it started: workers, cache manager"
            } else {
                ""
            }
        );
    }
    println!("load average at the end: {}", loadavg());
    drop(servers);
    drop(origin);
    Ok(())
}
