//! Loading the plugin folder into a [`PluginHost`], and running one call of one plugin under its
//! limits, in a fresh `Store` or in a warm one ([`crate::warm`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mediahost_core::BindingSet;
use metrics::{Counter, Histogram};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{PoolConcurrencyLimitError, Store, Trap};

use crate::bindings::edge_transform::EdgeTransformPre;
use crate::bindings::metadata_extractor::MetadataExtractorPre;
use crate::bindings::router::RouterPre;
use crate::bindings::validator::{Validator, ValidatorPre};
use crate::bindings::{http, media};
use crate::budget::Budget;
use crate::engine::{Runtime, RuntimeOptions};
use crate::error::{LoadError, PluginError, PluginErrorReport, PluginFailure, RuntimeError};
use crate::host::{CallSettings, HostState, MemoryLimitExceeded, PluginMeta, TableLimitExceeded};
use crate::manifest::{Instances, Limits, MANIFEST_FILE, Manifest, World};
use crate::warm::{Instantiate, Warm, WarmPool};

/// Operator settings: plugin name → key → value, overlaid on each manifest's `[config]`.
pub(crate) type Settings = BTreeMap<String, BTreeMap<String, String>>;

/// The loaded plugins, ready to call. Cheap to clone and share between threads; calls are
/// synchronous (CPU-bound, bounded by each plugin's limits), so async callers use
/// `spawn_blocking`.
///
/// The set of plugins can be swapped while calls run ([`PluginHost::reload`], driven by
/// [`PluginHost::watch`]): every call takes a snapshot of the set when it starts, so calls already
/// running finish on the version they started with, and the next call sees the new one.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<Shared>,
}

/// What every clone of a [`PluginHost`] shares.
pub(crate) struct Shared {
    /// The folder and operator settings the plugins were loaded from, so a reload can read them
    /// again; `None` for [`PluginHost::empty`], which has nothing to reload.
    source: Option<Source>,
    /// The plugin set calls run against. A call clones the `Arc` (a brief read lock) and runs on
    /// that snapshot; a reload builds a new snapshot off to the side and swaps it in (a brief
    /// write lock), so neither ever waits on a plugin call or a compilation.
    current: RwLock<Arc<Snapshot>>,
    /// Serialises reloads, so two bursts of file events never race to swap.
    reloading: Mutex<()>,
    /// Which plugins run for whom ([`PluginHost::set_bindings`]); swapped whole like the plugin
    /// set, so a call sees one consistent chain.
    pub(crate) bindings: RwLock<Arc<BindingSet>>,
}

/// Where a host's plugins come from.
pub(crate) struct Source {
    /// The plugin folder: one subfolder per plugin.
    pub dir: PathBuf,
    /// Operator settings applied at every (re)load.
    pub settings: Settings,
    /// Options of the runtime a reload creates when none exists yet (the folder was empty).
    pub options: RuntimeOptions,
}

/// One immutable plugin set.
pub(crate) struct Snapshot {
    /// Keeps the engine and its epoch ticker alive while plugins can be called; `None` while
    /// nothing was ever loaded, so an empty host costs nothing.
    pub runtime: Option<Runtime>,
    /// The serving plugins of each world, in the order they run.
    pub worlds: Arc<Worlds>,
    /// Every plugin folder known, sorted by folder: what serves and what failed, for reloads
    /// (to reuse unchanged plugins) and the admin API.
    pub entries: Vec<Entry>,
}

/// One plugin folder as the host knows it.
#[derive(Clone)]
pub(crate) struct Entry {
    /// The folder; the identity of a plugin across reloads.
    pub folder: PathBuf,
    /// The serving version's name, else the name of the manifest that failed, else the folder
    /// name.
    pub name: String,
    /// The version answering calls; `None` if no version of this folder ever loaded.
    pub serving: Option<Serving>,
    /// Why the latest files on disk could not be loaded; `None` when they serve.
    pub last_error: Option<String>,
    /// Successful reloads after the first load.
    pub reloads: u64,
    /// Fingerprint of the files last read from the folder (loaded or not), so a rescan skips
    /// folders whose files did not change.
    pub seen: String,
}

