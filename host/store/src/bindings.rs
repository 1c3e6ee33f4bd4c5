//! Plugin bindings: the global chains (from the config file) and each tenant's (from the config
//! file and the admin API), one row per scope and world with the chain as JSON.

use mediahost_core::plugin::{BindingSet, Chains, World, parse_chain};
use sqlx::Row;

use crate::{Store, StoreError, corrupt, now_rfc3339};

/// Decodes one stored row into `chains`.
fn put_row(chains: &mut Chains, world: &str, json: &str) -> Result<(), StoreError> {
    let world: World = world.parse().map_err(|e| corrupt("world", e))?;
    *chains.get_mut(world) = parse_chain(world, json).map_err(|e| corrupt("chain", e))?;
    Ok(())
}

fn encode(chain: &[mediahost_core::Binding]) -> Result<String, StoreError> {
    serde_json::to_string(chain).map_err(|e| corrupt("chain", e))
}

impl Store {
    /// Replaces the global bindings: `Some` stores a chain for every world (empty ones too, so
    /// "configured" survives), `None` removes them all (every loaded plugin runs).
    pub async fn replace_global_bindings(&self, chains: Option<&Chains>) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM global_plugin_bindings")
            .execute(&mut *tx)
            .await?;
        if let Some(chains) = chains {
            for (world, chain) in chains.iter() {
                sqlx::query(
                    "INSERT INTO global_plugin_bindings (world, chain, updated_at) VALUES ($1, $2, $3)",
                )
                .bind(world.as_str())
                .bind(encode(chain)?)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the bindings of the tenant with id `tenant_id` (worlds left empty are removed).
    pub async fn set_tenant_bindings(
        &self,
        tenant_id: &str,
        chains: &Chains,
    ) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM tenant_plugin_bindings WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        for (world, chain) in chains.iter().filter(|(_, c)| !c.is_empty()) {
            sqlx::query(
                "INSERT INTO tenant_plugin_bindings (tenant_id, world, chain, updated_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(tenant_id)
            .bind(world.as_str())
            .bind(encode(chain)?)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The bindings of the tenant with id `tenant_id` (empty chains when it has none).
    pub async fn tenant_bindings(&self, tenant_id: &str) -> Result<Chains, StoreError> {
        let rows =
            sqlx::query("SELECT world, chain FROM tenant_plugin_bindings WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;
        let mut chains = Chains::default();
        for row in rows {
            put_row(&mut chains, row.get("world"), row.get("chain"))?;
        }
        Ok(chains)
    }

    /// Every stored binding: what a serving process runs with, refreshed periodically.
    pub async fn all_bindings(&self) -> Result<BindingSet, StoreError> {
        let mut set = BindingSet::default();
        let global = sqlx::query("SELECT world, chain FROM global_plugin_bindings")
            .fetch_all(&self.pool)
            .await?;
        for row in global {
            let chains = set.global.get_or_insert_with(Chains::default);
            put_row(chains, row.get("world"), row.get("chain"))?;
        }
        let tenants = sqlx::query("SELECT tenant_id, world, chain FROM tenant_plugin_bindings")
            .fetch_all(&self.pool)
            .await?;
        for row in tenants {
            let chains = set.tenants.entry(row.get("tenant_id")).or_default();
            put_row(chains, row.get("world"), row.get("chain"))?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use mediahost_core::{Binding, FailurePolicy};

    use super::*;

    fn chains(plugin: &str, key: &str) -> Chains {
        let mut binding = Binding::implicit(plugin, World::Validator);
        binding
            .config
            .insert("allowed_extensions".into(), key.into());
        binding.on_failure = FailurePolicy::FailOpen;
        Chains {
            validator: vec![binding],
            ..Chains::default()
        }
    }

    crate::backend_tests! {
    async fn tenant_and_global_bindings_round_trip(store) {
        let (a, _) = store.create_tenant("a").await.unwrap();
        let (b, _) = store.create_tenant("b").await.unwrap();
        assert_eq!(store.all_bindings().await.unwrap(), BindingSet::default());

        store
            .set_tenant_bindings(&a.id, &chains("v", "mp4"))
            .await
            .unwrap();
        assert_eq!(
            store.tenant_bindings(&a.id).await.unwrap(),
            chains("v", "mp4")
        );
        assert_eq!(
            store.tenant_bindings(&b.id).await.unwrap(),
            Chains::default()
        );

        // A PUT replaces the whole set of the tenant.
        store
            .set_tenant_bindings(&a.id, &chains("v", "mkv"))
            .await
            .unwrap();
        assert_eq!(
            store.tenant_bindings(&a.id).await.unwrap(),
            chains("v", "mkv")
        );

        store
            .replace_global_bindings(Some(&Chains::default()))
            .await
            .unwrap();
        let set = store.all_bindings().await.unwrap();
        assert_eq!(
            set.global,
            Some(Chains::default()),
            "configured, even if empty"
        );
        assert_eq!(set.tenants.len(), 1);
        assert_eq!(set.tenants[&a.id], chains("v", "mkv"));

        store.replace_global_bindings(None).await.unwrap();
        store
            .set_tenant_bindings(&a.id, &Chains::default())
            .await
            .unwrap();
        assert_eq!(store.all_bindings().await.unwrap(), BindingSet::default());
    }
    }
}
