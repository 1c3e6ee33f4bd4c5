//! Thumbnails taken during the single decode pass: a poster image and a storyboard sprite
//! with its WebVTT index (the format players such as Video.js and JW Player use for
//! seek-bar previews).

use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::util::frame;
use std::fmt::Write as _;
use std::path::Path;

use crate::TranscodeError;
use crate::orient::Rotation;

/// Poster file name under the output folder.
pub const POSTER: &str = "poster.jpg";
/// Storyboard sprite file name under the output folder.
pub const STORYBOARD_IMAGE: &str = "storyboard.jpg";
/// Storyboard index (WebVTT with `#xywh=` fragments) under the output folder.
pub const STORYBOARD_VTT: &str = "storyboard.vtt";

/// Width of one storyboard tile in pixels.
const TILE_WIDTH: u32 = 160;
/// Tiles per sprite row.
const COLUMNS: usize = 10;
/// Upper bound on tiles, so long videos keep a sprite of bounded size.
const MAX_TILES: usize = 100;
/// Shortest time between tiles in seconds.
const MIN_INTERVAL_S: f64 = 2.0;
/// JPEG quality (1–100).
const QUALITY: u8 = 82;

/// A frame scaled to packed RGB24.
struct Rgb {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// Scales frames to one output size, re-creating the scaler if the input changes mid-stream,
/// and turns them upright.
struct Scaler {
    /// Size scaled to, before turning (the upright size with axes swapped for quarter turns).
    width: u32,
    height: u32,
    rotation: Rotation,
    context: Option<scaling::Context>,
}

impl Scaler {
    /// A scaler to `width`x`height` upright pixels from pictures stored turned by `rotation`.
    fn new(width: u32, height: u32, rotation: Rotation) -> Self {
        let (width, height) = if rotation.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        };
        Self {
            width,
            height,
            rotation,
            context: None,
        }
    }

    fn scale(&mut self, frame: &frame::Video) -> Result<Rgb, TranscodeError> {
        let fits = self.context.as_ref().is_some_and(|c| {
            let input = c.input();
            (input.format, input.width, input.height)
                == (frame.format(), frame.width(), frame.height())
        });
        if !fits {
            self.context = Some(
                scaling::Context::get(
                    frame.format(),
                    frame.width(),
                    frame.height(),
                    Pixel::RGB24,
                    self.width,
                    self.height,
                    scaling::Flags::BILINEAR,
                )
                .map_err(TranscodeError::ffmpeg("creating the thumbnail scaler"))?,
            );
        }
        let mut rgb = frame::Video::empty();
        self.context
            .as_mut()
            .expect("created above")
            .run(frame, &mut rgb)
            .map_err(TranscodeError::ffmpeg("scaling a thumbnail"))?;
        // Rows are padded to the stride; pack them.
        let row = self.width as usize * 3;
        let stride = rgb.stride(0);
        let pixels: Vec<u8> = rgb
            .data(0)
            .chunks(stride)
            .take(self.height as usize)
            .flat_map(|line| &line[..row])
            .copied()
            .collect();
        let (pixels, width, height) =
            self.rotation
                .apply(&pixels, self.width as usize, self.height as usize, 3);
        Ok(Rgb {
            width: width as u32,
            height: height as u32,
            pixels,
        })
    }
}

/// Collects the poster and storyboard tiles while frames stream past.
pub(crate) struct Thumbnailer {
    poster: Scaler,
    /// Source time the poster is taken at: a little into the video, past fades from black.
    poster_at_s: f64,
    poster_frame: Option<Rgb>,
    /// Whether `poster_frame` is the one at `poster_at_s` (earlier frames are stand-ins for
    /// videos shorter than that).
    poster_final: bool,
    tiles: Scaler,
    interval_s: f64,
    next_tile_s: f64,
    tile_frames: Vec<Rgb>,
    /// Source duration, to end the last storyboard cue.
    duration_s: Option<f64>,
}

/// Rounds down to an even number, at least 2.
fn even(n: u32) -> u32 {
    (n & !1).max(2)
}

impl Thumbnailer {
    /// Thumbnails of a video whose best rendition is `width`x`height` (upright display
    /// pixels) from pictures stored turned by `rotation`.
    pub(crate) fn new(
        width: u32,
        height: u32,
        rotation: Rotation,
        duration_s: Option<f64>,
    ) -> Self {
        let tile_height = even(
            (f64::from(TILE_WIDTH) * f64::from(height) / f64::from(width.max(1))).round() as u32,
        );
        let interval_s = duration_s
            .map(|d| (d / MAX_TILES as f64).max(MIN_INTERVAL_S))
            .unwrap_or(MIN_INTERVAL_S);
        Self {
            poster: Scaler::new(width, height, rotation),
            poster_at_s: duration_s.map(|d| (d * 0.1).min(5.0)).unwrap_or(0.0),
            poster_frame: None,
            poster_final: false,
            tiles: Scaler::new(TILE_WIDTH, tile_height, rotation),
            interval_s,
            next_tile_s: 0.0,
            tile_frames: Vec::new(),
            duration_s,
        }
    }

    /// Looks at a decoded frame shown at `seconds` (from the start of the output).
    pub(crate) fn offer(
        &mut self,
        frame: &frame::Video,
        seconds: f64,
    ) -> Result<(), TranscodeError> {
        if !self.poster_final && (self.poster_frame.is_none() || seconds >= self.poster_at_s) {
            self.poster_frame = Some(self.poster.scale(frame)?);
            self.poster_final = seconds >= self.poster_at_s;
        }
        if seconds >= self.next_tile_s && self.tile_frames.len() < MAX_TILES {
            self.tile_frames.push(self.tiles.scale(frame)?);
            self.next_tile_s = self.tile_frames.len() as f64 * self.interval_s;
        }
        Ok(())
    }

