//! Drives the real `mediahost` binary: a server on a random port over a fresh data dir.
//!
//! The metadata database is the SQLite file in the data dir, or with
//! `MEDIAHOST_TEST_DATABASE=postgres` a fresh scratch database per server on the PostgreSQL
//! server named by `MEDIAHOST_TEST_POSTGRES_URL` (dropped with the server), so every test here
//! runs on either backend. Likewise `MEDIAHOST_TEST_STORAGE=s3` (a fresh bucket per server) and
//! `MEDIAHOST_TEST_QUEUE=rabbitmq` (a queue of its own per server on the broker of
//! `MEDIAHOST_TEST_AMQP_URL`, deleted with the server) instead of the embedded defaults.

#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mediahost_blob::test_support::TestS3;
use mediahost_store::testing::{ScratchPostgres, postgres_server_url};

pub mod edge;
pub mod tus;

pub const BIN: &str = env!("CARGO_BIN_EXE_mediahost");

/// A running server; killed (and its data dir removed) on drop.
pub struct Server {
    child: Child,
    pub addr: String,
    pub base: String,
    /// Base URL of the edge the server runs beside its API (the one-process default).
    pub edge_base: String,
    /// Base URL of its gRPC listener (`grpc.listen`, api and worker roles).
    pub grpc_base: String,
    pub data_dir: tempfile::TempDir,
    log: PathBuf,
    /// Extra arguments of `mediahost serve` ([`Options::args`]), kept for restarts.
    args: Vec<String>,
    /// The S3 server and bucket holding its objects, under `MEDIAHOST_TEST_STORAGE=s3`.
    pub s3: Option<(TestS3, String)>,
    /// The database given to the server and its CLI commands, when not the SQLite file in the
    /// data dir.
    database_url: Option<String>,
    /// The scratch PostgreSQL database this server owns, when the tests run on PostgreSQL;
    /// dropped after the process is killed.
    postgres: Option<ScratchPostgres>,
    /// Its RabbitMQ queue, when the tests run on RabbitMQ; deleted after the process is killed.
    queue: Option<TestQueue>,
}

/// Which object storage servers get: `MEDIAHOST_TEST_STORAGE=s3` gives every server a fresh
/// bucket on the S3 server of `MEDIAHOST_TEST_S3_ENDPOINT` (see `scripts/s3-server`), so the
/// same end-to-end tests run on S3; unset or `local`, local files under the data dir.
fn test_storage() -> Option<(TestS3, String)> {
    match std::env::var("MEDIAHOST_TEST_STORAGE").as_deref() {
        Err(_) | Ok("" | "local") => None,
        Ok("s3") => {
            let s3 = TestS3::from_env("end-to-end server").unwrap_or_else(|| {
                panic!(
                    "MEDIAHOST_TEST_STORAGE=s3 needs {}; start a server with \
                     `eval \"$(scripts/s3-server start)\"`",
                    mediahost_blob::test_support::ENDPOINT_VAR
                )
            });
            let bucket = s3.create_bucket_blocking();
            Some((s3, bucket))
        }
        Ok(other) => panic!("MEDIAHOST_TEST_STORAGE={other:?}: use \"local\" or \"s3\""),
    }
}

/// A RabbitMQ queue of a test's own on the broker of `MEDIAHOST_TEST_AMQP_URL`; deleted, with
/// its dead-letter queue, when dropped (retry queues expire by themselves).
pub struct TestQueue {
    /// The broker's URL.
    pub amqp: String,
    /// The queue's name (`queue.name`).
    pub name: String,
}

impl TestQueue {
    /// A fresh queue name on the broker; `None` without `MEDIAHOST_TEST_AMQP_URL`.
    pub fn create() -> Option<Self> {
        // The count keeps apart queues that tests running at once in this process create in
        // the same clock tick (it happened: two tests then shared, and deleted, one queue).
        static CREATED: AtomicU32 = AtomicU32::new(0);
        let amqp = mediahost_store::testing::amqp_server_url()?;
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("mh-test-{}-{n}-{nanos}", std::process::id());
        Some(Self { amqp, name })
    }

    /// The `[queue]` table of a server using it.
    pub fn config_toml(&self) -> String {
        format!(
            "[queue]\nbackend = \"rabbitmq\"\namqp_url = {:?}\nname = {:?}\n",
            self.amqp, self.name
        )
    }

