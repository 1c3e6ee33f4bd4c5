//! The transcode: demux and decode the source once, feed every rendition, package as HLS and
//! describe the same segments for DASH.

use std::ops::ControlFlow;
use std::path::Path;

use ffmpeg_next::{
    self as ffmpeg, Packet, Rational, Rescale, codec, decoder, format, frame, media, threading,
};
use mediahost_core::Rendition;
use mediahost_core::config::TranscodeConfig;

use crate::TranscodeError;
use crate::dash;
use crate::encode::{AudioEncoder, VideoEncoder, VideoScaler};
use crate::ladder::{self, Target};
use crate::orient::Rotation;
use crate::package::{self, HlsMuxer, Variant};
use crate::probe::{duration_s, open_input, positive_f64};
use crate::publish::{Publish, Publisher};
use crate::thumbs::Thumbnailer;
use mediahost_core::video::keys::DASH_MANIFEST;

/// Consecutive unreadable packets after which the demuxer is assumed lost in garbage.
const MAX_BAD_PACKETS: u32 = 1000;

/// Transcodes `src` into HLS under `out_dir` and returns the renditions written, best first.
///
/// Layout: `<out_dir>/master.m3u8`, `<out_dir>/manifest.mpd` (DASH, over the same segments)
/// and, per rendition, `<out_dir>/<name>/index.m3u8` (VOD media playlist once done),
/// `init.mp4` and `seg_00000.m4s`…: H.264 (libx264, `cfg.x264_preset`/`cfg.crf`)
/// plus AAC-LC stereo at `cfg.audio_bitrate` when the source has audio, cut into fMP4 segments
/// of `cfg.segment_seconds`. `ladder` lists the renditions to make (a router plugin's plan);
/// empty means the built-in plan from the source size and `cfg.max_height`. With
/// `cfg.audio_only_rendition`, a source with sound also gets the `audio` rendition after them
/// (AAC alone, the same packets); a source without video gets only that one, whatever the
/// ladder. `progress` is called with the fraction of the source decoded so far
/// (0..=1, non-decreasing), ending with 1.0; returning `ControlFlow::Break` stops the work with
/// [`TranscodeError::Cancelled`]. `publish` is told of every output file as soon as it is
/// complete, and of the playlists over them as they grow, so the caller can store them while
/// the transcode runs (see [`Publish`] for the order of the calls).
///
/// CPU-bound and blocking: async callers run it on a blocking thread. On error `out_dir` may
/// hold partial output, which the caller discards.
pub fn transcode_hls(
    src: &Path,
    out_dir: &Path,
    cfg: &TranscodeConfig,
    ladder: &[Target],
    progress: &mut dyn FnMut(f64) -> ControlFlow<()>,
    publish: &mut dyn FnMut(Publish),
) -> Result<Vec<Rendition>, TranscodeError> {
    crate::init();
    let mut input = open_input(src)?;
    let duration = duration_s(&input);

    let mut video = VideoSource::open(&input)?;
    let mut audio = AudioSource::open(&input)?;
    if video.is_none() && audio.is_none() {
        return Err(TranscodeError::Undecodable(
            "the file has no audio or video stream".into(),
        ));
    }
    // Shift every stream by the earliest start so the output starts at 0 with A/V sync kept.
    let start_s = [
        video.as_ref().and_then(|v| v.start_s),
        audio.as_ref().and_then(|a| a.start_s),
    ]
    .into_iter()
    .flatten()
    .reduce(f64::min)
    .unwrap_or(0.0);
    if let Some(v) = video.as_mut() {
        v.offset = seconds_to(start_s, v.time_base);
    }
    if let Some(a) = audio.as_mut() {
        a.offset = seconds_to(start_s, a.time_base);
    }

    let mut targets = match &video {
        None => Vec::new(),
        Some(_) if !ladder.is_empty() => ladder.to_vec(),
        // Planned on the upright picture: a portrait phone video gets a portrait ladder.
        Some(video) => {
            let (width, height) = (video.decoder.width(), video.decoder.height());
            let (num, den) = ratio(video.decoder.aspect_ratio());
            if video.rotation.swaps_axes() {
                ladder::plan(height, width, (den, num), cfg)
            } else {
                ladder::plan(width, height, (num, den), cfg)
            }
        }
    };
    // Sound alone: the only rendition of a source without video (whatever the ladder). Beside
    // a picture it comes last, so players start on video and fall back to it on a very poor
    // link. It muxes the packets every video rendition muxes: AAC is encoded once.
    if audio.is_some() && (targets.is_empty() || cfg.audio_only_rendition) {
        targets.push(Target::audio_only());
    }
    let mut audio_encoder = audio
        .as_ref()
        .map(|a| AudioEncoder::new(&a.decoder, a.time_base, cfg))
        .transpose()?;
    let mut outputs = targets
        .iter()
        .map(|t| Output::create(out_dir, t, video.as_ref(), audio_encoder.as_ref(), cfg))
        .collect::<Result<Vec<_>, _>>()?;

    // One scaler for every video rendition, its branches in the order of `outputs`.
    let mut scaler = video.as_ref().map(|v| {
        let sizes = outputs
            .iter()
            .filter(|o| o.video.is_some())
            .map(|o| o.target.clone())
            .collect();
        VideoScaler::new(sizes, v.time_base, v.rotation)
    });

    // Thumbnails at the best rendition's size, from the same decoded frames.
    let mut thumbs = video
        .as_ref()
        .map(|v| Thumbnailer::new(targets[0].width, targets[0].height, v.rotation, duration));
    let mut progress = Progress {
        report: progress,
        duration,
        last: 0.0,
    };
    let mut publisher = Publisher::new(publish, outputs.len(), cfg.segment_seconds);
    let mut sink = Sink {
        outputs: &mut outputs,
        scaler: scaler.as_mut(),
        audio_encoder: audio_encoder.as_mut(),
        packets: Vec::new(),
        progress: &mut progress,
        thumbs: thumbs.as_mut(),
        publisher: &mut publisher,
        shape: Shape {
            has_audio: audio.is_some(),
            frame_rate: video
                .as_ref()
                .and_then(|v| positive_f64(v.frame_rate).map(|_| ratio(v.frame_rate))),
            segment_seconds: cfg.segment_seconds,
        },
    };

    let mut bad_packets = 0;
    loop {
        let mut packet = Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => bad_packets = 0,
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => {
                // The demuxer can resync past a corrupt packet; a long run means a lost cause,
                // and we keep what decoded so far.
                bad_packets += 1;
                if bad_packets > MAX_BAD_PACKETS {
                    break;
                }
                continue;
            }
            Err(ffmpeg::Error::Other { errno }) => {
                return Err(TranscodeError::Io {
                    path: src.to_owned(),
                    source: std::io::Error::from_raw_os_error(errno),
                });
            }
            Err(source) => {
                return Err(TranscodeError::Ffmpeg {
                    during: "reading the source",
                    source,
                });
            }
        }
        if let Some(v) = video.as_mut().filter(|v| packet.stream() == v.index) {
            v.decode(Some(&packet), &mut sink)?;
        } else if let Some(a) = audio.as_mut().filter(|a| packet.stream() == a.index) {
            a.decode(Some(&packet), &mut sink)?;
        }
    }

    // End of input: drain decoders, then filters and encoders, then muxers, in that order.
    if let Some(v) = video.as_mut() {
        v.decode(None, &mut sink)?;
    }
    if let Some(a) = audio.as_mut() {
        a.decode(None, &mut sink)?;
    }
    match (&video, &audio) {
        (Some(v), _) if v.frames == 0 => {
            return Err(TranscodeError::Undecodable(
                "no video frame could be decoded; the file is corrupt or truncated".into(),
            ));
        }
        (None, Some(a)) if a.frames == 0 => {
            return Err(TranscodeError::Undecodable(
                "no audio could be decoded; the file is corrupt or truncated".into(),
            ));
        }
        _ => {}
    }
    sink.finish()?;
    let shape = sink.shape;
    drop(sink);
    // An audio stream of which nothing decoded left the audio-only rendition without a
    // segment (and unannounced): the video renditions stand alone.
    if audio.as_ref().is_some_and(|a| a.frames == 0) {
        outputs.retain(|o| o.video.is_some());
    }

    let mut variants = Vec::with_capacity(outputs.len());
    for output in &mut outputs {
        output.mux.finish()?;
        variants.push(output.variant(shape)?);
    }
    let mpd = dash::manifest_text(&variants, cfg.segment_seconds)?;
    let thumbnails = match thumbs {
        Some(thumbs) => thumbs.finish(out_dir)?,
        None => Vec::new(),
    };
    publisher.finish(out_dir, &variants, &thumbnails, (DASH_MANIFEST, mpd))?;
    progress.done();
    Ok(variants.into_iter().map(|v| v.rendition).collect())
}

