//! Where segments end: a short first segment, so a player can start as soon as one second (by
//! default) is encoded, then one every `segment_seconds` from its end.
//!
//! Every rendition ends its segments at the same times. The video encoders force a keyframe on
//! the first frame at or after each boundary ([`KeyframeClock`]), and the muxers of video
//! renditions cut at every keyframe. The audio-only rendition has no keyframes to go by (its
//! muxer may cut before any AAC frame), and libavformat's `hls` muxer only cuts on a grid of
//! one fixed length: that muxer cuts pieces on a grid both segment lengths are multiples of,
//! and whole pieces are joined into segments ending at the boundaries
//! ([`Schedule::pieces_in`]).

use ffmpeg_next::{Rational, Rescale};
use mediahost_core::config::TranscodeConfig;

/// Segment lengths, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Length of the first segment (at most `rest_s`).
    first_s: u32,
    /// Length of every later segment but the last, which ends with the media.
    rest_s: u32,
}

impl Schedule {
    /// The schedule `cfg` asks for: `first_segment_seconds` (0, or more than
    /// `segment_seconds`, meaning as long as the others), then `segment_seconds`.
    pub fn new(cfg: &TranscodeConfig) -> Self {
        let rest_s = cfg.segment_seconds.max(1);
        let first_s = match cfg.first_segment_seconds {
            0 => rest_s,
            first => first.min(rest_s),
        };
        Self { first_s, rest_s }
    }

    /// The first segment's length: the `hls_time` of the video renditions' muxers, which cut
    /// at every keyframe at least that far from the previous cut, i.e. at every boundary.
    pub fn first_s(&self) -> u32 {
        self.first_s
    }

    /// The length of every later segment but the last.
    pub fn rest_s(&self) -> u32 {
        self.rest_s
    }

    /// Where segment `index` ends, in seconds from the start of the output.
    pub fn end_s(&self, index: u64) -> u64 {
        u64::from(self.first_s) + index * u64::from(self.rest_s)
    }

    /// The length of the audio-only muxer's pieces: the longest both segment lengths are whole
    /// multiples of.
    pub fn piece_s(&self) -> u32 {
        gcd(self.first_s, self.rest_s)
    }

    /// How many pieces make segment `index` of the audio-only rendition.
    pub fn pieces_in(&self, index: usize) -> usize {
        let length = if index == 0 {
            self.first_s
        } else {
            self.rest_s
        };
        (length / self.piece_s()) as usize
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Decides which pictures of a video encoder must be keyframes: the first at or after each
/// boundary of the [`Schedule`].
pub(crate) struct KeyframeClock {
    schedule: Schedule,
    /// Time base of the pictures' timestamps.
    time_base: Rational,
    /// The segment whose end is the next boundary.
    segment: u64,
    /// That boundary in `time_base`.
    next_pts: i64,
}

impl KeyframeClock {
    /// A clock for pictures stamped in `time_base`, with the output starting at 0.
    pub fn new(schedule: Schedule, time_base: Rational) -> Self {
        let mut clock = Self {
            schedule,
            time_base,
            segment: 0,
            next_pts: 0,
        };
        clock.next_pts = clock.boundary_pts(0);
        clock
    }

    /// Whether the picture at `pts` starts a segment; moves on past its boundary when it does.
    pub fn is_keyframe(&mut self, pts: i64) -> bool {
        if pts < self.next_pts {
            return false;
        }
        // A gap in the pictures may skip boundaries: the next one is after this picture.
        while self.next_pts <= pts {
            self.segment += 1;
            self.next_pts = self.boundary_pts(self.segment);
        }
        true
    }

    fn boundary_pts(&self, segment: u64) -> i64 {
        let end_s = i64::try_from(self.schedule.end_s(segment)).unwrap_or(i64::MAX);
        end_s.rescale(Rational::new(1, 1), self.time_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(first: u32, rest: u32) -> Schedule {
        Schedule::new(&TranscodeConfig {
            first_segment_seconds: first,
            segment_seconds: rest,
            ..TranscodeConfig::default()
        })
    }

    #[test]
    fn a_short_first_segment_then_the_configured_length() {
        let s = schedule(1, 4);
        assert_eq!(
            (0..4).map(|i| s.end_s(i)).collect::<Vec<_>>(),
            [1, 5, 9, 13]
        );
        assert_eq!((s.piece_s(), s.pieces_in(0), s.pieces_in(1)), (1, 1, 4));

        let s = schedule(2, 6);
        assert_eq!((s.piece_s(), s.pieces_in(0), s.pieces_in(7)), (2, 1, 3));
        let s = schedule(4, 6);
        assert_eq!((s.piece_s(), s.pieces_in(0), s.pieces_in(1)), (2, 2, 3));
    }

    #[test]
    fn zero_or_too_long_a_first_segment_means_even_segments() {
        for first in [0, 4, 9] {
            let s = schedule(first, 4);
            assert_eq!((s.first_s(), s.end_s(2)), (4, 12), "{first}");
            assert_eq!((s.piece_s(), s.pieces_in(0), s.pieces_in(1)), (4, 1, 1));
        }
    }

    #[test]
    fn keyframes_fall_on_the_first_picture_at_or_after_each_boundary() {
        // 30000/1001 fps in a 1/30000 time base: picture n at 1001·n.
        let mut clock = KeyframeClock::new(schedule(1, 4), Rational::new(1, 30_000));
        let keys: Vec<i64> = (0..400).filter(|n| clock.is_keyframe(1001 * n)).collect();
        // 1 s → picture 30 (1.001 s), 5 s → 150 (5.005 s), 9 s → 270, 13 s → 390.
        assert_eq!(keys, [30, 150, 270, 390]);
    }

    #[test]
    fn a_gap_in_the_pictures_skips_the_boundaries_inside_it() {
        let mut clock = KeyframeClock::new(schedule(1, 4), Rational::new(1, 1000));
        assert!(!clock.is_keyframe(0));
        assert!(clock.is_keyframe(12_000), "1, 5 and 9 s lie in the gap");
        assert!(!clock.is_keyframe(12_500));
        assert!(clock.is_keyframe(13_000));
    }
}
