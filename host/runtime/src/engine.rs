//! The shared wasmtime engine: pooling allocator, epoch interruption, fuel, and the ticker
//! thread that drives epoch deadlines.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::RuntimeError;

/// Engine-wide settings; per-plugin limits live in each manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// How many plugin instances may be alive at once across all calls. The pooling allocator
    /// reserves slots for this many up front; a call beyond it fails fast instead of queueing.
    pub max_instances: u32,
    /// Ceiling on any instance's linear memory; a manifest asking for more is refused at load.
    pub max_memory_bytes: u64,
    /// Period of the epoch ticker, i.e. the granularity of call timeouts.
    pub epoch_tick: Duration,
    /// Folder for wasmtime's compilation cache (keyed by the component's bytes, the engine
    /// settings and the wasmtime version), so a restart does not recompile. `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// Folder where bindings with `record_failures` keep the inputs of failed calls (one
    /// subfolder per plugin). `None`: nothing is recorded.
    pub failure_dir: Option<PathBuf>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            max_instances: 128,
            max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(5),
            cache_dir: None,
            failure_dir: None,
        }
    }
}

/// The engine plus the thread that advances its epoch. Cheap to clone; the ticker stops when the
/// last clone (including those held by loaded plugin hosts) is dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    /// Compiles components and owns the instance pool; shared by every plugin and call.
    engine: Engine,
    /// The settings the engine was built with; load-time checks compare manifests against them.
    options: RuntimeOptions,
    /// Tells the ticker to exit; set on drop.
    stop: Arc<AtomicBool>,
    /// Joined on drop so the thread never outlives the engine's owner.
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker.
    pub fn new(options: RuntimeOptions) -> Result<Self, RuntimeError> {
        let engine_error = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let instances = options.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component holds one core module plus a few small shim modules, and one
        // memory; a C component with the preview1 adapter holds two memories. Size for that.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(8))
            // The pool's slots must hold what the limiter allows, so the cap a guest meets is
            // always the host's typed table-limit error, never a silent failed grow.
            .table_elements(crate::host::MAX_TABLE_ELEMENTS)
            .max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX));

        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            // Wall-clock deadlines at the cost of a cheap check on loop back-edges.
            .epoch_interruption(true)
            // Deterministic instruction budgets, independent of machine load.
            .consume_fuel(true);
        if let Some(dir) = &options.cache_dir {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(wasmtime::Cache::new(cache).map_err(engine_error)?));
        }
        let engine = Engine::new(&config).map_err(engine_error)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop, tick) = (engine.clone(), stop.clone(), options.epoch_tick);
            std::thread::Builder::new()
                .name("mediahost-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| {
                    RuntimeError::Engine(format!("could not start the epoch ticker: {e}"))
                })?
        };
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                options,
                stop,
                ticker: Some(ticker),
            }),
        })
    }

    /// The wasmtime engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The settings this runtime was built with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// Epoch ticks a call may run for `timeout`: rounded up, plus one because the current tick
    /// may already be about to end.
    pub(crate) fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let tick = self.inner.options.epoch_tick.as_nanos().max(1);
        u64::try_from(timeout.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            // At most one tick of waiting; a panicked ticker has nothing left to clean up.
            let _ = ticker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_and_adds_a_tick() {
        let rt = Runtime::new(RuntimeOptions::default()).unwrap();
        assert_eq!(rt.deadline_ticks(Duration::from_millis(100)), 21);
        assert_eq!(rt.deadline_ticks(Duration::from_millis(1)), 2);
    }

    #[test]
    fn ticker_stops_on_drop() {
        let rt = Runtime::new(RuntimeOptions::default()).unwrap();
        let stop = rt.inner.stop.clone();
        drop(rt);
        assert!(stop.load(Ordering::Relaxed));
    }
}
