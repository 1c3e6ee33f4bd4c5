//! `mediahost tenant ...`: tenant administration straight on the metadata database.

use clap::{Args, Subcommand};

use super::Common;

/// Manage tenants and their API keys.
#[derive(Debug, Subcommand)]
pub enum Tenant {
    /// Create a tenant and print its API key (the key alone is the last line of stdout).
    Create(Create),
}

/// Arguments of `tenant create`.
#[derive(Debug, Args)]
pub struct Create {
    /// Unique tenant name.
    name: String,
    #[command(flatten)]
    common: Common,
}

impl Tenant {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create(cmd) => {
                let name = cmd.name.trim();
                anyhow::ensure!(!name.is_empty(), "the tenant name must not be empty");
                let config = cmd.common.load()?;
                let store = Common::open_store(&config).await?;
                let (tenant, key) = store.create_tenant(name).await?;
                println!("created tenant {} (id {})", tenant.name, tenant.id);
                println!("API key (shown once; store it safely):");
                println!("{key}");
                Ok(())
            }
        }
    }
}
