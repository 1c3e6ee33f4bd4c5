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
use crate::schedule::Schedule;

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
    /// The complete segments, in order: as the muxer's playlist lists them, or as joined
    /// from its pieces by `joiner`.
    segments: Vec<Segment>,
    /// For the audio-only rendition, whose muxer cuts pieces that are joined into segments.
    joiner: Option<Joiner>,
    /// For renditions with video, which the muxer cuts at every keyframe: where the segments
    /// start and the media ends, which make the segment durations.
    timing: Option<Timing>,
    /// The muxer.
    output: format::context::Output,
    /// The H.264 stream (none in the audio-only rendition).
    video: Option<StreamMap>,
    /// The AAC stream, when the source has audio.
    audio: Option<StreamMap>,
}

impl HlsMuxer {
    /// Creates the rendition folder and starts the muxer with a video stream from `video` and
    /// an audio stream from `audio`, each when given. Segments end on the boundaries of the
    /// [`Schedule`]: with video at every keyframe (the encoder places them there), without
    /// video by joining pieces the muxer cuts on a finer grid (see [`crate::schedule`]).
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

        let schedule = Schedule::new(cfg);
        let (hls_time, file_pattern, joiner) = match video_index {
            Some(_) => (schedule.first_s(), "seg_%05d.m4s", None),
            None => (
                schedule.piece_s(),
                "piece_%05d.m4s",
                Some(Joiner {
                    schedule,
                    pieces: Vec::new(),
                    used: 0,
                }),
            ),
        };
        let segment_pattern = dir.join(file_pattern);
        let mut opts = Dictionary::new();
        opts.set("hls_segment_type", "fmp4");
        opts.set("hls_time", &hls_time.to_string());
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
            timing: video.map(|_| Timing::default()),
            joiner,
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
        let before = self.segments.len();
        match (self.joiner.as_mut(), &self.timing) {
            (Some(joiner), _) => {
                joiner.pieces = listed;
                joiner.join(&self.dir, false, &mut self.segments)?;
            }
            (None, Some(timing)) => self.segments = timing.durations(listed),
            (None, None) => self.segments = listed,
        }
        Ok(self.segments.len() > before)
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
            if let Some(timing) = self.timing.as_mut() {
                timing.video(packet, map.encoder_time_base);
            }
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
            if let Some(timing) = self.timing.as_mut() {
                timing.ends_after(packet, map.encoder_time_base);
            }
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
        if let Some(joiner) = self.joiner.as_mut() {
            joiner.join(&self.dir, true, &mut self.segments)?;
        }
        Ok(())
    }
}

/// Segment times of a rendition with video, from the packets written. The muxer's `EXTINF`s
/// add up packet durations, which a variable-frame-rate source makes wrong (its frames last
/// longer than the average rate says), so the durations are taken from where segments start:
/// at 0 (the output's start), then at every keyframe after the first, which is where the
/// muxer cuts (keyframes are only forced on segment boundaries).
#[derive(Default)]
struct Timing {
    /// Where each segment starts, in seconds.
    starts: Vec<f64>,
    /// Where the latest packet written ends, in seconds.
    end_s: f64,
}

impl Timing {
    /// Takes note of a video packet (stamped in `time_base`) about to be written.
    fn video(&mut self, packet: &Packet, time_base: Rational) {
        if packet.is_key() {
            match (self.starts.is_empty(), packet.pts()) {
                (true, _) => self.starts.push(0.0),
                (false, Some(pts)) => self.starts.push(seconds(pts, time_base)),
                (false, None) => {}
            }
        }
        self.ends_after(packet, time_base);
    }

    /// Takes note of where a packet (stamped in `time_base`) about to be written ends.
    fn ends_after(&mut self, packet: &Packet, time_base: Rational) {
        if let Some(pts) = packet.pts() {
            self.end_s = self
                .end_s
                .max(seconds(pts + packet.duration().max(0), time_base));
        }
    }

    /// `listed`, the muxer's segments, with durations from the segment starts: up to the next
    /// start, the last one (once the muxer listed it, at the end) up to the end of the media.
    /// Should the count not match, the muxer's own durations stay.
    fn durations(&self, mut listed: Vec<Segment>) -> Vec<Segment> {
        if listed.len() > self.starts.len() {
            return listed;
        }
        for (i, segment) in listed.iter_mut().enumerate() {
            let end = self.starts.get(i + 1).copied().unwrap_or(self.end_s);
            segment.duration_s = end - self.starts[i];
        }
        listed
    }
}