/// What every rendition of this source shares, for the manifests.
#[derive(Clone, Copy)]
struct Shape {
    /// Whether the segments carry the AAC track beside the video.
    has_audio: bool,
    /// The source's frame rate as a fraction, when it declares one.
    frame_rate: Option<(i32, i32)>,
    /// The configured segment length, which the playlists' target duration starts from.
    segment_seconds: u32,
}

/// One rendition being produced: its encoder and its muxer.
struct Output {
    /// Name and size.
    target: Target,
    /// H.264 encoder for this size; `None` for the audio-only rendition.
    video: Option<VideoEncoder>,
    /// Where this rendition's packets go.
    mux: HlsMuxer,
}

impl Output {
    fn create(
        out_dir: &Path,
        target: &Target,
        source: Option<&VideoSource>,
        audio: Option<&AudioEncoder>,
        cfg: &TranscodeConfig,
    ) -> Result<Self, TranscodeError> {
        let video = source
            .filter(|_| !target.is_audio_only())
            .map(|s| {
                VideoEncoder::new(target, s.time_base, s.frame_rate, cfg)
                    .map(|encoder| (encoder, s.frame_rate))
            })
            .transpose()?;
        let mux = HlsMuxer::create(
            out_dir,
            target,
            video
                .as_ref()
                .map(|(v, rate)| (v.encoder(), v.time_base(), *rate)),
            audio.map(|a| (a.encoder(), a.time_base())),
            cfg,
        )?;
        Ok(Self {
            target: target.clone(),
            video: video.map(|(v, _)| v),
            mux,
        })
    }

