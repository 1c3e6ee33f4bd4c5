//! Media processing for mediahost: probe an uploaded source and transcode it to HLS and DASH.
//!
//! # Flow
//!
//! [`probe`] opens the source with libavformat and describes it as a
//! [`MediaInfo`](mediahost_core::MediaInfo); anything libavformat cannot parse, or a file with no
//! decodable audio or video, is rejected with a reason a person can act on.
//!
//! [`transcode_hls`] then runs the pipeline, one module per stage:
//!
//! 1. `ladder` picks the renditions (unless the caller, i.e. a router plugin, passes its own
//!    [`Target`]s) from the source size and
//!    [`TranscodeConfig`](mediahost_core::config::TranscodeConfig): the source capped to
//!    `max_height` (never upscaled), then the 1080/720/480/360 rungs below it, each capped-CRF;
//!    a source with sound also gets the `audio` rendition, AAC alone, listed last.
//! 2. `hls` demuxes and decodes the source **once** and hands every decoded frame to each
//!    rendition, so a ladder costs one decode plus one scale+encode per rendition.
//! 3. `encode` scales (libavfilter) and encodes H.264 with libx264, keyframes on the segment
//!    boundaries of `schedule` (a `first_segment_seconds` segment, then one every
//!    `segment_seconds`) and no scene-cut keyframes, so segment boundaries fall on the same
//!    frames in every rendition; audio is resampled and encoded to AAC-LC once and shared by
//!    all renditions (muxed beside each video stream, and alone in `audio`).
//! 4. `package` muxes each rendition with libavformat's `hls` muxer as CMAF (fMP4) segments,
//!    learns from the muxer which segments are complete, and writes the playlists itself:
//!    media playlists (`EVENT` while running, `VOD` at the end) and `master.m3u8`, with
//!    `BANDWIDTH` measured from the segments actually written and `CODECS` read from the
//!    encoder's `avcC` box.
//! 5. `publish` announces each file to the caller as soon as it is complete, and each playlist
//!    as it grows ([`Publish`]), so a viewer can start watching while the transcode runs: the
//!    worker stores them from an async task while encoding goes on.
//! 6. `dash` describes the same segments in a static DASH manifest (`manifest.mpd`), one
//!    representation per rendition with a `SegmentTimeline` from its media playlist (the
//!    video renditions in one adaptation set, `audio` in an audio set of its own).
//! 7. `thumbs` takes a poster and storyboard tiles from the same decoded frames (no second
//!    decode) and writes `poster.jpg`, `storyboard.jpg` and `storyboard.vtt`.
//!
//! Output layout under the caller's `out_dir`:
//!
//! ```text
//! master.m3u8
//! manifest.mpd         DASH (isoff-live), BaseURL ../hls/ → the same segments
//! 360p/index.m3u8      media playlist (EXT-X-MAP → init.mp4)
//! 360p/init.mp4        fMP4 initialization segment
//! 360p/seg_00000.m4s   first_segment_seconds, then ~segment_seconds each
//! audio/…              the same files for the audio-only rendition (AAC alone)
//! poster.jpg           still from ~10% into the video (at most 5 s), best rendition size
//! storyboard.jpg       sprite of 160-px-wide tiles, 10 per row
//! storyboard.vtt       WebVTT cues pointing into the sprite (`#xywh=`)
//! ```
//!
//! # Why these choices
//!
//! * Everything here is synchronous and CPU-bound; async callers use `spawn_blocking`.
//! * Timestamps stay in the source stream's time base from decoder through filter graph to the
//!   video encoder, and are rescaled once, to the muxer's time base, when written; audio is
//!   resampled to 1/sample-rate by the filter graph. All streams are shifted by the earliest
//!   start time so playback starts at 0 with A/V sync kept.
//! * [`TranscodeError::is_permanent`] splits "this file will never work" from "the machine had
//!   a bad moment", which is the only decision the worker must make about a failure.
//! * libav* logs at `error` level only (see [`init`]); the worker reports what matters.
//!
//! [`worker::Worker`] is the job loop around all this: lease a job from the queue, download the
//! source, probe, transcode, store the renditions, settle the job; [`progress`] is where it
//! reports progress and outcomes (the api over gRPC, or the store).

mod dash;
mod encode;
mod error;
mod hls;
mod ladder;
mod orient;
mod package;
mod probe;
pub mod progress;
mod publish;
pub mod push;
mod schedule;
mod thumbs;
mod upload;
pub mod worker;

pub use error::TranscodeError;
pub use hls::transcode_hls;
pub use ladder::{Target, cap_kbps};
pub use probe::probe;
pub use publish::Publish;
pub use schedule::Schedule;
pub use thumbs::{POSTER, STORYBOARD_IMAGE, STORYBOARD_VTT};

/// Initialises libav* once per process and turns its logging down to errors, so workers do not
/// spam stderr with per-file notices. [`probe`] and [`transcode_hls`] call it themselves;
/// calling it early (at startup) is harmless.
pub fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // Since FFmpeg 4 this only registers devices and cannot fail in practice; a failure
        // would resurface as an error from the first libav* call that needs it.
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    });
}
