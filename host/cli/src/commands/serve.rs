//! `mediahost serve`: the platform's roles in one process until SIGINT/SIGTERM. By default all
//! of them (the API with an in-process worker on `listen`, the edge on `edge.listen`); with
//! `--role` any combination of `api`, `worker` and `edge`, so the same binary runs each part of
//! a deployment as its own process.

use anyhow::Context;
use clap::{Args, ValueEnum};
use mediahost_api::AppState;
use mediahost_api::tus::lock::UploadLocks;
use mediahost_blob::Blobs;
use mediahost_core::Config;
use mediahost_core::Readiness;
use mediahost_core::config::{LookupBackend, TusLock, TusParts};
use mediahost_edge::Edge;
use mediahost_edge::fleet::Fleet;
use mediahost_edge::transform::Transforms;
use mediahost_grpc::node::NodeService;
use mediahost_queue::JobQueue;
use mediahost_runtime::{PluginHost, RuntimeOptions};
use mediahost_store::Store;
use mediahost_store::lookup::{LookupCache, MemoryLookups, RedisLookups};
use mediahost_transcode::progress::Reporter;
use mediahost_transcode::push::Pusher;
use mediahost_transcode::worker::Worker;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::edge::EdgeArgs;
use super::{Common, Listen};

/// A part of the platform a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The HTTP API on `listen`: uploads, videos, playback (the edge's origin), admin.
    Api,
    /// Transcode workers pulling jobs from the queue (`worker.concurrency` of them).
    Worker,
    /// The edge cache on `edge.listen`, pulling from `edge.origin` (by default this
    /// process's API when it runs the api role too).
    Edge,
}

/// Run the platform (API, worker and edge by default) until interrupted.
#[derive(Debug, Args)]
pub struct Serve {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    listen: Listen,
    /// Roles to run, comma-separated (`api,worker,edge`); default all three, the worker unless
    /// `worker.enabled = false`.
    #[arg(long, value_enum, value_delimiter = ',', env = "MEDIAHOST_ROLE")]
    role: Vec<Role>,
    /// Address of the edge role; overrides `[edge] listen`.
    #[arg(long, env = "MEDIAHOST_EDGE_LISTEN")]
    edge_listen: Option<SocketAddr>,
    /// Address of the gRPC listener of the api and worker roles; overrides `[grpc] listen`.
    #[arg(long, env = "MEDIAHOST_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    #[command(flatten)]
    edge: EdgeArgs,
}

/// Job durations span seconds (short clips) to hours (feature films).
const JOB_SECONDS_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// Time from upload complete to first playable segment: the benchmark's target is 3 s; a
/// backlog or a long routing step makes it minutes.
const FIRST_SEGMENT_SECONDS_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

/// Plugin calls take tens of microseconds when healthy and are cut off by their time limit
/// (50 ms by default; manifests may allow more), so 10 µs .. 1 s.
const PLUGIN_CALL_SECONDS_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Peak linear memory of a plugin call: 64 KiB (one page) .. 1 GiB, by powers of 4.
const PLUGIN_MEMORY_BYTES_BUCKETS: &[f64] = &[
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
];

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("mediahost_job_duration_seconds".into()),
            JOB_SECONDS_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("mediahost_time_to_first_segment_seconds".into()),
            FIRST_SEGMENT_SECONDS_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("mediahost_plugin_call_duration_seconds".into()),
            PLUGIN_CALL_SECONDS_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("mediahost_plugin_peak_memory_bytes".into()),
            PLUGIN_MEMORY_BYTES_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("mediahost_edge_origin_fetch_seconds".into()),
            mediahost_edge::ORIGIN_FETCH_SECONDS_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("mediahost_edge_plugin_seconds".into()),
            PLUGIN_CALL_SECONDS_BUCKETS,
        )?
        .install_recorder()
        .context("install the Prometheus metrics recorder")
}

pub(super) async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
    token.cancel();
}

/// Starts the HTTPS listener when `[tls] listen` is set (certificate and key required).
async fn start_https(
    tls: &mediahost_core::config::TlsConfig,
    app: &axum::Router,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = tls.listen else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        anyhow::bail!("tls.listen is set, so tls.cert_file and tls.key_file are required");
    };
    let acceptor = crate::https::acceptor(cert, key)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on tls.listen {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "mediahost listening for HTTPS (h2, http/1.1)");
    Ok(Some(tokio::spawn(crate::https::serve(
        listener,
        Some(acceptor),
        app.clone(),
        shutdown.clone(),
    ))))
}

