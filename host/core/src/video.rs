//! Tenants, videos and their renditions.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::MediaInfo;

/// A customer of the platform; every video belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    /// Stable identifier (UUID v7 text).
    pub id: String,
    /// Human name given at creation; unique.
    pub name: String,
}

/// Where a video is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VideoStatus {
    /// Created; no source has been uploaded yet.
    AwaitingUpload,
    /// Source stored; a transcode job waits in the queue.
    Queued,
    /// A worker is transcoding it.
    Processing,
    /// Renditions are stored and playable.
    Ready,
    /// Processing gave up; `error` says why.
    Failed,
}

impl VideoStatus {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingUpload => "awaiting_upload",
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for VideoStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is not one of [`VideoStatus`]'s spellings.
#[derive(Debug, thiserror::Error)]
#[error("unknown video status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for VideoStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "awaiting_upload" => Self::AwaitingUpload,
            "queued" => Self::Queued,
            "processing" => Self::Processing,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

/// One encoded variant of a video, as listed in the HLS master playlist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rendition {
    /// Short name, also the folder of its playlist and segments (e.g. `720p`).
    pub name: String,
    /// Frame width in pixels (0 for [`Rendition::AUDIO_ONLY`], the rendition without video).
    pub width: u32,
    /// Frame height in pixels (0 without video).
    pub height: u32,
    /// Peak bandwidth in bits per second, as advertised in the master playlist.
    pub bandwidth: u64,
    /// RFC 6381 codecs string (e.g. `avc1.64001f,mp4a.40.2`).
    pub codecs: String,
    /// Media playlist path relative to the video's HLS root.
    pub playlist: String,
}

impl Rendition {
    /// Name (and folder) of the rendition of sound alone: AAC only, width and height 0. The
    /// worker adds it after the video renditions of a source with sound (it is the only
    /// rendition of a source without video), so a router's rungs may not use the name.
    pub const AUDIO_ONLY: &str = "audio";
}

/// How far a video's transcode has come.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// Share of the source transcoded, 0–100.
    pub percent: f64,
    /// Seconds of source transcoded per second of wall time (realtime factor).
    pub speed: f64,
}

/// A video as stored in the metadata DB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Video {
    /// Stable identifier (UUID v7 text).
    pub id: String,
    /// Owning tenant's id.
    pub tenant_id: String,
    /// Title given by the uploader.
    pub title: String,
    /// File name the uploader declared, used by validator plugins.
    pub filename: Option<String>,
    /// Life-cycle state.
    pub status: VideoStatus,
    /// Why processing failed, in words a person can act on.
    pub error: Option<String>,
    /// Source size in bytes once uploaded.
    pub size: Option<u64>,
    /// Hex sha256 of the source once uploaded.
    pub sha256: Option<String>,
    /// Probed source description once a worker has looked at it.
    pub source: Option<MediaInfo>,
    /// Encoded renditions once ready.
    pub renditions: Vec<Rendition>,
    /// Key/value metadata from metadata-extractor plugins.
    pub metadata: BTreeMap<String, String>,
    /// The edge group serving it (the router plugin's choice; `default` until routed).
    pub edge_group: String,
    /// Transcoding progress, once a worker has started on it.
    pub progress: Option<Progress>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

impl Video {
    /// Source duration in seconds, when probed.
    pub fn duration_s(&self) -> Option<f64> {
        self.source.as_ref().and_then(|s| s.duration_s)
    }
}

/// The content type of a playback file by its extension, as HLS and DASH players expect.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        Some("m4s") => "video/iso.segment",
        Some("mp4") => "video/mp4",
        Some("ts") => "video/mp2t",
        Some("vtt") => "text/vtt",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// Object-storage keys of one video. Everything of a video lives under one prefix so deleting
/// or moving a video is one prefix operation.
pub mod keys {
    /// Prefix of everything stored for a video.
    pub fn video_prefix(tenant_id: &str, video_id: &str) -> String {
        format!("tenants/{tenant_id}/videos/{video_id}")
    }

    /// Prefix of the pieces of tus upload `upload_id` while it is in progress, when uploads
    /// keep their bytes in object storage (`tus.parts = "object_storage"`): beside the
    /// tenant's videos, so a tenant's placement holds them too.
    pub fn upload_pieces(tenant_id: &str, upload_id: &str) -> String {
        format!("tenants/{tenant_id}/uploads/{upload_id}")
    }

    /// Key of the uploaded source file.
    pub fn source(tenant_id: &str, video_id: &str) -> String {
        format!("{}/source", video_prefix(tenant_id, video_id))
    }

    /// Key of a file under the video's HLS root (`rel` like `master.m3u8` or `720p/seg_00001.m4s`).
    pub fn hls(tenant_id: &str, video_id: &str, rel: &str) -> String {
        format!("{}/hls/{rel}", video_prefix(tenant_id, video_id))
    }

    /// Name of the DASH manifest under the HLS root, beside `master.m3u8`: it describes the
    /// same CMAF segments, and its `BaseURL` (`../hls/`) resolves them from either of its URLs
    /// (`…/dash/manifest.mpd` or `…/hls/manifest.mpd`).
    pub const DASH_MANIFEST: &str = "manifest.mpd";
}
