//! The plugin catalog: plugins uploaded through `PUT /v1/plugins/{name}`, shared by every process
//! of a deployment.
//!
//! The metadata DB lists them (name, version, world, SHA-256, manifest) and object storage holds
//! each component at `plugins/<name>/<sha256>.wasm`. A process installs them into its own plugin
//! folder (as folders marked installed, see `mediahost_runtime::install`):
//! - the process that takes the `PUT` or `DELETE` at once ([`publish`], [`withdraw`]);
//! - every process at start-up, before plugins load ([`restore`]), so a restarted or new
//!   process serves the catalog from its first request;
//! - every process at each tick of the sync loop ([`sync`]), so the others converge.
//!
//! Hand-made plugin folders (no marker) are never replaced or removed by any of these.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use mediahost_blob::{BlobError, Blobs};
use mediahost_core::BindingSet;
use mediahost_runtime::{
    InstallError, PluginHost, PluginPackage, PluginSummary, installed_plugins,
    remove_plugin_folder, write_plugin_folder,
};
use mediahost_store::{CatalogPlugin, Store, StoreError};

use crate::{ApiError, AppState};

/// Why the catalog could not be installed into a plugin folder.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The metadata DB failed.
    #[error("cannot read the plugin catalog: {0}")]
    Store(#[from] StoreError),
    /// A component could not be read from object storage.
    #[error("cannot read plugin {name:?} from object storage ({key}): {source}")]
    Blob {
        /// The plugin.
        name: String,
        /// Its component's key.
        key: String,
        /// The storage error.
        source: BlobError,
    },
    /// The stored component is not what the catalog recorded.
    #[error(
        "plugin {name:?}: the component in object storage has SHA-256 {found}, the catalog says {expected}; re-upload it with PUT /v1/plugins/{name}"
    )]
    Corrupt {
        /// The plugin.
        name: String,
        /// What the catalog recorded.
        expected: String,
        /// What the stored bytes hash to.
        found: String,
    },
    /// Installing or removing the plugin's folder failed.
    #[error("plugin {name:?}: {source}")]
    Install {
        /// The plugin.
        name: String,
        /// Why.
        source: InstallError,
    },
}

/// Where plugin `name`'s component with hash `sha256` is kept in object storage.
fn blob_key(name: &str, sha256: &str) -> String {
    format!("plugins/{name}/{sha256}.wasm")
}

impl From<InstallError> for ApiError {
    fn from(e: InstallError) -> Self {
        match e {
            InstallError::Invalid(message) => Self::InvalidPlugin(message),
            e @ InstallError::NotInstalled { .. } => Self::Conflict(e.to_string()),
            e @ InstallError::NoFolder => Self::Unavailable(e.to_string()),
            e @ (InstallError::Io { .. } | InstallError::Runtime(_)) => {
                Self::Internal(e.to_string())
            }
        }
    }
}

/// Runs a blocking plugin-folder operation (compiling, file writes) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, InstallError> + Send + 'static,
) -> Result<T, InstallError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        // A panic while compiling is a bug: let it surface as one.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Installs `package` as plugin `name` here (checked: it must load), then stores it in object
/// storage and the catalog for the other processes. Returns what now serves and whether the
/// name is new to the catalog. Installing locally first means nothing shared changes for an
/// upload that does not load; if storing fails afterwards, the next sync puts this process
/// back in step with the catalog.
pub async fn publish(
    state: &AppState,
    name: &str,
    package: PluginPackage,
) -> Result<(PluginSummary, bool), ApiError> {
    let sha256 = package.sha256();
    let manifest = package.manifest.clone();
    let component = Bytes::from(package.component.clone());
    let summary = {
        let (plugins, name) = (state.plugins.clone(), name.to_owned());
        blocking(move || plugins.install(&name, &package)).await?
    };
    let serving = summary
        .serving
        .as_ref()
        .ok_or_else(|| ApiError::Internal(format!("installed plugin {name:?} is not serving")))?;

    let key = blob_key(name, &sha256);
    state.blobs.put_bytes(&key, component).await?;
    let entry = CatalogPlugin {
        name: name.to_owned(),
        version: serving.version.clone(),
        world: serving.world.as_str().to_owned(),
        sha256,
        manifest,
        blob_key: key.clone(),
        updated_at: String::new(),
    };
    let previous = state.store.put_catalog_plugin(&entry).await?;
    if let Some(old) = &previous
        && old.blob_key != key
        && let Err(e) = state.blobs.delete(&old.blob_key).await
    {
        tracing::warn!(plugin = %name, key = %old.blob_key, error = %e, "cannot delete the replaced component");
    }
    tracing::info!(
        plugin = %name,
        version = %entry.version,
        world = %entry.world,
        sha256 = %entry.sha256,
        replaced = previous.as_ref().map(|p| p.version.as_str()),
        "plugin published to the catalog"
    );
    Ok((summary, previous.is_none()))
}

/// Removes plugin `name` from the catalog, object storage and this process's folder. Refused
/// while a binding names it (the chain would fail on every call), and for hand-made plugins.
pub async fn withdraw(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.store.catalog_plugin(name).await?.is_none() {
        let loaded = state.plugins.plugins().into_iter().any(|p| p.name == name);
        return Err(if loaded {
            ApiError::Conflict(format!(
                "plugin {name:?} was not installed through the API (it is served from files in the plugin folder); remove its folder there"
            ))
        } else {
            ApiError::NotFound(format!("no plugin named {name:?} was installed"))
        });
    }
    if let Some(place) = bound_in(&state.plugins.bindings(), name) {
        return Err(ApiError::Conflict(format!(
            "plugin {name:?} is bound in {place}; remove the binding first (PUT /v1/tenants/{{tenant}}/bindings, or [plugins.bindings] in the config file)"
        )));
    }
    state.store.delete_catalog_plugin(name).await?;
    state
        .blobs
        .delete_prefix(&format!("plugins/{name}"))
        .await?;
    let plugins = state.plugins.clone();
    let owned = name.to_owned();
    blocking(move || plugins.uninstall(&owned)).await?;
    tracing::info!(plugin = %name, "plugin removed from the catalog");
    Ok(())
}

