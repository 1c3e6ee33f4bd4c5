//! Reference metadata-extractor plugin (world `metadata-extractor` of `mediahost:plugin`).
//!
//! The derivations live in [`rules`] as plain functions over plain types so that `cargo test`
//! runs them natively; the WIT glue in `component` only exists on wasm32, where it converts the
//! probed `media-info` and calls the rules. The keys it returns (`orientation`, `aspect_ratio`,
//! `hdr`, `audio_only`, `languages`, `resolution_class`) are described on [`rules::extract`].
//! It has no settings and never returns an error: a source it cannot read a picture size from
//! simply gets fewer keys.

pub mod rules;

// The generated glue is the component ABI: raw exports and pointer juggling (hence unsafe), with
// one flat parameter per record field (hence many arguments).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, clippy::too_many_arguments)]
mod component {
    use crate::rules::{self, Kind, Stream};

    wit_bindgen::generate!({
        path: "../../wit",
        world: "metadata-extractor",
    });

    use mediahost::plugin::log::{Level, log};
    use mediahost::plugin::media::StreamKind;

    struct Extractor;

    impl Guest for Extractor {
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
            log(
                Level::Debug,
                &format!(
                    "extracted {} keys for video {} (tenant {})",
                    out.len(),
                    input.video_id,
                    input.tenant
                ),
            );
            Ok(out)
        }
    }

    export!(Extractor);
}
