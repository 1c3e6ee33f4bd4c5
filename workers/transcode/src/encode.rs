//! Decoded frames in, encoded packets out.
//!
//! [`VideoScaler`] turns and scales each decoded picture to every rendition's size in one filter
//! graph; [`VideoEncoder`] encodes one rendition's pictures as H.264 with keyframes on the
//! segment grid; [`AudioEncoder`] resamples to stereo and encodes AAC-LC. The encoders hand
//! packets back in their encoder's time base and leave muxing to the caller, so one decoded
//! frame feeds any number of renditions and one audio encoding is shared by all of them.

use ffmpeg_next::{
    self as ffmpeg, ChannelLayout, Dictionary, Packet, Rational, Rescale, codec, decoder, encoder,
    filter, format, frame, picture,
};
use mediahost_core::config::TranscodeConfig;

use crate::TranscodeError;
use crate::ladder::Target;
use crate::orient::Rotation;
use crate::schedule::{KeyframeClock, Schedule};

/// AAC-LC sample rates we pass through; anything else is resampled to 48 kHz.
const AAC_RATES: [u32; 5] = [32_000, 44_100, 48_000, 88_200, 96_000];

/// Turns and scales decoded pictures to the size of every video rendition, in one filter graph:
/// `buffer → (transpose | hflip,vflip) → split → (scale → setsar → format → buffersink)` per
/// rendition. `split` hands each branch a reference to the same picture, so a decoded frame is
/// added once and never copied (with a graph per rendition, each buffer source would take the
/// frame's data over, and every rendition but one would need a copy of every frame).
pub(crate) struct VideoScaler {
    /// The renditions' sizes, in the order of their branches.
    targets: Vec<Target>,
    /// How the decoded pictures are turned upright before scaling.
    rotation: Rotation,
    /// Time base of the frames we are given and of the graph.
    time_base: Rational,
    /// Built from the first frame so it matches what the decoder really produces (pixel
    /// format, size) rather than what the container header claimed.
    graph: Option<filter::Graph>,
    /// Reused output frame.
    scaled: frame::Video,
}

impl VideoScaler {
    /// A scaler to each of `targets` (upright sizes) from frames in `time_base`, turned by
    /// `rotation` first.
    pub fn new(targets: Vec<Target>, time_base: Rational, rotation: Rotation) -> Self {
        Self {
            targets,
            rotation,
            time_base,
            graph: None,
            scaled: frame::Video::empty(),
        }
    }

    /// Scales one decoded frame to every target, handing each picture that comes out to
    /// `each` with its target's index.
    pub fn push(
        &mut self,
        frame: &frame::Video,
        each: impl FnMut(usize, &mut frame::Video) -> Result<(), TranscodeError>,
    ) -> Result<(), TranscodeError> {
        if self.graph.is_none() {
            self.graph = Some(self.build_graph(frame)?);
        }
        let graph = self.graph.as_mut().expect("built above");
        source(graph)
            .source()
            .add(frame)
            .map_err(TranscodeError::ffmpeg("scaling video"))?;
        self.drain(each)
    }

    /// Flushes the graph at the end of the input, handing out what it still held.
    pub fn finish(
        &mut self,
        each: impl FnMut(usize, &mut frame::Video) -> Result<(), TranscodeError>,
    ) -> Result<(), TranscodeError> {
        let Some(graph) = self.graph.as_mut() else {
            return Ok(());
        };
        source(graph)
            .source()
            .flush()
            .map_err(TranscodeError::ffmpeg("flushing the video scaler"))?;
        self.drain(each)
    }

    fn drain(
        &mut self,
        mut each: impl FnMut(usize, &mut frame::Video) -> Result<(), TranscodeError>,
    ) -> Result<(), TranscodeError> {
        let Some(graph) = self.graph.as_mut() else {
            return Ok(());
        };
        for index in 0..self.targets.len() {
            let mut sink = graph
                .get(&branch_sink(index))
                .expect("the graph has a sink per target");
            loop {
                match sink.sink().frame(&mut self.scaled) {
                    Ok(()) => each(index, &mut self.scaled)?,
                    Err(e) if is_drained(e) => break,
                    Err(e) => return Err(TranscodeError::ffmpeg("scaling video")(e)),
                }
            }
        }
        Ok(())
    }

