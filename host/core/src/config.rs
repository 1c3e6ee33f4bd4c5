//! The one configuration file (`mediahost.toml`), with a default for every option.
//!
//! Precedence is CLI flag > environment variable > file > default; the binary applies the first
//! two on top of what [`Config::load`] returns. Every field is documented here and in the README's
//! configuration section.

use serde::{Deserialize, Serialize};

use crate::plugin::Chains;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file that failed.
        path: PathBuf,
        /// The parser's explanation, naming the key.
        message: String,
    },
    /// An environment variable holds a value its option cannot take.
    #[error("invalid environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// Top-level configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Folder holding the SQLite DB, object storage and temp files.
    pub data_dir: PathBuf,
    /// Base URL clients reach the API at, used in playback URLs. When unset, the request's
    /// `Host` header is used.
    pub public_url: Option<String>,
    /// The in-process transcode worker.
    pub worker: WorkerConfig,
    /// Where transcode jobs are queued: the metadata database (default) or RabbitMQ.
    pub queue: QueueConfig,
    /// What the worker produces.
    pub transcode: TranscodeConfig,
    /// WebAssembly plugins.
    pub plugins: PluginsConfig,
    /// The operator's admin API (`/v1/plugins`).
    pub admin: AdminConfig,
    /// tus resumable uploads at `/v1/uploads`.
    pub tus: TusConfig,
    /// Default quotas of every tenant; a tenant's own quota (`mediahost tenant quota`)
    /// overrides them limit by limit. Unset limits are unlimited.
    pub quotas: crate::Quota,
    /// HTTPS: a second listener serving the same API over TLS, HTTP/2 negotiated by ALPN.
    pub tls: TlsConfig,
    /// Permanent object storage for sources and renditions (local files or S3).
    pub storage: StorageConfig,
    /// The metadata database (and embedded job queue).
    pub database: DatabaseConfig,
    /// Signed playback URLs.
    pub playback: PlaybackConfig,
    /// The edge role (`mediahost edge`): a caching proxy in front of the origin.
    pub edge: EdgeConfig,
    /// The cache of video lookups on the hot read paths (playback, the edge).
    pub cache: CacheConfig,
    /// The other processes of a deployment this one talks to.
    pub cluster: ClusterConfig,
    /// Seconds a stopping process (SIGTERM/SIGINT) gives what is in flight: requests finish,
    /// the worker hands its job back. It stops accepting at once; what still runs after this
    /// long is cut (an upload cut mid-PATCH keeps its durable offset, so its client resumes).
    pub shutdown_grace_seconds: u64,
    /// The gRPC listener of the api and worker roles (edges serve gRPC on `edge.listen`).
    pub grpc: GrpcConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./mediahost-data"),
            public_url: None,
            worker: WorkerConfig::default(),
            queue: QueueConfig::default(),
            transcode: TranscodeConfig::default(),
            plugins: PluginsConfig::default(),
            admin: AdminConfig::default(),
            tus: TusConfig::default(),
            quotas: crate::Quota::default(),
            tls: TlsConfig::default(),
            storage: StorageConfig::default(),
            database: DatabaseConfig::default(),
            playback: PlaybackConfig::default(),
            edge: EdgeConfig::default(),
            cache: CacheConfig::default(),
            cluster: ClusterConfig::default(),
            shutdown_grace_seconds: 30,
            grpc: GrpcConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path` when given, otherwise returns the defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The folder plugins are loaded from.
    pub fn plugin_dir(&self) -> PathBuf {
        self.plugins
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }
}

/// The transcode worker running inside the server process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Run a worker in this process.
    pub enabled: bool,
    /// Jobs processed at once.
    pub concurrency: usize,
    /// Attempts before a job that keeps failing for transient reasons is given up
    /// (dead-lettered), on either queue backend.
    pub max_attempts: u32,
    /// Seconds a leased job stays invisible to other workers; renewed while the job runs, so a
    /// worker that dies returns its job to the queue after at most this long. The embedded
    /// queue only: with RabbitMQ a job stays leased while this process holds its delivery
    /// unacknowledged, and returns to the queue when the process's connection closes.
    pub lease_seconds: u64,
    /// Milliseconds between queue polls when idle (new jobs from this process wake it at once).
    pub poll_interval_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 1,
            max_attempts: 3,
            lease_seconds: 60,
            poll_interval_ms: 1000,
        }
    }
}

/// The job queue between the api (which enqueues a transcode job per stored source) and the
/// workers. Every process of a deployment must use the same backend (and queue name).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// `embedded` (the `jobs` table of the metadata database, the default) or `rabbitmq`
    /// (the broker at [`QueueConfig::amqp_url`]). Also `MEDIAHOST_QUEUE_BACKEND`.
    pub backend: QueueBackend,
    /// The RabbitMQ broker of `backend = "rabbitmq"`, e.g.
    /// `amqp://user:password@host:5672/%2f` (the path is the percent-encoded virtual host,
    /// `%2f` for `/`; `amqps://` for TLS). Also `MEDIAHOST_AMQP_URL`, then `AMQP_URL`. Never
    /// printed with its password.
    pub amqp_url: Option<String>,
    /// Name of the durable RabbitMQ queue of transcode jobs; `<name>.dead` holds dead letters
    /// and `<name>.retry.<ms>` the retries waiting out their backoff.
    pub name: String,
    /// Deliveries RabbitMQ sends this process ahead of acknowledgements (`basic.qos`). Unset:
    /// `worker.concurrency`, so every worker of the process has a job and none sits waiting
    /// here that another process could run.
    pub prefetch: Option<u16>,
}

/// Where transcode jobs are queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// A durable queue in the metadata database (SQLite or PostgreSQL).
    #[default]
    Embedded,
    /// A durable RabbitMQ queue (AMQP 0-9-1).
    Rabbitmq,
}

/// Keeps a broker password out of logs and panic messages.
impl std::fmt::Debug for QueueConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueConfig")
            .field("backend", &self.backend)
            .field("amqp_url", &self.amqp_url.as_deref().map(redact_url))
            .field("name", &self.name)
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

