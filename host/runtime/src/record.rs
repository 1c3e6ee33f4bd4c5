//! Recording the input of a failed call, for bindings with `record_failures`: the file is the
//! call in `mediahost plugin run`'s JSON form, so a production failure replays on a
//! developer's machine with `mediahost plugin run COMPONENT --input FILE`.
//!
//! Files go to `<failure dir>/<plugin>/<UTC time>-<function>.json`. At most
//! [`MAX_PER_PLUGIN`] are kept per plugin: a plugin failing on every call must not fill the
//! disk, and the first failures are the ones worth reading.

use std::path::{Path, PathBuf};

use crate::call_input::CallInput;

/// Recorded inputs kept per plugin; later failures are counted but not written.
pub(crate) const MAX_PER_PLUGIN: usize = 100;

/// Writes `input` under `dir` for `plugin`; returns the file, or `None` when the plugin already
/// has [`MAX_PER_PLUGIN`] recordings or the file cannot be written (logged, never fatal: the
/// call's own error is what matters to the caller).
pub(crate) fn record_failure(dir: &Path, plugin: &str, input: &CallInput) -> Option<PathBuf> {
    let folder = dir.join(plugin);
    let result = (|| -> std::io::Result<Option<PathBuf>> {
        std::fs::create_dir_all(&folder)?;
        if std::fs::read_dir(&folder)?.count() >= MAX_PER_PLUGIN {
            return Ok(None);
        }
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let file = folder.join(format!("{stamp}-{}.json", input.function()));
        let json = serde_json::to_vec_pretty(input).map_err(std::io::Error::other)?;
        std::fs::write(&file, json)?;
        Ok(Some(file))
    })();
    match result {
        Ok(Some(file)) => Some(file),
        Ok(None) => {
            metrics::counter!("mediahost_plugin_failures_unrecorded_total", "plugin" => plugin.to_owned())
                .increment(1);
            None
        }
        Err(e) => {
            tracing::warn!(plugin, folder = %folder.display(), error = %e, "cannot record a failed call's input");
            None
        }
    }
}