    /// The rendition as the manifests describe it, from the segments complete so far: its
    /// `CODECS` from the init segment's `avcC`, its bandwidths measured from the segment files.
    fn variant(&self, shape: Shape) -> Result<Variant, TranscodeError> {
        let dir = self.mux.dir();
        let segments = self.mux.segments().to_vec();
        let stats = package::playlist_stats(dir, &segments, shape.segment_seconds)?;
        let codecs = match (&self.video, shape.has_audio) {
            (Some(_), true) => format!("{},mp4a.40.2", package::avc1_codec(dir)?),
            (Some(_), false) => package::avc1_codec(dir)?,
            (None, _) => "mp4a.40.2".to_owned(),
        };
        let target = &self.target;
        Ok(Variant {
            rendition: Rendition {
                playlist: format!("{}/{}", target.name, package::MEDIA_PLAYLIST),
                name: target.name.clone(),
                width: target.width,
                height: target.height,
                bandwidth: stats.peak_bps,
                codecs,
            },
            average_bandwidth: stats.average_bps,
            frame_rate: self.video.as_ref().and(shape.frame_rate),
            has_audio: shape.has_audio,
            segments,
        })
    }
}

/// Where decoded frames go: every rendition's video encoder, the shared audio encoder, and the
/// muxers behind them; segments the muxers complete are announced as they appear.
struct Sink<'a, 'p> {
    outputs: &'a mut [Output],
    /// Scales each decoded picture for every rendition with video (none without video).
    scaler: Option<&'a mut VideoScaler>,
    audio_encoder: Option<&'a mut AudioEncoder>,
    /// Reused buffer of encoded packets between an encoder and a muxer.
    packets: Vec<Packet>,
    progress: &'a mut Progress<'p>,
    /// Takes the poster and storyboard tiles before the encoders consume the frame (none
    /// without video).
    thumbs: Option<&'a mut Thumbnailer>,
    /// Announces completed segments and the playlists over them.
    publisher: &'a mut Publisher<'p>,
    /// What the renditions share, for the master playlist.
    shape: Shape,
}

