//! Calls into the `router` world: the first router of the tenant's effective chain that answers
//! plans the video.

use std::collections::BTreeSet;

use mediahost_core::Rendition;

use crate::call_input::CallInput;
use crate::chain::run_step;
use crate::error::{PluginError, PluginFailure};
use crate::manifest::World;
use crate::plugin::PluginHost;
use crate::{RouteInput, RoutePlan};

impl PluginHost {
    /// Asks the routers bound for the input's tenant, in chain order, how to transcode, store
    /// and serve a video: the first usable plan wins (the operator's global routers come before
    /// the tenant's). A router that fails under a fail-open binding is skipped and the next one
    /// asked. `Ok(None)` means no router planned: the caller uses its built-in defaults. A plan
    /// with no renditions means the default ladder with the plan's other choices.
    pub fn route(&self, input: &RouteInput) -> Result<Option<RoutePlan>, PluginError> {
        let Some((runtime, worlds)) = self.worlds() else {
            return Ok(None);
        };
        let world = World::Router;
        for step in &self.steps(&worlds.routers, world, Some(&input.tenant)) {
            let plan = run_step(
                &runtime,
                step,
                world,
                &input.tenant,
                |plugin, store| plugin.call_route(store, input),
                |answer| {
                    let plan = answer.map_err(PluginFailure::Returned)?;
                    check_plan(&plan).map_err(PluginFailure::Invalid)?;
                    Ok(plan)
                },
                || CallInput::Route {
                    input: input.clone(),
                },
            )?;
            if let Some(plan) = plan {
                return Ok(Some(plan));
            }
        }
        Ok(None)
    }
}

/// Rendition names become folder names and playlist URIs, and sizes go to the encoder, so the
/// host checks what a plugin cannot be trusted with.
pub(crate) fn check_plan(plan: &RoutePlan) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for r in &plan.renditions {
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 32
            && r.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!(
                "rendition name {:?} must be 1-32 characters of a-z, 0-9, '-' or '_'",
                r.name
            ));
        }
        if r.name == Rendition::AUDIO_ONLY {
            return Err(format!(
                "rendition name {:?} is reserved for the audio-only rendition the host adds",
                r.name
            ));
        }
        if !names.insert(r.name.as_str()) {
            return Err(format!("rendition name {:?} is used twice", r.name));
        }
        let even = |v: u32| v > 0 && v <= 8192 && v.is_multiple_of(2);
        if !even(r.width) || !even(r.height) {
            return Err(format!(
                "rendition {} is {}x{}; sides must be even and within 2..=8192",
                r.name, r.width, r.height
            ));
        }
        if r.video_bitrate == 0 {
            return Err(format!("rendition {} has a video bitrate of 0", r.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MediaInfo, RenditionSpec};

    fn plan(renditions: Vec<RenditionSpec>) -> RoutePlan {
        RoutePlan {
            renditions,
            priority: 0,
            storage_class: "standard".into(),
            edge_group: "default".into(),
        }
    }

    fn rung(name: &str, width: u32, height: u32) -> RenditionSpec {
        RenditionSpec {
            name: name.into(),
            width,
            height,
            video_bitrate: 1000,
            audio_bitrate: 128,
        }
    }

    #[test]
    fn checks_rendition_names_and_sizes() {
        assert_eq!(check_plan(&plan(vec![])), Ok(()));
        assert_eq!(
            check_plan(&plan(vec![rung("720p", 1280, 720), rung("360p", 640, 360)])),
            Ok(())
        );
        for (bad, needle) in [
            (vec![rung("../x", 640, 360)], "name"),
            (vec![rung("", 640, 360)], "name"),
            (vec![rung("a", 640, 360), rung("a", 320, 180)], "twice"),
            (vec![rung("a", 641, 360)], "even"),
            (vec![rung("a", 0, 0)], "even"),
            (vec![rung("audio", 640, 360)], "reserved"),
        ] {
            let err = check_plan(&plan(bad)).unwrap_err();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn an_empty_host_has_no_plan() {
        let input = RouteInput {
            tenant: "t".into(),
            video_id: "v".into(),
            media: MediaInfo {
                container: "matroska,webm".into(),
                duration_s: Some(1.0),
                bitrate: None,
                streams: vec![],
            },
            metadata: vec![],
        };
        assert_eq!(PluginHost::empty().route(&input), Ok(None));
    }
}
