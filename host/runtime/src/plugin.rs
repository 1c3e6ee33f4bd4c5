//! Loading the plugin folder into a [`PluginHost`], and running one call of one plugin in a fresh
//! `Store` under its limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{PoolConcurrencyLimitError, Store, Trap};

use crate::bindings::edge_transform::EdgeTransformPre;
use crate::bindings::metadata_extractor::MetadataExtractorPre;
use crate::bindings::router::RouterPre;
use crate::bindings::validator::{Validator, ValidatorPre};
use crate::bindings::{http, media};
use crate::engine::{Runtime, RuntimeOptions};
use crate::error::{LoadError, PluginError, PluginFailure, RuntimeError};
use crate::host::{HostState, MemoryLimitExceeded, PluginMeta, TableLimitExceeded};
use crate::manifest::{Limits, MANIFEST_FILE, Manifest, World};

/// The loaded plugins, ready to call. Cheap to clone and share between threads; calls are
/// synchronous (CPU-bound, bounded by each plugin's limits), so async callers use
/// `spawn_blocking`.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

struct Inner {
    /// Keeps the engine and its epoch ticker alive while plugins can be called; `None` when
    /// nothing is loaded, so an empty host costs nothing.
    runtime: Option<Runtime>,
    /// The plugins of each world, in the order they run.
    worlds: Worlds,
    /// Every loaded plugin, sorted by name, for the admin API.
    summaries: Vec<PluginSummary>,
}

/// The loaded plugins of each world, each list sorted by name: the order they run in.
#[derive(Default)]
pub(crate) struct Worlds {
    /// `validator` plugins.
    pub validators: Vec<Loaded<ValidatorPre<HostState>>>,
    /// `metadata-extractor` plugins.
    pub extractors: Vec<Loaded<MetadataExtractorPre<HostState>>>,
    /// `router` plugins; only the first is called.
    pub routers: Vec<Loaded<RouterPre<HostState>>>,
    /// `edge-transform` plugins, called as a chain.
    pub edge_transforms: Vec<Loaded<EdgeTransformPre<HostState>>>,
}

/// A compiled component checked against the world its manifest declares.
enum AnyPre {
    Validator(ValidatorPre<HostState>),
    MetadataExtractor(MetadataExtractorPre<HostState>),
    Router(RouterPre<HostState>),
    EdgeTransform(EdgeTransformPre<HostState>),
}

/// A compiled plugin of one world, checked against that world and ready to instantiate.
pub(crate) struct Loaded<P> {
    pub meta: Arc<PluginMeta>,
    pub pre: P,
}

/// What the admin API shows about a loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSummary {
    /// Name from the manifest.
    pub name: String,
    /// Version from the manifest.
    pub version: String,
    /// The world it implements.
    pub world: World,
    /// Hex SHA-256 of the component file.
    pub sha256: String,
    /// Per-call limits from the manifest.
    pub limits: Limits,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.inner.summaries)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host with no plugins: every check accepts, extraction yields nothing, routing falls
    /// back to the default ladder and edge requests pass unchanged.
    pub fn empty() -> Self {
        Self {
            inner: Arc::new(Inner {
                runtime: None,
                worlds: Worlds::default(),
                summaries: Vec::new(),
            }),
        }
    }

    /// Loads every plugin under `dir` on a new [`Runtime`] with default options.
    ///
    /// Each subfolder holding a `plugin.toml` is one plugin; `settings[name]` overrides its
    /// manifest's `[config]`. A missing `dir` means no plugins. Any broken plugin fails the whole
    /// load, naming its folder, so a mistake never silently drops a check.
    pub fn load(
        dir: &Path,
        settings: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Self, RuntimeError> {
        if !dir.exists() {
            tracing::info!(dir = %dir.display(), "plugin folder does not exist; no plugins loaded");
            return Ok(Self::empty());
        }
        Runtime::new(RuntimeOptions::default())?.load(dir, settings)
    }

    /// The loaded plugins, sorted by name.
    pub fn plugins(&self) -> Vec<PluginSummary> {
        self.inner.summaries.clone()
    }

    /// The runtime and the loaded plugins; `None` for an empty host.
    pub(crate) fn worlds(&self) -> Option<(&Runtime, &Worlds)> {
        let runtime = self.inner.runtime.as_ref()?;
        Some((runtime, &self.inner.worlds))
    }
}

