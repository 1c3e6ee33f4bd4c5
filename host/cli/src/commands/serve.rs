//! `mediahost serve`: the API and an in-process worker on one port, until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Args;
use mediahost_api::AppState;
use mediahost_blob::Blobs;
use mediahost_queue::{EmbeddedQueue, JobQueue};
use mediahost_runtime::PluginHost;
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

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("mediahost_job_duration_seconds".into()),
            JOB_SECONDS_BUCKETS,
        )?
        .install_recorder()
        .context("install the Prometheus metrics recorder")
}

async fn shutdown_signal(token: CancellationToken) {
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

impl Serve {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut config = self.common.load()?;
        if let Some(addr) = self.listen.listen {
            config.listen = addr;
        }
        let metrics = install_metrics()?;
        mediahost_transcode::init();

        let store = Common::open_store(&config).await?;
        let blobs = Blobs::local(&config.data_dir)
            .with_context(|| format!("open object storage under {}", config.data_dir.display()))?;
        let queue: Arc<dyn JobQueue> = Arc::new(EmbeddedQueue::new(
            store.pool().clone(),
            config.worker.max_attempts,
            Duration::from_secs(config.worker.lease_seconds.max(1)),
        ));
        let plugin_dir = config.plugin_dir();
        let settings = config.plugins.config.clone();
        // Compiling components takes a while; keep it off the async workers.
        let plugins = tokio::task::spawn_blocking(move || PluginHost::load(&plugin_dir, &settings))
            .await?
            .context("load plugins")?;
        for p in plugins.plugins() {
            tracing::info!(plugin = %p.name, version = %p.version, world = %p.world, sha256 = %p.sha256, "plugin loaded");
        }

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

        let state = Arc::new(AppState::new(
            store,
            queue,
            blobs,
            plugins,
            metrics,
            config.public_url.clone(),
        ));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listen on {}", config.listen))?;
        tracing::info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), "mediahost listening");
        let signal = shutdown_signal(shutdown.clone());
        axum::serve(listener, mediahost_api::app(state))
            .with_graceful_shutdown(signal)
            .await
            .context("serve HTTP")?;
        shutdown.cancel();
        for w in workers {
            w.await?;
        }
        tracing::info!("stopped");
        Ok(())
    }
}
