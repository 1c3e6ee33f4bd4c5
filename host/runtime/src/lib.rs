//! The plugin runtime: runs WebAssembly component plugins inside the host.
//!
//! Flow: `wit/` (the contract) → [`bindings`] (the one `bindgen!`) → a [`Runtime`] (one
//! wasmtime `Engine` with the pooling allocator, epoch interruption and fuel, plus a ticker
//! thread) → [`PluginHost::load`] scans a folder of plugins (`<dir>/<plugin>/plugin.toml` naming
//! a component), compiles each component once, checks it against its declared world through
//! `instantiate_pre`, and keeps the `*Pre` → each call gets a fresh `Store` and instance under
//! the plugin's limits.
//!
//! One call API per world, each running the effective chain of the tenant named in its input
//! (see `chain`: the global bindings, then the tenant's; without global bindings, every loaded
//! plugin of the world in name order), with each binding's settings, limit overrides and
//! failure policy ([`PluginHost::set_bindings`], [`PluginHost::check_bindings`]):
//!
//! | world | calls | how plugins combine |
//! | --- | --- | --- |
//! | `validator` | [`PluginHost::check_upload`], [`PluginHost::check_head`] | first rejection wins |
//! | `metadata-extractor` | [`PluginHost::extract_metadata`] | keys merged, later plugins override |
//! | `router` | [`PluginHost::route`] | the first plan wins; none → `None` (default ladder) |
//! | `edge-transform` | [`PluginHost::on_request`], [`PluginHost::on_response`] | a chain; the first `respond` ends it |
//!
//! Why these choices:
//! - **A fresh instance per call** so no state leaks between tenants or requests; the pooling
//!   allocator and `InstancePre` keep that at tens of microseconds.
//! - **Three limits**: the epoch deadline bounds wall time (a blocked or slow plugin), fuel bounds
//!   work deterministically, and the resource limiter caps linear memory. Each failure becomes a
//!   [`PluginError`] naming plugin, version, world, tenant and cause, with a [`Budget`] report
//!   (what the call used of each limit, and the guest backtrace); the binding's policy decides
//!   between skipping the plugin (fail-open) and returning the error (fail-closed).
//! - **Nothing granted by default**: plugins get `log` and `config` (manifest defaults overlaid
//!   by operator settings, overlaid by the binding's settings) and a WASI context with no
//!   files, env, network or wall clock.
//! - **Calls are synchronous**: plugin work is CPU-bound and bounded by its limits; async callers
//!   wrap calls in `spawn_blocking`.
//! - **Hot reload swaps whole snapshots** ([`PluginHost::watch`], [`PluginHost::reload`]): a
//!   call takes the current plugin set (an `Arc`) when it starts and runs on it to the end, so a
//!   reload never stops a call halfway. A new version is compiled on the watcher's thread, never
//!   on a request, and a version that fails to load leaves the old one serving with the error in
//!   [`PluginHost::plugins`], the logs and `mediahost_plugin_reloads_total{outcome="error"}`.
//! - **Every call is measured** through the `metrics` facade:
//!   `mediahost_plugin_calls_total{plugin,world,outcome}`,
//!   `mediahost_plugin_call_duration_seconds{plugin,world}`,
//!   `mediahost_plugin_fuel_consumed_total{plugin,world,tenant}`,
//!   `mediahost_plugin_peak_memory_bytes{plugin,world,tenant}` and
//!   `mediahost_plugin_skipped_total{plugin,world,tenant}`.
//! - Compiled code can be cached on disk by wasmtime's own cache ([`RuntimeOptions::cache_dir`]),
//!   which keys entries by the component bytes, engine settings and wasmtime version; this keeps
//!   the crate free of `unsafe` (no hand-rolled `Component::deserialize`).
//!
//! Module map: `engine` (engine, pool, ticker), `manifest` (`plugin.toml`), `plugin` (loading and
//! the per-call store), `chain` (bindings resolved per call, failure policies), `budget` (the
//! budget report and its metrics), `reload` (rescans and the folder watcher), `install`
//! (plugins installed and removed through the admin API), `host` (imports, WASI context, limiter), one module per world's calls
//! (`validator`, `metadata_extractor`, `router`, `edge_transform`), `media` (conversion from
//! `mediahost_core`'s probe result), `error`. For plugin authors' tools: [`single`] (compile one
//! component outside a plugin folder, detect its world, call it once and report what the call
//! used), [`call_input`] (the JSON form of calls and answers) and [`conformance`] (the cases of
//! `plugin-tests/`).

mod budget;
mod chain;
mod edge_transform;
mod engine;
mod error;
mod host;
mod install;
mod manifest;
mod media;
mod metadata_extractor;
mod plugin;
mod record;
mod reload;
mod router;
mod validator;
mod warm;

pub mod bindings;
pub mod call_input;
pub mod conformance;
pub mod single;

pub use bindings::http::{RequestAction, RequestHead, Response, ResponseHead, ResponseUpdate};
pub use bindings::media::{
    ExtractInput, MediaInfo, RenditionSpec, RouteInput, RoutePlan, StreamInfo, StreamKind,
};
pub use bindings::types::{Rejection, UploadInfo, Verdict};
pub use budget::Budget;
pub use engine::{Runtime, RuntimeOptions};
pub use error::{
    BindingError, LoadError, PluginError, PluginErrorReport, PluginFailure, RuntimeError,
};
pub use install::{
    CheckedPlugin, INSTALLED_MARKER, InstallError, PluginPackage, check_plugin_name,
    installed_plugins, remove_plugin_folder, write_plugin_folder,
};
pub use manifest::{Instances, Limits, MANIFEST_FILE, Manifest, ManifestError, World};
pub use mediahost_core::plugin::{
    Binding, BindingSet, Chains, EffectiveChain, FailurePolicy, LimitOverrides,
};
pub use plugin::{PluginHost, PluginStatus, PluginSummary, PluginVersion};
pub use reload::{DEBOUNCE, Watcher};
pub use single::{CallReport, CallSettings, SingleComponent, SingleError};