    /// Which queue servers get: `MEDIAHOST_TEST_QUEUE=rabbitmq` gives each a queue of its own
    /// on RabbitMQ; unset or `embedded`, the embedded queue in its data dir.
    fn from_env() -> Option<Self> {
        match std::env::var("MEDIAHOST_TEST_QUEUE").as_deref() {
            Err(_) | Ok("" | "embedded") => None,
            Ok("rabbitmq") => Some(Self::create().expect(
                "MEDIAHOST_TEST_QUEUE=rabbitmq needs MEDIAHOST_TEST_AMQP_URL \
                 (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)",
            )),
            Ok(other) => panic!("MEDIAHOST_TEST_QUEUE={other:?}: use \"embedded\" or \"rabbitmq\""),
        }
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let (amqp, name) = (self.amqp.clone(), self.name.clone());
        // Its own thread and runtime: servers are dropped inside the tests' runtimes.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use lapin::options::QueueDeleteOptions;
                let properties = lapin::ConnectionProperties::default();
                let connection = lapin::Connection::connect(&amqp, properties).await.ok()?;
                let channel = connection.create_channel().await.ok()?;
                for queue in [name.clone(), format!("{name}.dead")] {
                    let options = QueueDeleteOptions::default();
                    let _ = channel.queue_delete(queue.as_str().into(), options).await;
                }
                Some(())
            })
        });
        let _ = deleted.join();
    }
}

/// Which metadata database the servers of this run use, from `MEDIAHOST_TEST_DATABASE`
/// (`sqlite`, the default, or `postgres`).
fn scratch_postgres() -> Option<ScratchPostgres> {
    match std::env::var("MEDIAHOST_TEST_DATABASE").as_deref() {
        Err(_) | Ok("" | "sqlite") => None,
        Ok("postgres") => {
            let url = postgres_server_url().expect(
                "MEDIAHOST_TEST_DATABASE=postgres needs MEDIAHOST_TEST_POSTGRES_URL \
                 (e.g. postgres://postgres@127.0.0.1:5432/test)",
            );
            Some(ScratchPostgres::create(&url))
        }
        Ok(other) => panic!("MEDIAHOST_TEST_DATABASE={other}: expected sqlite or postgres"),
    }
}

/// A `mediahost` command whose database settings come from the test alone: an ambient
/// `DATABASE_URL` (CI sets one) must not send a test's server to a shared database.
fn mediahost_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("MEDIAHOST_DATABASE_URL")
        .env_remove("DATABASE_URL")
        // Likewise for the Redis of tus locks: a test that wants it says so in its config.
        .env_remove("MEDIAHOST_TUS_LOCK")
        .env_remove("MEDIAHOST_REDIS_URL")
        .env_remove("REDIS_URL");
    cmd
}

/// Extra setup for [`Server::start`].
#[derive(Default)]
pub struct Options {
    /// Plugins to install: (plugin name, component file, manifest file).
    pub plugins: Vec<(String, PathBuf, PathBuf)>,
    /// Extra TOML appended to the config file.
    pub config: String,
    /// Top-level options (`key = value` lines outside any table), written first.
    pub top_level: String,
    /// Extra arguments of `mediahost serve`, e.g. `--role api,edge`.
    pub args: Vec<String>,
}

