//! Tenants and their API keys.

use mediahost_core::Tenant;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Store, StoreError, new_id, now_rfc3339};

/// Visible prefix of every key, so leaked keys are easy to grep for in logs and repos.
const KEY_PREFIX: &str = "mh_";

/// The stored form of an API key: hex sha256. Keys carry 256 random bits, so a fast hash is
/// enough (no password stretching needed) and lookups stay one indexed query.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

impl Store {
    /// Creates a tenant with one API key and returns the tenant and the key in clear text
    /// (the only time it is ever visible).
    pub async fn create_tenant(&self, name: &str) -> Result<(Tenant, String), StoreError> {
        let tenant = Tenant {
            id: new_id(),
            name: name.to_owned(),
        };
        let key = generate_key();
        let now = now_rfc3339();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(&now)
            .execute(&mut *tx)
            .await;
        match inserted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::TenantExists(name.to_owned()));
            }
            other => other?,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(new_id())
        .bind(&tenant.id)
        .bind(hash_api_key(&key))
        .bind(&key[..KEY_PREFIX.len() + 8])
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((tenant, key))
    }

    /// The tenant an unrevoked API key belongs to.
    pub async fn tenant_for_key(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(
            "SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = ? AND k.revoked_at IS NULL",
        )
        .bind(hash_api_key(key))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Tenant {
            id: r.get("id"),
            name: r.get("name"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_store;

    #[tokio::test]
    async fn key_authenticates_its_tenant_only() {
        let (_dir, store) = test_store().await;
        let (acme, acme_key) = store.create_tenant("acme").await.unwrap();
        let (_, globex_key) = store.create_tenant("globex").await.unwrap();
        assert!(acme_key.starts_with("mh_") && acme_key.len() == 67);
        assert_ne!(acme_key, globex_key);
        assert_eq!(store.tenant_for_key(&acme_key).await.unwrap(), Some(acme));
        assert_eq!(store.tenant_for_key("mh_wrong").await.unwrap(), None);

        let stored: String = sqlx::query_scalar("SELECT key_hash FROM api_keys LIMIT 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(!stored.contains(&acme_key[3..]), "keys are stored hashed");
    }

    #[tokio::test]
    async fn duplicate_name_is_a_clear_error() {
        let (_dir, store) = test_store().await;
        store.create_tenant("acme").await.unwrap();
        let err = store.create_tenant("acme").await.unwrap_err();
        assert!(matches!(err, StoreError::TenantExists(_)), "{err}");
    }
}
