//! `mediahost tenant ...`: tenant administration straight on the metadata database.

use clap::{Args, Subcommand};

use super::Common;

/// Manage tenants and their API keys.
#[derive(Debug, Subcommand)]
pub enum Tenant {
    /// Create a tenant and print its API key (the key alone is the last line of stdout).
    Create(Named),
    /// Manage a tenant's API keys (several may be active, so keys rotate without downtime).
    #[command(subcommand)]
    Key(Key),
}

/// `tenant key ...`.
#[derive(Debug, Subcommand)]
pub enum Key {
    /// Issue another key for a tenant (the key alone is the last line of stdout).
    Add(Named),
    /// List a tenant's keys: id, visible prefix, issued, revoked.
    List(Named),
    /// Revoke a key by id, visible prefix (`mh_` + 8 hex digits) or the key itself.
    Revoke(Revoke),
}

/// A command naming one tenant.
#[derive(Debug, Args)]
pub struct Named {
    /// Tenant name.
    name: String,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `tenant key revoke`.
#[derive(Debug, Args)]
pub struct Revoke {
    /// Tenant name.
    name: String,
    /// Key id, visible prefix, or the key itself.
    key: String,
    #[command(flatten)]
    common: Common,
}

impl Named {
    async fn store(&self) -> anyhow::Result<(String, mediahost_store::Store)> {
        let name = self.name.trim();
        anyhow::ensure!(!name.is_empty(), "the tenant name must not be empty");
        let store = Common::open_store(&self.common.load()?).await?;
        Ok((name.to_owned(), store))
    }
}

fn print_new_key(key: &str) {
    println!("API key (shown once; store it safely):");
    println!("{key}");
}

impl Tenant {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create(cmd) => {
                let (name, store) = cmd.store().await?;
                let (tenant, key) = store.create_tenant(&name).await?;
                println!("created tenant {} (id {})", tenant.name, tenant.id);
                print_new_key(&key);
            }
            Self::Key(Key::Add(cmd)) => {
                let (name, store) = cmd.store().await?;
                let key = store.add_api_key(&name).await?;
                println!("added a key to tenant {name}");
                print_new_key(&key);
            }
            Self::Key(Key::List(cmd)) => {
                let (name, store) = cmd.store().await?;
                println!("{:<36}  {:<11}  {:<24}  REVOKED", "ID", "PREFIX", "ISSUED");
                for k in store.api_keys(&name).await? {
                    let revoked = k.revoked_at.as_deref().unwrap_or("-");
                    println!(
                        "{:<36}  {:<11}  {:<24}  {revoked}",
                        k.id, k.prefix, k.created_at
                    );
                }
            }
            Self::Key(Key::Revoke(cmd)) => {
                let named = Named {
                    name: cmd.name,
                    common: cmd.common,
                };
                let (name, store) = named.store().await?;
                let k = store.revoke_api_key(&name, &cmd.key).await?;
                println!("revoked key {} ({}) of tenant {name}", k.prefix, k.id);
            }
        }
        Ok(())
    }
}