/// A compiled, world-checked version of a plugin that answers calls.
#[derive(Clone)]
pub(crate) struct Serving {
    /// Name, version, world, limits, config and sha256.
    pub meta: Arc<PluginMeta>,
    /// The component, ready to instantiate; reused when a reload finds the same bytes.
    pub pre: AnyPre,
    /// When this version started serving.
    pub loaded_at: DateTime<Utc>,
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
#[derive(Clone)]
pub(crate) enum AnyPre {
    Validator(ValidatorPre<HostState>),
    MetadataExtractor(MetadataExtractorPre<HostState>),
    Router(RouterPre<HostState>),
    EdgeTransform(EdgeTransformPre<HostState>),
}

/// A compiled plugin of one world, checked against that world and ready to instantiate.
pub(crate) struct Loaded<P: Instantiate> {
    pub meta: Arc<PluginMeta>,
    pub pre: P,
    /// Idle instances of earlier calls, for a plugin with `instances = "reused"`.
    pub warm: WarmPool<P::Instance>,
}

impl<P: Instantiate> Loaded<P> {
    fn new(meta: Arc<PluginMeta>, pre: P) -> Self {
        Self {
            meta,
            pre,
            warm: WarmPool::default(),
        }
    }
}

/// What the admin API shows about a plugin folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSummary {
    /// Name from the manifest (of the serving version, else of the one that failed, else the
    /// folder's name).
    pub name: String,
    /// The version answering calls; `None` when no version of this plugin ever loaded.
    pub serving: Option<PluginVersion>,
    /// `loaded` when the files on disk are what serves; `error` when the latest files failed
    /// to load (the previous version, if any, still serves).
    pub status: PluginStatus,
    /// Why the latest files failed to load, naming the plugin; `None` when `loaded`.
    pub last_error: Option<String>,
    /// Successful reloads since the first load.
    pub reloads: u64,
    /// Installed through the admin API (`PUT /v1/plugins/{name}`) rather than placed in the
    /// plugin folder by hand.
    pub installed_via_api: bool,
}

/// One loaded version of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVersion {
    /// Version from the manifest.
    pub version: String,
    /// The world it implements.
    pub world: World,
    /// Hex SHA-256 of the component file.
    pub sha256: String,
    /// Per-call limits from the manifest.
    pub limits: Limits,
    /// When this version started serving.
    pub loaded_at: DateTime<Utc>,
}

/// Whether a plugin's latest files serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginStatus {
    /// The files on disk loaded and serve.
    Loaded,
    /// The latest files failed to load; see `last_error`.
    Error,
}

impl PluginStatus {
    /// `loaded` or `error`, as the admin API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginStatus::Loaded => "loaded",
            PluginStatus::Error => "error",
        }
    }
}

impl std::fmt::Display for PluginStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Entry {
    /// A folder whose files just loaded: `meta`/`pre` serve from now on, with no error.
    pub(crate) fn loaded(
        folder: PathBuf,
        meta: Arc<PluginMeta>,
        pre: AnyPre,
        reloads: u64,
        seen: String,
    ) -> Self {
        Self {
            folder,
            name: meta.name.clone(),
            serving: Some(Serving {
                meta,
                pre,
                loaded_at: Utc::now(),
            }),
            last_error: None,
            reloads,
            seen,
        }
    }

