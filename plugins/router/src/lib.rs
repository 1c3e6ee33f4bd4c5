//! Reference router plugin (world `router` of `mediahost:plugin`).
//!
//! The decisions live in [`rules`] as plain functions over plain types so that `cargo test`
//! runs them natively; the WIT glue in `component` only exists on wasm32, where it reads
//! settings through the `config` import and converts the plan.
//!
//! Settings (manifest `[config]` defaults, overridable per deployment):
//! - `tier.<tenant-id>`: `free` (ladder up to 720p) or `pro` (up to 1080p) for that tenant;
//! - `default_tier`: the tier of tenants without their own key (default `free`);
//! - `storage_class` (default `standard`) and `edge_group` (default `default`).
//!
//! The ladder never goes above the source (rotation applied), priority favours short clips
//! (see [`rules::priority`]), and a source without a video stream gets an empty ladder (the
//! host's default). A malformed tier makes `route` return an error naming the key.

pub mod rules;

// The generated glue is the component ABI: raw exports and pointer juggling (hence unsafe), with
// one flat parameter per record field (hence many arguments).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, clippy::too_many_arguments)]
mod component {
    use crate::rules::{self, Settings, Source};

    wit_bindgen::generate!({
        path: "../../wit",
        world: "router",
    });

    use mediahost::plugin::log::{Level, log};
    use mediahost::plugin::media::{RenditionSpec, StreamKind};

    struct Router;

    /// The displayed size of the first video stream with a known size: quarter turns swap the
    /// sides.
    fn picture(input: &RouteInput) -> Option<(u32, u32)> {
        input
            .media
            .streams
            .iter()
            .filter(|s| s.kind == StreamKind::Video)
            .find_map(|s| {
                let (w, h) = (s.width?, s.height?);
                let quarter = matches!(s.rotation.unwrap_or(0).rem_euclid(360), 90 | 270);
                Some(if quarter { (h, w) } else { (w, h) })
            })
    }

    impl Guest for Router {
        fn route(input: RouteInput) -> Result<RoutePlan, String> {
            let settings = Settings::for_tenant(&input.tenant, mediahost::plugin::config::get)
                .inspect_err(|e| log(Level::Error, &format!("invalid configuration: {e}")))?;
            let source = Source {
                picture: picture(&input),
                duration_s: input.media.duration_s,
            };
            let plan = rules::plan(&settings, &source);
            log(
                Level::Debug,
                &format!(
                    "video {} (tenant {}, {:?} tier): {} rungs, priority {}",
                    input.video_id,
                    input.tenant,
                    settings.tier,
                    plan.ladder.len(),
                    plan.priority
                ),
            );
            Ok(RoutePlan {
                renditions: plan
                    .ladder
                    .into_iter()
                    .map(|r| RenditionSpec {
                        name: r.name,
                        width: r.width,
                        height: r.height,
                        video_bitrate: r.video_kbps,
                        audio_bitrate: r.audio_kbps,
                    })
                    .collect(),
                priority: plan.priority,
                storage_class: plan.storage_class,
                edge_group: plan.edge_group,
            })
        }
    }

    export!(Router);
}
