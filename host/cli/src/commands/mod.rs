//! One module per command; each has a one-line doc that clap shows as its help.

mod edge;
mod migrate;
mod serve;
mod tenant;
mod upload;

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
    /// Run the platform (API and worker) until interrupted.
    Serve(serve::Serve),
    /// Manage tenants and their API keys.
    #[command(subcommand)]
    Tenant(tenant::Tenant),
    /// Apply database migrations and exit.
    Migrate(migrate::Migrate),
    /// Upload a video file to a running server and print its id.
    Upload(upload::Upload),
    /// Run an edge cache in front of an origin until interrupted.
    Edge(edge::EdgeCommand),
}

impl Cli {
    /// Runs the chosen command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(cmd) => cmd.run().await,
            Command::Tenant(cmd) => cmd.run().await,
            Command::Migrate(cmd) => cmd.run().await,
            Command::Upload(cmd) => cmd.run().await,
            Command::Edge(cmd) => cmd.run().await,
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
}

impl Common {
    /// The config file (or defaults) with flag and environment overrides applied.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        // Environment only, never a flag: a flag would show the key in `ps`.
        if let Ok(key) = std::env::var("MEDIAHOST_OPERATOR_KEY")
            && !key.trim().is_empty()
        {
            config.admin.operator_key = Some(key);
        }
        Ok(config)
    }

    /// Opens the metadata store under the configured data dir, creating it if needed.
    pub async fn open_store(config: &Config) -> anyhow::Result<mediahost_store::Store> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display())
        })?;
        let db = config.data_dir.join("mediahost.db");
        Ok(mediahost_store::Store::open_sqlite(&db).await?)
    }
}

/// `--listen` for commands that serve.
#[derive(Debug, Args)]
pub struct Listen {
    /// Address to listen on; overrides `listen` in the config.
    #[arg(long, env = "MEDIAHOST_LISTEN")]
    listen: Option<SocketAddr>,
}
