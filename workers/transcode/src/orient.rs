//! Display rotation: phones store portrait video as landscape pictures plus a display matrix
//! telling players to turn them. The renditions carry no such matrix (players disagree on
//! honouring it in fMP4), so the pipeline turns the pictures themselves and the output is
//! upright as stored: a 1920x1080 picture shown at 90° becomes a 1080x1920 ladder.

use ffmpeg_next::codec::packet::side_data;
use ffmpeg_next::format;

/// How far the stored picture is turned clockwise for display, in quarter turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// Shown as stored.
    None,
    /// Turned 90° clockwise.
    Clockwise,
    /// Turned 180°.
    UpsideDown,
    /// Turned 90° counter-clockwise.
    CounterClockwise,
}

impl Rotation {
    /// The rotation `stream`'s display matrix asks for, to the nearest quarter turn (what the
    /// ffmpeg CLI's autorotate applies); [`Rotation::None`] without a matrix.
    pub fn of(stream: &format::stream::Stream) -> Self {
        stream
            .side_data()
            .find(|d| d.kind() == side_data::Type::DisplayMatrix)
            .map_or(Self::None, |d| Self::from_matrix(d.data()))
    }

    /// From the 3x3 matrix of 16.16 fixed-point `i32`s (in native byte order, as libavutil
    /// keeps it): the clockwise angle is `atan2(b, a)` of its scaled columns, which is what the
    /// CLI's `get_rotation` computes (`-av_display_rotation_get`).
    fn from_matrix(bytes: &[u8]) -> Self {
        let m: Vec<f64> = bytes
            .chunks_exact(4)
            .take(9)
            .map(|c| f64::from(i32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        if m.len() < 9 {
            return Self::None;
        }
        let (scale_x, scale_y) = (m[0].hypot(m[3]), m[1].hypot(m[4]));
        if scale_x == 0.0 || scale_y == 0.0 {
            return Self::None;
        }
        let degrees = (m[1] / scale_y).atan2(m[0] / scale_x).to_degrees();
        match ((degrees / 90.0).round() as i64).rem_euclid(4) {
            1 => Self::Clockwise,
            2 => Self::UpsideDown,
            3 => Self::CounterClockwise,
            _ => Self::None,
        }
    }

    /// Whether width and height trade places.
    pub fn swaps_axes(self) -> bool {
        matches!(self, Self::Clockwise | Self::CounterClockwise)
    }

    /// The libavfilter chain that turns a stored picture upright, if it needs turning.
    pub fn filter(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Clockwise => Some("transpose=clock"),
            Self::UpsideDown => Some("hflip,vflip"),
            Self::CounterClockwise => Some("transpose=cclock"),
        }
    }

    /// Turns a packed `width`x`height` picture of `bytes_per_pixel`-byte pixels upright;
    /// returns the new pixels and size.
    pub fn apply(
        self,
        pixels: &[u8],
        width: usize,
        height: usize,
        bytes_per_pixel: usize,
    ) -> (Vec<u8>, usize, usize) {
        let (out_w, out_h) = if self.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        };
        if self == Self::None {
            return (pixels.to_vec(), width, height);
        }
        let mut out = vec![0u8; pixels.len()];
        for y in 0..height {
            for x in 0..width {
                // Where the stored pixel (x, y) lands once turned.
                let (nx, ny) = match self {
                    Self::Clockwise => (height - 1 - y, x),
                    Self::UpsideDown => (width - 1 - x, height - 1 - y),
                    Self::CounterClockwise => (y, width - 1 - x),
                    Self::None => (x, y),
                };
                let from = (y * width + x) * bytes_per_pixel;
                let to = (ny * out_w + nx) * bytes_per_pixel;
                out[to..to + bytes_per_pixel]
                    .copy_from_slice(&pixels[from..from + bytes_per_pixel]);
            }
        }
        (out, out_w, out_h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A display matrix with first rows `a b` / `c d` (as 16.16 fixed point, in bytes).
    fn matrix(a: i32, b: i32, c: i32, d: i32) -> Vec<u8> {
        [a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }

    #[test]
    fn quarter_turns_from_the_display_matrix() {
        // What libavformat reads from an MP4 tagged `rotate=90` (ffprobe: "rotation of 90.00
        // degrees"), which the ffmpeg CLI autorotates with `transpose=cclock`.
        assert_eq!(
            Rotation::from_matrix(&matrix(0, -1, 1, 0)),
            Rotation::CounterClockwise
        );
        assert_eq!(
            Rotation::from_matrix(&matrix(0, 1, -1, 0)),
            Rotation::Clockwise
        );
        assert_eq!(
            Rotation::from_matrix(&matrix(-1, 0, 0, -1)),
            Rotation::UpsideDown
        );
        assert_eq!(Rotation::from_matrix(&matrix(1, 0, 0, 1)), Rotation::None);
        assert_eq!(Rotation::from_matrix(&[0; 8]), Rotation::None);
    }

    #[test]
    fn pictures_turn_like_the_filters() {
        // 3x2, one byte per pixel:  1 2 3 / 4 5 6
        let picture = [1, 2, 3, 4, 5, 6];
        assert_eq!(
            Rotation::Clockwise.apply(&picture, 3, 2, 1),
            (vec![4, 1, 5, 2, 6, 3], 2, 3)
        );
        assert_eq!(
            Rotation::CounterClockwise.apply(&picture, 3, 2, 1),
            (vec![3, 6, 2, 5, 1, 4], 2, 3)
        );
        assert_eq!(
            Rotation::UpsideDown.apply(&picture, 3, 2, 1),
            (vec![6, 5, 4, 3, 2, 1], 3, 2)
        );
    }
}