impl Sink<'_, '_> {
    /// Announces the segments the muxers closed since the last call and, once every rendition
    /// has one, the master playlist.
    fn publish(&mut self) -> Result<(), TranscodeError> {
        for (index, output) in self.outputs.iter_mut().enumerate() {
            if output.mux.poll()? {
                self.publisher
                    .segments(index, &output.target.name, output.mux.segments());
            }
        }
        if self.publisher.wants_master() {
            let variants = self
                .outputs
                .iter()
                .map(|o| o.variant(self.shape))
                .collect::<Result<Vec<_>, _>>()?;
            self.publisher.playable(&variants);
        }
        Ok(())
    }

    fn video(&mut self, frame: &frame::Video, seconds: f64) -> Result<(), TranscodeError> {
        self.progress.at(seconds)?;
        if let Some(thumbs) = self.thumbs.as_mut() {
            thumbs.offer(frame, seconds)?;
        }
        if let Some(scaler) = self.scaler.as_mut() {
            let (outputs, packets) = (&mut *self.outputs, &mut self.packets);
            scaler.push(frame, |branch, picture| {
                encode(outputs, branch, picture, packets)
            })?;
        }
        self.publish()
    }

    fn audio(&mut self, frame: &frame::Audio, seconds: f64) -> Result<(), TranscodeError> {
        // Video reports progress when there is some; sound alone reports it here.
        if self.outputs.iter().all(|o| o.video.is_none()) {
            self.progress.at(seconds)?;
        }
        let Some(encoder) = self.audio_encoder.as_mut() else {
            return Ok(());
        };
        encoder.push(frame, &mut self.packets)?;
        self.write_audio()
    }

    fn write_audio(&mut self) -> Result<(), TranscodeError> {
        for output in self.outputs.iter_mut() {
            output.mux.write_audio(&self.packets)?;
        }
        self.packets.clear();
        self.publish()
    }

    /// Flushes the encoders into the muxers.
    fn finish(&mut self) -> Result<(), TranscodeError> {
        if let Some(encoder) = self.audio_encoder.as_mut() {
            encoder.finish(&mut self.packets)?;
            self.write_audio()?;
        }
        if let Some(scaler) = self.scaler.as_mut() {
            let (outputs, packets) = (&mut *self.outputs, &mut self.packets);
            scaler.finish(|branch, picture| encode(outputs, branch, picture, packets))?;
        }
        for output in self.outputs.iter_mut() {
            let Some(encoder) = output.video.as_mut() else {
                continue;
            };
            encoder.finish(&mut self.packets)?;
            output.mux.write_video(&mut self.packets)?;
            self.packets.clear();
        }
        Ok(())
    }
}

/// Encodes a picture of the scaler's `branch` (the `branch`-th rendition with video) and muxes
/// what comes out.
fn encode(
    outputs: &mut [Output],
    branch: usize,
    picture: &mut frame::Video,
    packets: &mut Vec<Packet>,
) -> Result<(), TranscodeError> {
    let output = outputs
        .iter_mut()
        .filter(|o| o.video.is_some())
        .nth(branch)
        .expect("a scaler branch per rendition with video");
    let encoder = output.video.as_mut().expect("filtered on video above");
    encoder.encode(picture, packets)?;
    output.mux.write_video(packets)?;
    packets.clear();
    Ok(())
}