impl QueueConfig {
    /// Applies the environment, read through `var` (blank values count as unset):
    /// `MEDIAHOST_QUEUE_BACKEND` overrides `backend`; `MEDIAHOST_AMQP_URL`, else `AMQP_URL`,
    /// overrides `amqp_url` (as `MEDIAHOST_REDIS_URL`, else `REDIS_URL`, does `tus.redis_url`).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(backend) = env_choice(
            &var,
            "MEDIAHOST_QUEUE_BACKEND",
            "queue backend",
            &[
                ("embedded", QueueBackend::Embedded),
                ("rabbitmq", QueueBackend::Rabbitmq),
            ],
        )? {
            self.backend = backend;
        }
        if let Some(url) = var("MEDIAHOST_AMQP_URL").or_else(|| var("AMQP_URL")) {
            self.amqp_url = Some(url);
        }
        Ok(())
    }

    /// The broker URL, if one is set and not blank.
    pub fn amqp_url(&self) -> Option<&str> {
        self.amqp_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// The prefetch count for a process running `worker_concurrency` workers.
    pub fn prefetch(&self, worker_concurrency: usize) -> u16 {
        self.prefetch
            .unwrap_or_else(|| u16::try_from(worker_concurrency).unwrap_or(u16::MAX))
            .max(1)
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backend: QueueBackend::Embedded,
            amqp_url: None,
            name: "mediahost.transcode".into(),
            prefetch: None,
        }
    }
}

/// Encoding settings for the rendition the worker makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeConfig {
    /// Target HLS and DASH segment length in seconds (keyframes are forced on this grid).
    pub segment_seconds: u32,
    /// Length in seconds of the first segment, so that a player can start after this much has
    /// been encoded rather than a whole `segment_seconds` (the rest follow every
    /// `segment_seconds` from its end). `0`, or anything above `segment_seconds`, makes it
    /// as long as the others.
    pub first_segment_seconds: u32,
    /// Largest output height; smaller sources keep their size (never upscaled).
    pub max_height: u32,
    /// libx264 preset (`ultrafast` … `veryslow`).
    pub x264_preset: String,
    /// libx264 constant rate factor (lower is better quality, bigger files).
    pub crf: u32,
    /// AAC bitrate in bits per second.
    pub audio_bitrate: u64,
    /// Whether a source with sound and picture also gets an `audio` rendition (AAC only, the
    /// same encoded audio the video renditions carry) listed after the video ones: what players
    /// fall back to on a very poor link, and what audio-only listening fetches. A source
    /// without video always gets it, as its only rendition.
    pub audio_only_rendition: bool,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self {
            segment_seconds: 4,
            first_segment_seconds: 1,
            max_height: 1080,
            x264_preset: "veryfast".into(),
            crf: 23,
            audio_bitrate: 128_000,
            audio_only_rendition: true,
        }
    }
}

/// Where plugins come from and how hard they may work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder scanned for plugins: each subfolder holding a `plugin.toml` manifest and the
    /// component it names is one plugin. Defaults to `<data_dir>/plugins`.
    pub dir: Option<PathBuf>,
    /// Per-plugin settings that override the defaults in its manifest; what the plugin's
    /// `config` import returns. Keyed by plugin name.
    pub config: BTreeMap<String, BTreeMap<String, String>>,
    /// Global bindings (`[[plugins.bindings.<world>]]` tables: `plugin`, `on_failure`,
    /// `config`, `limits`), run for every tenant before the tenant's own. Written to the
    /// metadata DB at start-up, replacing what was stored. Absent: every loaded plugin of each
    /// world runs, in name order, with the world's default policy. Checked at start-up: each
    /// plugin must be loaded and of the world it is bound in.
    pub bindings: Option<Chains>,
    /// Per-tenant bindings (`[[plugins.tenants.<tenant name>.<world>]]`), run after the global
    /// ones. Written to the metadata DB at start-up, replacing what the API stored for those
    /// tenants; tenants not named here keep what `PUT /v1/tenants/{tenant}/bindings` set. The
    /// tenants must exist.
    pub tenants: BTreeMap<String, Chains>,
    /// Seconds between refreshes of the in-memory bindings from the metadata DB, so bindings
    /// set through another process's API reach this one.
    pub sync_interval_seconds: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            config: BTreeMap::new(),
            bindings: None,
            tenants: BTreeMap::new(),
            sync_interval_seconds: 5,
        }
    }
}

/// tus 1.0 resumable uploads (`/v1/uploads`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TusConfig {
    /// Largest `Upload-Length` accepted, in bytes (advertised as `Tus-Max-Size`).
    pub max_size: u64,
    /// Seconds an incomplete upload lives after creation before it expires and is collected.
    pub expire_seconds: u64,
    /// Seconds between sweeps that delete expired uploads (temp file, row, unfilled video).
    pub sweep_interval_seconds: u64,
    /// Lease of the per-upload write lock in seconds; a PATCH renews it while it runs, so a
    /// crashed server's lock lapses after at most this long.
    pub lock_seconds: u64,
    /// Where the per-upload write locks are held: `database` (a lease in the upload's row of
    /// the metadata DB, the default) or `redis` (a lease key per upload on the Redis server at
    /// [`TusConfig::redis_url`], which takes the lock traffic off the database). Every api
    /// process of a deployment must use the same. Also `MEDIAHOST_TUS_LOCK`.
    pub lock: TusLock,
    /// The Redis server of `lock = "redis"`, e.g. `redis://127.0.0.1:6379/0` (or
    /// `redis://:password@host:6379`, `rediss://` for TLS). Also `MEDIAHOST_REDIS_URL`, then
    /// `REDIS_URL`. Never printed with its password.
    pub redis_url: Option<String>,
    /// Where the bytes of uploads in progress are kept between requests: `disk` (one file per
    /// upload under [`TusConfig::parts_dir`], the default: fastest, one fsync per durable
    /// offset) or `object_storage` (pieces of up to 16 MiB under the tenant's
    /// `tenants/<id>/uploads/<upload id>/` in the object store, joined into the source on
    /// completion). The offset and lock are shared state (database, Redis), and so must these
    /// bytes be when a load balancer sends one upload's requests to several api processes:
    /// `object_storage` makes the api processes stateless (nothing shared but the backends);
    /// `disk` needs one folder they all see. Also `MEDIAHOST_TUS_PARTS`.
    pub parts: TusParts,
    /// Folder of `parts = "disk"` (one file per upload), `<data_dir>/tmp/tus` by default; every
    /// api process behind one load balancer must see the same folder (one host, or a shared
    /// filesystem). Not allowed with `parts = "object_storage"`.
    pub parts_dir: Option<PathBuf>,
}