/// Collects expired tus uploads every `interval` until shutdown.
async fn sweep_uploads(
    store: mediahost_store::Store,
    blobs: Blobs,
    locks: Arc<dyn mediahost_api::tus::lock::UploadLocks>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match mediahost_api::tus::sweep_expired(&store, &blobs, &*locks).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(collected = n, "expired uploads swept"),
            Err(e) => tracing::warn!(error = ?e, "sweeping expired uploads failed"),
        }
    }
}

impl Role {
    /// How `Node.Status` and `cluster status` name it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::Edge => "edge",
        }
    }
}

impl Serve {
    /// `mediahost edge …`: this command with only the edge role.
    pub fn edge_only(common: Common, listen: Option<SocketAddr>, edge: EdgeArgs) -> Self {
        Self {
            common,
            listen: Listen { listen: None },
            role: vec![Role::Edge],
            edge_listen: listen,
            grpc_listen: None,
            edge,
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let mut config = self.common.load()?;
        if let Some(addr) = self.listen.listen {
            config.listen = addr;
        }
        if let Some(addr) = self.edge_listen {
            config.edge.listen = addr;
        }
        if let Some(addr) = self.grpc_listen {
            config.grpc.listen = addr;
        }
        self.edge.apply(&mut config.edge);
        let roles = if self.role.is_empty() {
            let mut all = vec![Role::Api, Role::Edge];
            if config.worker.enabled {
                all.push(Role::Worker);
            }
            all
        } else {
            self.role
        };
        run(config, &roles).await
    }
}

/// What every role shares: metadata, storage, plugins and their bindings.
struct Platform {
    store: Store,
    blobs: Blobs,
    plugins: PluginHost,
    metrics: PrometheusHandle,
}

/// Opens the store (with its lookup cache), object storage and the plugins (the catalog
/// restored into the plugin folder first, bindings applied), checking each backend: a wrong
/// URL or an unreachable server stops the start-up here, naming the setting.
async fn open_platform(config: &Config) -> anyhow::Result<Platform> {
    let metrics = install_metrics()?;
    let store = Common::open_store(config)
        .await?
        .with_lookup_cache(lookup_cache(config).await?, lookup_ttl(config));
    let placements = store.clone();
    let mut blobs = Blobs::from_config(&config.data_dir, &config.storage)
        .await
        .context("open object storage")?
        .with_placement_lookup(Arc::new(move |tenant: String| {
            let store = placements.clone();
            Box::pin(async move {
                store
                    .tenant_placement(&tenant)
                    .await
                    .map_err(|e| e.to_string())
            })
        }));
    match (config.tus.parts, &config.tus.parts_dir) {
        (TusParts::Disk, Some(dir)) => blobs = blobs.with_parts_dir(dir.clone()),
        (TusParts::Disk, None) => {}
        (TusParts::ObjectStorage, None) => blobs = blobs.with_parts_in_object_storage(),
        (TusParts::ObjectStorage, Some(_)) => anyhow::bail!(
            "tus.parts_dir is set but tus.parts = \"object_storage\" keeps upload bytes in the \
             object store: remove tus.parts_dir, or set tus.parts = \"disk\""
        ),
    }
    let plugin_dir = config.plugin_dir();
    let settings = config.plugins.config.clone();
    let options = RuntimeOptions {
        // Compiled components survive restarts (keyed by their bytes and the engine).
        cache_dir: Some(config.data_dir.join("cache/wasm")),
        // Where bindings with `record_failures` keep failed calls' inputs.
        failure_dir: Some(config.data_dir.join("plugin-failures")),
        ..RuntimeOptions::default()
    };
    // Plugins installed through the admin API (by this or another process) are written
    // into the folder first, so they load like the others.
    let restored = mediahost_api::catalog::restore(&store, &blobs, &plugin_dir)
        .await
        .context("install plugins from the plugin catalog")?;
    if restored > 0 {
        tracing::info!(
            changes = restored,
            "plugin folder brought in step with the catalog"
        );
    }
    // Compiling components takes a while; keep it off the async workers.
    let plugins =
        tokio::task::spawn_blocking(move || PluginHost::load_with(&plugin_dir, &settings, options))
            .await?
            .context("load plugins")?;
    for p in plugins.plugins() {
        if let Some(v) = &p.serving {
            tracing::info!(plugin = %p.name, version = %v.version, world = %v.world, sha256 = %v.sha256, "plugin loaded");
        }
    }
    // Bindings: the config file's are checked and written to the DB, then every stored one
    // is loaded and kept in step with the DB (other processes may change them).
    mediahost_api::bindings::apply_config(&store, &plugins, &config.plugins)
        .await
        .context("plugin bindings")?;
    Ok(Platform {
        store,
        blobs,
        plugins,
        metrics,
    })
}

/// The cache of video lookups, `[cache] lookups`.
async fn lookup_cache(config: &Config) -> anyhow::Result<Arc<dyn LookupCache>> {
    Ok(match config.cache.lookups {
        LookupBackend::Memory => Arc::new(MemoryLookups::new(config.cache.lookup_entries)),
        LookupBackend::Redis => {
            let url = config.cache.redis_url().context(
                "cache.lookups = \"redis\" needs cache.redis_url (or REDIS_URL), e.g. redis://127.0.0.1:6379",
            )?;
            Arc::new(RedisLookups::connect(url).await?)
        }
    })
}

fn lookup_ttl(config: &Config) -> Duration {
    Duration::from_secs(config.cache.lookup_ttl_seconds.max(1))
}

/// Runs `roles` until SIGINT/SIGTERM, then stops every part, finishing requests in flight.
async fn run(config: Config, roles: &[Role]) -> anyhow::Result<()> {
    mediahost_transcode::init();
    let platform = open_platform(&config).await?;
    // Hot reload for the process's whole life; without it the loaded plugins still serve.
    let watcher = platform
        .plugins
        .watch()
        .inspect_err(|e| tracing::warn!(error = %e, "plugin hot reload is off"))
        .ok();
    let shutdown = CancellationToken::new();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    tasks.push(tokio::spawn(mediahost_api::sync::sync_loop(
        platform.store.clone(),
        platform.blobs.clone(),
        platform.plugins.clone(),
        Duration::from_secs(config.plugins.sync_interval_seconds.max(1)),
        shutdown.clone().cancelled_owned(),
    )));
    tasks.push(tokio::spawn(metrics_upkeep(
        platform.metrics.clone(),
        shutdown.clone(),
    )));
    let result = start_roles(&config, roles, &platform, &shutdown, &mut tasks).await;
    if result.is_ok() {
        tracing::info!(roles = ?roles, data_dir = %config.data_dir.display(), "mediahost running");
        // SIGINT/SIGTERM cancel the token, which stops every listener and worker; so does a
        // role that fails while running.
        tokio::select! {
            _ = shutdown_signal(shutdown.clone()) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    shutdown.cancel();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    match tokio::time::timeout(grace, futures::future::join_all(tasks)).await {
        Ok(stopped) => {
            for task in stopped {
                task?;
            }
        }
        // Returning drops what still runs: the runtime cancels those tasks.
        Err(_) => tracing::warn!(
            grace_seconds = grace.as_secs(),
            "requests or jobs still running after shutdown_grace_seconds; cutting them"
        ),
    }
    // Stopping the watcher waits for a reload in progress; keep that off the async workers.
    tokio::task::spawn_blocking(move || drop(watcher)).await?;
    if result.is_ok() {
        tracing::info!("stopped");
    }
    result
}

/// Drains the metrics recorder every few seconds: histogram samples are otherwise kept until
/// a scrape, so a process nothing scrapes would grow by every request it serves.
async fn metrics_upkeep(metrics: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => metrics.run_upkeep(),
        }
    }
}

/// Starts each role's listeners and workers as tasks in `tasks`, all stopping with `shutdown`.
async fn start_roles(
    config: &Config,
    roles: &[Role],
    platform: &Platform,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    let has = |role| roles.contains(&role);
    let queue: Option<Arc<dyn JobQueue>> = if has(Role::Api) || has(Role::Worker) {
        // `[queue] backend`: an unreachable RabbitMQ stops the start-up here.
        let queue = mediahost_queue::from_config(
            &config.queue,
            &config.worker,
            platform.store.pool().clone(),
        )
        .await
        .context("job queue")?;
        Some(queue)
    } else {
        None
    };
    // Before anything starts: an unreachable lock server stops the start-up here.
    let upload_locks = if has(Role::Api) {
        let locks = mediahost_api::tus::lock::from_config(&config.tus, &platform.store)
            .await
            .context("tus upload locks")?;
        Some(locks)
    } else {
        None
    };
    let readiness = readiness(config, platform, queue.as_ref(), upload_locks.clone());
    tracing::info!(checks = ?readiness.names(), "/readyz checks");
    let reporter = if has(Role::Worker) {
        // Beside the api, progress goes straight into the store (see `progress`).
        let api_urls: &[String] = if has(Role::Api) {
            &[]
        } else {
            &config.cluster.api_urls
        };
        let reporter = Reporter::new(platform.store.clone(), api_urls, config.cluster.token())
            .context("worker progress reports")?;
        Some(reporter)
    } else {
        None
    };
    // `Node.Status`, on every gRPC endpoint of the process; the edge is filled in once started.
    let local_edge = Arc::new(std::sync::OnceLock::new());
    let node = super::cluster::node_service(
        super::cluster::Facts {
            roles: roles.iter().map(|r| r.name()).collect(),
            readiness: readiness.clone(),
            queue: queue.clone(),
            reporter: reporter.clone(),
            edge: local_edge.clone(),
            started: std::time::Instant::now(),
        },
        config.cluster.token(),
    );
    if has(Role::Api) || has(Role::Worker) {
        let grpc = Grpc {
            api: has(Role::Api),
            node: node.clone(),
            readiness: readiness.clone(),
        };
        start_grpc(config, grpc, platform, shutdown, tasks).await?;
    }
    if let (Some(reporter), Some(queue)) = (reporter, &queue) {
        let pusher = Pusher::new(&config.cluster.edges, config.cluster.token())
            .context("pushes to edges ([[cluster.edges]])")?;
        for n in 0..config.worker.concurrency.max(1) {
            let worker = Worker::new(
                platform.store.clone(),
                queue.clone(),
                platform.blobs.clone(),
                platform.plugins.clone(),
                config.transcode.clone(),
                Duration::from_millis(config.worker.poll_interval_ms.max(10)),
                Duration::from_secs(config.worker.lease_seconds.max(1)),
            )
            .with_reporter(reporter.clone())
            .with_pusher(pusher.clone());
            tracing::info!(worker = n, "transcode worker started");
            tasks.push(tokio::spawn(worker.run(shutdown.clone())));
        }
    }
    let edge = if has(Role::Edge) {
        let edge = start_edge(
            config,
            has(Role::Api),
            platform,
            (&readiness, node),
            shutdown,
            tasks,
        )
        .await?;
        let _ = local_edge.set(edge.clone());
        Some(edge)
    } else {
        None
    };
    match (queue.filter(|_| has(Role::Api)), upload_locks) {
        (Some(queue), Some(upload_locks)) => {
            let api = Api {
                queue,
                upload_locks,
                edge,
                readiness,
            };
            start_api(config, api, platform, shutdown, tasks).await
        }
        // A process without the API still answers /healthz, /readyz and /metrics on `listen`
        // (the edge alone has its own on `edge.listen`).
        _ if has(Role::Worker) => {
            let app = ops_app(platform.metrics.clone(), readiness);
            serve_on_listen(config, app, shutdown, tasks).await
        }
        _ => Ok(()),
    }
}

/// What `/readyz` asks in this process: every backend its roles opened. The database and
/// object storage always (every role opens them for plugins and their bindings), the queue
/// with the api or worker role, and Redis when it holds the tus locks or the lookup cache.
fn readiness(
    config: &Config,
    platform: &Platform,
    queue: Option<&Arc<dyn JobQueue>>,
    upload_locks: Option<Arc<dyn UploadLocks>>,
) -> Readiness {
    let readiness = mediahost_api::backend_checks(&platform.store, queue, &platform.blobs);
    let locks = upload_locks.filter(|_| config.tus.lock == TusLock::Redis);
    let lookups = platform
        .store
        .lookup_cache()
        .filter(|_| config.cache.lookups == LookupBackend::Redis)
        .map(|(cache, _)| cache.clone());
    if locks.is_none() && lookups.is_none() {
        return readiness;
    }
    readiness.with_check("redis", move || {
        let (locks, lookups) = (locks.clone(), lookups.clone());
        async move {
            if let Some(locks) = locks {
                locks
                    .ping()
                    .await
                    .map_err(|e| format!("tus.redis_url: {e}"))?;
            }
            if let Some(lookups) = lookups {
                lookups
                    .ping()
                    .await
                    .map_err(|e| format!("cache.redis_url: {e}"))?;
            }
            Ok(())
        }
    })
}

async fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr} (`{setting}`)"))
}

