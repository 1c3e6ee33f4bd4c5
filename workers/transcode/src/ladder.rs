//! Which renditions to make from a source: names and picture sizes.

use mediahost_core::Rendition;
use mediahost_core::config::TranscodeConfig;

/// One rendition to encode: from [`plan`], or given by the caller (a router plugin's ladder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Folder name of its playlist and segments (`<height>p` for planned renditions).
    pub name: String,
    /// Output width in square pixels, even (4:2:0 chroma needs even sizes).
    pub width: u32,
    /// Output height, even.
    pub height: u32,
    /// Peak video bitrate in kbit/s (x264 VBV on top of CRF); `None` leaves CRF uncapped.
    pub max_video_kbps: Option<u32>,
}

impl Target {
    /// The rendition of sound alone: AAC only, no picture (width and height 0). The only
    /// rendition of a source without video; after the video renditions of one with both.
    pub(crate) fn audio_only() -> Self {
        Self {
            name: Rendition::AUDIO_ONLY.into(),
            width: 0,
            height: 0,
            max_video_kbps: None,
        }
    }

    /// Whether this rendition has no picture: the [`Target::audio_only`] one.
    pub(crate) fn is_audio_only(&self) -> bool {
        self.width == 0 || self.height == 0
    }
}

impl From<mediahost_queue::PlannedRendition> for Target {
    fn from(r: mediahost_queue::PlannedRendition) -> Self {
        Self {
            name: r.name,
            width: r.width,
            height: r.height,
            max_video_kbps: r.max_video_kbps,
        }
    }
}

/// Standard rungs below the top rendition, by height.
const RUNGS: [u32; 4] = [1080, 720, 480, 360];

/// Bitrate cap (kbit/s) for a rendition of `height` lines: enough for clean H.264 at common
/// frame rates, low enough that the ladder's bandwidths stay predictable for players.
pub fn cap_kbps(height: u32) -> u32 {
    match height {
        1080.. => 5000,
        720.. => 2800,
        480.. => 1400,
        360.. => 800,
        _ => 400,
    }
}

/// The default ladder for a source of `width`x`height` storage pixels whose pixels are
/// `sar_num`:`sar_den` wide (anamorphic sources have a sample aspect ratio other than 1:1),
/// best first.
///
/// The top rendition is the source's display size capped to `max_height` (never upscaled),
/// so odd sources such as 576p keep their full resolution; below it come the standard
/// 1080/720/480/360 rungs that are smaller than the top. Aspect ratio is kept, sizes are even,
/// and every rendition is capped-CRF at [`cap_kbps`] of its height.
pub(crate) fn plan(width: u32, height: u32, sar: (i32, i32), cfg: &TranscodeConfig) -> Vec<Target> {
    let (sar_num, sar_den) = match sar {
        (n, d) if n > 0 && d > 0 => (f64::from(n), f64::from(d)),
        _ => (1.0, 1.0),
    };
    let display_width = f64::from(width) * sar_num / sar_den;
    let top = even(height.min(cfg.max_height.max(2)));
    std::iter::once(top)
        .chain(RUNGS.into_iter().filter(|&h| h < top))
        .map(|out_height| {
            // Nearest even width (854 for 16:9 at 480 lines, as players expect).
            let exact = display_width * f64::from(out_height) / f64::from(height);
            let out_width = even(((exact / 2.0).round() * 2.0) as u32);
            Target {
                name: format!("{out_height}p"),
                width: out_width,
                height: out_height,
                max_video_kbps: Some(cap_kbps(out_height)),
            }
        })
        .collect()
}

/// Rounds down to an even number, at least 2.
fn even(n: u32) -> u32 {
    (n & !1).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(w: u32, h: u32, sar: (i32, i32), max_height: u32) -> (String, u32, u32) {
        let cfg = TranscodeConfig {
            max_height,
            ..TranscodeConfig::default()
        };
        let t = plan(w, h, sar, &cfg).remove(0);
        (t.name, t.width, t.height)
    }

    #[test]
    fn caps_height_and_keeps_aspect() {
        assert_eq!(one(1920, 1080, (1, 1), 720), ("720p".into(), 1280, 720));
        assert_eq!(one(1280, 720, (1, 1), 360), ("360p".into(), 640, 360));
    }

    #[test]
    fn never_upscales_and_stays_even() {
        assert_eq!(one(320, 240, (1, 1), 720), ("240p".into(), 320, 240));
        assert_eq!(one(321, 241, (1, 1), 720), ("240p".into(), 320, 240));
    }

    #[test]
    fn the_ladder_steps_down_from_the_top_rendition() {
        let ladder = |w, h, max_height| {
            let cfg = TranscodeConfig {
                max_height,
                ..TranscodeConfig::default()
            };
            plan(w, h, (1, 1), &cfg)
                .into_iter()
                .map(|t| (t.width, t.height, t.max_video_kbps.unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ladder(1920, 1080, 1080),
            [
                (1920, 1080, 5000),
                (1280, 720, 2800),
                (854, 480, 1400),
                (640, 360, 800)
            ]
        );
        assert_eq!(
            ladder(1920, 1080, 720),
            [(1280, 720, 2800), (854, 480, 1400), (640, 360, 800)]
        );
        assert_eq!(
            ladder(1024, 576, 720),
            [(1024, 576, 1400), (854, 480, 1400), (640, 360, 800)]
        );
        assert_eq!(ladder(640, 360, 720), [(640, 360, 800)]);
        assert_eq!(ladder(320, 240, 720), [(320, 240, 400)]);
        // Portrait: the height is capped, the width follows.
        assert_eq!(
            ladder(1080, 1920, 720),
            [(406, 720, 2800), (270, 480, 1400), (202, 360, 800)]
        );
    }

    #[test]
    fn anamorphic_sources_get_square_pixels() {
        // DVD-style 720x576 with 16:15 pixels displays at 768x576.
        assert_eq!(one(720, 576, (16, 15), 720), ("576p".into(), 768, 576));
        // Unknown SAR (0:1) counts as square.
        assert_eq!(one(640, 360, (0, 1), 720), ("360p".into(), 640, 360));
    }
}
