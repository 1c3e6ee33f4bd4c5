//! From the prober's [`mediahost_core::MediaInfo`] to the WIT `media-info` plugins receive.

use crate::{MediaInfo, StreamInfo, StreamKind};

impl From<&mediahost_core::MediaInfo> for MediaInfo {
    /// Copies every field the core type has. `rotation`, `pix-fmt` and `color-transfer` are not
    /// in the core type yet, so they arrive as `None`; the prober fills them in directly.
    fn from(info: &mediahost_core::MediaInfo) -> Self {
        Self {
            container: info.container.clone(),
            duration_s: info.duration_s,
            bitrate: info.bitrate,
            streams: info.streams.iter().map(StreamInfo::from).collect(),
        }
    }
}

impl From<&mediahost_core::StreamInfo> for StreamInfo {
    /// See the media-info conversion: the fields the core type lacks are `None`.
    fn from(s: &mediahost_core::StreamInfo) -> Self {
        Self {
            index: u32::try_from(s.index).unwrap_or(u32::MAX),
            kind: stream_kind(&s.kind),
            codec: s.codec.clone(),
            width: s.width,
            height: s.height,
            frame_rate: s.frame_rate,
            sample_rate: s.sample_rate,
            channels: s.channels,
            bitrate: s.bitrate,
            language: s.language.clone(),
            rotation: None,
            pix_fmt: None,
            color_transfer: None,
        }
    }
}

/// The core type spells the kind as text (`video`, `audio`, `subtitle`, `data`, `unknown`).
fn stream_kind(kind: &str) -> StreamKind {
    match kind {
        "video" => StreamKind::Video,
        "audio" => StreamKind::Audio,
        "subtitle" => StreamKind::Subtitle,
        "data" => StreamKind::Data,
        _ => StreamKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_probe_result() {
        let core = mediahost_core::MediaInfo {
            container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            duration_s: Some(12.5),
            bitrate: Some(2_000_000),
            streams: vec![
                mediahost_core::StreamInfo {
                    index: 0,
                    kind: "video".into(),
                    codec: "h264".into(),
                    width: Some(1920),
                    height: Some(1080),
                    frame_rate: Some(25.0),
                    sample_rate: None,
                    channels: None,
                    bitrate: Some(1_800_000),
                    language: None,
                },
                mediahost_core::StreamInfo {
                    index: 1,
                    kind: "attachment".into(),
                    codec: "ttf".into(),
                    width: None,
                    height: None,
                    frame_rate: None,
                    sample_rate: None,
                    channels: None,
                    bitrate: None,
                    language: Some("eng".into()),
                },
            ],
        };
        let info = MediaInfo::from(&core);
        assert_eq!(info.container, core.container);
        assert_eq!(
            (info.duration_s, info.bitrate),
            (Some(12.5), Some(2_000_000))
        );
        let v = &info.streams[0];
        assert_eq!(
            (v.index, v.kind, v.codec.as_str()),
            (0, StreamKind::Video, "h264")
        );
        assert_eq!(
            (v.width, v.height, v.frame_rate),
            (Some(1920), Some(1080), Some(25.0))
        );
        assert_eq!((v.rotation, v.pix_fmt.as_deref()), (None, None));
        let a = &info.streams[1];
        assert_eq!(
            (a.kind, a.language.as_deref()),
            (StreamKind::Unknown, Some("eng"))
        );
    }
}
