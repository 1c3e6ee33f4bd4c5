//! `mediahost edge`: the edge role, a caching proxy for signed playback in front of an origin,
//! until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Args;
use mediahost_edge::{Edge, ORIGIN_FETCH_SECONDS_BUCKETS};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::Common;

/// Run an edge cache in front of an origin until interrupted.
#[derive(Debug, Args)]
pub struct EdgeCommand {
    #[command(flatten)]
    common: Common,
    /// Base URL of the origin (the api role), e.g. http://127.0.0.1:8080; overrides
    /// `[edge] origin`.
    #[arg(long, env = "MEDIAHOST_EDGE_ORIGIN")]
    origin: Option<String>,
    /// Address to listen on (default 127.0.0.1:8081); overrides `[edge] listen`.
    #[arg(long, env = "MEDIAHOST_EDGE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Byte budget of the memory cache; overrides `[edge] cache_bytes`.
    #[arg(long, env = "MEDIAHOST_EDGE_CACHE_BYTES")]
    cache_bytes: Option<u64>,
    /// Byte budget of the disk cache (0: none); overrides `[edge] disk_cache_bytes`.
    #[arg(long, env = "MEDIAHOST_EDGE_DISK_CACHE_BYTES")]
    disk_cache_bytes: Option<u64>,
    /// Folder of the disk cache (default `<data_dir>/edge-cache`); overrides
    /// `[edge] disk_cache_dir`.
    #[arg(long, env = "MEDIAHOST_EDGE_DISK_CACHE_DIR")]
    disk_cache_dir: Option<PathBuf>,
    /// Seconds a playlist may be served stale past its max-age (0: never); overrides
    /// `[edge] stale_if_error_seconds`.
    #[arg(long, env = "MEDIAHOST_EDGE_STALE_IF_ERROR_SECONDS")]
    stale_if_error_seconds: Option<u64>,
    /// Name of this edge's group; overrides `[edge] group`.
    #[arg(long, env = "MEDIAHOST_EDGE_GROUP")]
    group: Option<String>,
}

impl EdgeCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let config = self.common.load()?;
        let mut edge = config.edge.clone();
        if let Some(origin) = self.origin {
            edge.origin = Some(origin);
        }
        if let Some(listen) = self.listen {
            edge.listen = listen;
        }
        if let Some(bytes) = self.cache_bytes {
            edge.cache_bytes = bytes;
        }
        if let Some(bytes) = self.disk_cache_bytes {
            edge.disk_cache_bytes = bytes;
        }
        if let Some(dir) = self.disk_cache_dir {
            edge.disk_cache_dir = Some(dir);
        }
        if let Some(seconds) = self.stale_if_error_seconds {
            edge.stale_if_error_seconds = seconds;
        }
        if let Some(group) = self.group {
            edge.group = group;
        }
        let metrics = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("mediahost_edge_origin_fetch_seconds".into()),
                ORIGIN_FETCH_SECONDS_BUCKETS,
            )?
            .install_recorder()
            .context("install the Prometheus metrics recorder")?;
        let state = Arc::new(Edge::new(
            &edge,
            &config.data_dir,
            config.admin.operator_key(),
            metrics,
        )?);
        let listener = tokio::net::TcpListener::bind(edge.listen)
            .await
            .with_context(|| format!("listen on {}", edge.listen))?;
        tracing::info!(
            addr = %listener.local_addr()?,
            origin = edge.origin.as_deref().unwrap_or_default(),
            group = %edge.group,
            cache_bytes = edge.cache_bytes,
            disk_cache_bytes = edge.disk_cache_bytes,
            disk_cache_dir = %edge.disk_cache_dir(&config.data_dir).display(),
            "mediahost edge listening"
        );
        let shutdown = CancellationToken::new();
        let signal = tokio::spawn(super::serve::shutdown_signal(shutdown.clone()));
        mediahost_edge::run(state, listener, shutdown.clone())
            .await
            .context("serve the edge")?;
        signal.abort();
        tracing::info!("stopped");
        Ok(())
    }
}
