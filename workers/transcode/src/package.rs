//! Packaging: libavformat's `hls` muxer cuts each rendition into CMAF (fMP4) segments; we write
//! the playlists ourselves: each rendition's media playlist (`EVENT` while the transcode runs,
//! `VOD` at the end) and the master playlist, with bandwidths measured from the segments
//! written.
//!
//! The muxer runs with `hls_playlist_type=event`, which makes it rewrite its own copy of the
//! media playlist each time it closes a segment (with `vod` it writes only at the end). That
//! copy is how we learn, synchronously and in order, which segments are complete: see
//! [`HlsMuxer::poll`]. Its text is never published; [`media_playlist`] writes what players get.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ffmpeg_next::{Dictionary, Packet, Rational, encoder, format};
use mediahost_core::Rendition;
use mediahost_core::config::TranscodeConfig;

use crate::TranscodeError;
use crate::ladder::Target;

/// Name of each rendition's media playlist inside its folder.
pub(crate) const MEDIA_PLAYLIST: &str = "index.m3u8";
/// Name of each rendition's fMP4 initialization segment inside its folder.
pub(crate) const INIT_SEGMENT: &str = "init.mp4";
/// Name of the master playlist at the HLS root.
pub(crate) const MASTER_PLAYLIST: &str = "master.m3u8";

/// Where a muxer stream's packets come from, and the time bases to convert between.
#[derive(Clone, Copy)]
struct StreamMap {
    /// Index of the stream in the output.
    index: usize,
    /// Time base the encoder stamps its packets in.
    encoder_time_base: Rational,
    /// Time base the muxer chose for the stream in `write_header`.
    stream_time_base: Rational,
}

/// One rendition's `hls` muxer: `<out_dir>/<name>/index.m3u8`, `init.mp4`, `seg_NNNNN.m4s`.
pub(crate) struct HlsMuxer {
    /// The rendition folder.
    dir: PathBuf,
    /// Size of the muxer's playlist when last read: it only grows (one entry per segment,
    /// then the end tag), so a new size means new segments, for the price of a `stat`.
    listed_len: u64,
    /// The complete segments, in order, as the muxer's playlist lists them.
    segments: Vec<Segment>,
    /// The muxer.
    output: format::context::Output,
    /// The H.264 stream (none in the audio-only rendition).
    video: Option<StreamMap>,
    /// The AAC stream, when the source has audio.
    audio: Option<StreamMap>,
}

impl HlsMuxer {
    /// Creates the rendition folder and starts the muxer with a video stream from `video` and
    /// an audio stream from `audio`, each when given; segments are cut on keyframes every
    /// `segment_seconds` (on any packet without video).
    pub fn create(
        out_dir: &Path,
        target: &Target,
        video: Option<(&encoder::Video, Rational, Rational)>,
        audio: Option<(&encoder::Audio, Rational)>,
        cfg: &TranscodeConfig,
    ) -> Result<Self, TranscodeError> {
        let during = "starting the HLS muxer";
        let dir = out_dir.join(&target.name);
        std::fs::create_dir_all(&dir).map_err(TranscodeError::io(&dir))?;
        let playlist = dir.join(MEDIA_PLAYLIST);
        let mut output =
            format::output_as(&playlist, "hls").map_err(|e| output_error(&playlist, e))?;

        let video_index = match video {
            Some((video_encoder, video_time_base, frame_rate)) => {
                let mut stream = output
                    .add_stream(video_encoder.codec())
                    .map_err(TranscodeError::ffmpeg(during))?;
                stream.set_parameters(video_encoder);
                stream.set_time_base(video_time_base);
                stream.set_avg_frame_rate(frame_rate);
                Some(stream.index())
            }
            None => None,
        };

        let audio_index = match audio {
            Some((audio_encoder, _)) => {
                let mut stream = output
                    .add_stream(audio_encoder.codec())
                    .map_err(TranscodeError::ffmpeg(during))?;
                stream.set_parameters(audio_encoder);
                stream.set_time_base(audio_encoder.time_base());
                Some(stream.index())
            }
            None => None,
        };

        let segment_pattern = dir.join("seg_%05d.m4s");
        let mut opts = Dictionary::new();
        opts.set("hls_segment_type", "fmp4");
        opts.set("hls_time", &cfg.segment_seconds.max(1).to_string());
        // EVENT makes the muxer list each segment as soon as it is closed (see the module doc).
        opts.set("hls_playlist_type", "event");
        opts.set("hls_list_size", "0");
        opts.set("hls_flags", "independent_segments");
        opts.set("hls_fmp4_init_filename", INIT_SEGMENT);
        opts.set("hls_segment_filename", &segment_pattern.to_string_lossy());
        let left = output
            .write_header_with(opts)
            .map_err(|e| output_error(&playlist, e))?;
        // A muxer that ignores one of our options would silently produce another layout.
        let unused = left.iter().next().is_some();
        drop(left);
        if unused {
            return Err(TranscodeError::Ffmpeg {
                during: "configuring the HLS muxer (an option was not recognised)",
                source: ffmpeg_next::Error::OptionNotFound,
            });
        }

        let time_base_of = |i: usize| output.stream(i).map(|s| s.time_base());
        let video = match (video, video_index) {
            (Some((_, tb, _)), Some(i)) => Some(StreamMap {
                index: i,
                encoder_time_base: tb,
                stream_time_base: time_base_of(i).unwrap_or(tb),
            }),
            _ => None,
        };
        let audio = match (audio, audio_index) {
            (Some((_, tb)), Some(i)) => Some(StreamMap {
                index: i,
                encoder_time_base: tb,
                stream_time_base: time_base_of(i).unwrap_or(tb),
            }),
            _ => None,
        };
        Ok(Self {
            dir,
            listed_len: 0,
            segments: Vec::new(),
            output,
            video,
            audio,
        })
    }

