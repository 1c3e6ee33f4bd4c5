//! Per-tenant playback signing secrets (table `playback_signing`).
//!
//! A secret is 256 random bits, hex encoded, created the first time a tenant needs one, so
//! existing tenants get one without a data migration.

use rand::RngCore;

use crate::{Store, StoreError, now_rfc3339};

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Store {
    /// The tenant's playback signing secret, created on first use.
    pub async fn playback_secret(&self, tenant_id: &str) -> Result<String, StoreError> {
        // Read first: this runs on every signed playback request, which should not write.
        if let Some(secret) = self.stored_playback_secret(tenant_id).await? {
            return Ok(secret);
        }
        // Two concurrent first uses both insert; the loser's row is dropped by the conflict
        // clause and both read the winner's secret.
        sqlx::query(
            "INSERT INTO playback_signing (tenant_id, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(new_secret())
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        // Absent only when the tenant was deleted meanwhile (the row cascades away).
        self.stored_playback_secret(tenant_id)
            .await?
            .ok_or(StoreError::Db(sqlx::Error::RowNotFound))
    }

    async fn stored_playback_secret(&self, tenant_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT secret FROM playback_signing WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Replaces the tenant's playback signing secret with a new random one and returns it;
    /// every URL signed with the old secret stops working at once.
    pub async fn rotate_playback_secret(&self, tenant_id: &str) -> Result<String, StoreError> {
        let secret = new_secret();
        sqlx::query(
            "INSERT INTO playback_signing (tenant_id, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET secret = excluded.secret, \
             created_at = excluded.created_at",
        )
        .bind(tenant_id)
        .bind(&secret)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(secret)
    }
}