/// Where the bytes of tus uploads in progress are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TusParts {
    /// A file per upload on local disk (or a shared filesystem).
    #[default]
    Disk,
    /// Piece objects in the object store, beside the tenant's videos.
    ObjectStorage,
}

/// Where tus write locks are held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TusLock {
    /// A lease in the upload's row (`lock_token`, `locked_until`) of the metadata DB.
    #[default]
    Database,
    /// A lease key per upload in Redis (`SET NX PX`), released by a compare-and-delete script.
    Redis,
}

/// Keeps a Redis password out of logs and panic messages.
impl std::fmt::Debug for TusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TusConfig")
            .field("max_size", &self.max_size)
            .field("expire_seconds", &self.expire_seconds)
            .field("sweep_interval_seconds", &self.sweep_interval_seconds)
            .field("lock_seconds", &self.lock_seconds)
            .field("lock", &self.lock)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("parts", &self.parts)
            .field("parts_dir", &self.parts_dir)
            .finish()
    }
}

impl TusConfig {
    /// Applies the environment, read through `var` (blank values count as unset):
    /// `MEDIAHOST_TUS_LOCK` overrides `lock`, `MEDIAHOST_TUS_PARTS` `parts`;
    /// `MEDIAHOST_REDIS_URL`, else `REDIS_URL`, overrides `redis_url` (as
    /// `MEDIAHOST_DATABASE_URL`, else `DATABASE_URL`, does `database.url`).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(lock) = env_choice(
            &var,
            "MEDIAHOST_TUS_LOCK",
            "lock backend",
            &[("database", TusLock::Database), ("redis", TusLock::Redis)],
        )? {
            self.lock = lock;
        }
        if let Some(parts) = env_choice(
            &var,
            "MEDIAHOST_TUS_PARTS",
            "place for upload bytes",
            &[
                ("disk", TusParts::Disk),
                ("object_storage", TusParts::ObjectStorage),
            ],
        )? {
            self.parts = parts;
        }
        if let Some(url) = var("MEDIAHOST_REDIS_URL").or_else(|| var("REDIS_URL")) {
            self.redis_url = Some(url);
        }
        Ok(())
    }

    /// The Redis URL, if one is set and not blank.
    pub fn redis_url(&self) -> Option<&str> {
        non_blank(&self.redis_url)
    }
}

impl Default for TusConfig {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024 * 1024,
            expire_seconds: 86_400,
            sweep_interval_seconds: 300,
            lock_seconds: 30,
            lock: TusLock::Database,
            redis_url: None,
            parts: TusParts::Disk,
            parts_dir: None,
        }
    }
}

/// HTTPS with HTTP/2 (ALPN `h2`, falling back to `http/1.1`). Off unless `listen` is set; the
/// plain listener (`listen` at the top level) keeps serving, e.g. for health checks on
/// localhost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the HTTPS listener, e.g. `0.0.0.0:8443`.
    pub listen: Option<SocketAddr>,
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

/// The operator's admin API.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer key of the operator, the only key the admin API accepts (tenant keys never do).
    /// Unset or blank, the admin API answers 403. Also `MEDIAHOST_OPERATOR_KEY`.
    pub operator_key: Option<String>,
}

impl AdminConfig {
    /// The operator key, if one is set and not blank.
    pub fn operator_key(&self) -> Option<&str> {
        self.operator_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
    }
}

/// Keeps the operator key out of logs and panic messages.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.operator_key.as_ref().map(|_| "<redacted>");
        f.debug_struct("AdminConfig")
            .field("operator_key", &key)
            .finish()
    }
}

/// Where sources and renditions are kept for good. Temp files (uploads being received, tus
/// parts, transcoder work folders) always stay on local disk under `<data_dir>/tmp`, whichever
/// backend is chosen: they are rewritten and fsynced piece by piece, which object stores cannot do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (files under `<data_dir>/objects`, the default) or `s3` (the bucket of
    /// [`StorageConfig::s3`]). Also `MEDIAHOST_STORAGE_BACKEND`.
    pub backend: StorageBackend,
    /// The S3 bucket, used when `backend = "s3"`.
    pub s3: S3Config,
    /// Named stores for tenants whose data must stay apart (`[storage.placements.<name>]`): a
    /// tenant created with `--placement <name>` keeps every object (sources, renditions) there
    /// instead of in the store above. Every process that touches the tenant's objects needs
    /// the same placements.
    pub placements: BTreeMap<String, Placement>,
}

/// One placement: an object store of its own (a bucket with its own credentials, a prefix of a
/// shared bucket, or a local folder).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Placement {
    /// `local` (files under [`Placement::dir`]) or `s3` (the bucket of [`Placement::s3`]).
    pub backend: StorageBackend,
    /// Folder of a `local` placement; default `<data_dir>/placements/<name>`.
    pub dir: Option<PathBuf>,
    /// The bucket of an `s3` placement. Only the file sets it (no `MEDIAHOST_S3_*` variables:
    /// those are the main store's); unset endpoint, region and credentials fall back to the
    /// standard `AWS_*` variables.
    pub s3: S3Config,
}

