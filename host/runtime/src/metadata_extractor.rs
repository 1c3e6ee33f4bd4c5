//! Calls into the `metadata-extractor` world: the tenant's effective chain of extractors in
//! order, their keys merged with later plugins overriding earlier ones.

use std::collections::BTreeMap;

use crate::ExtractInput;
use crate::call_input::CallInput;
use crate::chain::run_step;
use crate::error::{PluginError, PluginFailure};
use crate::manifest::World;
use crate::plugin::PluginHost;

impl PluginHost {
    /// Runs `extract` of the metadata extractors bound for the input's tenant on a probed
    /// source and returns the merged key/value pairs, sorted by key. A key returned by several
    /// plugins keeps the value of the last one in chain order. A failure (or an `err` answer)
    /// of a fail-open binding skips that plugin; of a fail-closed binding, stops the run.
    pub fn extract_metadata(
        &self,
        input: &ExtractInput,
    ) -> Result<Vec<(String, String)>, PluginError> {
        let Some((runtime, worlds)) = self.worlds() else {
            return Ok(Vec::new());
        };
        let world = World::MetadataExtractor;
        let mut merged = BTreeMap::new();
        for step in &self.steps(&worlds.extractors, world, Some(&input.tenant)) {
            // A fresh instance per call and plugin, as for every world.
            let pairs = run_step(
                &runtime,
                step,
                world,
                &input.tenant,
                |plugin, store| plugin.call_extract(store, input),
                |answer| answer.map_err(PluginFailure::Returned),
                || CallInput::Extract {
                    input: input.clone(),
                },
            )?;
            merged.extend(pairs.into_iter().flatten());
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