/// Reports decoding progress as a fraction of the source duration, at most every 1%.
struct Progress<'a> {
    report: &'a mut dyn FnMut(f64) -> ControlFlow<()>,
    /// Source duration in seconds; without one there is nothing to divide by until the end.
    duration: Option<f64>,
    /// Last fraction reported.
    last: f64,
}

impl Progress<'_> {
    fn at(&mut self, seconds: f64) -> Result<(), TranscodeError> {
        let Some(duration) = self.duration else {
            return Ok(());
        };
        // Stop short of 1.0: muxing and playlists still follow the last frame.
        let fraction = (seconds / duration).clamp(0.0, 0.99);
        if fraction >= self.last + 0.01 {
            self.last = fraction;
            if (self.report)(fraction).is_break() {
                return Err(TranscodeError::Cancelled);
            }
        }
        Ok(())
    }

    fn done(&mut self) {
        // The work is complete; a stop request arriving now changes nothing.
        let _ = (self.report)(1.0);
    }
}

/// The video stream being transcoded and its decoder.
struct VideoSource {
    index: usize,
    time_base: Rational,
    /// Average frame rate (falling back to the real base rate, then 25): sets the GOP length.
    frame_rate: Rational,
    /// The stream's first timestamp in seconds, when the container says.
    start_s: Option<f64>,
    /// Subtracted from every pts (in `time_base`) so output starts at 0.
    offset: i64,
    /// How the container says to turn the pictures for display; the outputs are turned.
    rotation: Rotation,
    decoder: decoder::Video,
    /// Frames decoded so far; zero at the end means nothing was decodable.
    frames: u64,
    /// Last pts handed on, to drop duplicates and out-of-order frames the encoder would reject.
    last_pts: Option<i64>,
}

impl VideoSource {
    /// The video stream, if any (cover art is not one).
    fn open(input: &format::context::Input) -> Result<Option<Self>, TranscodeError> {
        // Cover art in audio files is a one-picture "video" stream; it is not the video.
        let is_picture = |s: &format::stream::Stream| {
            s.disposition()
                .contains(format::stream::Disposition::ATTACHED_PIC)
        };
        let Some(stream) = input
            .streams()
            .best(media::Type::Video)
            .filter(|s| !is_picture(s))
            .or_else(|| {
                input
                    .streams()
                    .find(|s| s.parameters().medium() == media::Type::Video && !is_picture(s))
            })
        else {
            return Ok(None);
        };
        let codec_name = stream.parameters().id().name();
        let decoder = open_decoder(&stream).and_then(|d| d.video()).map_err(|e| {
            TranscodeError::Undecodable(format!(
                "the video stream ({codec_name}) cannot be decoded (ffmpeg: {e})"
            ))
        })?;
        if decoder.width() == 0 || decoder.height() == 0 {
            return Err(TranscodeError::Unsupported(
                "the video stream has no picture size".into(),
            ));
        }
        let frame_rate = [stream.avg_frame_rate(), stream.rate()]
            .into_iter()
            .find(|r| positive_f64(*r).is_some())
            .unwrap_or(Rational::new(25, 1));
        Ok(Some(Self {
            index: stream.index(),
            time_base: stream.time_base(),
            frame_rate,
            start_s: start_seconds(&stream),
            offset: 0,
            rotation: Rotation::of(&stream),
            decoder,
            frames: 0,
            last_pts: None,
        }))
    }

