//! `mediahost serve`: the API and an in-process worker on one port, until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Args;
use mediahost_api::AppState;
use mediahost_blob::Blobs;
use mediahost_queue::JobQueue;
use mediahost_runtime::{PluginHost, RuntimeOptions};
use mediahost_transcode::worker::Worker;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{Common, Listen};

/// Run the platform (API and worker) until interrupted.
#[derive(Debug, Args)]
pub struct Serve {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    listen: Listen,
}

/// Job durations span seconds (short clips) to hours (feature films).
const JOB_SECONDS_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
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
            Matcher::Full("mediahost_plugin_call_duration_seconds".into()),
            PLUGIN_CALL_SECONDS_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("mediahost_plugin_peak_memory_bytes".into()),
            PLUGIN_MEMORY_BYTES_BUCKETS,
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

impl Serve {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut config = self.common.load()?;
        if let Some(addr) = self.listen.listen {
            config.listen = addr;
        }
        let metrics = install_metrics()?;
        mediahost_transcode::init();

        let store = Common::open_store(&config).await?;
        // Checked with a real request: a wrong bucket, endpoint or key stops the start-up here.
        let blobs = Blobs::from_config(&config.data_dir, &config.storage)
            .await
            .context("open object storage")?;
        // `[queue] backend`: an unreachable RabbitMQ stops the start-up here.
        let queue: Arc<dyn JobQueue> =
            mediahost_queue::from_config(&config.queue, &config.worker, store.pool().clone())
                .await
                .context("job queue")?;
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
        let plugins = tokio::task::spawn_blocking(move || {
            PluginHost::load_with(&plugin_dir, &settings, options)
        })
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
        // Hot reload for the server's whole life; without it the loaded plugins still serve.
        let watcher = plugins
            .watch()
            .inspect_err(|e| tracing::warn!(error = %e, "plugin hot reload is off"))
            .ok();

        let shutdown = CancellationToken::new();
        let mut workers = Vec::new();
        if config.worker.enabled {
            for n in 0..config.worker.concurrency.max(1) {
                let worker = Worker::new(
                    store.clone(),
                    queue.clone(),
                    blobs.clone(),
                    plugins.clone(),
                    config.transcode.clone(),
                    Duration::from_millis(config.worker.poll_interval_ms.max(10)),
                    Duration::from_secs(config.worker.lease_seconds.max(1)),
                );
                tracing::info!(worker = n, "transcode worker started");
                workers.push(tokio::spawn(worker.run(shutdown.clone())));
            }
        }

        // Before anything starts: an unreachable lock server stops the start-up here.
        let upload_locks = mediahost_api::tus::lock::from_config(&config.tus, &store)
            .await
            .context("tus upload locks")?;
        let state = Arc::new(
            AppState::new(
                store,
                queue,
                blobs,
                plugins,
                metrics,
                config.public_url.clone(),
            )
            .with_operator_key(config.admin.operator_key())
            .with_tus(config.tus.clone())
            .with_upload_locks(upload_locks)
            .with_quotas(config.quotas)
            .with_signed_url_seconds(config.playback.signed_url_seconds),
        );
        let sweeper = tokio::spawn(sweep_uploads(
            state.store.clone(),
            state.blobs.clone(),
            state.upload_locks.clone(),
            Duration::from_secs(config.tus.sweep_interval_seconds.max(1)),
            shutdown.clone(),
        ));
        let plugins_sync = tokio::spawn(mediahost_api::sync::sync_loop(
            state.store.clone(),
            state.blobs.clone(),
            state.plugins.clone(),
            Duration::from_secs(config.plugins.sync_interval_seconds.max(1)),
            shutdown.clone().cancelled_owned(),
        ));
        let app = mediahost_api::app(state);
        let https = match start_https(&config.tls, &app, &shutdown).await {
            Ok(https) => https,
            Err(e) => {
                // Workers and the sweeper stop with the token; nothing else started yet.
                shutdown.cancel();
                return Err(e);
            }
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listen on {}", config.listen))?;
        tracing::info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), "mediahost listening");
        // SIGINT/SIGTERM cancel the token, which stops the listener (and everything else).
        let signal = tokio::spawn(shutdown_signal(shutdown.clone()));
        crate::https::serve(listener, None, app, shutdown.clone()).await;
        signal.abort();
        shutdown.cancel();
        if let Some(https) = https {
            https.await?;
        }
        sweeper.await?;
        plugins_sync.await?;
        // Stopping the watcher waits for a reload in progress; keep that off the async workers.
        tokio::task::spawn_blocking(move || drop(watcher)).await?;
        for w in workers {
            w.await?;
        }
        tracing::info!("stopped");
        Ok(())
    }
}