    fn summary(&self) -> PluginSummary {
        PluginSummary {
            name: self.name.clone(),
            serving: self.serving.as_ref().map(|s| PluginVersion {
                version: s.meta.version.clone(),
                world: s.meta.world,
                sha256: s.meta.sha256.clone(),
                limits: s.meta.limits,
                loaded_at: s.loaded_at,
            }),
            status: if self.last_error.is_some() {
                PluginStatus::Error
            } else {
                PluginStatus::Loaded
            },
            last_error: self.last_error.clone(),
            reloads: self.reloads,
            installed_via_api: self.folder.join(crate::install::INSTALLED_MARKER).is_file(),
        }
    }
}

impl Snapshot {
    /// A snapshot of `entries` (sorted by folder), with the world lists built from what serves.
    pub(crate) fn new(runtime: Option<Runtime>, mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| a.folder.cmp(&b.folder));
        let mut worlds = Worlds::default();
        for entry in &entries {
            let Some(serving) = &entry.serving else {
                continue;
            };
            let meta = serving.meta.clone();
            match serving.pre.clone() {
                AnyPre::Validator(pre) => worlds.validators.push(Loaded::new(meta, pre)),
                AnyPre::MetadataExtractor(pre) => worlds.extractors.push(Loaded::new(meta, pre)),
                AnyPre::Router(pre) => worlds.routers.push(Loaded::new(meta, pre)),
                AnyPre::EdgeTransform(pre) => worlds.edge_transforms.push(Loaded::new(meta, pre)),
            }
        }
        // Folders are visited in path order; plugins run in name order.
        fn by_name<P: Instantiate>(list: &mut [Loaded<P>]) {
            list.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        }
        by_name(&mut worlds.validators);
        by_name(&mut worlds.extractors);
        by_name(&mut worlds.routers);
        by_name(&mut worlds.edge_transforms);
        if let [first, rest @ ..] = worlds.routers.as_slice()
            && !rest.is_empty()
        {
            tracing::warn!(
                router = %first.meta.name,
                ignored = ?rest.iter().map(|p| p.meta.name.as_str()).collect::<Vec<_>>(),
                "several router plugins loaded; without bindings only the first in name order plans (the others only when it fails)"
            );
        }
        Self {
            runtime,
            worlds: Arc::new(worlds),
            entries,
        }
    }
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.plugins())
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host with no plugins: every check accepts, extraction yields nothing, routing falls
    /// back to the default ladder and edge requests pass unchanged.
    pub fn empty() -> Self {
        Self::with(None, Snapshot::new(None, Vec::new()))
    }

    pub(crate) fn with(source: Option<Source>, snapshot: Snapshot) -> Self {
        Self {
            inner: Arc::new(Shared {
                source,
                current: RwLock::new(Arc::new(snapshot)),
                reloading: Mutex::new(()),
                bindings: RwLock::new(Arc::new(BindingSet::default())),
            }),
        }
    }

    /// Loads every plugin under `dir` on a new [`Runtime`] with default options.
    ///
    /// Each subfolder holding a `plugin.toml` is one plugin; `settings[name]` overrides its
    /// manifest's `[config]`. A missing `dir` means no plugins (until a reload finds some). Any
    /// broken plugin fails the whole load, naming its folder, so a mistake never silently drops a
    /// check at start-up; later reloads keep the old version of a broken plugin instead.
    pub fn load(dir: &Path, settings: &Settings) -> Result<Self, RuntimeError> {
        Self::load_with(dir, settings, RuntimeOptions::default())
    }

    /// As [`PluginHost::load`], on a runtime with these options.
    pub fn load_with(
        dir: &Path,
        settings: &Settings,
        options: RuntimeOptions,
    ) -> Result<Self, RuntimeError> {
        if !dir.exists() {
            tracing::info!(dir = %dir.display(), "plugin folder does not exist; no plugins loaded");
            let source = Source {
                dir: dir.to_owned(),
                settings: settings.clone(),
                options,
            };
            return Ok(Self::with(Some(source), Snapshot::new(None, Vec::new())));
        }
        Runtime::new(options)?.load(dir, settings)
    }

    /// Every known plugin, sorted by name: what serves, and what failed to load.
    pub fn plugins(&self) -> Vec<PluginSummary> {
        let mut list: Vec<PluginSummary> =
            self.snapshot().entries.iter().map(Entry::summary).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// The current plugin set; calls hold it for their whole duration.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the plugin set; calls already running keep the one they took.
    pub(crate) fn swap(&self, next: Snapshot) {
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }

    /// The plugin folder and settings, and the lock a reload holds.
    pub(crate) fn source(&self) -> Option<(&Source, &Mutex<()>)> {
        Some((self.inner.source.as_ref()?, &self.inner.reloading))
    }

    /// The runtime and the serving plugins of the current snapshot; `None` when nothing was
    /// ever loaded.
    pub(crate) fn worlds(&self) -> Option<(Runtime, Arc<Worlds>)> {
        let snapshot = self.snapshot();
        let runtime = snapshot.runtime.clone()?;
        Some((runtime, snapshot.worlds.clone()))
    }
}

