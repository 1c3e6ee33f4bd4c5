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

/// An API key as operators see it: never the secret, only its visible prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// Stable id (UUID v7 text), accepted by `revoke`.
    pub id: String,
    /// `mh_` and the key's first 8 hex digits, enough to tell keys apart.
    pub prefix: String,
    /// When it was issued, RFC 3339.
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// Issues a new key for `tenant_id` inside `tx`; returns it in clear text.
async fn insert_key(
    tx: &mut sqlx::AnyConnection,
    tenant_id: &str,
    now: &str,
) -> Result<String, StoreError> {
    let key = generate_key();
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(hash_api_key(&key))
    .bind(&key[..KEY_PREFIX.len() + 8])
    .bind(now)
    .execute(tx)
    .await?;
    Ok(key)
}

impl Store {
    /// Creates a tenant with one API key and returns the tenant and the key in clear text
    /// (the only time it is ever visible).
    pub async fn create_tenant(&self, name: &str) -> Result<(Tenant, String), StoreError> {
        self.create_placed_tenant(name, None).await
    }

    /// [`Store::create_tenant`], keeping the tenant's objects in the storage placement named
    /// `placement` (the caller checks it is configured) instead of the main store.
    pub async fn create_placed_tenant(
        &self,
        name: &str,
        placement: Option<&str>,
    ) -> Result<(Tenant, String), StoreError> {
        let tenant = Tenant {
            id: new_id(),
            name: name.to_owned(),
        };
        let now = now_rfc3339();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, name, created_at, placement) VALUES ($1, $2, $3, $4)",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(&now)
        .bind(placement)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::TenantExists(name.to_owned()));
            }
            other => other?,
        };
        let key = insert_key(&mut tx, &tenant.id, &now).await?;
        tx.commit().await?;
        Ok((tenant, key))
    }

    /// The storage placement keeping tenant `id`'s objects (`None`: the main store, also for
    /// an unknown tenant, which has no objects).
    pub async fn tenant_placement(&self, id: &str) -> Result<Option<String>, StoreError> {
        let placement: Option<Option<String>> =
            sqlx::query_scalar("SELECT placement FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(placement.flatten())
    }

    /// The tenant called `name`.
    pub async fn tenant_by_name(&self, name: &str) -> Result<Tenant, StoreError> {
        let row = sqlx::query("SELECT id, name FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NoSuchTenant(name.to_owned()))?;
        Ok(Tenant {
            id: row.get("id"),
            name: row.get("name"),
        })
    }

    /// Issues another key for the tenant called `name` (keys rotate without downtime: add the
    /// new one, move clients, revoke the old one). Returns it in clear text, once.
    pub async fn add_api_key(&self, name: &str) -> Result<String, StoreError> {
        let tenant = self.tenant_by_name(name).await?;
        let mut conn = self.pool.acquire().await?;
        insert_key(&mut conn, &tenant.id, &now_rfc3339()).await
    }

    /// The tenant's keys, oldest first, revoked ones included.
    pub async fn api_keys(&self, name: &str) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let tenant = self.tenant_by_name(name).await?;
        let rows = sqlx::query(
            "SELECT id, prefix, created_at, revoked_at FROM api_keys WHERE tenant_id = $1 \
             ORDER BY created_at, id",
        )
        .bind(&tenant.id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ApiKeyInfo {
                id: r.get("id"),
                prefix: r.get("prefix"),
                created_at: r.get("created_at"),
                revoked_at: r.get("revoked_at"),
            })
            .collect())
    }

    /// Revokes the tenant's active key whose id is `key`, or whose visible prefix (or the key
    /// itself) starts with `key`; it stops authenticating at once.
    pub async fn revoke_api_key(&self, name: &str, key: &str) -> Result<ApiKeyInfo, StoreError> {
        let key = key.trim();
        let no_such = || StoreError::NoSuchKey {
            tenant: name.to_owned(),
            key: key.to_owned(),
        };
        let matching: Vec<ApiKeyInfo> = self
            .api_keys(name)
            .await?
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .filter(|k| {
                k.id == key
                    || (key.len() >= KEY_PREFIX.len() + 4
                        && (k.prefix.starts_with(key) || key.starts_with(&k.prefix)))
            })
            .collect();
        let mut found = match matching.as_slice() {
            [] => return Err(no_such()),
            [one] => one.clone(),
            _ => return Err(StoreError::AmbiguousKey(key.to_owned())),
        };
        // A full key must be the one whose hash is stored, not merely share its prefix.
        if found.id != key && key.len() > found.prefix.len() {
            let hash: Option<String> =
                sqlx::query_scalar("SELECT key_hash FROM api_keys WHERE id = $1")
                    .bind(&found.id)
                    .fetch_optional(&self.pool)
                    .await?;
            if hash.as_deref() != Some(hash_api_key(key).as_str()) {
                return Err(no_such());
            }
        }
        let now = now_rfc3339();
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(&now)
            .bind(&found.id)
            .execute(&self.pool)
            .await?;
        found.revoked_at = Some(now);
        Ok(found)
    }

    /// The tenant an unrevoked API key belongs to.
    pub async fn tenant_for_key(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(
            "SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
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

    crate::backend_tests! {
        async fn key_authenticates_its_tenant_only(store) {
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

        async fn keys_rotate_and_revoked_keys_stop_working(store) {
            let (acme, first) = store.create_tenant("acme").await.unwrap();
            let second = store.add_api_key("acme").await.unwrap();
            assert_eq!(
                store.tenant_for_key(&second).await.unwrap(),
                Some(acme.clone())
            );

            let keys = store.api_keys("acme").await.unwrap();
            assert_eq!(keys.len(), 2);
            assert_eq!(keys[0].prefix, first[..11]);

            // By visible prefix.
            let revoked = store.revoke_api_key("acme", &first[..11]).await.unwrap();
            assert!(revoked.revoked_at.is_some());
            assert_eq!(store.tenant_for_key(&first).await.unwrap(), None);
            assert_eq!(store.tenant_for_key(&second).await.unwrap(), Some(acme));
            assert!(matches!(
                store.revoke_api_key("acme", &first[..11]).await,
                Err(StoreError::NoSuchKey { .. })
            ));

            // By id, and by the full secret; a wrong secret with a right prefix is refused.
            let third = store.add_api_key("acme").await.unwrap();
            let forged = format!("{}{}", &third[..11], "0".repeat(third.len() - 11));
            assert!(matches!(
                store.revoke_api_key("acme", &forged).await,
                Err(StoreError::NoSuchKey { .. })
            ));
            store.revoke_api_key("acme", &third).await.unwrap();
            let id = store.api_keys("acme").await.unwrap()[1].id.clone();
            store.revoke_api_key("acme", &id).await.unwrap();
            assert_eq!(store.tenant_for_key(&second).await.unwrap(), None);

            assert!(matches!(
                store.add_api_key("nobody").await,
                Err(StoreError::NoSuchTenant(_))
            ));
            // Another tenant's key is not this tenant's to revoke.
            let (_, other) = store.create_tenant("globex").await.unwrap();
            assert!(matches!(
                store.revoke_api_key("acme", &other[..11]).await,
                Err(StoreError::NoSuchKey { .. })
            ));
        }

        async fn duplicate_name_is_a_clear_error(store) {
            store.create_tenant("acme").await.unwrap();
            let err = store.create_tenant("acme").await.unwrap_err();
            assert!(matches!(err, StoreError::TenantExists(_)), "{err}");
        }
    }
}
