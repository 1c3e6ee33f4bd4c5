//! `mediahost edge`: shorthand for `mediahost serve --role edge`, a caching proxy for playback
//! in front of an origin, until SIGINT/SIGTERM; and the edge options both commands take.

use clap::Args;
use mediahost_core::config::EdgeConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::Common;
use super::serve::Serve;

/// Run an edge cache in front of an origin until interrupted.
#[derive(Debug, Args)]
pub struct EdgeCommand {
    #[command(flatten)]
    common: Common,
    /// Address to listen on (default 127.0.0.1:8081); overrides `[edge] listen`.
    #[arg(long, env = "MEDIAHOST_EDGE_LISTEN")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    edge: EdgeArgs,
}

/// The edge role's options (`serve` and `edge`).
#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// Base URL of the origin (the api role), e.g. http://127.0.0.1:8080; overrides
    /// `[edge] origin`. Default with the api role in the same process: that API.
    #[arg(long, env = "MEDIAHOST_EDGE_ORIGIN")]
    origin: Option<String>,
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

impl EdgeArgs {
    /// Overrides `config` with the options given.
    pub fn apply(&self, config: &mut EdgeConfig) {
        if let Some(origin) = &self.origin {
            config.origin = Some(origin.clone());
        }
        if let Some(bytes) = self.cache_bytes {
            config.cache_bytes = bytes;
        }
        if let Some(bytes) = self.disk_cache_bytes {
            config.disk_cache_bytes = bytes;
        }
        if let Some(dir) = &self.disk_cache_dir {
            config.disk_cache_dir = Some(dir.clone());
        }
        if let Some(seconds) = self.stale_if_error_seconds {
            config.stale_if_error_seconds = seconds;
        }
        if let Some(group) = &self.group {
            config.group = group.clone();
        }
    }
}

impl EdgeCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        Serve::edge_only(self.common, self.listen, self.edge)
            .run()
            .await
    }
}