impl Placement {
    /// Fills the S3 options the file left unset from the standard `AWS_*` variables.
    fn fill_from_aws_env(&mut self, var: &dyn Fn(&str) -> Option<String>) {
        let s3 = &mut self.s3;
        let options: [(&mut Option<String>, &[&str]); 4] = [
            (&mut s3.endpoint, &["AWS_ENDPOINT_URL"]),
            (&mut s3.region, &["AWS_REGION", "AWS_DEFAULT_REGION"]),
            (&mut s3.access_key_id, &["AWS_ACCESS_KEY_ID"]),
            (&mut s3.secret_access_key, &["AWS_SECRET_ACCESS_KEY"]),
        ];
        for (option, fallbacks) in options {
            if option.is_none() {
                *option = fallbacks.iter().find_map(|name| var(name));
            }
        }
    }
}

/// Which object store keeps sources and renditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Files under `<data_dir>/objects`: nothing to set up, one machine only.
    #[default]
    Local,
    /// An S3 bucket (AWS or any S3-compatible server), shared by every process of a deployment.
    S3,
}

/// An S3 (or S3-compatible) bucket. Each option may also come from the environment:
/// `MEDIAHOST_S3_<OPTION>` overrides the file, and the standard `AWS_*` variables fill in what
/// neither sets (see [`StorageConfig::apply_env`]).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Name of the bucket; it must exist (mediahost never creates buckets). Required with
    /// `backend = "s3"`. Also `MEDIAHOST_S3_BUCKET`.
    pub bucket: Option<String>,
    /// Base URL of an S3-compatible server, e.g. `http://127.0.0.1:9000` (MinIO, Ceph, moto);
    /// requests are then path-style (`<endpoint>/<bucket>/<key>`), which every such server
    /// understands. Unset: AWS S3 in `region`. Also `MEDIAHOST_S3_ENDPOINT`, then
    /// `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// Region the bucket lives in (signs every request); `us-east-1` when unset. Also
    /// `MEDIAHOST_S3_REGION`, then `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Access key id. Unset (with the secret also unset): the role of the EC2 instance the
    /// process runs on (instance metadata). Also `MEDIAHOST_S3_ACCESS_KEY_ID`, then
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Secret access key belonging to `access_key_id`. Also `MEDIAHOST_S3_SECRET_ACCESS_KEY`,
    /// then `AWS_SECRET_ACCESS_KEY`. Never printed in logs.
    pub secret_access_key: Option<String>,
    /// Folder-like key prefix every object is stored under (`<prefix>/<tenant>/<video>/...`),
    /// so several deployments can share one bucket. Also `MEDIAHOST_S3_PREFIX`.
    pub prefix: Option<String>,
    /// Allow an `http://` endpoint (unencrypted: for a server on the same host or a trusted
    /// network only). Default `false`. Also `MEDIAHOST_S3_ALLOW_HTTP` (`true`/`false`).
    pub allow_http: bool,
}

/// Keeps the secret key out of logs and panic messages.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = self.secret_access_key.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &secret)
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl StorageConfig {
    /// Applies the environment, read through `var` (blank values count as unset):
    /// `MEDIAHOST_STORAGE_BACKEND` and `MEDIAHOST_S3_*` override the file, while the standard
    /// `AWS_*` variables only fill options that neither the file nor a `MEDIAHOST_S3_*`
    /// variable set, so an ambient AWS profile never silently overrides an explicit setting.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(backend) = env_choice(
            &var,
            "MEDIAHOST_STORAGE_BACKEND",
            "storage backend",
            &[("local", StorageBackend::Local), ("s3", StorageBackend::S3)],
        )? {
            self.backend = backend;
        }
        let s3 = &mut self.s3;
        let options: [(&mut Option<String>, &str, &[&str]); 6] = [
            (&mut s3.bucket, "MEDIAHOST_S3_BUCKET", &[]),
            (
                &mut s3.endpoint,
                "MEDIAHOST_S3_ENDPOINT",
                &["AWS_ENDPOINT_URL"],
            ),
            (
                &mut s3.region,
                "MEDIAHOST_S3_REGION",
                &["AWS_REGION", "AWS_DEFAULT_REGION"],
            ),
            (
                &mut s3.access_key_id,
                "MEDIAHOST_S3_ACCESS_KEY_ID",
                &["AWS_ACCESS_KEY_ID"],
            ),
            (
                &mut s3.secret_access_key,
                "MEDIAHOST_S3_SECRET_ACCESS_KEY",
                &["AWS_SECRET_ACCESS_KEY"],
            ),
            (&mut s3.prefix, "MEDIAHOST_S3_PREFIX", &[]),
        ];
        for (option, own, fallbacks) in options {
            if let Some(v) = var(own) {
                *option = Some(v);
            } else if option.is_none() {
                *option = fallbacks.iter().find_map(|name| var(name));
            }
        }
        if let Some(v) = var("MEDIAHOST_S3_ALLOW_HTTP") {
            s3.allow_http = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(ConfigError::Env {
                        var: "MEDIAHOST_S3_ALLOW_HTTP",
                        message: format!("{v:?} is not a boolean; use true or false"),
                    });
                }
            };
        }
        for placement in self.placements.values_mut() {
            placement.fill_from_aws_env(&var);
        }
        Ok(())
    }
}

/// The metadata database, which also holds the embedded job queue.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:///path/to/file.db?mode=rwc` or `postgres://user:password@host:5432/db`.
    /// Unset: the SQLite file `mediahost.db` under the data dir. Also `MEDIAHOST_DATABASE_URL`
    /// (or `DATABASE_URL`) and `--database-url`.
    pub url: Option<String>,
}

impl DatabaseConfig {
    /// The configured URL, if one is set and not blank; `None` means the SQLite file
    /// `mediahost.db` under the data dir.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref().map(str::trim).filter(|u| !u.is_empty())
    }
}

/// Keeps a database password out of logs and panic messages.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .finish()
    }
}