/// `/healthz`, `/readyz` and `/metrics` of a process without the API.
fn ops_app(metrics: PrometheusHandle, readiness: Readiness) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || async move { mediahost_api::readiness_answer(&readiness).await }),
        )
        .route("/metrics", get(move || async move { metrics.render() }))
}

/// The edge role: its cache in front of `edge.origin` (default: this process's API), running
/// the edge-transform plugins of the platform.
async fn start_edge(
    config: &Config,
    beside_api: bool,
    platform: &Platform,
    (readiness, node): (&Readiness, NodeService),
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Arc<Edge>> {
    let mut edge_config = config.edge.clone();
    if edge_config.origin.is_none() && beside_api {
        edge_config.origin = Some(format!("http://{}", config.listen));
    }
    let transforms = Transforms::new(platform.plugins.clone(), platform.store.clone());
    let edge = Arc::new(
        Edge::new(
            &edge_config,
            &config.data_dir,
            config.admin.operator_key(),
            platform.metrics.clone(),
        )?
        .with_cluster_token(config.cluster.token())
        .with_node(node)
        .with_transforms(transforms)
        .with_readiness(readiness.clone()),
    );
    let listener = bind(edge_config.listen, "edge.listen").await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        origin = edge_config.origin.as_deref().unwrap_or_default(),
        group = %edge_config.group,
        cache_bytes = edge_config.cache_bytes,
        disk_cache_bytes = edge_config.disk_cache_bytes,
        disk_cache_dir = %edge_config.disk_cache_dir(&config.data_dir).display(),
        "mediahost edge listening"
    );
    let serving = edge.clone();
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = mediahost_edge::run(serving, listener, stop.clone()).await {
            tracing::error!(error = %e, "the edge stopped");
            stop.cancel();
        }
    }));
    Ok(edge)
}