impl Runtime {
    /// Loads every plugin under `dir` on this runtime's engine; see [`PluginHost::load`].
    /// Reloads of the returned host ([`PluginHost::reload`]) reuse this engine.
    pub fn load(&self, dir: &Path, settings: &Settings) -> Result<PluginHost, RuntimeError> {
        let folders = plugin_folders(dir)?;
        let linker = self.linker()?;
        let mut entries = Vec::new();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for folder in folders {
            let disk = read_folder(&folder);
            let (meta, pre) = disk
                .contents
                .and_then(|contents| self.prepare(contents, &linker, settings, None))
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
            entries.push(Entry::loaded(folder, meta, pre, 0, disk.fingerprint));
        }
        for name in settings.keys().filter(|n| !seen.contains_key(*n)) {
            tracing::warn!(plugin = %name, "settings given for a plugin that is not loaded");
        }
        let source = Source {
            dir: dir.to_owned(),
            settings: settings.clone(),
            options: self.options().clone(),
        };
        Ok(PluginHost::with(
            Some(source),
            Snapshot::new(Some(self.clone()), entries),
        ))
    }

    /// The imports any plugin may use: WASI (granting nothing, see `host.rs`) plus `log`,
    /// `config` and the type-only interfaces. Every world imports a subset of these, so one
    /// linker serves them all.
    pub(crate) fn linker(&self) -> Result<Linker<HostState>, RuntimeError> {
        let mut linker = Linker::new(self.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            // `log`, `config` and `types`.
            .and_then(|()| Validator::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| media::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| http::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .map_err(|e| RuntimeError::Engine(format!("cannot link host imports: {e:#}")))?;
        Ok(linker)
    }

    /// Compiles (or, when `reuse` holds the same component for the same world, reuses) what a
    /// folder holds, checks it against its declared world and settles its config. The error
    /// carries the plugin name once the manifest gave it.
    pub(crate) fn prepare(
        &self,
        contents: Contents,
        linker: &Linker<HostState>,
        settings: &Settings,
        reuse: Option<&Serving>,
    ) -> Result<(Arc<PluginMeta>, AnyPre), (Option<String>, LoadError)> {
        let Contents {
            manifest,
            path,
            bytes,
            sha256,
        } = contents;
        let named = |e: LoadError| (Some(manifest.name.clone()), e);

        let max_memory = self.options().max_memory_bytes;
        if manifest.limits.memory_bytes > max_memory {
            return Err(named(LoadError::Limits(format!(
                "limits.memory_bytes is {} but the host allows at most {max_memory}",
                manifest.limits.memory_bytes
            ))));
        }

        let reusable = reuse.filter(|s| s.meta.sha256 == sha256 && s.meta.world == manifest.world);
        let pre = match reusable {
            Some(serving) => serving.pre.clone(),
            None => {
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
                // `instantiate_pre` checks every import is provided; the world's `*Pre::new`
                // checks the exports have the world's names and types.
                let pre = linker.instantiate_pre(&component).map_err(world_error)?;
                match manifest.world {
                    World::Validator => {
                        AnyPre::Validator(ValidatorPre::new(pre).map_err(world_error)?)
                    }
                    World::MetadataExtractor => AnyPre::MetadataExtractor(
                        MetadataExtractorPre::new(pre).map_err(world_error)?,
                    ),
                    World::Router => AnyPre::Router(RouterPre::new(pre).map_err(world_error)?),
                    World::EdgeTransform => {
                        AnyPre::EdgeTransform(EdgeTransformPre::new(pre).map_err(world_error)?)
                    }
                }
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
            instances: manifest.instances,
            config: Arc::new(config),
            sha256,
        };
        Ok((Arc::new(meta), pre))
    }

    /// Runs `f` against a fresh `Store` for `meta`'s plugin, under `call`'s limits and
    /// settings, and returns the answer with the call's [`Budget`]; a failure becomes a
    /// [`PluginError`] that says which limit or trap stopped it, with the budget.
    pub(crate) fn call<R: CallOutcome>(
        &self,
        meta: &Arc<PluginMeta>,
        call: CallSettings,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, Budget), PluginError> {
        let mut store = self.store(meta, call);
        self.run(meta, &mut store, f)
    }

    /// Calls `plugin` through `f` under `call`'s limits and settings: in a fresh instance, or,
    /// when its manifest says `instances = "reused"`, in an idle instance an earlier call of
    /// the same tenant, limits and settings left (see [`crate::warm`]), kept for the next call
    /// when this one succeeds.
    pub(crate) fn call_loaded<P: Instantiate, R: CallOutcome>(
        &self,
        plugin: &Loaded<P>,
        call: CallSettings,
        f: impl FnOnce(&P::Instance, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, Budget), PluginError> {
        let meta = &plugin.meta;
        if meta.instances == Instances::Fresh {
            return self.call(meta, call, |store| {
                let instance = plugin.pre.instantiate_in(store)?;
                f(&instance, store)
            });
        }
        let (mut store, mut instance) = match plugin.warm.take(&call) {
            Some(warm) => (warm.store, Some(warm.instance)),
            None => (self.store(meta, call), None),
        };
        // Instantiated inside the call when no warm instance was idle, so fuel and the
        // deadline cover it as they do for fresh instances.
        let result = self.run(meta, &mut store, |store| {
            let warm = match instance.take() {
                Some(warm) => warm,
                None => plugin.pre.instantiate_in(store)?,
            };
            let answer = f(&warm, store);
            instance = Some(warm);
            answer
        });
        if let (Ok(_), Some(instance)) = (&result, instance) {
            plugin.warm.give_back(Warm { store, instance });
        }
        result
    }

    /// A new `Store` for calls of `meta`'s plugin with `call`'s tenant, limits and settings.
    fn store(&self, meta: &Arc<PluginMeta>, call: CallSettings) -> Store<HostState> {
        let mut store = Store::new(self.engine(), HostState::new(meta.clone(), call));
        store.limiter(|state| &mut state.limiter);
        store
    }

    /// Runs one call, `f`, in `store` with the store's limits renewed: all its fuel, a new
    /// deadline, a new log budget. Records the outcome in the plugin's metrics.
    fn run<R: CallOutcome>(
        &self,
        meta: &Arc<PluginMeta>,
        store: &mut Store<HostState>,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, Budget), PluginError> {
        store.data_mut().begin_call();
        let limits = store.data().limits();
        // Fuel covers instantiation too, so a huge start function is bounded as well.
        store.set_fuel(limits.fuel).map_err(|e| {
            PluginError::from(PluginErrorReport {
                plugin: meta.name.clone(),
                version: meta.version.clone(),
                world: meta.world,
                tenant: store.data().tenant().to_owned(),
                cause: PluginFailure::Other(format!("{e:#}")),
                budget: None,
            })
        })?;
        // The default deadline behaviour is to trap, which is what we want.
        store.set_epoch_deadline(self.deadline_ticks(Duration::from_millis(limits.timeout_ms)));

        let started = Instant::now();
        let result = f(store);
        let elapsed = started.elapsed();
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        let tenant = store.data().tenant();
        let limiter = &store.data().limiter;
        let mut budget = Budget::new(limits, elapsed, fuel_used, limiter.peak_memory_bytes as u64);
        budget.refused_memory_bytes = limiter.refused_memory_bytes.map(|b| b as u64);
        let result = match result {
            Ok(value) => {
                tracing::debug!(plugin = %meta.name, %tenant, %budget, "plugin call finished");
                Ok(value)
            }
            Err(e) => {
                let cause = self.classify(&e, limits, store.data());
                budget = budget.with_backtrace(&e);
                tracing::warn!(plugin = %meta.name, %tenant, %budget, error = %format!("{e:#}"), "plugin call failed");
                Err(PluginError::from(PluginErrorReport {
                    plugin: meta.name.clone(),
                    version: meta.version.clone(),
                    world: meta.world,
                    tenant: tenant.to_owned(),
                    cause,
                    budget: Some(budget.clone()),
                }))
            }
        };
        store
            .data_mut()
            .call_metrics()
            .record(meta, &result, elapsed, &budget);
        result.map(|value| (value, budget))
    }

    pub(crate) fn classify(
        &self,
        e: &wasmtime::Error,
        limits: Limits,
        state: &HostState,
    ) -> PluginFailure {
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

/// How a call's answer counts in `mediahost_plugin_calls_total{outcome}`: `ok` unless the
/// answer itself says otherwise.
pub(crate) trait CallOutcome {
    /// The `outcome` label of a call that ran to completion with this answer.
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

impl CallOutcome for crate::Verdict {
    fn outcome(&self) -> &'static str {
        match self {
            crate::Verdict::Accept => "ok",
            crate::Verdict::Reject(_) => "rejected",
        }
    }
}

/// The `err` case of a WIT `result` is the plugin refusing: counted as `error`.
impl<T> CallOutcome for Result<T, String> {
    fn outcome(&self) -> &'static str {
        if self.is_ok() { "ok" } else { "error" }
    }
}

impl CallOutcome for crate::RequestAction {}
impl CallOutcome for crate::ResponseUpdate {}

/// The `outcome` label of a failed call.
fn failure_outcome(cause: &PluginFailure) -> &'static str {
    match cause {
        PluginFailure::Timeout { .. } => "timeout",
        PluginFailure::OutOfFuel { .. } => "out_of_fuel",
        // Both are resource caps the guest ran into.
        PluginFailure::Memory { .. } | PluginFailure::Table { .. } => "memory",
        PluginFailure::Trap { .. } => "trap",
        PluginFailure::Returned(_)
        | PluginFailure::Invalid(_)
        | PluginFailure::Busy(_)
        | PluginFailure::Unavailable(_)
        | PluginFailure::Other(_) => "error",
    }
}

/// The per-plugin series one store's calls feed (see the README's `/metrics` list),
/// registered at its first call: the later calls of a warm instance then cost no registry
/// lookups (label strings cloned and hashed four times per call).
pub(crate) struct CallMetrics {
    /// `mediahost_plugin_calls_total{outcome="ok"}`, the outcome of nearly every call.
    ok_calls: Counter,
    /// `mediahost_plugin_call_duration_seconds`.
    duration: Histogram,
    /// `mediahost_plugin_fuel_consumed_total`.
    fuel: Counter,
    /// `mediahost_plugin_peak_memory_bytes`.
    peak_memory: Histogram,
}

impl CallMetrics {
    /// The series of calls of `meta`'s plugin for `tenant`.
    pub(crate) fn register(meta: &PluginMeta, tenant: &str) -> Self {
        let (plugin, world) = (meta.name.clone(), meta.world.as_str());
        let tenant = tenant.to_owned();
        Self {
            ok_calls: metrics::counter!("mediahost_plugin_calls_total", "plugin" => plugin.clone(), "world" => world, "outcome" => "ok"),
            duration: metrics::histogram!("mediahost_plugin_call_duration_seconds", "plugin" => plugin.clone(), "world" => world),
            fuel: metrics::counter!("mediahost_plugin_fuel_consumed_total", "plugin" => plugin.clone(), "world" => world, "tenant" => tenant.clone()),
            peak_memory: metrics::histogram!("mediahost_plugin_peak_memory_bytes", "plugin" => plugin, "world" => world, "tenant" => tenant),
        }
    }

    /// Feeds one call into the series.
    fn record<R: CallOutcome>(
        &self,
        meta: &PluginMeta,
        result: &Result<R, PluginError>,
        elapsed: Duration,
        budget: &Budget,
    ) {
        let outcome = match result {
            Ok(answer) => answer.outcome(),
            Err(e) => failure_outcome(&e.cause),
        };
        if outcome == "ok" {
            self.ok_calls.increment(1);
        } else {
            let (plugin, world) = (meta.name.clone(), meta.world.as_str());
            metrics::counter!("mediahost_plugin_calls_total", "plugin" => plugin, "world" => world, "outcome" => outcome)
                .increment(1);
        }
        self.duration.record(elapsed.as_secs_f64());
        self.fuel.increment(budget.fuel_used);
        self.peak_memory.record(budget.peak_memory_bytes as f64);
    }
}

/// Subfolders of `dir` that hold a manifest, sorted so load errors are deterministic. Hidden
/// folders (`.name`) are skipped: the admin API stages uploads there (see `install`).
pub(crate) fn plugin_folders(dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
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
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if path.join(MANIFEST_FILE).is_file() {
            folders.push(path);
        } else if path.is_dir() {
            tracing::debug!(folder = %path.display(), "no {MANIFEST_FILE}; not a plugin");
        }
    }
    folders.sort();
    Ok(folders)
}

/// A plugin folder's files, read and parsed but not compiled.
pub(crate) struct Contents {
    /// The parsed `plugin.toml`.
    pub manifest: Manifest,
    /// The component file.
    pub path: PathBuf,
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
}

/// What a plugin folder holds right now.
pub(crate) struct OnDisk {
    /// Hash of the manifest and component bytes as read (or of why they could not be read), so
    /// a rescan can tell a folder whose files did not change.
    pub fingerprint: String,
    /// The files, or why they cannot be used.
    pub contents: Result<Contents, (Option<String>, LoadError)>,
}

/// Reads `folder`'s manifest and component.
pub(crate) fn read_folder(folder: &Path) -> OnDisk {
    let mut fingerprint = Sha256::new();
    let contents = read_contents(folder, &mut fingerprint);
    if let Err((_, e)) = &contents {
        fingerprint.update(e.to_string().as_bytes());
    }
    OnDisk {
        fingerprint: hex::encode(fingerprint.finalize()),
        contents,
    }
}

fn read_contents(
    folder: &Path,
    fingerprint: &mut Sha256,
) -> Result<Contents, (Option<String>, LoadError)> {
    let manifest_path = folder.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).map_err(|source| {
        let path = manifest_path.clone();
        (None, LoadError::Read { path, source })
    })?;
    fingerprint.update(Sha256::digest(text.as_bytes()));
    let manifest = Manifest::parse(&text).map_err(|e| (None, e.into()))?;
    let path = folder.join(&manifest.component);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(source) => {
            return Err((Some(manifest.name), LoadError::Read { path, source }));
        }
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    fingerprint.update(sha256.as_bytes());
    Ok(Contents {
        manifest,
        path,
        bytes,
        sha256,
    })
}