/// The choice the environment variable `name` makes among `choices` (any case), read through
/// `var`; `None` when it is unset. Anything else is an error naming the variable and the
/// choices, e.g. `"etcd" is not a lock backend; use "database" or "redis"`.
fn env_choice<T: Copy>(
    var: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    what: &str,
    choices: &[(&str, T)],
) -> Result<Option<T>, ConfigError> {
    let Some(value) = var(name) else {
        return Ok(None);
    };
    let wanted = value.trim().to_ascii_lowercase();
    if let Some((_, choice)) = choices.iter().find(|(key, _)| *key == wanted) {
        return Ok(Some(*choice));
    }
    let keys: Vec<String> = choices.iter().map(|(key, _)| format!("{key:?}")).collect();
    Err(ConfigError::Env {
        var: name,
        message: format!("{value:?} is not a {what}; use {}", keys.join(" or ")),
    })
}

/// `url` with the password (if any) replaced by `***`, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

/// Signed playback URLs (`?exp=&sig=`), which play without an API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybackConfig {
    /// Seconds a `playback.signed_hls` URL from `GET /v1/videos/{id}` stays valid.
    pub signed_url_seconds: u64,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        Self {
            signed_url_seconds: 3600,
        }
    }
}

/// The edge role (`mediahost edge`): serves signed playback URLs from a memory and a disk
/// cache, pulling misses from the origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Base URL of the origin (the api role), e.g. `http://127.0.0.1:8080`; required to run an
    /// edge. Also `--origin` / `MEDIAHOST_EDGE_ORIGIN`.
    pub origin: Option<String>,
    /// Address the edge listens on (HTTP/1.1, and HTTP/2 for its gRPC control service). Also
    /// `--listen` / `MEDIAHOST_EDGE_LISTEN`.
    pub listen: SocketAddr,
    /// Byte budget of the memory cache; least recently used objects are evicted beyond it (to
    /// the disk tier when there is one). Also `--cache-bytes` / `MEDIAHOST_EDGE_CACHE_BYTES`.
    pub cache_bytes: u64,
    /// Byte budget of the disk cache, the second tier: objects evicted from memory, or too big
    /// for it, are kept there; least recently used files are deleted beyond it. `0` turns the
    /// disk tier off. Also `--disk-cache-bytes` / `MEDIAHOST_EDGE_DISK_CACHE_BYTES`.
    pub disk_cache_bytes: u64,
    /// Folder of the disk cache (one file per object; rescanned at start-up, so the cache
    /// survives a restart). Default `<data_dir>/edge-cache`. Also `--disk-cache-dir` /
    /// `MEDIAHOST_EDGE_DISK_CACHE_DIR`.
    pub disk_cache_dir: Option<PathBuf>,
    /// Seconds a cached playlist (`.m3u8`, `.mpd`) may still be served after its `max-age`
    /// passed: answered `X-Cache: STALE` while one background request refreshes it, and kept
    /// while the origin is down or failing (5xx) for at most this long. `0` turns
    /// stale-while-revalidate off. Also `--stale-if-error-seconds` /
    /// `MEDIAHOST_EDGE_STALE_IF_ERROR_SECONDS`.
    pub stale_if_error_seconds: u64,
    /// Seconds to wait for the origin to accept a connection and answer with headers before
    /// the request fails with 502.
    pub origin_timeout_seconds: u64,
    /// Name of the edge group this edge belongs to (the router plugin's `edge group` of a
    /// video names one); shown by `/healthz` and in the metrics. Also `--group` /
    /// `MEDIAHOST_EDGE_GROUP`.
    pub group: String,
}

impl EdgeConfig {
    /// The disk cache's folder: `disk_cache_dir`, else `<data_dir>/edge-cache`.
    pub fn disk_cache_dir(&self, data_dir: &Path) -> PathBuf {
        self.disk_cache_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("edge-cache"))
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            origin: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            cache_bytes: 256 * 1024 * 1024,
            disk_cache_bytes: 4 * 1024 * 1024 * 1024,
            disk_cache_dir: None,
            stale_if_error_seconds: 300,
            origin_timeout_seconds: 10,
            group: default_group(),
        }
    }
}

/// Where video lookups of the hot read paths are cached.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` (in this process, the default) or `redis` (shared by every process at
    /// [`CacheConfig::redis_url`], so a change made by one is seen by all at once). Also
    /// `MEDIAHOST_CACHE_LOOKUPS`.
    pub lookups: LookupBackend,
    /// The Redis server of `lookups = "redis"`. Also `MEDIAHOST_REDIS_URL`, then `REDIS_URL`.
    /// Never printed with its password.
    pub redis_url: Option<String>,
    /// Seconds a cached lookup lives. Changes made through this process (or any process, with
    /// Redis) invalidate it at once; with the in-process cache, other processes' changes are
    /// seen after at most this long.
    pub lookup_ttl_seconds: u64,
    /// Most entries of the in-process cache.
    pub lookup_entries: usize,
}

/// Where cached lookups live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupBackend {
    /// In this process's memory.
    #[default]
    Memory,
    /// In Redis, shared by every process.
    Redis,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            lookups: LookupBackend::Memory,
            redis_url: None,
            lookup_ttl_seconds: 5,
            lookup_entries: 100_000,
        }
    }
}

/// Keeps a Redis password out of logs and panic messages.
impl std::fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheConfig")
            .field("lookups", &self.lookups)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("lookup_ttl_seconds", &self.lookup_ttl_seconds)
            .field("lookup_entries", &self.lookup_entries)
            .finish()
    }
}

impl CacheConfig {
    /// Applies the environment, read through `var` (blank values count as unset):
    /// `MEDIAHOST_CACHE_LOOKUPS` overrides `lookups`; `MEDIAHOST_REDIS_URL`, else `REDIS_URL`,
    /// overrides `redis_url`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(lookups) = env_choice(
            &var,
            "MEDIAHOST_CACHE_LOOKUPS",
            "lookup cache",
            &[
                ("memory", LookupBackend::Memory),
                ("redis", LookupBackend::Redis),
            ],
        )? {
            self.lookups = lookups;
        }
        if let Some(url) = var("MEDIAHOST_REDIS_URL").or_else(|| var("REDIS_URL")) {
            self.redis_url = Some(url);
        }
        Ok(())
    }

    /// The Redis URL, if one is set and not blank.
    pub fn redis_url(&self) -> Option<&str> {
        non_blank(&self.redis_url)
    }
}

