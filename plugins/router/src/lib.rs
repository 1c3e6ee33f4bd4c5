//! Reference router plugin (world `router` of `mediahost:plugin`).
//!
//! The decisions live in [`rules`] as plain functions over plain types so that `cargo test`
//! runs them natively; `plugin` binds them to the world with `mediahost-sdk`, reading settings
//! through the `config` import and converting the plan.
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

pub mod plugin {
    //! The plugin bound to the `router` world.

    use mediahost_sdk::{RenditionSpec, RouteInput, RoutePlan, Router, StreamKind, config, log};

    use crate::rules::{self, Settings, Source};

    /// The plugin as the host sees it.
    pub struct Plugin;

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

    impl Router for Plugin {
        fn route(input: RouteInput) -> Result<RoutePlan, String> {
            let settings = Settings::for_tenant(&input.tenant, config::get)
                .inspect_err(|e| log::error!("invalid configuration: {e}"))?;
            let source = Source {
                picture: picture(&input),
                duration_s: input.media.duration_s,
            };
            let plan = rules::plan(&settings, &source);
            log::debug!(
                "video {} (tenant {}, {:?} tier): {} rungs, priority {}",
                input.video_id,
                input.tenant,
                settings.tier,
                plan.ladder.len(),
                plan.priority
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

    mediahost_sdk::export_router!(Plugin);

    // The test host stands in for the real one on native targets only.
    #[cfg(all(test, not(target_arch = "wasm32")))]
    mod tests {
        use super::*;
        use mediahost_sdk::testing::TestHost;
        use mediahost_sdk::{MediaInfo, StreamInfo};

        fn input(tenant: &str) -> RouteInput {
            RouteInput {
                tenant: tenant.into(),
                video_id: "v1".into(),
                media: MediaInfo {
                    container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
                    duration_s: Some(30.0),
                    bitrate: None,
                    streams: vec![StreamInfo {
                        index: 0,
                        kind: StreamKind::Video,
                        codec: "h264".into(),
                        width: Some(1920),
                        height: Some(1080),
                        frame_rate: None,
                        sample_rate: None,
                        channels: None,
                        bitrate: None,
                        language: None,
                        rotation: None,
                        pix_fmt: None,
                        color_transfer: None,
                    }],
                },
                metadata: vec![],
            }
        }

        #[test]
        fn the_tenant_tier_comes_from_config() {
            let _host = TestHost::new()
                .with_config("tier.acme", "pro")
                .with_config("storage_class", "cold");
            let top = |tenant| Plugin::route(input(tenant)).unwrap().renditions[0].height;
            assert_eq!(top("acme"), 1080);
            assert_eq!(top("other"), 720);
            assert_eq!(Plugin::route(input("acme")).unwrap().storage_class, "cold");
        }

        #[test]
        fn a_malformed_tier_is_an_error_naming_the_key() {
            let host = TestHost::new().with_config("tier.acme", "gold");
            let err = Plugin::route(input("acme")).unwrap_err();
            assert!(err.contains("tier.acme"), "{err}");
            assert_eq!(host.logs()[0].level, mediahost_sdk::log::Level::Error);
        }
    }
}