/// Where a binding names plugin `name`: "the global validator chain" or "tenant <id>'s router
/// chain"; `None` when none does.
fn bound_in(bindings: &BindingSet, name: &str) -> Option<String> {
    let global = bindings.global.iter().map(|c| ("the global".to_owned(), c));
    let tenants = bindings
        .tenants
        .iter()
        .map(|(tenant, c)| (format!("tenant {tenant}'s"), c));
    global.chain(tenants).find_map(|(scope, chains)| {
        chains
            .iter()
            .find(|(_, chain)| chain.iter().any(|b| b.plugin == name))
            .map(|(world, _)| format!("{scope} {world} chain"))
    })
}

/// A difference between the catalog and a plugin folder.
enum Change<'a> {
    /// Missing or of another version in the folder.
    Install(&'a CatalogPlugin),
    /// Installed in the folder but no longer in the catalog.
    Remove(&'a str),
}

/// What to do to the folder whose installed plugins are `installed` (name → SHA-256) so it holds
/// exactly the `catalog`.
fn plan<'a>(
    catalog: &'a [CatalogPlugin],
    installed: &'a BTreeMap<String, String>,
) -> Vec<Change<'a>> {
    let listed: BTreeMap<&str, &CatalogPlugin> =
        catalog.iter().map(|p| (p.name.as_str(), p)).collect();
    let installs = catalog
        .iter()
        .filter(|p| installed.get(&p.name) != Some(&p.sha256))
        .map(Change::Install);
    let removals = installed
        .keys()
        .filter(|name| !listed.contains_key(name.as_str()))
        .map(|name| Change::Remove(name));
    installs.chain(removals).collect()
}

/// The catalog entry's package, read from object storage and checked against its hash.
async fn fetch(blobs: &Blobs, entry: &CatalogPlugin) -> Result<PluginPackage, CatalogError> {
    let component =
        blobs
            .get_bytes(&entry.blob_key)
            .await
            .map_err(|source| CatalogError::Blob {
                name: entry.name.clone(),
                key: entry.blob_key.clone(),
                source,
            })?;
    let package = PluginPackage {
        manifest: entry.manifest.clone(),
        component: component.to_vec(),
    };
    let found = package.sha256();
    if found != entry.sha256 {
        return Err(CatalogError::Corrupt {
            name: entry.name.clone(),
            expected: entry.sha256.clone(),
            found,
        });
    }
    Ok(package)
}

/// Writes the catalog into the plugin folder `dir` before plugins load: installs what is
/// missing or outdated and removes installed plugins the catalog no longer lists. Any failure
/// stops the start-up, as a broken plugin folder does.
pub async fn restore(store: &Store, blobs: &Blobs, dir: &Path) -> Result<usize, CatalogError> {
    let catalog = store.catalog_plugins().await?;
    let installed = installed_plugins(dir);
    let changes = plan(&catalog, &installed);
    for change in &changes {
        match change {
            Change::Install(entry) => {
                let package = fetch(blobs, entry).await?;
                write_plugin_folder(dir, &entry.name, &package).map_err(|source| {
                    CatalogError::Install {
                        name: entry.name.clone(),
                        source,
                    }
                })?;
                tracing::info!(plugin = %entry.name, version = %entry.version, "plugin installed from the catalog");
            }
            Change::Remove(name) => {
                remove_plugin_folder(dir, name).map_err(|source| CatalogError::Install {
                    name: (*name).to_owned(),
                    source,
                })?;
                tracing::info!(plugin = %name, "plugin removed: no longer in the catalog");
            }
        }
    }
    Ok(changes.len())
}

/// One sync of a serving process with the catalog: installs (checked, swapped in like a hot
/// reload) what changed and removes what was withdrawn. A plugin that fails is logged and
/// retried at the next sync; the others still converge.
pub async fn sync(store: &Store, blobs: &Blobs, plugins: &PluginHost) -> Result<(), CatalogError> {
    let catalog = store.catalog_plugins().await?;
    let installed = plugins.installed();
    for change in plan(&catalog, &installed) {
        let (name, result) = match change {
            Change::Install(entry) => (&*entry.name, install_entry(blobs, plugins, entry).await),
            Change::Remove(name) => (name, remove_entry(plugins, name).await),
        };
        match result {
            Ok(()) => tracing::info!(plugin = %name, "plugin folder synced with the catalog"),
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "cannot sync plugin with the catalog; retrying at the next sync")
            }
        }
    }
    Ok(())
}

async fn remove_entry(plugins: &PluginHost, name: &str) -> Result<(), CatalogError> {
    let (plugins, owned) = (plugins.clone(), name.to_owned());
    blocking(move || plugins.uninstall(&owned))
        .await
        .map(|_| ())
        .map_err(|source| CatalogError::Install {
            name: name.to_owned(),
            source,
        })
}

async fn install_entry(
    blobs: &Blobs,
    plugins: &PluginHost,
    entry: &CatalogPlugin,
) -> Result<(), CatalogError> {
    let package = fetch(blobs, entry).await?;
    let (plugins, name) = (plugins.clone(), entry.name.clone());
    blocking(move || plugins.install(&name, &package))
        .await
        .map(|_| ())
        .map_err(|source| CatalogError::Install {
            name: entry.name.clone(),
            source,
        })
}
