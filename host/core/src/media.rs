//! What the prober learned about a source file.

use serde::{Deserialize, Serialize};

/// The probed description of a media file: container plus one entry per stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaInfo {
    /// Container format name as libavformat reports it (e.g. `mov,mp4,m4a,3gp,3g2,mj2`).
    pub container: String,
    /// Duration in seconds, when the container knows it.
    pub duration_s: Option<f64>,
    /// Overall bitrate in bits per second, when known.
    pub bitrate: Option<u64>,
    /// Every stream in the file, in container order.
    pub streams: Vec<StreamInfo>,
}

/// One stream of a probed file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamInfo {
    /// Position of the stream in the container.
    pub index: usize,
    /// `video`, `audio`, `subtitle`, `data` or `unknown`.
    pub kind: String,
    /// Codec name (e.g. `h264`, `aac`).
    pub codec: String,
    /// Frame width in pixels (video only).
    pub width: Option<u32>,
    /// Frame height in pixels (video only).
    pub height: Option<u32>,
    /// Average frame rate in frames per second (video only).
    pub frame_rate: Option<f64>,
    /// Sample rate in Hz (audio only).
    pub sample_rate: Option<u32>,
    /// Channel count (audio only).
    pub channels: Option<u32>,
    /// Stream bitrate in bits per second, when known.
    pub bitrate: Option<u64>,
    /// ISO 639 language tag from the container metadata, when present.
    pub language: Option<String>,
}

impl MediaInfo {
    /// The first video stream, which is the one the pipeline transcodes.
    pub fn video(&self) -> Option<&StreamInfo> {
        self.streams.iter().find(|s| s.kind == "video")
    }

    /// The first audio stream, which is the one the pipeline transcodes.
    pub fn audio(&self) -> Option<&StreamInfo> {
        self.streams.iter().find(|s| s.kind == "audio")
    }
}