    /// Writes the poster, the sprite and its index into `out_dir`; returns the names of the
    /// files written.
    pub(crate) fn finish(self, out_dir: &Path) -> Result<Vec<&'static str>, TranscodeError> {
        let Some(poster) = self.poster_frame else {
            return Ok(Vec::new());
        };
        write_jpeg(&out_dir.join(POSTER), &poster)?;
        if self.tile_frames.is_empty() {
            return Ok(vec![POSTER]);
        }
        // Upright tile size (the scaler's is before turning).
        let (tile_w, tile_h) = (self.tile_frames[0].width, self.tile_frames[0].height);
        let sprite = tile(&self.tile_frames, tile_w, tile_h);
        write_jpeg(&out_dir.join(STORYBOARD_IMAGE), &sprite)?;
        let count = self.tile_frames.len();
        let end_s = self
            .duration_s
            .unwrap_or(count as f64 * self.interval_s)
            .max((count - 1) as f64 * self.interval_s + 0.001);
        let vtt = storyboard_vtt(count, self.interval_s, end_s, tile_w, tile_h);
        std::fs::write(out_dir.join(STORYBOARD_VTT), vtt)
            .map_err(TranscodeError::io(out_dir.join(STORYBOARD_VTT)))?;
        Ok(vec![POSTER, STORYBOARD_IMAGE, STORYBOARD_VTT])
    }
}

/// Lays tiles out left to right, top to bottom, [`COLUMNS`] per row.
fn tile(tiles: &[Rgb], tile_w: u32, tile_h: u32) -> Rgb {
    let columns = tiles.len().min(COLUMNS);
    let rows = tiles.len().div_ceil(COLUMNS);
    let (width, height) = (columns as u32 * tile_w, rows as u32 * tile_h);
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    let tile_row = tile_w as usize * 3;
    for (i, t) in tiles.iter().enumerate() {
        let (x0, y0) = (
            (i % COLUMNS) * tile_w as usize,
            (i / COLUMNS) * tile_h as usize,
        );
        for (y, line) in t.pixels.chunks(tile_row).enumerate() {
            let start = ((y0 + y) * width as usize + x0) * 3;
            pixels[start..start + tile_row].copy_from_slice(line);
        }
    }
    Rgb {
        width,
        height,
        pixels,
    }
}

/// `HH:MM:SS.mmm`, as WebVTT wants.
fn vtt_time(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// One cue per tile: the time span it previews and its rectangle in the sprite.
fn storyboard_vtt(count: usize, interval_s: f64, end_s: f64, tile_w: u32, tile_h: u32) -> String {
    let mut vtt = String::from("WEBVTT\n");
    for i in 0..count {
        let start = i as f64 * interval_s;
        let end = if i + 1 == count {
            end_s
        } else {
            start + interval_s
        };
        let (x, y) = ((i % COLUMNS) as u32 * tile_w, (i / COLUMNS) as u32 * tile_h);
        let _ = write!(
            vtt,
            "\n{} --> {}\n{STORYBOARD_IMAGE}#xywh={x},{y},{tile_w},{tile_h}\n",
            vtt_time(start),
            vtt_time(end)
        );
    }
    vtt
}

fn write_jpeg(path: &Path, image: &Rgb) -> Result<(), TranscodeError> {
    let too_big = || {
        TranscodeError::Unsupported(format!(
            "a {}x{} thumbnail is larger than JPEG allows",
            image.width, image.height
        ))
    };
    let width = u16::try_from(image.width).map_err(|_| too_big())?;
    let height = u16::try_from(image.height).map_err(|_| too_big())?;
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, QUALITY)
        .encode(&image.pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| TranscodeError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
    std::fs::write(path, bytes).map_err(TranscodeError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtt_cues_cover_the_video_and_point_into_the_sprite() {
        let vtt = storyboard_vtt(12, 2.0, 23.5, 160, 90);
        assert!(vtt.starts_with(
            "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nstoryboard.jpg#xywh=0,0,160,90\n"
        ));
        assert!(vtt.contains("00:00:18.000 --> 00:00:20.000\nstoryboard.jpg#xywh=1440,0,160,90\n"));
        // Tile 11 starts the second row.
        assert!(vtt.contains("00:00:20.000 --> 00:00:22.000\nstoryboard.jpg#xywh=0,90,160,90\n"));
        assert!(
            vtt.ends_with("00:00:22.000 --> 00:00:23.500\nstoryboard.jpg#xywh=160,90,160,90\n")
        );
        assert_eq!(vtt_time(3723.0456), "01:02:03.046");
    }

    #[test]
    fn tiles_are_laid_out_in_rows() {
        let solid = |v: u8| Rgb {
            width: 2,
            height: 2,
            pixels: vec![v; 12],
        };
        let tiles: Vec<Rgb> = (0..12).map(|i| solid(i as u8)).collect();
        let sprite = tile(&tiles, 2, 2);
        assert_eq!((sprite.width, sprite.height), (20, 4));
        let at = |x: usize, y: usize| sprite.pixels[(y * 20 + x) * 3];
        assert_eq!(
            (at(0, 0), at(19, 1), at(0, 2), at(3, 3), at(5, 3)),
            (0, 9, 10, 11, 0)
        );
    }
}
