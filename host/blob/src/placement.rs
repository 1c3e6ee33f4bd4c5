//! Per-tenant placement: which object store holds a tenant's objects.
//!
//! A tenant created with a placement (`mediahost tenant create NAME --placement P`) keeps its
//! sources and renditions in the store of `[storage.placements.P]` (its own bucket and
//! credentials, a prefix of a shared bucket, or a local folder), so one deployment can serve
//! tenants whose data must stay apart. Every tenant key starts with `tenants/<id>/`: the
//! tenant, and so the store, follows from the key, whoever asks. The placement of a tenant is
//! asked of the metadata store once ([`Lookup`]) and remembered: it never changes.
//!
//! Failing closed: a tenant in a placement this process does not configure, or whose
//! placement cannot be looked up, gets an error, never the main store.

use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::{BlobError, Target};

/// Answers a tenant id with the name of its placement (`None`: the main store), or why it
/// cannot tell.
pub type Lookup =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Option<String>, String>> + Send + Sync>;

/// The placements' stores, and what is known of each tenant's placement.
#[derive(Default)]
pub(crate) struct Placements {
    named: BTreeMap<String, Arc<Target>>,
    lookup: Option<Lookup>,
    /// Tenant id → placement name, as looked up.
    known: RwLock<HashMap<String, Option<String>>>,
}

impl std::fmt::Debug for Placements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placements")
            .field("named", &self.named.keys().collect::<Vec<_>>())
            .field("lookup", &self.lookup.is_some())
            .finish()
    }
}

impl Placements {
    pub(crate) fn new(named: BTreeMap<String, Arc<Target>>) -> Self {
        Self {
            named,
            ..Self::default()
        }
    }

    /// The same stores, asking `lookup` where tenants are.
    pub(crate) fn with_lookup(&self, lookup: Lookup) -> Self {
        Self {
            named: self.named.clone(),
            lookup: Some(lookup),
            known: RwLock::default(),
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.named.keys().cloned().collect()
    }

    pub(crate) fn targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.named.values()
    }

    /// The store of `key`: the tenant's placement for a tenant key, the main store for
    /// everything else (plugin components) and when no lookup is set (no tenant is placed).
    pub(crate) async fn target_for(
        &self,
        key: &str,
        main: &Arc<Target>,
    ) -> Result<Arc<Target>, BlobError> {
        let (Some(tenant), Some(lookup)) = (tenant_of(key), &self.lookup) else {
            return Ok(main.clone());
        };
        let known = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned();
        let placement = match known {
            Some(placement) => placement,
            None => {
                let placement = lookup(tenant.to_owned()).await.map_err(|e| {
                    BlobError::Placement(format!(
                        "cannot tell which store keeps tenant {tenant}'s objects: {e}"
                    ))
                })?;
                self.known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(tenant.to_owned(), placement.clone());
                placement
            }
        };
        match placement {
            None => Ok(main.clone()),
            Some(name) => self.named.get(&name).cloned().ok_or_else(|| {
                BlobError::Placement(format!(
                    "tenant {tenant} keeps its objects in the storage placement {name:?}, which \
                     this process does not configure; add [storage.placements.{name}] to its \
                     config (every process of the deployment needs the same placements)"
                ))
            }),
        }
    }
}

/// The tenant id a key (or prefix) belongs to: `tenants/<id>/…`.
fn tenant_of(key: &str) -> Option<&str> {
    key.strip_prefix("tenants/")?
        .split('/')
        .next()
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_follows_from_the_key() {
        assert_eq!(tenant_of("tenants/t1/videos/v/source"), Some("t1"));
        assert_eq!(tenant_of("tenants/t1/videos/v"), Some("t1"));
        assert_eq!(tenant_of("tenants/t1"), Some("t1"));
        assert_eq!(tenant_of("tenants//x"), None);
        assert_eq!(tenant_of("plugins/p/abc.wasm"), None);
    }
}
