//! Probing: what libavformat says a file contains, and whether we can decode it.

use std::path::Path;

use ffmpeg_next::{self as ffmpeg, Rational, codec, format, media};
use mediahost_core::{MediaInfo, StreamInfo};

use crate::{TranscodeError, init};

/// Describes the container and every stream of `path`.
///
/// Fails with [`TranscodeError::Undecodable`] when libavformat cannot open or parse the file, or
/// when it holds no audio or video stream that a decoder exists for; the message says which, in
/// words an uploader can act on.
pub fn probe(path: &Path) -> Result<MediaInfo, TranscodeError> {
    init();
    let input = open_input(path)?;
    let mut streams = Vec::new();
    let mut decodable = 0;
    for stream in input.streams() {
        let info = stream_info(&stream);
        if info.is_decodable {
            decodable += 1;
        }
        streams.push(info.info);
    }
    if decodable == 0 {
        let found = if streams.is_empty() {
            "no streams at all".to_owned()
        } else {
            streams
                .iter()
                .map(|s| format!("{} ({})", s.kind, s.codec))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(TranscodeError::Undecodable(format!(
            "the file has no audio or video stream that can be decoded (found: {found})"
        )));
    }
    Ok(MediaInfo {
        container: input.format().name().to_owned(),
        duration_s: duration_s(&input),
        bitrate: u64::try_from(input.bit_rate()).ok().filter(|&b| b > 0),
        streams,
    })
}

/// Opens `path` with libavformat (which also reads ahead to find stream parameters), turning
/// failures into an error that says whose fault it is: a missing or unreadable file is I/O
/// (worth a retry), anything else means the bytes are not media we understand.
pub(crate) fn open_input(path: &Path) -> Result<format::context::Input, TranscodeError> {
    let meta = std::fs::metadata(path).map_err(TranscodeError::io(path))?;
    if meta.len() == 0 {
        return Err(TranscodeError::Undecodable(
            "the file is empty (0 bytes); upload it again".into(),
        ));
    }
    format::input(path).map_err(|e| match e {
        // POSIX errors come from the file layer, not from parsing the bytes.
        ffmpeg::Error::Other { errno }
            if std::io::Error::from_raw_os_error(errno).kind()
                != std::io::ErrorKind::InvalidInput =>
        {
            TranscodeError::Io {
                path: path.to_owned(),
                source: std::io::Error::from_raw_os_error(errno),
            }
        }
        e => TranscodeError::Undecodable(format!(
            "the file is not a recognised audio/video format, or it is damaged or incomplete (ffmpeg: {e})"
        )),
    })
}

/// The container's duration in seconds, when it knows one.
pub(crate) fn duration_s(input: &format::context::Input) -> Option<f64> {
    let d = input.duration();
    // AV_NOPTS_VALUE is i64::MIN; a zero duration says nothing either.
    (d > 0).then(|| d as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE))
}

/// A rational as `f64`, or `None` when it is 0/x or x/0 (libav*'s "unknown").
pub(crate) fn positive_f64(r: Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r))
}

/// [`StreamInfo`] plus whether a decoder could be opened for it.
struct Probed {
    info: StreamInfo,
    is_decodable: bool,
}

fn stream_info(stream: &format::stream::Stream) -> Probed {
    let params = stream.parameters();
    let medium = params.medium();
    let kind = match medium {
        media::Type::Video => "video",
        media::Type::Audio => "audio",
        media::Type::Subtitle => "subtitle",
        media::Type::Data | media::Type::Attachment => "data",
        _ => "unknown",
    };
    let mut info = StreamInfo {
        index: stream.index(),
        kind: kind.to_owned(),
        codec: params.id().name().to_owned(),
        width: None,
        height: None,
        frame_rate: None,
        sample_rate: None,
        channels: None,
        bitrate: u64::try_from(params.bit_rate()).ok().filter(|&b| b > 0),
        language: stream
            .metadata()
            .get("language")
            .filter(|l| !l.is_empty() && *l != "und")
            .map(str::to_owned),
    };
    // The codec parameters hold the picture size and sample format, but ffmpeg-next only
    // exposes them through an opened decoder; opening one is also the decodability check.
    let decoder = codec::Context::from_parameters(params).map(|c| c.decoder());
    let is_decodable = match (medium, decoder) {
        (media::Type::Video, Ok(d)) => match d.video() {
            Ok(v) => {
                info.width = Some(v.width()).filter(|&w| w > 0);
                info.height = Some(v.height()).filter(|&h| h > 0);
                info.frame_rate =
                    positive_f64(stream.avg_frame_rate()).or_else(|| positive_f64(stream.rate()));
                info.width.is_some() && info.height.is_some()
            }
            Err(_) => false,
        },
        (media::Type::Audio, Ok(d)) => match d.audio() {
            Ok(a) => {
                info.sample_rate = Some(a.rate()).filter(|&r| r > 0);
                info.channels = Some(u32::from(a.channels())).filter(|&c| c > 0);
                info.sample_rate.is_some()
            }
            Err(_) => false,
        },
        _ => false,
    };
    Probed { info, is_decodable }
}