impl Runtime {
    /// Loads every plugin under `dir` on this runtime's engine; see [`PluginHost::load`].
    /// Loading again (hot reload) reuses the engine, and the old host keeps serving until the
    /// caller swaps it out.
    pub fn load(
        &self,
        dir: &Path,
        settings: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<PluginHost, RuntimeError> {
        let folders = plugin_folders(dir)?;
        let linker = self.linker()?;
        let mut worlds = Worlds::default();
        let mut summaries = Vec::new();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for folder in folders {
            let (meta, pre) =
                self.load_one(&folder, &linker, settings)
                    .map_err(|(name, source)| RuntimeError::Plugin {
                        folder: folder.clone(),
                        name,
                        source,
                    })?;
            if let Some(first) = seen.insert(meta.name.clone(), folder.clone()) {
                return Err(RuntimeError::DuplicateName {
                    name: meta.name.clone(),
                    first,
                    second: folder,
                });
            }
            tracing::info!(
                plugin = %meta.name,
                version = %meta.version,
                world = %meta.world,
                sha256 = %meta.sha256,
                "loaded plugin"
            );
            summaries.push(PluginSummary {
                name: meta.name.clone(),
                version: meta.version.clone(),
                world: meta.world,
                sha256: meta.sha256.clone(),
                limits: meta.limits,
            });
            match pre {
                AnyPre::Validator(pre) => worlds.validators.push(Loaded { meta, pre }),
                AnyPre::MetadataExtractor(pre) => worlds.extractors.push(Loaded { meta, pre }),
                AnyPre::Router(pre) => worlds.routers.push(Loaded { meta, pre }),
                AnyPre::EdgeTransform(pre) => worlds.edge_transforms.push(Loaded { meta, pre }),
            }
        }
        for name in settings.keys().filter(|n| !seen.contains_key(*n)) {
            tracing::warn!(plugin = %name, "settings given for a plugin that is not loaded");
        }
        // Folders are visited in path order; plugins run in name order.
        fn by_name<P>(list: &mut [Loaded<P>]) {
            list.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        }
        by_name(&mut worlds.validators);
        by_name(&mut worlds.extractors);
        by_name(&mut worlds.routers);
        by_name(&mut worlds.edge_transforms);
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        if let [first, rest @ ..] = worlds.routers.as_slice()
            && !rest.is_empty()
        {
            tracing::warn!(
                router = %first.meta.name,
                ignored = ?rest.iter().map(|p| p.meta.name.as_str()).collect::<Vec<_>>(),
                "several router plugins loaded; only the first in name order is called"
            );
        }
        Ok(PluginHost {
            inner: Arc::new(Inner {
                runtime: Some(self.clone()),
                worlds,
                summaries,
            }),
        })
    }

    /// The imports any plugin may use: WASI (granting nothing, see `host.rs`) plus `log`,
    /// `config` and the type-only interfaces. Every world imports a subset of these, so one
    /// linker serves them all.
    fn linker(&self) -> Result<Linker<HostState>, RuntimeError> {
        let mut linker = Linker::new(self.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            // `log`, `config` and `types`.
            .and_then(|()| Validator::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| media::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| http::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .map_err(|e| RuntimeError::Engine(format!("cannot link host imports: {e:#}")))?;
        Ok(linker)
    }

    /// Loads one folder. The error carries the plugin name once the manifest gave it.
    fn load_one(
        &self,
        folder: &Path,
        linker: &Linker<HostState>,
        settings: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<(Arc<PluginMeta>, AnyPre), (Option<String>, LoadError)> {
        let manifest_path = folder.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| {
            let path = manifest_path.clone();
            (None, LoadError::Read { path, source })
        })?;
        let manifest = Manifest::parse(&text).map_err(|e| (None, e.into()))?;
        let named = |e: LoadError| (Some(manifest.name.clone()), e);

        let max_memory = self.options().max_memory_bytes;
        if manifest.limits.memory_bytes > max_memory {
            return Err(named(LoadError::Limits(format!(
                "limits.memory_bytes is {} but the host allows at most {max_memory}",
                manifest.limits.memory_bytes
            ))));
        }

        let path = folder.join(&manifest.component);
        let bytes = std::fs::read(&path).map_err(|source| {
            let path = path.clone();
            named(LoadError::Read { path, source })
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let started = Instant::now();
        let component = Component::from_binary(self.engine(), &bytes).map_err(|e| {
            let (path, message) = (path.clone(), format!("{e:#}"));
            named(LoadError::Compile { path, message })
        })?;
        tracing::debug!(plugin = %manifest.name, elapsed = ?started.elapsed(), "compiled component");

        let world_error = |e: wasmtime::Error| {
            named(LoadError::World {
                world: manifest.world,
                message: format!("{e:#}"),
            })
        };
        // `instantiate_pre` checks every import is provided; the world's `*Pre::new` checks the
        // exports have the world's names and types.
        let pre = linker.instantiate_pre(&component).map_err(world_error)?;
        let pre = match manifest.world {
            World::Validator => AnyPre::Validator(ValidatorPre::new(pre).map_err(world_error)?),
            World::MetadataExtractor => {
                AnyPre::MetadataExtractor(MetadataExtractorPre::new(pre).map_err(world_error)?)
            }
            World::Router => AnyPre::Router(RouterPre::new(pre).map_err(world_error)?),
            World::EdgeTransform => {
                AnyPre::EdgeTransform(EdgeTransformPre::new(pre).map_err(world_error)?)
            }
        };

        let mut config = manifest.config.clone();
        if let Some(overrides) = settings.get(&manifest.name) {
            config.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let meta = PluginMeta {
            name: manifest.name,
            version: manifest.version,
            world: manifest.world,
            limits: manifest.limits,
            config,
            sha256,
        };
        Ok((Arc::new(meta), pre))
    }

    /// Runs `f` against a fresh `Store` for `meta`'s plugin, under its limits, and turns a
    /// failure into a [`PluginError`] that says which limit or trap stopped it.
    pub(crate) fn call<R>(
        &self,
        meta: &Arc<PluginMeta>,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let limits = meta.limits;
        let mut store = Store::new(self.engine(), HostState::new(meta.clone()));
        store.limiter(|state| &mut state.limiter);
        // Fuel covers instantiation too, so a huge start function is bounded as well.
        store
            .set_fuel(limits.fuel)
            .map_err(|e| plugin_error(meta, PluginFailure::Other(format!("{e:#}"))))?;
        // The default deadline behaviour is to trap, which is what we want.
        store.set_epoch_deadline(self.deadline_ticks(Duration::from_millis(limits.timeout_ms)));

        let started = Instant::now();
        let result = f(&mut store);
        let elapsed = started.elapsed();
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        match result {
            Ok(value) => {
                tracing::debug!(plugin = %meta.name, ?elapsed, fuel_used, "plugin call finished");
                Ok(value)
            }
            Err(e) => {
                let cause = self.classify(&e, limits, store.data());
                tracing::warn!(plugin = %meta.name, ?elapsed, fuel_used, error = %format!("{e:#}"), "plugin call failed");
                Err(plugin_error(meta, cause))
            }
        }
    }

    fn classify(&self, e: &wasmtime::Error, limits: Limits, state: &HostState) -> PluginFailure {
        if let Some(trap) = e.downcast_ref::<Trap>() {
            return match trap {
                Trap::Interrupt => PluginFailure::Timeout {
                    timeout_ms: limits.timeout_ms,
                },
                Trap::OutOfFuel => PluginFailure::OutOfFuel { fuel: limits.fuel },
                other => PluginFailure::Trap {
                    trap: other.to_string(),
                    detail: state.stderr_tail(),
                },
            };
        }
        if e.downcast_ref::<MemoryLimitExceeded>().is_some() {
            return PluginFailure::Memory {
                limit_bytes: limits.memory_bytes,
            };
        }
        if let Some(t) = e.downcast_ref::<TableLimitExceeded>() {
            return PluginFailure::Table {
                limit: t.limit as u64,
            };
        }
        if e.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return PluginFailure::Busy(self.options().max_instances);
        }
        PluginFailure::Other(format!("{e:#}"))
    }
}

/// The error of a call into `meta`'s plugin.
pub(crate) fn plugin_error(meta: &PluginMeta, cause: PluginFailure) -> PluginError {
    PluginError {
        plugin: meta.name.clone(),
        version: meta.version.clone(),
        world: meta.world,
        cause,
    }
}

/// Subfolders of `dir` that hold a manifest, sorted so load errors are deterministic.
fn plugin_folders(dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let read_dir_error = |source| RuntimeError::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_dir_error(e)),
    };
    let mut folders = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_dir_error)?.path();
        if path.join(MANIFEST_FILE).is_file() {
            folders.push(path);
        } else if path.is_dir() {
            tracing::debug!(folder = %path.display(), "no {MANIFEST_FILE}; not a plugin");
        }
    }
    folders.sort();
    Ok(folders)
}