    /// Re-reads the muxer's playlist if it changed and returns whether segments were added
    /// since the last call; [`HlsMuxer::segments`] lists them all. The muxer writes the playlist
    /// within the packet write that closes a segment, on this thread, so what is read here is
    /// never half-written and every segment it names is complete on disk.
    pub fn poll(&mut self) -> Result<bool, TranscodeError> {
        let path = self.dir.join(MEDIA_PLAYLIST);
        let len = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            // Not written yet: no segment is complete.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(TranscodeError::io(&path)(e)),
        };
        if len == self.listed_len {
            return Ok(false);
        }
        self.listed_len = len;
        let text = std::fs::read_to_string(&path).map_err(TranscodeError::io(&path))?;
        let listed = parse_segments(&text);
        let added = listed.len() > self.segments.len();
        self.segments = listed;
        Ok(added)
    }

    /// The complete segments found by [`HlsMuxer::poll`], in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The rendition folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes H.264 packets (in the video encoder's time base).
    pub fn write_video(&mut self, packets: &mut [Packet]) -> Result<(), TranscodeError> {
        let Some(map) = self.video else {
            return Ok(());
        };
        for packet in packets {
            write(&mut self.output, &self.dir, map, packet)?;
        }
        Ok(())
    }

    /// Writes AAC packets (in the audio encoder's time base); copies them, because every
    /// rendition muxes the same audio.
    pub fn write_audio(&mut self, packets: &[Packet]) -> Result<(), TranscodeError> {
        let Some(map) = self.audio else {
            return Ok(());
        };
        for packet in packets {
            write(&mut self.output, &self.dir, map, &mut packet.clone())?;
        }
        Ok(())
    }

    /// Writes the trailer, which closes the last segment; [`HlsMuxer::segments`] then lists
    /// every segment of the rendition.
    pub fn finish(&mut self) -> Result<(), TranscodeError> {
        let playlist = self.dir.join(MEDIA_PLAYLIST);
        self.output
            .write_trailer()
            .map_err(|e| output_error(&playlist, e))?;
        self.poll()?;
        Ok(())
    }
}

fn write(
    output: &mut format::context::Output,
    dir: &Path,
    map: StreamMap,
    packet: &mut Packet,
) -> Result<(), TranscodeError> {
    packet.set_stream(map.index);
    packet.rescale_ts(map.encoder_time_base, map.stream_time_base);
    packet
        .write_interleaved(output)
        .map_err(|e| output_error(dir, e))
}

/// libav* reports file-system failures as POSIX errors; keep them as I/O so the caller retries.
fn output_error(path: &Path, e: ffmpeg_next::Error) -> TranscodeError {
    match e {
        ffmpeg_next::Error::Other { errno } => TranscodeError::Io {
            path: path.to_owned(),
            source: std::io::Error::from_raw_os_error(errno),
        },
        source => TranscodeError::Ffmpeg {
            during: "writing HLS segments",
            source,
        },
    }
}

/// One media segment of a finished media playlist.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    /// Its URI in the playlist, relative to the rendition folder (`seg_00000.m4s`).
    pub uri: String,
    /// Its `EXTINF` duration in seconds.
    pub duration_s: f64,
}

