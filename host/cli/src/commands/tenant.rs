//! `mediahost tenant ...`: tenant administration straight on the metadata database.

use clap::{Args, Subcommand};

use super::Common;

/// Manage tenants and their API keys.
#[derive(Debug, Subcommand)]
pub enum Tenant {
    /// Create a tenant and print its API key (the key alone is the last line of stdout).
    Create(Create),
    /// Manage a tenant's API keys (several may be active, so keys rotate without downtime).
    #[command(subcommand)]
    Key(Key),
    /// Show a tenant's quota and usage, or change its limits (the others stay as they are).
    Quota(QuotaArgs),
    /// Print the tenant's playback signing secret (the last line of stdout); `--rotate`
    /// replaces it first, which invalidates every signed URL handed out before.
    PlaybackSecret(PlaybackSecret),
}

/// Arguments of `tenant playback-secret`.
#[derive(Debug, Args)]
pub struct PlaybackSecret {
    /// Tenant name.
    name: String,
    /// Replace the secret with a new random one.
    #[arg(long)]
    rotate: bool,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `tenant quota`. Sizes take binary units: `500MiB`, `2GiB`, `1TiB`.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// Tenant name.
    name: String,
    /// Largest single upload (e.g. `2GiB`); `default` returns to the deployment's `[quotas]`.
    #[arg(long, value_name = "SIZE|default")]
    max_upload_size: Option<Limit>,
    /// Source bytes the tenant may store (e.g. `100GiB`); `default` as above.
    #[arg(long, value_name = "SIZE|default")]
    max_storage: Option<Limit>,
    /// Uploads the tenant may have open at once; `default` as above.
    #[arg(long, value_name = "N|default")]
    max_concurrent_uploads: Option<Limit>,
    #[command(flatten)]
    common: Common,
}

/// A limit given on the command line: a value, or `default` to unset the tenant's own.
#[derive(Debug, Clone, Copy)]
struct Limit(Option<u64>);

impl std::str::FromStr for Limit {
    type Err = mediahost_core::quota::InvalidSize;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("default") {
            return Ok(Limit(None));
        }
        mediahost_core::quota::parse_size(s).map(|v| Limit(Some(v)))
    }
}

fn show_limit(own: Option<u64>, effective: Option<u64>) -> String {
    let value = effective.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
    if own.is_some() {
        value
    } else {
        format!("{value} (default)")
    }
}

impl QuotaArgs {
    async fn run(self) -> anyhow::Result<()> {
        let config = self.common.load()?;
        let store = Common::open_store(&config).await?;
        let tenant = store.tenant_by_name(self.name.trim()).await?;
        let mut own = store.tenant_quota(&tenant.id).await?;
        let changes = [
            self.max_upload_size,
            self.max_storage,
            self.max_concurrent_uploads,
        ];
        if changes.iter().any(Option::is_some) {
            if let Some(Limit(v)) = self.max_upload_size {
                own.max_upload_bytes = v;
            }
            if let Some(Limit(v)) = self.max_storage {
                own.max_storage_bytes = v;
            }
            if let Some(Limit(v)) = self.max_concurrent_uploads {
                own.max_concurrent_uploads = v
                    .map(u32::try_from)
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--max-concurrent-uploads is too large"))?;
            }
            store.set_tenant_quota(&tenant.id, &own).await?;
            println!("updated the quota of tenant {}", tenant.name);
        }
        let quota = own.or(&config.quotas);
        let usage = store
            .tenant_usage(&tenant.id, mediahost_store::now_ms())
            .await?;
        println!(
            "max upload size (bytes):  {}",
            show_limit(own.max_upload_bytes, quota.max_upload_bytes)
        );
        println!(
            "max storage (bytes):      {}",
            show_limit(own.max_storage_bytes, quota.max_storage_bytes)
        );
        println!(
            "max concurrent uploads:   {}",
            show_limit(
                own.max_concurrent_uploads.map(u64::from),
                quota.max_concurrent_uploads.map(u64::from)
            )
        );
        println!(
            "usage: {} bytes stored, {} bytes in open uploads, {} uploads open",
            usage.stored_bytes, usage.reserved_bytes, usage.open_uploads
        );
        Ok(())
    }
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

/// Arguments of `tenant create`.
#[derive(Debug, Args)]
pub struct Create {
    #[command(flatten)]
    tenant: Named,
    /// Keep the tenant's objects (sources, renditions) in this storage placement of the config
    /// (`[storage.placements.<NAME>]`: its own bucket, prefix or folder) instead of the main
    /// store. Fixed for the tenant's life.
    #[arg(long, value_name = "NAME")]
    placement: Option<String>,
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

/// The configured placements, for messages.
fn placement_list(config: &mediahost_core::Config) -> String {
    let names: Vec<&str> = config
        .storage
        .placements
        .keys()
        .map(String::as_str)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
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
                if let Some(placement) = &cmd.placement {
                    let config = cmd.tenant.common.load()?;
                    anyhow::ensure!(
                        config.storage.placements.contains_key(placement),
                        "--placement {placement}: the config has no [storage.placements.{placement}] \
                         (configured: {})",
                        placement_list(&config)
                    );
                }
                let (name, store) = cmd.tenant.store().await?;
                let (tenant, key) = store
                    .create_placed_tenant(&name, cmd.placement.as_deref())
                    .await?;
                match &cmd.placement {
                    Some(placement) => println!(
                        "created tenant {} (id {}), its objects in placement {placement}",
                        tenant.name, tenant.id
                    ),
                    None => println!("created tenant {} (id {})", tenant.name, tenant.id),
                }
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
            Self::Quota(cmd) => cmd.run().await?,
            Self::PlaybackSecret(cmd) => {
                let named = Named {
                    name: cmd.name,
                    common: cmd.common,
                };
                let (name, store) = named.store().await?;
                let tenant = store.tenant_by_name(&name).await?;
                let secret = if cmd.rotate {
                    let secret = store.rotate_playback_secret(&tenant.id).await?;
                    println!("rotated the playback signing secret of tenant {name}");
                    secret
                } else {
                    store.playback_secret(&tenant.id).await?
                };
                println!("{secret}");
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