    fn build_graph(&self, first: &frame::Video) -> Result<filter::Graph, TranscodeError> {
        let during = "building the video scaler";
        let pix_fmt = first
            .format()
            .descriptor()
            .map(|d| d.name())
            .ok_or_else(|| {
                TranscodeError::Undecodable("the video has an unknown pixel format".into())
            })?;
        let sar = first.aspect_ratio();
        let (sar_num, sar_den) = if sar.numerator() > 0 && sar.denominator() > 0 {
            (sar.numerator(), sar.denominator())
        } else {
            (1, 1)
        };
        let args = format!(
            "video_size={}x{}:pix_fmt={pix_fmt}:time_base={}/{}:pixel_aspect={sar_num}/{sar_den}",
            first.width(),
            first.height(),
            self.time_base.numerator(),
            self.time_base.denominator(),
        );
        let turn = self
            .rotation
            .filter()
            .map(|f| format!("{f},"))
            .unwrap_or_default();
        let branches: String = (0..self.targets.len()).map(|i| format!("[s{i}]")).collect();
        let mut spec = format!("[in]{turn}split={}{branches}", self.targets.len());
        for (i, target) in self.targets.iter().enumerate() {
            spec.push_str(&format!(
                ";[s{i}]scale={}:{},setsar=1,format=yuv420p[{}]",
                target.width,
                target.height,
                branch_sink(i)
            ));
        }
        let mut graph = filter::Graph::new();
        graph
            .add(&find_filter("buffer")?, "in", &args)
            .map_err(TranscodeError::ffmpeg(during))?;
        for i in 0..self.targets.len() {
            graph
                .add(&find_filter("buffersink")?, &branch_sink(i), "")
                .map_err(TranscodeError::ffmpeg(during))?;
        }
        let mut parser = graph
            .output("in", 0)
            .map_err(TranscodeError::ffmpeg(during))?;
        for i in 0..self.targets.len() {
            parser = parser
                .input(&branch_sink(i), 0)
                .map_err(TranscodeError::ffmpeg(during))?;
        }
        parser
            .parse(&spec)
            .map_err(TranscodeError::ffmpeg(during))?;
        graph.validate().map_err(TranscodeError::ffmpeg(during))?;
        Ok(graph)
    }
}

/// The name of the buffer sink of branch `index` of a [`VideoScaler`]'s graph.
fn branch_sink(index: usize) -> String {
    format!("out{index}")
}

/// Encodes one rendition's scaled pictures with libx264.
pub(crate) struct VideoEncoder {
    /// Time base of the frames we are given and of the encoder: keeping one time base end to
    /// end means no rounding between stages.
    time_base: Rational,
    /// Duration of one frame in `time_base`, stamped on packets the encoder leaves at 0 so the
    /// muxer knows how long the last sample lasts.
    frame_duration: i64,
    /// Which pictures start a segment.
    keyframes: KeyframeClock,
    /// The opened libx264 encoder.
    encoder: encoder::Video,
}

impl VideoEncoder {
    /// Opens libx264 for `target` (its upright size: what the [`VideoScaler`] hands over).
    /// `time_base` is the time base of the frames that will be encoded; `frame_rate` is the
    /// source's average, for the duration of the last frame. Keyframes come only where we
    /// force them, on the first picture at or after each segment boundary of the
    /// [`Schedule`] (x264's own interval is infinite and scene cuts are off), so segment
    /// boundaries fall on the same frame in every rendition and on the same times as the
    /// audio-only rendition's, whatever the frame rate does.
    pub fn new(
        target: &Target,
        time_base: Rational,
        frame_rate: Rational,
        cfg: &TranscodeConfig,
    ) -> Result<Self, TranscodeError> {
        let codec = encoder::find_by_name("libx264").ok_or(TranscodeError::Ffmpeg {
            during: "looking up the libx264 encoder (is ffmpeg built with x264?)",
            source: ffmpeg::Error::EncoderNotFound,
        })?;
        let mut enc = codec::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(TranscodeError::ffmpeg("creating the H.264 encoder"))?;
        enc.set_width(target.width);
        enc.set_height(target.height);
        enc.set_format(format::Pixel::YUV420P);
        enc.set_aspect_ratio((1, 1));
        enc.set_time_base(time_base);
        enc.set_frame_rate(Some(frame_rate));
        // The HLS muxer writes codec headers once, in init.mp4, not in every keyframe.
        // `set_flags` replaces the flags libx264's defaults set, among them `cgop`: without
        // it x264 makes open GOPs, whose segments start on a non-IDR picture that earlier
        // frames of the previous segment are needed to decode (not independent segments).
        enc.set_flags(codec::Flags::GLOBAL_HEADER | codec::Flags::CLOSED_GOP);

        let mut opts = Dictionary::new();
        // libavcodec's default is one thread, with which libx264 encodes each frame on the
        // calling thread: the ladder's encoders then take turns on one core. `auto` lets x264
        // run its frame threads and lookahead beside ours (what the ffmpeg CLI asks for too).
        opts.set("threads", "auto");
        opts.set("preset", &cfg.x264_preset);
        opts.set("crf", &cfg.crf.to_string());
        let mut params = String::from("keyint=infinite:scenecut=0");
        if let Some(kbps) = target.max_video_kbps.filter(|k| *k > 0) {
            // Capped CRF: quality-driven, but never above the rung's bitrate over a 2 s buffer.
            params.push_str(&format!(":vbv-maxrate={kbps}:vbv-bufsize={}", kbps * 2));
        }
        opts.set("x264-params", &params);
        let encoder = enc.open_with(opts).map_err(TranscodeError::ffmpeg(
            "opening libx264 (check transcode.x264_preset and crf)",
        ))?;

        let frame_duration = 1i64.rescale(frame_rate.invert(), time_base).max(1);
        Ok(Self {
            time_base,
            frame_duration,
            keyframes: KeyframeClock::new(Schedule::new(cfg), time_base),
            encoder,
        })
    }