    /// Sends `packet` (or end of stream, for `None`) to the decoder and passes every frame that
    /// comes out to `sink`. Corrupt packets are skipped: a damaged file yields what decodes.
    fn decode(
        &mut self,
        packet: Option<&Packet>,
        sink: &mut Sink<'_, '_>,
    ) -> Result<(), TranscodeError> {
        let sent = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        if sent.is_err() {
            return Ok(());
        }
        let mut frame = frame::Video::empty();
        loop {
            // EAGAIN/EOF: drained. Any other error is a frame that failed to decode: stop for
            // this packet rather than spin on an error that may repeat; later packets may decode.
            if self.decoder.receive_frame(&mut frame).is_err() {
                return Ok(());
            }
            let step = 1i64
                .rescale(self.frame_rate.invert(), self.time_base)
                .max(1);
            let pts = match frame.timestamp() {
                Some(ts) => ts - self.offset,
                None => self.last_pts.map_or(0, |p| p + step),
            };
            if self.last_pts.is_some_and(|last| pts <= last) {
                continue;
            }
            self.last_pts = Some(pts);
            self.frames += 1;
            frame.set_pts(Some(pts));
            sink.video(&frame, pts as f64 * f64::from(self.time_base))?;
        }
    }
}

/// The audio stream being transcoded and its decoder.
struct AudioSource {
    index: usize,
    time_base: Rational,
    start_s: Option<f64>,
    /// Subtracted from every pts (in `time_base`) so output starts at 0.
    offset: i64,
    decoder: decoder::Audio,
    /// Where the next frame should start, for frames that come without a timestamp.
    next_pts: Option<i64>,
    /// Frames decoded so far; zero at the end of a sound-only file means nothing decoded.
    frames: u64,
}

impl AudioSource {
    /// The best audio stream, if any. One that exists but cannot be decoded is an error rather
    /// than something to drop silently.
    fn open(input: &format::context::Input) -> Result<Option<Self>, TranscodeError> {
        let Some(stream) = input.streams().best(media::Type::Audio) else {
            return Ok(None);
        };
        let codec_name = stream.parameters().id().name();
        let decoder = open_decoder(&stream).and_then(|d| d.audio()).map_err(|e| {
            TranscodeError::Undecodable(format!(
                "the audio stream ({codec_name}) cannot be decoded (ffmpeg: {e})"
            ))
        })?;
        Ok(Some(Self {
            index: stream.index(),
            time_base: stream.time_base(),
            start_s: start_seconds(&stream),
            offset: 0,
            decoder,
            next_pts: None,
            frames: 0,
        }))
    }

    fn decode(
        &mut self,
        packet: Option<&Packet>,
        sink: &mut Sink<'_, '_>,
    ) -> Result<(), TranscodeError> {
        let sent = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        if sent.is_err() {
            return Ok(());
        }
        let mut frame = frame::Audio::empty();
        loop {
            // As for video: drained, or a frame that failed to decode.
            if self.decoder.receive_frame(&mut frame).is_err() {
                return Ok(());
            }
            let pts = match frame.timestamp() {
                Some(ts) => ts - self.offset,
                None => self.next_pts.unwrap_or(0),
            };
            let samples = i64::try_from(frame.samples()).unwrap_or(0);
            self.next_pts =
                Some(pts + samples.rescale((1, frame.rate().max(1) as i32), self.time_base));
            frame.set_pts(Some(pts));
            self.frames += 1;
            sink.audio(&frame, pts as f64 * f64::from(self.time_base))?;
        }
    }
}

/// An unopened decoder for `stream`, multi-threaded and told the packets' time base.
fn open_decoder(stream: &format::stream::Stream) -> Result<decoder::Decoder, ffmpeg::Error> {
    let mut context = codec::Context::from_parameters(stream.parameters())?;
    context.set_threading(threading::Config::kind(threading::Type::Frame));
    let mut decoder = context.decoder();
    decoder.set_packet_time_base(stream.time_base());
    Ok(decoder)
}

fn start_seconds(stream: &format::stream::Stream) -> Option<f64> {
    let start = stream.start_time();
    (start != ffmpeg::ffi::AV_NOPTS_VALUE).then(|| start as f64 * f64::from(stream.time_base()))
}

fn seconds_to(seconds: f64, time_base: Rational) -> i64 {
    (seconds / f64::from(time_base)).round() as i64
}

fn ratio(r: Rational) -> (i32, i32) {
    (r.numerator(), r.denominator())
}
