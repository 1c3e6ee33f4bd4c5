//! The plugin catalog (table `plugin_catalog`): plugins installed through the admin API, which
//! every process of a deployment installs into its plugin folder. The component bytes live in
//! object storage under [`CatalogPlugin::blob_key`].

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, now_rfc3339};

/// One installed plugin as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPlugin {
    /// The plugin name (also its folder name and storage prefix).
    pub name: String,
    /// Version from the manifest.
    pub version: String,
    /// World from the manifest (`validator`, ...).
    pub world: String,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// `plugin.toml` as uploaded.
    pub manifest: String,
    /// Where the component's bytes are in object storage.
    pub blob_key: String,
    /// When this version was stored (RFC 3339, UTC); set by the store.
    pub updated_at: String,
}

fn from_row(row: &AnyRow) -> CatalogPlugin {
    CatalogPlugin {
        name: row.get("name"),
        version: row.get("version"),
        world: row.get("world"),
        sha256: row.get("sha256"),
        manifest: row.get("manifest"),
        blob_key: row.get("blob_key"),
        updated_at: row.get("updated_at"),
    }
}

const COLUMNS: &str = "name, version, world, sha256, manifest, blob_key, updated_at";

impl Store {
    /// Records `plugin` (its `updated_at` is set to now), replacing the entry of the same
    /// name; returns the replaced entry, so the caller can drop its old component.
    pub async fn put_catalog_plugin(
        &self,
        plugin: &CatalogPlugin,
    ) -> Result<Option<CatalogPlugin>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let previous = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugin_catalog WHERE name = $1"
        ))
        .bind(&plugin.name)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| from_row(&row));
        sqlx::query(
            "INSERT INTO plugin_catalog (name, version, world, sha256, manifest, blob_key, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name) DO UPDATE SET version = excluded.version, world = excluded.world, \
             sha256 = excluded.sha256, manifest = excluded.manifest, blob_key = excluded.blob_key, \
             updated_at = excluded.updated_at",
        )
        .bind(&plugin.name)
        .bind(&plugin.version)
        .bind(&plugin.world)
        .bind(&plugin.sha256)
        .bind(&plugin.manifest)
        .bind(&plugin.blob_key)
        .bind(now_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(previous)
    }

    /// The catalog entry named `name`, if any.
    pub async fn catalog_plugin(&self, name: &str) -> Result<Option<CatalogPlugin>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugin_catalog WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| from_row(&row)))
    }

    /// Every catalog entry, sorted by name.
    pub async fn catalog_plugins(&self) -> Result<Vec<CatalogPlugin>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugin_catalog ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Removes the catalog entry named `name`; returns it, or `None` when there was none.
    pub async fn delete_catalog_plugin(
        &self,
        name: &str,
    ) -> Result<Option<CatalogPlugin>, StoreError> {
        let removed = self.catalog_plugin(name).await?;
        if removed.is_some() {
            sqlx::query("DELETE FROM plugin_catalog WHERE name = $1")
                .bind(name)
                .execute(&self.pool)
                .await?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, sha256: &str) -> CatalogPlugin {
        CatalogPlugin {
            name: name.into(),
            version: "1.0.0".into(),
            world: "validator".into(),
            sha256: sha256.into(),
            manifest: format!("name = \"{name}\""),
            blob_key: format!("plugins/{name}/{sha256}.wasm"),
            updated_at: String::new(),
        }
    }

    /// `updated_at` is the store's; compare the rest.
    fn stored(mut plugin: CatalogPlugin) -> CatalogPlugin {
        assert!(!plugin.updated_at.is_empty());
        plugin.updated_at = String::new();
        plugin
    }

    crate::backend_tests! {
    async fn catalog_entries_are_replaced_by_name_and_removed(store) {
        assert_eq!(store.catalog_plugins().await.unwrap(), vec![]);
        assert_eq!(store.put_catalog_plugin(&entry("b", "11")).await.unwrap(), None);
        assert_eq!(store.put_catalog_plugin(&entry("a", "22")).await.unwrap(), None);

        let replaced = store.put_catalog_plugin(&entry("b", "33")).await.unwrap();
        assert_eq!(replaced.map(stored), Some(entry("b", "11")));
        let all: Vec<_> = store.catalog_plugins().await.unwrap().into_iter().map(stored).collect();
        assert_eq!(all, vec![entry("a", "22"), entry("b", "33")]);
        assert_eq!(
            store.catalog_plugin("b").await.unwrap().map(stored),
            Some(entry("b", "33"))
        );

        let removed = store.delete_catalog_plugin("b").await.unwrap();
        assert_eq!(removed.map(stored), Some(entry("b", "33")));
        assert_eq!(store.delete_catalog_plugin("b").await.unwrap(), None);
        assert_eq!(store.catalog_plugin("b").await.unwrap(), None);
        assert_eq!(store.catalog_plugins().await.unwrap().len(), 1);
    }
    }
}
