//! The edge's per-request metrics, registered once when the edge starts: `counter!` by name
//! looks its series up in the recorder's registry on every call, a cost the hit path (a few
//! microseconds in all) should not pay several times per request.

use metrics::{Counter, Histogram};
use std::sync::atomic::AtomicU64;

/// Handles to the per-request series (names and meanings in the README's `/metrics` list).
pub(crate) struct Counters {
    /// `mediahost_edge_hits_total`: answers from a fresh cached copy.
    pub hits: Counter,
    /// `mediahost_edge_disk_hits_total`: the hits the disk tier answered.
    pub disk_hits: Counter,
    /// `mediahost_edge_stale_served_total`: playlists served past their `max-age`.
    pub stale_served: Counter,
    /// `mediahost_edge_not_modified_total`: hits answered `304`.
    pub not_modified: Counter,
    /// `mediahost_edge_misses_total`: requests that started an origin fetch.
    pub misses: Counter,
    /// `mediahost_edge_coalesced_waits_total`: requests that joined a fetch under way.
    pub coalesced_waits: Counter,
    /// `mediahost_edge_bytes_out_total`: body bytes sent to clients.
    pub bytes_out: Counter,
    /// `mediahost_edge_plugin_seconds`: edge-transform time per request.
    pub plugin_seconds: Histogram,
    /// Hits and misses since the start, readable (metric handles are write-only) for the
    /// hit ratio `Node.Status` reports.
    pub hit_count: AtomicU64,
    /// See `hit_count`.
    pub miss_count: AtomicU64,
}

impl Counters {
    /// Registers the series with the installed recorder (no-ops without one).
    pub(crate) fn register() -> Self {
        Self {
            hits: metrics::counter!("mediahost_edge_hits_total"),
            disk_hits: metrics::counter!("mediahost_edge_disk_hits_total"),
            stale_served: metrics::counter!("mediahost_edge_stale_served_total"),
            not_modified: metrics::counter!("mediahost_edge_not_modified_total"),
            misses: metrics::counter!("mediahost_edge_misses_total"),
            coalesced_waits: metrics::counter!("mediahost_edge_coalesced_waits_total"),
            bytes_out: metrics::counter!("mediahost_edge_bytes_out_total"),
            plugin_seconds: metrics::histogram!("mediahost_edge_plugin_seconds"),
            hit_count: AtomicU64::new(0),
            miss_count: AtomicU64::new(0),
        }
    }
}