fn seconds(ts: i64, time_base: Rational) -> f64 {
    ts as f64 * f64::from(time_base)
}

/// Joins the audio-only muxer's pieces into segments of the [`Schedule`]: fMP4 fragments
/// carry their own decode times, so a segment of several is their files end to end.
struct Joiner {
    schedule: Schedule,
    /// The complete pieces, as the muxer's playlist lists them.
    pieces: Vec<Segment>,
    /// How many of them are already in a segment.
    used: usize,
}

impl Joiner {
    /// Appends to `segments` every segment whose pieces are all complete (`at_end`: the
    /// media is over, and the last segment takes what is left) and removes those pieces.
    fn join(
        &mut self,
        dir: &Path,
        at_end: bool,
        segments: &mut Vec<Segment>,
    ) -> Result<(), TranscodeError> {
        loop {
            let index = segments.len();
            let wanted = self.schedule.pieces_in(index);
            let left = self.pieces.len() - self.used;
            if left == 0 || (left < wanted && !at_end) {
                return Ok(());
            }
            let pieces = &self.pieces[self.used..self.used + wanted.min(left)];
            let uri = format!("seg_{index:05}.m4s");
            concatenate(dir, pieces, &uri)?;
            segments.push(Segment {
                uri,
                duration_s: pieces.iter().map(|p| p.duration_s).sum(),
            });
            self.used += pieces.len();
        }
    }
}

/// Writes `pieces` (files under `dir`) end to end as `dir/name`, and removes them.
fn concatenate(dir: &Path, pieces: &[Segment], name: &str) -> Result<(), TranscodeError> {
    let path = dir.join(name);
    if let [piece] = pieces {
        let from = dir.join(&piece.uri);
        return std::fs::rename(&from, &path).map_err(TranscodeError::io(&from));
    }
    let mut out = std::fs::File::create(&path).map_err(TranscodeError::io(&path))?;
    for piece in pieces {
        let from = dir.join(&piece.uri);
        let mut file = std::fs::File::open(&from).map_err(TranscodeError::io(&from))?;
        std::io::copy(&mut file, &mut out).map_err(TranscodeError::io(&path))?;
        std::fs::remove_file(&from).map_err(TranscodeError::io(&from))?;
    }
    Ok(())
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
    /// The peak segment bit rate as RFC 8216 defines it for `BANDWIDTH`: the highest bit rate
    /// of any run of consecutive segments lasting 0.5 to 1.5 target durations (so the short
    /// first segment, its keyframe included, counts with the next one), or of all of them
    /// when together they last less.
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

/// Sizes `segments`, files under `dir`, into bit rates; `segment_seconds` is the configured
/// length the target duration starts from.
pub(crate) fn playlist_stats(
    dir: &Path,
    segments: &[Segment],
    segment_seconds: u32,
) -> Result<PlaylistStats, TranscodeError> {
    let bits = segments
        .iter()
        .map(|s| {
            let path = dir.join(&s.uri);
            let bytes = std::fs::metadata(&path)
                .map_err(TranscodeError::io(&path))?
                .len();
            Ok(bytes as f64 * 8.0)
        })
        .collect::<Result<Vec<f64>, TranscodeError>>()?;
    let total_bits: f64 = bits.iter().sum();
    let total_s: f64 = segments.iter().map(|s| s.duration_s).sum();
    let rate = |bits: f64, seconds: f64| {
        if seconds > 0.0 {
            (bits / seconds).ceil() as u64
        } else {
            0
        }
    };
    let target = f64::from(target_duration(segments, segment_seconds));
    let (shortest, longest) = (target / 2.0, target * 1.5);
    let mut peak = None;
    for start in 0..segments.len() {
        let (mut run_bits, mut run_s) = (0.0, 0.0);
        for (s, b) in segments[start..].iter().zip(&bits[start..]) {
            run_bits += b;
            run_s += s.duration_s;
            if run_s > longest {
                break;
            }
            if run_s >= shortest {
                peak = peak.max(Some(rate(run_bits, run_s)));
            }
        }
    }
    Ok(PlaylistStats {
        peak_bps: peak.unwrap_or_else(|| rate(total_bits, total_s)),
        average_bps: rate(total_bits, total_s),
        duration_s: total_s,
    })
}

/// `EXT-X-TARGETDURATION`: the configured segment length unless a segment rounds to more;
/// with keyframes forced on the schedule that only happens for variable-frame-rate sources.
fn target_duration(segments: &[Segment], segment_seconds: u32) -> u32 {
    segments
        .iter()
        .map(|s| s.duration_s.round() as u32)
        .fold(segment_seconds.max(1), u32::max)
}

/// Whether a media playlist is still growing or final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaylistType {
    /// `EXT-X-PLAYLIST-TYPE:EVENT`, no end tag: players reload it and may start playing.
    Event,
    /// `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`: complete, never changes.
    Vod,
}