/// The option's value unless unset or blank.
fn non_blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The other processes of a deployment.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The shared secret of the deployment's gRPC control plane: every control call between
    /// processes carries it (`authorization: Bearer <token>`) and every control service
    /// requires it (edges also accept `admin.operator_key`). Unset: this process's control
    /// services refuse every call (PERMISSION_DENIED) and it sends none. Health and reflection
    /// need no token. Also `MEDIAHOST_CLUSTER_TOKEN`. Never printed.
    pub token: Option<String>,
    /// gRPC URLs of the api processes (`grpc.listen` of each, e.g. `http://10.0.0.5:50051`)
    /// that workers of this process report progress and outcomes to, balanced across them.
    /// Empty (the default): workers write progress straight into the metadata database.
    pub api_urls: Vec<String>,
    /// gRPC URLs of worker-only processes (their `grpc.listen`), asked by
    /// `mediahost cluster status` beside the api URLs and the edges.
    pub workers: Vec<String>,
    /// Edges running as separate processes (`[[cluster.edges]]`): deleting a video purges it
    /// from every edge of its group over gRPC (with `token`, else `admin.operator_key`), and
    /// workers push each stored segment to the edges of the video's group in `push` mode. An
    /// edge running in this process is purged directly and needs no entry.
    pub edges: Vec<EdgePeer>,
}

/// Keeps the cluster token out of logs and panic messages.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("api_urls", &self.api_urls)
            .field("workers", &self.workers)
            .field("edges", &self.edges)
            .finish()
    }
}

impl ClusterConfig {
    /// Applies the environment, read through `var`: `MEDIAHOST_CLUSTER_TOKEN` (unless blank)
    /// overrides `token`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(token) = var("MEDIAHOST_CLUSTER_TOKEN").filter(|v| !v.trim().is_empty()) {
            self.token = Some(token);
        }
    }

    /// The cluster token, if one is set and not blank.
    pub fn token(&self) -> Option<&str> {
        non_blank(&self.token)
    }
}

/// The gRPC endpoint of the api and worker roles: the control services of the roles the
/// process runs (`mediahost.control.v1.Jobs` with the api), `grpc.health.v1` and reflection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address of the gRPC listener (plain HTTP/2). Default `127.0.0.1:50051`. Also
    /// `--grpc-listen` / `MEDIAHOST_GRPC_LISTEN`.
    pub listen: SocketAddr,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
        }
    }
}

/// One edge process the api purges and workers may push to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgePeer {
    /// The edge's base URL (its HTTP listener, which also serves its gRPC control service),
    /// e.g. `http://10.0.0.7:8081`.
    pub url: String,
    /// Its edge group (`edge.group` of that edge); default `default`.
    #[serde(default = "default_group")]
    pub group: String,
    /// How it gets a transcode's files: `pull` (default) or `push`.
    #[serde(default)]
    pub mode: EdgeMode,
}

/// How an edge gets a transcode's files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeMode {
    /// It fetches each file from the origin when a viewer first asks for it.
    #[default]
    Pull,
    /// Workers push every media file (init files and segments) to it as soon as it is
    /// stored, so first viewers hit a warm cache; it still pulls what it lacks (playlists,
    /// anything a push missed). For edges expected to serve most videos of their group.
    Push,
}