/// Bit rates of a rendition's segments, measured from their files.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlaylistStats {
    /// Highest bit rate of any one segment (bytes·8 / EXTINF), for `BANDWIDTH`.
    pub peak_bps: u64,
    /// Total segment bytes·8 / total duration, for `AVERAGE-BANDWIDTH`.
    pub average_bps: u64,
    /// Sum of the segment durations in seconds.
    pub duration_s: f64,
}

/// The segments a media playlist lists, in order (`EXTINF` then URI).
pub(crate) fn parse_segments(text: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut pending: Option<f64> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            pending = rest.split(',').next().and_then(|d| d.trim().parse().ok());
        } else if !line.is_empty()
            && !line.starts_with('#')
            && let Some(duration) = pending.take()
        {
            segments.push(Segment {
                uri: line.to_owned(),
                duration_s: duration,
            });
        }
    }
    segments
}

/// Sizes `segments`, files under `dir`, into bit rates.
pub(crate) fn playlist_stats(
    dir: &Path,
    segments: &[Segment],
) -> Result<PlaylistStats, TranscodeError> {
    let mut peak = 0f64;
    let mut total_bits = 0f64;
    let mut total_s = 0f64;
    for s in segments {
        let path = dir.join(&s.uri);
        let bytes = std::fs::metadata(&path)
            .map_err(TranscodeError::io(&path))?
            .len();
        let bits = bytes as f64 * 8.0;
        if s.duration_s > 0.0 {
            peak = peak.max(bits / s.duration_s);
        }
        total_bits += bits;
        total_s += s.duration_s;
    }
    Ok(PlaylistStats {
        peak_bps: peak.ceil() as u64,
        average_bps: if total_s > 0.0 {
            (total_bits / total_s).ceil() as u64
        } else {
            0
        },
        duration_s: total_s,
    })
}

/// Whether a media playlist is still growing or final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaylistType {
    /// `EXT-X-PLAYLIST-TYPE:EVENT`, no end tag: players reload it and may start playing.
    Event,
    /// `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`: complete, never changes.
    Vod,
}

/// A media playlist over `segments` (fMP4 with [`INIT_SEGMENT`]). The target duration is the
/// configured segment length unless a segment rounds to more; with keyframes forced every
/// `segment_seconds` that only happens for variable-frame-rate sources.
pub(crate) fn media_playlist(
    segments: &[Segment],
    segment_seconds: u32,
    kind: PlaylistType,
) -> String {
    let target = segments
        .iter()
        .map(|s| s.duration_s.round() as u32)
        .fold(segment_seconds.max(1), u32::max);
    let kind_name = match kind {
        PlaylistType::Event => "EVENT",
        PlaylistType::Vod => "VOD",
    };
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:{kind_name}\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{INIT_SEGMENT}\"\n"
    );
    for s in segments {
        let _ = writeln!(text, "#EXTINF:{:.6},\n{}", s.duration_s, s.uri);
    }
    if kind == PlaylistType::Vod {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    text
}

/// The RFC 6381 `avc1.PPCCLL` codec string of the H.264 stream in `dir/init.mp4`, read from its
/// `avcC` box (profile, constraint flags and level exactly as the encoder signalled them).
pub(crate) fn avc1_codec(dir: &Path) -> Result<String, TranscodeError> {
    let path = dir.join(INIT_SEGMENT);
    let bytes = std::fs::read(&path).map_err(TranscodeError::io(&path))?;
    parse_avcc(&bytes).ok_or_else(|| TranscodeError::Io {
        path,
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the initialization segment has no avcC box",
        ),
    })
}

/// Finds the `avcC` box in an MP4 byte string and formats its profile/compat/level bytes.
fn parse_avcc(bytes: &[u8]) -> Option<String> {
    let at = bytes.windows(4).position(|w| w == b"avcC")?;
    // Box payload: configurationVersion (1), AVCProfileIndication, profile_compatibility,
    // AVCLevelIndication.
    let payload = bytes.get(at + 4..at + 8)?;
    (payload[0] == 1).then(|| {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            payload[1], payload[2], payload[3]
        )
    })
}