/// What the gRPC endpoint of the api and worker roles serves.
struct Grpc {
    /// Whether the process runs the api role (then it serves `Jobs`).
    api: bool,
    /// The process's `Node.Status`.
    node: NodeService,
    /// What health follows.
    readiness: Readiness,
}

/// The gRPC endpoint of the api and worker roles on `grpc.listen`: `Node`, the api's Jobs
/// service (workers of other processes report there), health following readiness, reflection.
async fn start_grpc(
    config: &Config,
    Grpc {
        api,
        node,
        readiness,
    }: Grpc,
    platform: &Platform,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    let mut services = mediahost_grpc::Services::new().with(node);
    if api {
        services = services.with(mediahost_api::control::jobs_service(
            platform.store.clone(),
            config.cluster.token(),
        ));
    }
    let (router, names) = services.build(readiness, shutdown.clone());
    let listener = bind(config.grpc.listen, "grpc.listen").await?;
    tracing::info!(addr = %listener.local_addr()?, services = ?names, "mediahost gRPC listening");
    tasks.push(tokio::spawn(crate::https::serve(
        listener,
        None,
        router,
        shutdown.clone(),
    )));
    Ok(())
}

/// What the api role is started with, besides the platform.
struct Api {
    /// Where uploads queue transcode jobs.
    queue: Arc<dyn JobQueue>,
    /// Where tus write locks are held (`[tus] lock`).
    upload_locks: Arc<dyn UploadLocks>,
    /// The edge in this process, purged directly when a video is deleted.
    edge: Option<Arc<Edge>>,
    /// The process's backend checks, answered at `/readyz`.
    readiness: Readiness,
}

