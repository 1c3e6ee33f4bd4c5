//! Unit-test support: the real app over a fresh data dir, driven without a socket.

use std::sync::Arc;
use std::time::Duration;

use mediahost_blob::Blobs;
use mediahost_queue::EmbeddedQueue;
use mediahost_runtime::PluginHost;
use mediahost_store::Store;
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::AppState;

/// State over a fresh SQLite DB and local storage in `dir`, with no plugins and a metrics
/// handle that is not installed globally.
pub(crate) async fn state(dir: &tempfile::TempDir) -> AppState {
    let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
        .await
        .unwrap();
    let queue = Arc::new(EmbeddedQueue::new(
        store.pool().clone(),
        3,
        Duration::from_secs(60),
    ));
    let blobs = Blobs::local(dir.path()).unwrap();
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    AppState::new(store, queue, blobs, PluginHost::empty(), metrics, None)
}