    /// The opened encoder, whose parameters the muxer's stream copies.
    pub fn encoder(&self) -> &encoder::Video {
        &self.encoder
    }

    /// The time base of the packets this encoder returns.
    pub fn time_base(&self) -> Rational {
        self.time_base
    }

    /// Encodes one scaled picture (its pts in the time base given to [`VideoEncoder::new`]),
    /// appending any packets that come out to `out`.
    pub fn encode(
        &mut self,
        picture: &mut frame::Video,
        out: &mut Vec<Packet>,
    ) -> Result<(), TranscodeError> {
        // libx264 obeys the picture type (an I picture becomes an IDR frame with closed GOPs),
        // so the decoder's types are cleared and ours set.
        let starts_segment = picture
            .pts()
            .is_some_and(|pts| self.keyframes.is_keyframe(pts));
        picture.set_kind(if starts_segment {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.encoder
            .send_frame(picture)
            .map_err(TranscodeError::ffmpeg("encoding H.264"))?;
        self.drain_encoder(out)
    }

    /// Flushes the encoder at the end of the input.
    pub fn finish(&mut self, out: &mut Vec<Packet>) -> Result<(), TranscodeError> {
        self.encoder
            .send_eof()
            .map_err(TranscodeError::ffmpeg("flushing the H.264 encoder"))?;
        self.drain_encoder(out)
    }

    fn drain_encoder(&mut self, out: &mut Vec<Packet>) -> Result<(), TranscodeError> {
        drain_encoder(
            &mut self.encoder,
            self.frame_duration,
            out,
            "encoding H.264",
        )
    }
}

/// Resamples decoded audio to stereo and encodes AAC-LC in 1024-sample frames.
pub(crate) struct AudioEncoder {
    /// `abuffer → aresample → aformat → abuffersink`; the sink cuts frames to the encoder's
    /// fixed frame size, which AAC requires.
    graph: filter::Graph,
    /// Time base of the sink's frames (1/output rate after `aresample`).
    sink_time_base: Rational,
    /// The opened AAC encoder; its time base is 1/sample rate.
    encoder: encoder::Audio,
}

impl AudioEncoder {
    /// Opens the AAC encoder and a resampling graph for frames from `decoder`, whose pts are in
    /// `time_base`.
    pub fn new(
        decoder: &decoder::Audio,
        time_base: Rational,
        cfg: &TranscodeConfig,
    ) -> Result<Self, TranscodeError> {
        let codec = encoder::find(codec::Id::AAC).ok_or(TranscodeError::Ffmpeg {
            during: "looking up the AAC encoder",
            source: ffmpeg::Error::EncoderNotFound,
        })?;
        let rate = if AAC_RATES.contains(&decoder.rate()) {
            decoder.rate()
        } else {
            48_000
        };
        let mut enc = codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(TranscodeError::ffmpeg("creating the AAC encoder"))?;
        enc.set_rate(rate as i32);
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_channels(2);
        enc.set_format(format::Sample::F32(format::sample::Type::Planar));
        enc.set_bit_rate(cfg.audio_bitrate as usize);
        enc.set_time_base((1, rate as i32));
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
        let encoder = enc
            .open_as(codec)
            .map_err(TranscodeError::ffmpeg("opening the AAC encoder"))?;

        let during = "building the audio resampler";
        let layout = if decoder.channel_layout().is_empty() {
            ChannelLayout::default(i32::from(decoder.channels()))
        } else {
            decoder.channel_layout()
        };
        let args = format!(
            "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
            time_base.numerator(),
            time_base.denominator(),
            decoder.rate(),
            decoder.format().name(),
            layout.bits()
        );
        // async=1 with first_pts=0 pads or trims the start so audio begins with the video at 0.
        let spec = format!(
            "aresample={rate}:async=1:first_pts=0,aformat=sample_fmts=fltp:channel_layouts=stereo"
        );
        let mut graph = filter::Graph::new();
        graph
            .add(&find_filter("abuffer")?, "in", &args)
            .map_err(TranscodeError::ffmpeg(during))?;
        graph
            .add(&find_filter("abuffersink")?, "out", "")
            .map_err(TranscodeError::ffmpeg(during))?;
        graph
            .output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| p.parse(&spec))
            .map_err(TranscodeError::ffmpeg(during))?;
        graph.validate().map_err(TranscodeError::ffmpeg(during))?;
        if encoder.frame_size() > 0 {
            sink(&mut graph).sink().set_frame_size(encoder.frame_size());
        }
        let sink_time_base = sink(&mut graph).sink().time_base();
        Ok(Self {
            graph,
            sink_time_base,
            encoder,
        })
    }

    /// The opened encoder, whose parameters each muxer's audio stream copies.
    pub fn encoder(&self) -> &encoder::Audio {
        &self.encoder
    }

    /// The time base of the packets this encoder returns.
    pub fn time_base(&self) -> Rational {
        self.encoder.time_base()
    }

    /// Resamples and encodes one decoded frame, appending finished packets to `out`.
    pub fn push(
        &mut self,
        frame: &frame::Audio,
        out: &mut Vec<Packet>,
    ) -> Result<(), TranscodeError> {
        source(&mut self.graph)
            .source()
            .add(frame)
            .map_err(TranscodeError::ffmpeg("resampling audio"))?;
        self.drain_graph(out)
    }

    /// Flushes the resampler and the encoder at the end of the input.
    pub fn finish(&mut self, out: &mut Vec<Packet>) -> Result<(), TranscodeError> {
        source(&mut self.graph)
            .source()
            .flush()
            .map_err(TranscodeError::ffmpeg("flushing the audio resampler"))?;
        self.drain_graph(out)?;
        self.encoder
            .send_eof()
            .map_err(TranscodeError::ffmpeg("flushing the AAC encoder"))?;
        drain_encoder(&mut self.encoder, 0, out, "encoding AAC")
    }

    fn drain_graph(&mut self, out: &mut Vec<Packet>) -> Result<(), TranscodeError> {
        let enc_time_base = self.encoder.time_base();
        let mut filtered = frame::Audio::empty();
        loop {
            match sink(&mut self.graph).sink().frame(&mut filtered) {
                Ok(()) => {}
                Err(e) if is_drained(e) => return Ok(()),
                Err(e) => return Err(TranscodeError::ffmpeg("resampling audio")(e)),
            }
            let pts = filtered
                .pts()
                .map(|p| p.rescale(self.sink_time_base, enc_time_base));
            filtered.set_pts(pts);
            self.encoder
                .send_frame(&filtered)
                .map_err(TranscodeError::ffmpeg("encoding AAC"))?;
            drain_encoder(&mut self.encoder, 0, out, "encoding AAC")?;
        }
    }
}

/// Moves every packet the encoder has ready into `out`, giving packets without a duration
/// `default_duration` (when non-zero).
fn drain_encoder(
    encoder: &mut encoder::Encoder,
    default_duration: i64,
    out: &mut Vec<Packet>,
    during: &'static str,
) -> Result<(), TranscodeError> {
    loop {
        let mut packet = Packet::empty();
        match encoder.receive_packet(&mut packet) {
            Ok(()) => {
                if packet.duration() == 0 && default_duration > 0 {
                    packet.set_duration(default_duration);
                }
                out.push(packet);
            }
            Err(e) if is_drained(e) => return Ok(()),
            Err(e) => return Err(TranscodeError::ffmpeg(during)(e)),
        }
    }
}

/// EAGAIN ("feed me more") and EOF ("flushed") both mean nothing more comes out right now.
fn is_drained(e: ffmpeg::Error) -> bool {
    matches!(e, ffmpeg::Error::Eof)
        || e == ffmpeg::Error::Other {
            errno: ffmpeg::error::EAGAIN,
        }
}

fn find_filter(name: &str) -> Result<ffmpeg::Filter, TranscodeError> {
    filter::find(name).ok_or(TranscodeError::Ffmpeg {
        during: "looking up a libavfilter filter",
        source: ffmpeg::Error::FilterNotFound,
    })
}

fn source(graph: &mut filter::Graph) -> filter::Context {
    graph
        .get("in")
        .expect("every graph here has an `in` buffer source")
}

fn sink(graph: &mut filter::Graph) -> filter::Context {
    graph
        .get("out")
        .expect("every graph here has an `out` buffer sink")
}