/// One rendition as the manifests describe it: what the caller gets back plus what only the
/// master playlist and the DASH manifest need.
pub(crate) struct Variant {
    /// What the caller gets back.
    pub rendition: Rendition,
    /// `AVERAGE-BANDWIDTH` in bits per second.
    pub average_bandwidth: u64,
    /// Frame rate as a fraction (`FRAME-RATE` in HLS, `frameRate` in DASH), when the source
    /// declares one.
    pub frame_rate: Option<(i32, i32)>,
    /// Whether its segments carry the AAC track beside the video.
    pub has_audio: bool,
    /// Its media playlist's segments, in order.
    pub segments: Vec<Segment>,
}

/// The master playlist listing `variants`, best first as listed.
pub(crate) fn master_playlist(variants: &[Variant]) -> String {
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let r = &v.rendition;
        let _ = write!(
            text,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
            r.bandwidth, v.average_bandwidth
        );
        // The audio-only rendition has no picture to describe.
        if r.width > 0 && r.height > 0 {
            let _ = write!(text, ",RESOLUTION={}x{}", r.width, r.height);
        }
        let _ = write!(text, ",CODECS=\"{}\"", r.codecs);
        if let Some((num, den)) = v.frame_rate {
            let _ = write!(text, ",FRAME-RATE={:.3}", f64::from(num) / f64::from(den));
        }
        let _ = writeln!(text, "\n{}", r.playlist);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_profile_level() {
        let mut mp4 = b"\0\0\0\x2aavcC".to_vec();
        mp4.extend([1, 0x64, 0x00, 0x1e, 0xff]);
        assert_eq!(parse_avcc(&mp4).as_deref(), Some("avc1.64001e"));
        assert_eq!(parse_avcc(b"moov"), None);
    }

    #[test]
    fn stats_from_playlist() {
        let dir = tempfile::tempdir().unwrap();
        let segments = parse_segments(
            "#EXTM3U\n#EXTINF:4.000000,\na.m4s\n#EXTINF:2.0,\nb.m4s\n#EXT-X-ENDLIST\n",
        );
        assert_eq!(
            segments
                .iter()
                .map(|s| (s.uri.as_str(), s.duration_s))
                .collect::<Vec<_>>(),
            [("a.m4s", 4.0), ("b.m4s", 2.0)]
        );
        std::fs::write(dir.path().join("a.m4s"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("b.m4s"), vec![0u8; 1000]).unwrap();
        let s = playlist_stats(dir.path(), &segments).unwrap();
        assert_eq!(s.peak_bps, 4000);
        assert_eq!(s.average_bps, 2667);
        assert!((s.duration_s - 6.0).abs() < 1e-9);
    }

    #[test]
    fn the_audio_only_variant_follows_the_video_ones_without_a_picture() {
        let variant = |name: &str, width, height, codecs: &str, frame_rate| Variant {
            rendition: Rendition {
                name: name.into(),
                playlist: format!("{name}/index.m3u8"),
                width,
                height,
                bandwidth: 1_000,
                codecs: codecs.into(),
            },
            average_bandwidth: 900,
            frame_rate,
            has_audio: true,
            segments: Vec::new(),
        };
        let master = master_playlist(&[
            variant("360p", 640, 360, "avc1.64001e,mp4a.40.2", Some((25, 1))),
            variant("audio", 0, 0, "mp4a.40.2", None),
        ]);
        assert_eq!(
            master,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1000,AVERAGE-BANDWIDTH=900,RESOLUTION=640x360,\
             CODECS=\"avc1.64001e,mp4a.40.2\",FRAME-RATE=25.000\n360p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1000,AVERAGE-BANDWIDTH=900,CODECS=\"mp4a.40.2\"\n\
             audio/index.m3u8\n"
        );
    }

    #[test]
    fn event_playlists_grow_and_vod_ones_end() {
        let segments =
            parse_segments("#EXTINF:4.0,\nseg_00000.m4s\n#EXTINF:4.52,\nseg_00001.m4s\n");
        let event = media_playlist(&segments, 4, PlaylistType::Event);
        assert!(event.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{event}");
        assert!(event.contains("#EXT-X-TARGETDURATION:5\n"), "{event}");
        assert!(event.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"), "{event}");
        assert!(
            event.ends_with("#EXTINF:4.520000,\nseg_00001.m4s\n"),
            "{event}"
        );
        assert!(!event.contains("ENDLIST"), "{event}");
        let vod = media_playlist(&segments[..1], 4, PlaylistType::Vod);
        assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{vod}");
        assert!(vod.contains("#EXT-X-TARGETDURATION:4\n"), "{vod}");
        assert!(vod.ends_with("seg_00000.m4s\n#EXT-X-ENDLIST\n"), "{vod}");
        assert_eq!(parse_segments(&vod), segments[..1]);
    }
}
