//! What a plugin instance sees of the host: the `log` and `config` imports, a WASI context that
//! grants nothing, and the resource limiter. One [`HostState`] lives in each call's `Store`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{config, http, log, media, types};
use crate::manifest::{Instances, Limits, World};

/// Caps one call's log lines, so a chatty or hostile plugin cannot flood the host's logs.
const MAX_LOG_LINES: u32 = 64;
/// Caps one log line, for the same reason.
const MAX_LOG_BYTES: usize = 4096;
/// Keeps the end of a guest's stderr for trap reports (a Rust panic message lands there).
const STDERR_CAPACITY: usize = 8192;
/// Table elements an instance may hold; generous for function tables of real plugins.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 20_000;

/// What the host knows about a loaded plugin; shared by all its calls.
#[derive(Debug)]
pub(crate) struct PluginMeta {
    /// Tags log events and errors.
    pub name: String,
    /// Shown in errors and summaries.
    pub version: String,
    /// Selects which calls reach this plugin.
    pub world: World,
    /// Applied to each call's Store unless the binding overrides them.
    pub limits: Limits,
    /// Whether calls may reuse an earlier call's instance (`instances` in the manifest).
    pub instances: Instances,
    /// Manifest defaults overlaid by the operator's settings: what `config` returns unless the
    /// binding adds its own. Shared with calls whose binding adds nothing.
    pub config: Arc<BTreeMap<String, String>>,
    /// Hex SHA-256 of the component bytes, to tell versions apart in the admin API.
    pub sha256: String,
}

/// How one call runs: what its binding made of the plugin's limits and settings.
pub(crate) struct CallSettings {
    /// The tenant the call is for (tenant id, empty for none): tags logs, errors and metrics.
    pub tenant: String,
    /// The manifest's limits with the binding's overrides.
    pub limits: Limits,
    /// What the `config` import returns: manifest, operator settings, then the binding's.
    pub config: Arc<BTreeMap<String, String>>,
}

/// The data of one call's `Store`.
pub(crate) struct HostState {
    /// The plugin being called.
    plugin: Arc<PluginMeta>,
    /// The tenant the call is for; tags the plugin's log lines.
    tenant: String,
    /// What `config` returns in this call.
    config: Arc<BTreeMap<String, String>>,
    /// The limits every call in this store runs under.
    limits: Limits,
    /// Calls run in this store so far (more than one for reused instances).
    uses: u32,
    /// The metric series its calls feed, registered at the first call.
    call_metrics: Option<crate::plugin::CallMetrics>,
    /// WASI state: nothing granted, stderr captured.
    wasi: WasiCtx,
    /// WASI resources (streams) the guest holds during the call.
    table: ResourceTable,
    /// Memory and table caps.
    pub limiter: Limiter,
    /// Log lines emitted so far in this call.
    log_lines: u32,
    /// The guest's stderr, read back when it traps.
    stderr: MemoryOutputPipe,
}

impl HostState {
    pub fn new(plugin: Arc<PluginMeta>, call: CallSettings) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // The builder's defaults already grant no files, env, args or network addresses and
        // give stdin/stdout nothing; we also switch the socket APIs off, hide the wall clock
        // (the design allows only the monotonic clock) and keep stderr for trap reports.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenWallClock)
            .stderr(stderr.clone())
            .build();
        let limiter = Limiter {
            memory_bytes: usize::try_from(call.limits.memory_bytes).unwrap_or(usize::MAX),
            table_elements: MAX_TABLE_ELEMENTS,
            peak_memory_bytes: 0,
            refused_memory_bytes: None,
        };
        Self {
            plugin,
            tenant: call.tenant,
            config: call.config,
            limits: call.limits,
            uses: 0,
            call_metrics: None,
            wasi,
            table: ResourceTable::new(),
            limiter,
            log_lines: 0,
            stderr,
        }
    }

    /// The limits of calls in this store.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The tenant calls in this store are for.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Whether a call with `call`'s tenant, limits and settings may run in this store.
    pub fn serves(&self, call: &CallSettings) -> bool {
        self.tenant == call.tenant
            && self.limits == call.limits
            && (Arc::ptr_eq(&self.config, &call.config) || self.config == call.config)
    }

    /// Starts a call in this store: the per-call log budget and memory report start over.
    pub fn begin_call(&mut self) {
        self.uses += 1;
        self.log_lines = 0;
        self.limiter.refused_memory_bytes = None;
    }

    /// The metric series calls in this store feed, registered at the first call.
    pub fn call_metrics(&mut self) -> &crate::plugin::CallMetrics {
        let (plugin, tenant) = (&self.plugin, &self.tenant);
        self.call_metrics
            .get_or_insert_with(|| crate::plugin::CallMetrics::register(plugin, tenant))
    }

    /// Calls begun in this store.
    pub fn uses(&self) -> u32 {
        self.uses
    }

    /// Whether the guest wrote anything to stderr (where a Rust guest's panics go).
    pub fn wrote_stderr(&self) -> bool {
        !self.stderr.contents().is_empty()
    }

    /// The last non-empty lines the guest wrote to stderr, trimmed to a readable size.
    pub fn stderr_tail(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        // Rust's panic hook adds a hint about RUST_BACKTRACE that means nothing to an operator.
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let tail = lines[lines.len().saturating_sub(3)..].join("; ");
        Some(truncate(&tail, 1024).to_owned())
    }
}

/// A wall clock stuck at the Unix epoch: plugins must not depend on the time of day.
struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

// The type-only interfaces have no functions to implement.
impl types::Host for HostState {}
impl media::Host for HostState {}
impl http::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        self.log_lines += 1;
        let plugin = self.plugin.name.as_str();
        let tenant = self.tenant.as_str();
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(
                    plugin,
                    tenant,
                    "plugin log limit reached; dropping further lines of this call"
                );
            }
            return;
        }
        let message = truncate(&message, MAX_LOG_BYTES);
        // `tracing` levels are compile-time constants, hence one macro per level.
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "mediahost::plugin", plugin, tenant, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "mediahost::plugin", plugin, tenant, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "mediahost::plugin", plugin, tenant, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "mediahost::plugin", plugin, tenant, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "mediahost::plugin", plugin, tenant, "{message}")
            }
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        // BTreeMap iteration is sorted by key, as the WIT promises.
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Enforces the manifest's memory cap and the host's table cap. Exceeding either traps with a
/// typed error (rather than making `memory.grow` return -1), so the call's error can say which
/// limit was hit instead of showing the guest's allocation-failure abort.
pub(crate) struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    /// Largest size any of the instance's memories was granted: the budget report's peak.
    pub peak_memory_bytes: usize,
    /// The size a refused growth asked for, for the budget report.
    pub refused_memory_bytes: Option<usize>,
}

/// The trap raised when linear memory would pass its cap.
#[derive(Debug, thiserror::Error)]
#[error("linear memory would grow to {desired} bytes, over the {limit} byte limit")]
pub(crate) struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

/// The trap raised when a table would pass its cap.
#[derive(Debug, thiserror::Error)]
#[error("table would grow to {desired} elements, over the {limit} element limit")]
pub(crate) struct TableLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.refused_memory_bytes = Some(desired);
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                desired,
                limit: self.memory_bytes,
            }));
        }
        self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(wasmtime::Error::new(TableLimitExceeded {
                desired,
                limit: self.table_elements,
            }));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
