//! Calls into the `metadata-extractor` world: every loaded extractor in name order, their keys
//! merged with later plugins overriding earlier ones.

use std::collections::BTreeMap;

use crate::ExtractInput;
use crate::error::{PluginError, PluginFailure};
use crate::plugin::{PluginHost, plugin_error};

impl PluginHost {
    /// Runs `extract` of every metadata extractor on a probed source and returns the merged
    /// key/value pairs, sorted by key. A key returned by several plugins keeps the value of the
    /// last one in name order. A plugin failure or an `err` answer stops the run: whether the
    /// video is then processed without plugin metadata is the caller's policy.
    pub fn extract_metadata(
        &self,
        input: &ExtractInput,
    ) -> Result<Vec<(String, String)>, PluginError> {
        let Some((runtime, worlds)) = self.worlds() else {
            return Ok(Vec::new());
        };
        let mut merged = BTreeMap::new();
        for plugin in &worlds.extractors {
            // A fresh instance per call and plugin, as for every world.
            let answer = runtime.call(&plugin.meta, |store| {
                let instance = plugin.pre.instantiate(&mut *store)?;
                instance.call_extract(store, input)
            })?;
            let pairs = answer.map_err(|reason| {
                tracing::warn!(
                    plugin = %plugin.meta.name,
                    tenant = %input.tenant,
                    video_id = %input.video_id,
                    %reason,
                    "metadata extractor returned an error"
                );
                plugin_error(&plugin.meta, PluginFailure::Returned(reason))
            })?;
            merged.extend(pairs);
        }
        Ok(merged.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MediaInfo;

    #[test]
    fn an_empty_host_extracts_nothing() {
        let input = ExtractInput {
            tenant: "t".into(),
            video_id: "v".into(),
            media: MediaInfo {
                container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
                duration_s: None,
                bitrate: None,
                streams: vec![],
            },
            head: vec![],
            user_metadata: vec![("title".into(), "x".into())],
        };
        assert_eq!(PluginHost::empty().extract_metadata(&input), Ok(vec![]));
    }
}
