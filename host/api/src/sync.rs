//! The loop that keeps a process in step with what other processes of the deployment changed in
//! the metadata DB: the plugin catalog ([`crate::catalog::sync`]) and the plugin bindings
//! ([`crate::bindings::refresh`]), every `plugins.sync_interval_seconds`.

use std::future::Future;
use std::time::Duration;

use mediahost_blob::Blobs;
use mediahost_runtime::PluginHost;
use mediahost_store::Store;

/// Syncs the catalog, then the bindings (which may name a plugin the catalog just brought),
/// every `interval` until `shutdown` completes. A failed sync keeps what serves and is retried
/// at the next tick.
pub async fn sync_loop(
    store: Store,
    blobs: Blobs,
    plugins: PluginHost,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = crate::catalog::sync(&store, &blobs, &plugins).await {
            tracing::warn!(error = %e, "cannot sync plugins with the catalog; keeping the current ones");
        }
        if let Err(e) = crate::bindings::refresh(&store, &plugins).await {
            tracing::warn!(error = %e, "cannot refresh plugin bindings; keeping the current ones");
        }
    }
}