fn default_group() -> String {
    "default".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let cfg: Config = toml::from_str("").unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn the_cluster_token_comes_from_the_environment_and_is_never_printed() {
        let mut cfg: Config = toml::from_str(
            "[cluster]\ntoken = \"from-file\"\napi_urls = [\"http://a:50051\"]\n[grpc]\nlisten = \"0.0.0.0:6000\"\n",
        )
        .unwrap();
        assert_eq!(cfg.cluster.token(), Some("from-file"));
        assert_eq!(cfg.grpc.listen.port(), 6000);
        cfg.cluster.apply_env(|_| Some("  ".into()));
        assert_eq!(cfg.cluster.token(), Some("from-file"));
        cfg.cluster
            .apply_env(|name| (name == "MEDIAHOST_CLUSTER_TOKEN").then(|| "s3cret".into()));
        assert_eq!(cfg.cluster.token(), Some("s3cret"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert_eq!(Config::default().grpc.listen.to_string(), "127.0.0.1:50051");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = toml::from_str::<Config>("[worker]\nconcurency = 2\n").unwrap_err();
        assert!(err.to_string().contains("concurency"), "{err}");
    }

    #[test]
    fn plugin_settings_parse() {
        let cfg: Config = toml::from_str(
            "[plugins]\ndir = \"/p\"\n[plugins.config.validator]\nmax_size = \"100\"\n",
        )
        .unwrap();
        assert_eq!(cfg.plugin_dir(), PathBuf::from("/p"));
        assert_eq!(cfg.plugins.config["validator"]["max_size"], "100");
    }

    #[test]
    fn bindings_parse_per_world_and_per_tenant() {
        let cfg: Config = toml::from_str(
            r#"
            [plugins]
            sync_interval_seconds = 2
            [[plugins.bindings.validator]]
            plugin = "validator"
            config = { max_size = 1000 }
            limits = { timeout_ms = 20 }
            [[plugins.bindings.router]]
            plugin = "router"
            [[plugins.tenants.acme.validator]]
            plugin = "strict"
            on_failure = "fail-open"
            "#,
        )
        .unwrap();
        let global = cfg.plugins.bindings.as_ref().unwrap();
        assert_eq!(global.validator[0].config["max_size"], "1000");
        assert_eq!(global.validator[0].limits.timeout_ms, Some(20));
        assert_eq!(
            global.router[0].on_failure,
            crate::FailurePolicy::FailOpen,
            "the router world's default"
        );
        let acme = &cfg.plugins.tenants["acme"];
        assert_eq!(acme.validator[0].on_failure, crate::FailurePolicy::FailOpen);
        assert_eq!(cfg.plugins.sync_interval_seconds, 2);
        assert_eq!(Config::default().plugins.sync_interval_seconds, 5);
        assert_eq!(Config::default().plugins.bindings, None);

        let err = toml::from_str::<Config>("[[plugins.bindings.validators]]\nplugin = \"v\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("validators"), "{err}");
    }

    #[test]
    fn operator_key_parses_and_stays_out_of_debug_output() {
        let cfg: Config = toml::from_str("[admin]\noperator_key = \"s3cret\"\n").unwrap();
        assert_eq!(cfg.admin.operator_key(), Some("s3cret"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let blank: Config = toml::from_str("[admin]\noperator_key = \" \"\n").unwrap();
        assert_eq!(blank.admin.operator_key(), None);
        assert_eq!(Config::default().admin.operator_key(), None);
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn storage_defaults_to_local_and_parses_s3() {
        assert_eq!(Config::default().storage.backend, StorageBackend::Local);
        let cfg: Config = toml::from_str(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"media\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             region = \"eu-west-1\"\naccess_key_id = \"AKID\"\nsecret_access_key = \"hush\"\n\
             prefix = \"prod\"\nallow_http = true\n",
        )
        .unwrap();
        assert_eq!(cfg.storage.backend, StorageBackend::S3);
        let s3 = &cfg.storage.s3;
        assert_eq!(s3.bucket.as_deref(), Some("media"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s3.access_key_id.as_deref(), Some("AKID"));
        assert_eq!(s3.prefix.as_deref(), Some("prod"));
        assert!(s3.allow_http);
        assert!(!format!("{cfg:?}").contains("hush"), "secret key redacted");
        let err = toml::from_str::<Config>("[storage]\nbackend = \"ftp\"\n").unwrap_err();
        assert!(err.to_string().contains("ftp"), "{err}");
        let err = toml::from_str::<Config>("[storage.s3]\nbukket = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("bukket"), "{err}");
    }

    #[test]
    fn mediahost_env_overrides_the_file_and_aws_env_only_fills_gaps() {
        let mut storage: StorageConfig = toml::from_str(
            "[s3]\nbucket = \"from-file\"\nregion = \"eu-west-1\"\naccess_key_id = \"FILEKEY\"\n",
        )
        .unwrap();
        storage
            .apply_env(env(&[
                ("MEDIAHOST_STORAGE_BACKEND", "S3"),
                ("MEDIAHOST_S3_BUCKET", "from-env"),
                ("AWS_REGION", "us-west-2"),
                ("AWS_ACCESS_KEY_ID", "AWSKEY"),
                ("AWS_SECRET_ACCESS_KEY", "awssecret"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
                ("MEDIAHOST_S3_PREFIX", " "),
                ("MEDIAHOST_S3_ALLOW_HTTP", "true"),
            ]))
            .unwrap();
        assert_eq!(storage.backend, StorageBackend::S3);
        let s3 = &storage.s3;
        assert_eq!(s3.bucket.as_deref(), Some("from-env"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"), "file beats AWS_*");
        assert_eq!(s3.access_key_id.as_deref(), Some("FILEKEY"));
        assert_eq!(s3.secret_access_key.as_deref(), Some("awssecret"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(s3.prefix, None, "blank values count as unset");
        assert!(s3.allow_http);

        let mut storage = StorageConfig::default();
        storage
            .apply_env(env(&[
                ("AWS_DEFAULT_REGION", "ap-south-1"),
                ("MEDIAHOST_S3_ACCESS_KEY_ID", "MINE"),
                ("AWS_ACCESS_KEY_ID", "AMBIENT"),
            ]))
            .unwrap();
        assert_eq!(storage.backend, StorageBackend::Local);
        assert_eq!(storage.s3.region.as_deref(), Some("ap-south-1"));
        assert_eq!(storage.s3.access_key_id.as_deref(), Some("MINE"));
    }

    #[test]
    fn cache_and_cluster_parse_and_the_env_chooses_the_lookup_cache() {
        let config: Config = toml::from_str(
            "[cache]\nlookups = \"redis\"\nredis_url = \"redis://:pw@r:6379\"\n\
             [[cluster.edges]]\nurl = \"http://e1:8081\"\n\
             [[cluster.edges]]\nurl = \"http://e2:8081\"\ngroup = \"eu\"\n",
        )
        .unwrap();
        assert_eq!(config.cache.lookups, LookupBackend::Redis);
        assert!(!format!("{:?}", config.cache).contains("pw"));
        let groups: Vec<&str> = config
            .cluster
            .edges
            .iter()
            .map(|e| e.group.as_str())
            .collect();
        assert_eq!(groups, ["default", "eu"]);
        let mut cache = CacheConfig::default();
        cache
            .apply_env(env(&[
                ("MEDIAHOST_CACHE_LOOKUPS", "Redis"),
                ("REDIS_URL", "redis://x"),
            ]))
            .unwrap();
        assert_eq!(
            (cache.lookups, cache.redis_url()),
            (LookupBackend::Redis, Some("redis://x"))
        );
        let err = cache
            .apply_env(env(&[("MEDIAHOST_CACHE_LOOKUPS", "disk")]))
            .unwrap_err();
        assert!(err.to_string().contains("\"memory\" or \"redis\""), "{err}");
    }

    #[test]
    fn bad_storage_env_values_name_the_variable() {
        let err = StorageConfig::default()
            .apply_env(env(&[("MEDIAHOST_STORAGE_BACKEND", "gcs")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("MEDIAHOST_STORAGE_BACKEND"),
            "{err}"
        );
        let err = StorageConfig::default()
            .apply_env(env(&[("MEDIAHOST_S3_ALLOW_HTTP", "maybe")]))
            .unwrap_err();
        assert!(err.to_string().contains("MEDIAHOST_S3_ALLOW_HTTP"), "{err}");
    }

    #[test]
    fn tus_lock_parses_from_file_and_env_and_hides_the_redis_password() {
        let config: Config = toml::from_str(
            "[tus]\nlock = \"redis\"\nredis_url = \"redis://:hunter2@cache:6379/0\"\n",
        )
        .unwrap();
        assert_eq!(config.tus.lock, TusLock::Redis);
        assert_eq!(
            config.tus.redis_url(),
            Some("redis://:hunter2@cache:6379/0")
        );
        assert!(!format!("{:?}", config.tus).contains("hunter2"));
        assert_eq!(Config::default().tus.lock, TusLock::Database);
        assert!(toml::from_str::<Config>("[tus]\nlock = \"etcd\"\n").is_err());

        let mut tus = TusConfig::default();
        tus.apply_env(env(&[("REDIS_URL", "redis://fallback")]))
            .unwrap();
        assert_eq!(tus.redis_url(), Some("redis://fallback"));
        tus.apply_env(env(&[
            ("MEDIAHOST_TUS_LOCK", "Redis"),
            ("MEDIAHOST_REDIS_URL", "redis://own"),
            ("REDIS_URL", "redis://fallback"),
        ]))
        .unwrap();
        assert_eq!(
            (tus.lock, tus.redis_url()),
            (TusLock::Redis, Some("redis://own"))
        );
        let err = tus
            .apply_env(env(&[("MEDIAHOST_TUS_LOCK", "zookeeper")]))
            .unwrap_err();
        assert!(err.to_string().contains("MEDIAHOST_TUS_LOCK"), "{err}");
    }

    #[test]
    fn tus_parts_place_parses_from_file_and_env() {
        assert_eq!(Config::default().tus.parts, TusParts::Disk);
        let config: Config = toml::from_str("[tus]\nparts = \"object_storage\"\n").unwrap();
        assert_eq!(config.tus.parts, TusParts::ObjectStorage);
        assert!(toml::from_str::<Config>("[tus]\nparts = \"nfs\"\n").is_err());
        let mut tus = TusConfig::default();
        tus.apply_env(env(&[("MEDIAHOST_TUS_PARTS", "object_storage")]))
            .unwrap();
        assert_eq!(tus.parts, TusParts::ObjectStorage);
        let err = tus
            .apply_env(env(&[("MEDIAHOST_TUS_PARTS", "tape")]))
            .unwrap_err();
        assert!(err.to_string().contains("MEDIAHOST_TUS_PARTS"), "{err}");
    }

    #[test]
    fn queue_backend_parses_from_file_and_env_and_hides_the_amqp_password() {
        let config: Config = toml::from_str(
            "[queue]\nbackend = \"rabbitmq\"\namqp_url = \"amqp://mh:hunter2@mq:5672/%2f\"\n\
             name = \"jobs\"\nprefetch = 4\n",
        )
        .unwrap();
        assert_eq!(config.queue.backend, QueueBackend::Rabbitmq);
        assert_eq!(
            config.queue.amqp_url(),
            Some("amqp://mh:hunter2@mq:5672/%2f")
        );
        assert_eq!(
            (config.queue.name.as_str(), config.queue.prefetch(1)),
            ("jobs", 4)
        );
        assert!(!format!("{config:?}").contains("hunter2"));

        let defaults = QueueConfig::default();
        assert_eq!(defaults.backend, QueueBackend::Embedded);
        assert_eq!(defaults.name, "mediahost.transcode");
        assert_eq!((defaults.prefetch(3), defaults.prefetch(0)), (3, 1));
        assert!(toml::from_str::<Config>("[queue]\nbackend = \"kafka\"\n").is_err());

        let mut queue = QueueConfig::default();
        queue
            .apply_env(env(&[("AMQP_URL", "amqp://fallback")]))
            .unwrap();
        assert_eq!(queue.amqp_url(), Some("amqp://fallback"));
        queue
            .apply_env(env(&[
                ("MEDIAHOST_QUEUE_BACKEND", "RabbitMQ"),
                ("MEDIAHOST_AMQP_URL", "amqp://own"),
                ("AMQP_URL", "amqp://fallback"),
            ]))
            .unwrap();
        assert_eq!(
            (queue.backend, queue.amqp_url()),
            (QueueBackend::Rabbitmq, Some("amqp://own"))
        );
        let err = queue
            .apply_env(env(&[("MEDIAHOST_QUEUE_BACKEND", "kafka")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid environment variable MEDIAHOST_QUEUE_BACKEND: \"kafka\" is not a queue \
             backend; use \"embedded\" or \"rabbitmq\""
        );
    }

    #[test]
    fn database_url_is_optional_and_its_password_stays_out_of_debug_output() {
        assert_eq!(Config::default().database.url(), None);
        let cfg: Config =
            toml::from_str("[database]\nurl = \"postgres://mh:s3cret@db:5432/mh\"\n").unwrap();
        assert_eq!(cfg.database.url(), Some("postgres://mh:s3cret@db:5432/mh"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn edge_tiers_parse_and_the_disk_dir_defaults_under_the_data_dir() {
        let cfg: Config = toml::from_str(
            "[edge]\ndisk_cache_bytes = 1024\nstale_if_error_seconds = 5\ngroup = \"eu\"\n",
        )
        .unwrap();
        assert_eq!(cfg.edge.disk_cache_bytes, 1024);
        assert_eq!(cfg.edge.stale_if_error_seconds, 5);
        assert_eq!(cfg.edge.group, "eu");
        assert_eq!(
            cfg.edge.disk_cache_dir(Path::new("/d")),
            PathBuf::from("/d/edge-cache")
        );
        let cfg: Config = toml::from_str("[edge]\ndisk_cache_dir = \"/cache\"\n").unwrap();
        assert_eq!(
            cfg.edge.disk_cache_dir(Path::new("/d")),
            PathBuf::from("/cache")
        );
        assert_eq!(Config::default().edge.group, "default");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://mh:p@ss@db:5432/mh?sslmode=require"),
            "postgres://mh:***@db:5432/mh?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite:///a/b.db"), "sqlite:///a/b.db");
    }
}
