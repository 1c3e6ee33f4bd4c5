//! Reference metadata-extractor plugin (world `metadata-extractor` of `mediahost:plugin`).
//!
//! The derivations live in [`rules`] as plain functions over plain types so that `cargo test`
//! runs them natively; `plugin` binds them to the world with `mediahost-sdk`, converting the
//! probed `media-info` and calling the rules. The keys it returns (`orientation`, `aspect_ratio`,
//! `hdr`, `audio_only`, `languages`, `resolution_class`) are described on [`rules::extract`].
//! It has no settings and never returns an error: a source it cannot read a picture size from
//! simply gets fewer keys.

pub mod rules;

pub mod plugin {
    //! The plugin bound to the `metadata-extractor` world.

    use mediahost_sdk::{ExtractInput, MetadataExtractor, StreamKind, log};

    use crate::rules::{self, Kind, Stream};

    /// The plugin as the host sees it.
    pub struct Plugin;

    impl MetadataExtractor for Plugin {
        fn extract(input: ExtractInput) -> Result<Vec<(String, String)>, String> {
            let streams: Vec<Stream> = input
                .media
                .streams
                .into_iter()
                .map(|s| Stream {
                    kind: match s.kind {
                        StreamKind::Video => Kind::Video,
                        StreamKind::Audio => Kind::Audio,
                        _ => Kind::Other,
                    },
                    width: s.width,
                    height: s.height,
                    rotation: s.rotation,
                    color_transfer: s.color_transfer,
                    language: s.language,
                })
                .collect();
            let out = rules::extract(&streams);
            log::debug!(
                "extracted {} keys for video {} (tenant {})",
                out.len(),
                input.video_id,
                input.tenant
            );
            Ok(out)
        }
    }

    mediahost_sdk::export_metadata_extractor!(Plugin);

    // The test host stands in for the real one on native targets only.
    #[cfg(all(test, not(target_arch = "wasm32")))]
    mod tests {
        use super::*;
        use mediahost_sdk::testing::TestHost;
        use mediahost_sdk::{MediaInfo, StreamInfo};

        #[test]
        fn an_audio_only_source_and_its_log_line() {
            let host = TestHost::new();
            let input = ExtractInput {
                tenant: "acme".into(),
                video_id: "v1".into(),
                media: MediaInfo {
                    container: "mp3".into(),
                    duration_s: None,
                    bitrate: None,
                    streams: vec![StreamInfo {
                        index: 0,
                        kind: StreamKind::Audio,
                        codec: "mp3".into(),
                        width: None,
                        height: None,
                        frame_rate: None,
                        sample_rate: Some(44_100),
                        channels: Some(2),
                        bitrate: None,
                        language: Some("fra".into()),
                        rotation: None,
                        pix_fmt: None,
                        color_transfer: None,
                    }],
                },
                head: vec![],
                user_metadata: vec![],
            };
            let out = Plugin::extract(input).unwrap();
            assert_eq!(
                out,
                [
                    ("audio_only".to_owned(), "true".to_owned()),
                    ("languages".to_owned(), "fra".to_owned())
                ]
            );
            assert_eq!(
                host.messages(),
                ["extracted 2 keys for video v1 (tenant acme)"]
            );
        }
    }
}
