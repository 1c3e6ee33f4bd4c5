//! Warm instances: a plugin whose manifest says `instances = "reused"` keeps the instances its
//! calls ran in and runs later calls in them, instead of instantiating afresh for every call.
//!
//! Why: on the edge's hot path an edge transform runs twice per request, and a fresh instance
//! costs tens of microseconds (instantiate, first touch of its memory, drop) against a warm
//! call of about one. proxy-wasm filters and Fastly's reusable sessions make the same trade.
//!
//! What still holds: an instance serves only calls of the same tenant with the same limits
//! and settings (so nothing one tenant's call leaves in memory reaches another tenant's);
//! every call gets its full fuel, wall-clock deadline and log budget again; the memory cap
//! stays. An instance is dropped, never reused, after a failed call of any kind (a trap leaves
//! a guest in an unknown state), after it wrote to stderr (where panics go), and after
//! [`MAX_USES`] calls, so slow leaks in a guest are bounded. A reload starts with no warm
//! instances: they belong to the loaded version.

use std::sync::Mutex;

use wasmtime::Store;

use crate::bindings::edge_transform::{EdgeTransform, EdgeTransformPre};
use crate::bindings::metadata_extractor::{MetadataExtractor, MetadataExtractorPre};
use crate::bindings::router::{Router, RouterPre};
use crate::bindings::validator::{Validator, ValidatorPre};
use crate::host::{CallSettings, HostState};

/// Calls after which a warm instance is dropped anyway.
pub(crate) const MAX_USES: u32 = 10_000;
/// Idle instances kept per plugin: about the number of calls that run at once (one per
/// runtime thread); each holds a slot of the engine's instance pool.
pub(crate) const MAX_IDLE: usize = 8;

/// A world's pre-instantiated component, instantiated into a call's `Store`.
pub(crate) trait Instantiate {
    /// The world's bindings to an instance.
    type Instance;
    /// A new instance in `store`.
    fn instantiate_in(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Instance>;
}

macro_rules! instantiate {
    ($($pre:ident => $instance:ident),*) => {$(
        impl Instantiate for $pre<HostState> {
            type Instance = $instance;
            fn instantiate_in(
                &self,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Self::Instance> {
                self.instantiate(store)
            }
        }
    )*};
}

instantiate!(
    ValidatorPre => Validator,
    MetadataExtractorPre => MetadataExtractor,
    RouterPre => Router,
    EdgeTransformPre => EdgeTransform
);

/// An instance with the `Store` it lives in, between calls.
pub(crate) struct Warm<I> {
    /// The store, holding the tenant, limits and settings the instance serves.
    pub store: Store<HostState>,
    /// The instance.
    pub instance: I,
}

/// The idle warm instances of one loaded plugin.
pub(crate) struct WarmPool<I> {
    idle: Mutex<Vec<Warm<I>>>,
}

impl<I> Default for WarmPool<I> {
    fn default() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
        }
    }
}

impl<I> WarmPool<I> {
    /// An idle instance that serves calls like `call` (same tenant, limits and settings).
    pub(crate) fn take(&self, call: &CallSettings) -> Option<Warm<I>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let at = idle
            .iter()
            .rposition(|warm| warm.store.data().serves(call))?;
        Some(idle.swap_remove(at))
    }

    /// Keeps `warm`, after a successful call, for a later one, unless it has served its
    /// share or wrote to stderr; the oldest idle instance makes room when the pool is full.
    pub(crate) fn give_back(&self, warm: Warm<I>) {
        let state = warm.store.data();
        if state.uses() >= MAX_USES || state.wrote_stderr() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let evicted = (idle.len() >= MAX_IDLE).then(|| idle.remove(0));
        idle.push(warm);
        drop(idle);
        // Dropped outside the lock: freeing an instance's memory slot takes microseconds.
        drop(evicted);
    }
}