/// The api role: HTTP (and HTTPS when configured) on `listen`, and the tus upload sweeper.
async fn start_api(
    config: &Config,
    Api {
        queue,
        upload_locks,
        edge,
        readiness,
    }: Api,
    platform: &Platform,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    let edges = Fleet::new(
        edge,
        &config.cluster.edges,
        config.cluster.token(),
        config.admin.operator_key(),
    )?;
    let state = Arc::new(
        AppState::new(
            platform.store.clone(),
            queue,
            platform.blobs.clone(),
            platform.plugins.clone(),
            platform.metrics.clone(),
            config.public_url.clone(),
        )
        .with_operator_key(config.admin.operator_key())
        .with_tus(config.tus.clone())
        .with_upload_locks(upload_locks)
        .with_quotas(config.quotas)
        .with_signed_url_seconds(config.playback.signed_url_seconds)
        .with_edges(edges)
        .with_readiness(readiness),
    );
    tasks.push(tokio::spawn(sweep_uploads(
        state.store.clone(),
        state.blobs.clone(),
        state.upload_locks.clone(),
        Duration::from_secs(config.tus.sweep_interval_seconds.max(1)),
        shutdown.clone(),
    )));
    let app = mediahost_api::app(state);
    if let Some(https) = start_https(&config.tls, &app, shutdown).await? {
        tasks.push(https);
    }
    serve_on_listen(config, app, shutdown, tasks).await
}

/// Serves `app` on `listen` (HTTP/1.1 and h2c) as one of `tasks`.
async fn serve_on_listen(
    config: &Config,
    app: axum::Router,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    let listener = bind(config.listen, "listen").await?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), "mediahost listening");
    tasks.push(tokio::spawn(crate::https::serve(
        listener,
        None,
        app,
        shutdown.clone(),
    )));
    Ok(())
}