/// A media playlist over `segments` (fMP4 with [`INIT_SEGMENT`]), with the
/// [`target_duration`] for `segment_seconds`.
pub(crate) fn media_playlist(
    segments: &[Segment],
    segment_seconds: u32,
    kind: PlaylistType,
) -> String {
    let target = target_duration(segments, segment_seconds);
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
        // Target 4 s: runs of 2 to 6 s count: a (4 s, 2000 bit/s), b (2 s, 4000), a+b (6 s,
        // 2667).
        let s = playlist_stats(dir.path(), &segments, 4).unwrap();
        assert_eq!(s.peak_bps, 4000);
        assert_eq!(s.average_bps, 2667);
        assert!((s.duration_s - 6.0).abs() < 1e-9);
        // Target 10 s: only runs of 5 to 15 s count, i.e. a+b.
        let s = playlist_stats(dir.path(), &segments, 10).unwrap();
        assert_eq!(s.peak_bps, 2667);
    }

    #[test]
    fn a_short_first_segment_is_measured_with_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let segments = parse_segments(
            "#EXTINF:1.0,\nfirst.m4s\n#EXTINF:4.0,\nsecond.m4s\n#EXTINF:4.0,\nthird.m4s\n",
        );
        // A keyframe-heavy first second: 3000 bytes in 1 s, then 4000 bytes per 4 s.
        std::fs::write(dir.path().join("first.m4s"), vec![0u8; 3000]).unwrap();
        std::fs::write(dir.path().join("second.m4s"), vec![0u8; 4000]).unwrap();
        std::fs::write(dir.path().join("third.m4s"), vec![0u8; 4000]).unwrap();
        let s = playlist_stats(dir.path(), &segments, 4).unwrap();
        // first+second: 56000 bits over 5 s, more than any 4 s segment (8000 bit/s).
        assert_eq!(s.peak_bps, 11_200);
        // Shorter than half a target duration in all: the whole.
        let s = playlist_stats(dir.path(), &segments[..1], 4).unwrap();
        assert_eq!(s.peak_bps, 24_000);
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
    fn audio_pieces_are_joined_into_the_schedules_segments() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TranscodeConfig {
            first_segment_seconds: 1,
            segment_seconds: 3,
            ..TranscodeConfig::default()
        };
        let mut joiner = Joiner {
            schedule: Schedule::new(&cfg),
            pieces: Vec::new(),
            used: 0,
        };
        let mut listing = String::new();
        let mut segments = Vec::new();
        let mut list_piece = |joiner: &mut Joiner, n: usize| {
            let name = format!("piece_{n:05}.m4s");
            std::fs::write(dir.path().join(&name), format!("<{n}>")).unwrap();
            listing.push_str(&format!("#EXTINF:1.000000,\n{name}\n"));
            joiner.pieces = parse_segments(&listing);
        };
        let files = |segments: &[Segment]| {
            segments
                .iter()
                .map(|s| {
                    let text = std::fs::read_to_string(dir.path().join(&s.uri)).unwrap();
                    (s.uri.clone(), s.duration_s, text)
                })
                .collect::<Vec<_>>()
        };

        list_piece(&mut joiner, 0);
        joiner.join(dir.path(), false, &mut segments).unwrap();
        assert_eq!(
            files(&segments),
            [("seg_00000.m4s".into(), 1.0, "<0>".into())]
        );
        // The second segment needs three pieces; two are not enough before the end.
        list_piece(&mut joiner, 1);
        list_piece(&mut joiner, 2);
        joiner.join(dir.path(), false, &mut segments).unwrap();
        assert_eq!(segments.len(), 1);
        list_piece(&mut joiner, 3);
        list_piece(&mut joiner, 4);
        joiner.join(dir.path(), false, &mut segments).unwrap();
        assert_eq!(
            files(&segments)[1..],
            [("seg_00001.m4s".into(), 3.0, "<1><2><3>".into())]
        );
        // At the end the last segment takes what is left.
        joiner.join(dir.path(), true, &mut segments).unwrap();
        assert_eq!(
            files(&segments)[2..],
            [("seg_00002.m4s".into(), 1.0, "<4>".into())]
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["seg_00000.m4s", "seg_00001.m4s", "seg_00002.m4s"]);
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