/// A local TCP port for a child process to listen on, free right now.
///
/// Not the kernel's pick (`bind :0`): that comes from the ephemeral range (Linux default
/// 32768–60999), where every outgoing connection of the tests running beside this one (to
/// PostgreSQL, RabbitMQ, S3, the servers themselves) also takes its local port, so a port chosen
/// that way was regularly taken before the child bound it. These come from the window below it,
/// which only explicit binds use; each is handed out once per test process, and each process
/// starts at its own offset so that test binaries running at once rarely meet.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(997) % COUNT;
    loop {
        let port = (FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One HTTP/1.1 GET over a plain socket, true on 200 (keeps start-up polling runtime-free).
fn http_ok(addr: &str, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// `mediahost serve` on `addr` over `data_dir` (config at `data_dir/mediahost.toml`), its
/// stderr appended to `log`.
fn spawn_serve(addr: &str, data_dir: &Path, log: &Path, args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    mediahost_command()
        .args(["serve", "--listen", addr])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(data_dir.join("mediahost.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start mediahost")
}

/// Runs `mediahost serve` with `config` as its config file and `env` added to its environment,
/// expecting it to fail at start-up (within 60 s); returns its exit status and stderr.
pub fn serve_failing(config: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let data_dir = tempfile::tempdir().unwrap();
    let config_path = data_dir.path().join("mediahost.toml");
    std::fs::write(&config_path, config).unwrap();
    let log_path = data_dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--edge-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data_dir.path())
        .arg("--config")
        .arg(&config_path)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start mediahost");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mediahost serve kept running; log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(&log_path).unwrap())
}

impl Server {
    pub fn start(options: Options) -> Server {
        Self::start_on(options, None)
    }

    /// A server on `other`'s metadata database (with a data dir of its own): a second api
    /// process of the same deployment.
    pub fn start_sharing_database(options: Options, other: &Server) -> Server {
        Self::start_on(options, Some(other.database_url()))
    }

    /// A server on the database at `database_url`, or on a fresh one.
    fn start_on(options: Options, database_url: Option<String>) -> Server {
        let data_dir = tempfile::tempdir().unwrap();
        let plugin_dir = data_dir.path().join("plugins");
        for (name, wasm, manifest) in &options.plugins {
            let dir = plugin_dir.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(manifest, dir.join("plugin.toml")).unwrap();
            std::fs::copy(wasm, dir.join(wasm.file_name().unwrap())).unwrap();
        }
        // A test that configures its own storage keeps it.
        let s3 = test_storage().filter(|_| !options.config.contains("[storage]"));
        let storage = s3
            .as_ref()
            .map(|(s3, bucket)| s3.config_toml(bucket))
            .unwrap_or_default();
        let config_path = data_dir.path().join("mediahost.toml");
        let mut config = std::fs::File::create(&config_path).unwrap();
        writeln!(config, "{}", options.top_level).unwrap();
        let postgres = match database_url {
            Some(_) => None,
            None => scratch_postgres(),
        };
        let database_url = database_url.or_else(|| postgres.as_ref().map(|db| db.url().to_owned()));
        if let Some(url) = &database_url {
            writeln!(config, "[database]\nurl = {url:?}").unwrap();
        }
        // A test that configures its own queue keeps it.
        let queue = TestQueue::from_env().filter(|_| !options.config.contains("[queue]"));
        if let Some(queue) = &queue {
            writeln!(config, "{}", queue.config_toml()).unwrap();
        }
        // The edge runs beside the API on a port of its own (in the config file, so restarts
        // keep it), unless the test configures its own `[edge]`.
        let edge_addr = format!("127.0.0.1:{}", free_port());
        if !options.config.contains("[edge]") {
            writeln!(config, "[edge]\nlisten = {edge_addr:?}").unwrap();
        }
        // Likewise the gRPC listener of the api and worker roles.
        let grpc_addr = format!("127.0.0.1:{}", free_port());
        if !options.config.contains("[grpc]") {
            writeln!(config, "[grpc]\nlisten = {grpc_addr:?}").unwrap();
        }
        writeln!(
            config,
            "[worker]\npoll_interval_ms = 200\n[plugins]\ndir = {:?}\n{}\n{storage}",
            plugin_dir.display().to_string(),
            options.config
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = data_dir.path().join("server.log");
        let child = spawn_serve(&addr, data_dir.path(), &log, &options.args);
        let mut server = Server {
            child,
            base: format!("http://{addr}"),
            edge_base: format!("http://{edge_addr}"),
            grpc_base: format!("http://{grpc_addr}"),
            addr,
            data_dir,
            log,
            args: options.args,
            s3,
            database_url,
            postgres,
            queue,
        };
        server.wait_healthy();
        server
    }

    /// Stops the server with SIGTERM (asserting it exits within `limit`), then starts it again
    /// on the same address, data dir and config.
    pub fn restart(&mut self, limit: Duration) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "exit after SIGTERM: {status}\n{}",
                    self.log()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server still running {limit:?} after SIGTERM\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = spawn_serve(&self.addr, self.data_dir.path(), &self.log, &self.args);
        self.wait_healthy();
    }

    /// Kills the server with SIGKILL (no graceful shutdown, as in a crash or power loss), then
    /// starts it again on the same address, data dir and config.
    pub fn kill9_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = spawn_serve(&self.addr, self.data_dir.path(), &self.log, &self.args);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if http_ok(&self.addr, "/healthz") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited with {status}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not become healthy; log:\n{}", self.log());
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `mediahost tenant create NAME` on the server's data dir and returns the key
    /// (the last line of stdout, as documented).
    pub fn create_tenant(&self, name: &str) -> String {
        let out = self
            .command()
            .args(["tenant", "create", name, "--data-dir"])
            .arg(self.data_dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout.lines().last().unwrap().trim().to_owned()
    }

    /// A `mediahost` command on this server's metadata database (PostgreSQL through
    /// `MEDIAHOST_DATABASE_URL`, else the SQLite file its `--data-dir` names).
    pub fn command(&self) -> Command {
        let mut cmd = mediahost_command();
        if let Some(url) = &self.database_url {
            cmd.env("MEDIAHOST_DATABASE_URL", url);
        }
        cmd
    }

    /// Runs `mediahost <args>` on this server's database, data dir and config file (the
    /// administration commands, e.g. `tenant quota acme`).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--config")
            .arg(self.data_dir.path().join("mediahost.toml"))
            .output()
            .unwrap()
    }

    /// The URL of this server's metadata database.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => mediahost_store::sqlite_url(&self.data_dir.path().join("mediahost.db")),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    /// The Prometheus text served at `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

/// A tenant's view of the API over HTTP.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Client {
    pub fn new(server: &Server, key: &str) -> Self {
        Self::with(reqwest::Client::new(), server, key)
    }

    pub fn with(http: reqwest::Client, server: &Server, key: &str) -> Self {
        Self {
            http,
            base: server.base.clone(),
            key: key.to_owned(),
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// The body of `GET path` with the key, as text.
    pub async fn text(&self, path: &str) -> String {
        self.get(path).send().await.unwrap().text().await.unwrap()
    }

    /// `POST /v1/videos`, asserting 201; returns the video JSON.
    pub async fn create_video(&self, title: &str, filename: Option<&str>) -> serde_json::Value {
        let res = self
            .http
            .post(format!("{}/v1/videos", self.base))
            .bearer_auth(&self.key)
            .json(&serde_json::json!({"title": title, "filename": filename}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let video: serde_json::Value = res.json().await.unwrap();
        assert_eq!(video["status"], "awaiting_upload");
        video
    }

    /// `PUT /v1/videos/{id}/source` with `body`.
    pub async fn put_source(&self, id: &str, body: reqwest::Body) -> reqwest::Response {
        self.http
            .put(format!("{}/v1/videos/{id}/source", self.base))
            .bearer_auth(&self.key)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a video and uploads the file at `clip` as its source (sized), asserting 202;
    /// returns the video id.
    pub async fn upload(&self, title: &str, filename: &str, clip: &Path) -> String {
        let video = self.create_video(title, Some(filename)).await;
        let id = video["id"].as_str().unwrap().to_owned();
        let res = self.put_source(&id, file_body(clip, true).await).await;
        assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
        id
    }

    /// `GET /v1/videos/{id}` as JSON.
    pub async fn video(&self, id: &str) -> serde_json::Value {
        self.get(&format!("/v1/videos/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls `GET /v1/videos/{id}` every `poll` until `done` holds for the video, failing with
    /// `what` after `limit`.
    pub async fn wait_for(
        &self,
        id: &str,
        limit: Duration,
        poll: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let video = self.video(id).await;
            if done(&video) {
                return video;
            }
            assert!(Instant::now() < deadline, "{what}: {video}");
            tokio::time::sleep(poll).await;
        }
    }

    /// Polls `GET /v1/videos/{id}` until the status is `ready` or `failed`.
    pub async fn wait_settled(&self, id: &str) -> serde_json::Value {
        self.wait_for(
            id,
            Duration::from_secs(180),
            Duration::from_millis(250),
            "video never settled",
            |video| video["status"] == "ready" || video["status"] == "failed",
        )
        .await
    }

    /// Uploads a generated 2 s clip (`clip.mp4`, made in `dir`) and waits until it is ready;
    /// returns the video.
    pub async fn ready_clip(&self, dir: &Path) -> serde_json::Value {
        let id = self
            .upload("clip", "clip.mp4", &clip(dir, "clip.mp4", 2.0))
            .await;
        let video = self.wait_settled(&id).await;
        assert_eq!(video["status"], "ready", "{video}");
        video
    }
}

/// `(name, width, height)` of each rendition of a video (as JSON), in order.
pub fn rendition_sizes(video: &serde_json::Value) -> Vec<(String, u64, u64)> {
    video["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["width"].as_u64().unwrap(),
                r["height"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Generates a `seconds`-long test clip (the testkit's defaults otherwise) at `dir/name`.
pub fn clip(dir: &Path, name: &str, seconds: f64) -> PathBuf {
    let path = dir.join(name);
    mediahost_testkit::generate_clip(
        &path,
        &mediahost_testkit::Clip {
            seconds,
            ..mediahost_testkit::Clip::default()
        },
    );
    path
}

/// A file as a streaming request body (sent with Content-Length over HTTP/1.1 when `sized`,
/// chunked otherwise).
pub async fn file_body(path: &Path, sized: bool) -> reqwest::Body {
    if sized {
        reqwest::Body::from(tokio::fs::read(path).await.unwrap())
    } else {
        let file = tokio::fs::File::open(path).await.unwrap();
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file))
    }
}
