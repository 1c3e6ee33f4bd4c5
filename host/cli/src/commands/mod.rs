//! One module per command; each has a one-line doc that clap shows as its help.

mod cluster;
mod edge;
mod migrate;
mod plugin;
mod serve;
mod tenant;
mod upload;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mediahost_core::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

/// mediahost: a video platform with WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform (API, worker and edge by default, or the roles named) until interrupted.
    Serve(serve::Serve),
    /// Manage tenants and their API keys.
    #[command(subcommand)]
    Tenant(tenant::Tenant),
    /// Apply database migrations and exit.
    Migrate(migrate::Migrate),
    /// Upload a video file to a running server and print its id.
    Upload(upload::Upload),
    /// Check and try plugin components (conformance cases, one-off calls).
    #[command(subcommand)]
    Plugin(plugin::Plugin),
    /// Run an edge cache in front of an origin until interrupted (`serve --role edge`).
    Edge(edge::EdgeCommand),
    /// Ask the processes of a deployment how they are doing, over gRPC.
    #[command(subcommand)]
    Cluster(cluster::Cluster),
}

impl Cli {
    /// Runs the chosen command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(cmd) => cmd.run().await,
            Command::Tenant(cmd) => cmd.run().await,
            Command::Migrate(cmd) => cmd.run().await,
            Command::Upload(cmd) => cmd.run().await,
            Command::Plugin(cmd) => cmd.run().await,
            Command::Edge(cmd) => cmd.run().await,
            Command::Cluster(cmd) => cmd.run().await,
        }
    }
}

/// Options every command shares: where the config and the data live.
#[derive(Debug, Args)]
pub struct Common {
    /// TOML config file (see README, Configuration).
    #[arg(long, short = 'c', env = "MEDIAHOST_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite DB, objects, temp files); overrides `data_dir` in the config.
    #[arg(long, env = "MEDIAHOST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Metadata database URL (`sqlite://…` or `postgres://…`); overrides `database.url` in the
    /// config. `DATABASE_URL` is read when neither this nor `MEDIAHOST_DATABASE_URL` is set.
    #[arg(long, env = "MEDIAHOST_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl Common {
    /// The config file (or defaults) with flag and environment overrides applied.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        // Relative to the working directory, resolved once: some consumers (wasmtime's cache
        // of compiled components) refuse relative paths.
        config.data_dir = std::path::absolute(&config.data_dir)
            .with_context(|| format!("data_dir {}", config.data_dir.display()))?;
        if let Some(url) = self
            .database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .filter(|u| !u.trim().is_empty())
        {
            config.database.url = Some(url);
        }
        // Environment only, never a flag: a flag would show the key in `ps`.
        if let Ok(key) = std::env::var("MEDIAHOST_OPERATOR_KEY")
            && !key.trim().is_empty()
        {
            config.admin.operator_key = Some(key);
        }
        config.storage.apply_env(|name| std::env::var(name).ok())?;
        config.tus.apply_env(|name| std::env::var(name).ok())?;
        config.cache.apply_env(|name| std::env::var(name).ok())?;
        config.queue.apply_env(|name| std::env::var(name).ok())?;
        // Environment only, like the operator key.
        config.cluster.apply_env(|name| std::env::var(name).ok());
        Ok(config)
    }

    /// Opens the metadata store (`database.url`, by default the SQLite file under the data
    /// dir, which is created if needed) and applies pending migrations. A failure names the
    /// setting and the (password-redacted) URL, e.g.
    /// `database.url postgres://mh:***@db/mh: cannot connect: … Connection refused`.
    pub async fn open_store(config: &Config) -> anyhow::Result<mediahost_store::Store> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display())
        })?;
        let url = Self::database_url(config);
        mediahost_store::Store::connect(&url)
            .await
            .map_err(|e| anyhow::anyhow!("database.url {}: {e}", mediahost_core::redact_url(&url)))
    }

    /// The metadata database's URL: `database.url`, else the SQLite file under the data dir.
    pub fn database_url(config: &Config) -> String {
        match config.database.url() {
            Some(url) => url.to_owned(),
            None => mediahost_store::sqlite_url(&config.data_dir.join("mediahost.db")),
        }
    }
}

/// `--listen` for commands that serve.
#[derive(Debug, Args)]
pub struct Listen {
    /// Address to listen on; overrides `listen` in the config.
    #[arg(long, env = "MEDIAHOST_LISTEN")]
    pub(super) listen: Option<SocketAddr>,
}
