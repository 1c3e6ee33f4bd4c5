//! `mediahost migrate`: bring the metadata database schema up to date.

use clap::Args;

use super::Common;

/// Apply database migrations and exit.
#[derive(Debug, Args)]
pub struct Migrate {
    #[command(flatten)]
    common: Common,
}

impl Migrate {
    pub async fn run(self) -> anyhow::Result<()> {
        let config = self.common.load()?;
        // Opening the store applies pending migrations.
        Common::open_store(&config).await?;
        println!(
            "migrations applied to {}",
            mediahost_core::redact_url(&Common::database_url(&config))
        );
        Ok(())
    }
}
