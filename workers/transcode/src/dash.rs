//! The DASH manifest: a static MPD over the very CMAF segments the HLS media playlists list.
//!
//! No second packaging pass: every rendition's `init.mp4` and `seg_NNNNN.m4s` are already
//! fragmented MP4, so the MPD only describes them. Each representation gets a
//! `SegmentTemplate` (`$Number%05d$`, the HLS muxer's file names) with a `SegmentTimeline`
//! built from the `EXTINF` durations of its media playlist, so both manifests agree segment for
//! segment. The video renditions' segments carry H.264 and AAC muxed together, which the
//! `isoff-live` profile allows (the CMAF profile would not); `ContentComponent`s say so. The
//! audio-only rendition (AAC alone) is a second `AdaptationSet`, `contentType="audio"`.
//!
//! The MPD sits beside `master.m3u8` under the video's HLS root and names its files through
//! `<BaseURL>../hls/</BaseURL>`: served as `/v1/videos/{id}/dash/manifest.mpd` (the API's DASH
//! route) or `/v1/videos/{id}/hls/manifest.mpd`, its relative URLs resolve to the same HLS
//! segment routes, so one copy of each segment serves both protocols and caches.

use std::fmt::Write as _;

use mediahost_core::video::keys::DASH_MANIFEST;

use crate::TranscodeError;
use crate::package::{INIT_SEGMENT, Segment, Variant};

/// Ticks per second of the timelines: 90 kHz, which counts the frame durations of every
/// common rate exactly (25, 30, 30000/1001, 60 …).
const TIMESCALE: u64 = 90_000;

/// The text of `manifest.mpd` for `variants` (best first, as in the master playlist).
pub(crate) fn manifest_text(
    variants: &[Variant],
    segment_seconds: u32,
) -> Result<String, TranscodeError> {
    manifest(variants, segment_seconds).map_err(|message| TranscodeError::Io {
        path: DASH_MANIFEST.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
    })
}

/// The MPD text, or why the segments cannot be described by a template.
fn manifest(variants: &[Variant], segment_seconds: u32) -> Result<String, String> {
    let duration_s = variants
        .iter()
        .map(|v| v.segments.iter().map(|s| s.duration_s).sum::<f64>())
        .fold(0.0, f64::max);
    let max_segment_s = variants
        .iter()
        .flat_map(|v| v.segments.iter().map(|s| s.duration_s))
        .fold(0.0, f64::max);
    let mut mpd = String::new();
    let _ = write!(
        mpd,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="{}" maxSegmentDuration="{}" minBufferTime="PT{}S">
  <BaseURL>../hls/</BaseURL>
  <Period id="0" start="PT0S">
"#,
        iso_duration(duration_s),
        iso_duration(max_segment_s),
        segment_seconds.max(1),
    );
    // The video renditions (sound muxed in, when there is some) in one set; the audio-only
    // rendition, the only one of a source without video, in an audio set of its own.
    let (sound, pictures): (Vec<&Variant>, Vec<&Variant>) =
        variants.iter().partition(|v| v.rendition.width == 0);
    for (id, set) in [pictures, sound]
        .into_iter()
        .filter(|set| !set.is_empty())
        .enumerate()
    {
        adaptation_set(&mut mpd, id, &set)?;
    }
    mpd.push_str("  </Period>\n</MPD>\n");
    Ok(mpd)
}

/// Appends an `AdaptationSet` numbered `id` holding `variants`: all with a picture, or all
/// audio only.
fn adaptation_set(mpd: &mut String, id: usize, variants: &[&Variant]) -> Result<(), String> {
    let sound_only = variants.iter().all(|v| v.rendition.width == 0);
    let (content, mime) = if sound_only {
        ("audio", "audio/mp4")
    } else {
        ("video", "video/mp4")
    };
    let _ = write!(
        mpd,
        r#"    <AdaptationSet id="{id}" contentType="{content}" mimeType="{mime}" segmentAlignment="true" startWithSAP="1">
      <ContentComponent id="1" contentType="{content}"/>
"#
    );
    if !sound_only && variants.iter().any(|v| v.has_audio) {
        mpd.push_str("      <ContentComponent id=\"2\" contentType=\"audio\"/>\n");
    }
    for v in variants {
        let r = &v.rendition;
        let name = &r.name;
        let _ = write!(
            mpd,
            r#"      <Representation id="{}" bandwidth="{}""#,
            attr(name),
            r.bandwidth,
        );
        if !sound_only {
            let _ = write!(
                mpd,
                r#" width="{}" height="{}" sar="1:1""#,
                r.width, r.height
            );
        }
        let _ = write!(mpd, r#" codecs="{}""#, attr(&r.codecs));
        if let Some((num, den)) = v.frame_rate {
            let _ = match den {
                1 => write!(mpd, r#" frameRate="{num}""#),
                _ => write!(mpd, r#" frameRate="{num}/{den}""#),
            };
        }
        let start = first_number(&v.segments)?;
        let _ = write!(
            mpd,
            r#">
        <SegmentTemplate timescale="{TIMESCALE}" initialization="{dir}/{INIT_SEGMENT}" media="{dir}/seg_$Number%05d$.m4s" startNumber="{start}">
          <SegmentTimeline>
"#,
            dir = attr(name),
        );
        for (t, d, r) in timeline(&v.segments) {
            let _ = match (t, r) {
                (Some(t), 0) => writeln!(mpd, r#"            <S t="{t}" d="{d}"/>"#),
                (Some(t), r) => writeln!(mpd, r#"            <S t="{t}" d="{d}" r="{r}"/>"#),
                (None, 0) => writeln!(mpd, r#"            <S d="{d}"/>"#),
                (None, r) => writeln!(mpd, r#"            <S d="{d}" r="{r}"/>"#),
            };
        }
        mpd.push_str(
            "          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n",
        );
    }
    mpd.push_str("    </AdaptationSet>\n");
    Ok(())
}

/// The number of the first segment, checking that the segments are numbered consecutively as
/// `seg_NNNNN.m4s` (what the `$Number%05d$` template names).
fn first_number(segments: &[Segment]) -> Result<u64, String> {
    let number = |s: &Segment| {
        s.uri
            .strip_prefix("seg_")
            .and_then(|rest| rest.strip_suffix(".m4s"))
            .filter(|digits| digits.len() >= 5 && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
    };
    let Some(first) = segments.first() else {
        return Err("a rendition has no segments".into());
    };
    let start = number(first).ok_or_else(|| format!("unexpected segment name {:?}", first.uri))?;
    for (i, s) in segments.iter().enumerate() {
        if number(s) != Some(start + i as u64) {
            return Err(format!(
                "segment {:?} breaks the seg_NNNNN.m4s numbering the DASH template needs",
                s.uri
            ));
        }
    }
    Ok(start)
}

/// `SegmentTimeline` entries `(t, d, r)` in [`TIMESCALE`] ticks: `t` only on the first,
/// consecutive equal durations folded into one entry with `r` repeats. Start times are rounded
/// from the running sum of the exact durations, so rounding never accumulates into drift.
fn timeline(segments: &[Segment]) -> Vec<(Option<u64>, u64, u32)> {
    let mut entries: Vec<(Option<u64>, u64, u32)> = Vec::new();
    let mut elapsed_s = 0.0;
    let mut start = 0u64;
    for s in segments {
        elapsed_s += s.duration_s;
        let end = (elapsed_s * TIMESCALE as f64).round() as u64;
        let d = end.saturating_sub(start);
        match entries.last_mut() {
            Some((_, last, r)) if *last == d => *r += 1,
            _ => entries.push((entries.is_empty().then_some(0), d, 0)),
        }
        start = end;
    }
    entries
}

/// An `xs:duration` of whole milliseconds, e.g. `PT10.000S`.
fn iso_duration(seconds: f64) -> String {
    format!("PT{:.3}S", seconds.max(0.0))
}

/// `value` escaped for a double-quoted XML attribute.
fn attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediahost_core::Rendition;

    fn segments(durations: &[f64]) -> Vec<Segment> {
        durations
            .iter()
            .enumerate()
            .map(|(i, &d)| Segment {
                uri: format!("seg_{i:05}.m4s"),
                duration_s: d,
            })
            .collect()
    }

    #[test]
    fn timelines_fold_repeats_without_drift() {
        assert_eq!(
            timeline(&segments(&[4.0, 4.0, 4.0, 1.5])),
            [(Some(0), 360_000, 2), (None, 135_000, 0)]
        );
        // 1/3 s does not divide into ticks evenly: the starts stay on the exact sums.
        let thirds = timeline(&segments(&[1.0 / 3.0; 3]));
        let ticks: u64 = thirds.iter().map(|(_, d, r)| d * u64::from(r + 1)).sum();
        assert_eq!(ticks, 90_000);
    }

    #[test]
    fn segments_must_follow_the_template() {
        assert_eq!(first_number(&segments(&[4.0, 4.0])), Ok(0));
        let mut gap = segments(&[4.0, 4.0]);
        gap[1].uri = "seg_00002.m4s".into();
        assert!(first_number(&gap).unwrap_err().contains("seg_00002"));
        assert!(first_number(&[]).is_err());
    }

    fn variant(name: &str, width: u32, height: u32) -> Variant {
        let picture = width > 0;
        Variant {
            rendition: Rendition {
                name: name.into(),
                playlist: format!("{name}/index.m3u8"),
                width,
                height,
                bandwidth: if picture { 900_000 } else { 130_000 },
                codecs: if picture {
                    "avc1.64001f,mp4a.40.2"
                } else {
                    "mp4a.40.2"
                }
                .into(),
            },
            average_bandwidth: 800_000,
            frame_rate: picture.then_some((30000, 1001)),
            has_audio: true,
            segments: segments(&[4.0, 4.0, 2.0]),
        }
    }

    #[test]
    fn manifest_describes_every_rendition() {
        let mpd = manifest(&[variant("720p", 1280, 720), variant("360p", 640, 360)], 4).unwrap();
        for needle in [
            r#"type="static""#,
            r#"mediaPresentationDuration="PT10.000S""#,
            "<BaseURL>../hls/</BaseURL>",
            r#"<ContentComponent id="2" contentType="audio"/>"#,
            r#"<Representation id="720p" bandwidth="900000" width="1280" height="720" sar="1:1" codecs="avc1.64001f,mp4a.40.2" frameRate="30000/1001">"#,
            r#"initialization="360p/init.mp4" media="360p/seg_$Number%05d$.m4s" startNumber="0""#,
            r#"<S t="0" d="360000" r="1"/>"#,
            r#"<S d="180000"/>"#,
        ] {
            assert!(mpd.contains(needle), "{needle} not in\n{mpd}");
        }
        assert_eq!(mpd.matches("<Representation ").count(), 2);
    }

    #[test]
    fn the_audio_only_rendition_is_an_audio_set_of_its_own() {
        let mpd = manifest(
            &[
                variant("720p", 1280, 720),
                variant("360p", 640, 360),
                variant("audio", 0, 0),
            ],
            4,
        )
        .unwrap();
        let sets: Vec<&str> = mpd.split("<AdaptationSet ").skip(1).collect();
        assert_eq!(sets.len(), 2, "{mpd}");
        assert!(
            sets[0].starts_with(r#"id="0" contentType="video" mimeType="video/mp4""#),
            "{mpd}"
        );
        assert_eq!(sets[0].matches("<Representation ").count(), 2, "{mpd}");
        assert!(
            sets[1].starts_with(r#"id="1" contentType="audio" mimeType="audio/mp4""#),
            "{mpd}"
        );
        for needle in [
            r#"<ContentComponent id="1" contentType="audio"/>"#,
            r#"<Representation id="audio" bandwidth="130000" codecs="mp4a.40.2">"#,
            r#"initialization="audio/init.mp4" media="audio/seg_$Number%05d$.m4s" startNumber="0""#,
            r#"<S t="0" d="360000" r="1"/>"#,
        ] {
            assert!(sets[1].contains(needle), "{needle} not in\n{mpd}");
        }
        assert_eq!(sets[1].matches("<Representation ").count(), 1, "{mpd}");
        assert!(!sets[1].contains(" width="), "{mpd}");
        assert!(
            mpd.ends_with("    </AdaptationSet>\n  </Period>\n</MPD>\n"),
            "{mpd}"
        );

        // A source without video has only the audio set.
        let sound = manifest(&[variant("audio", 0, 0)], 4).unwrap();
        assert_eq!(sound.matches("<AdaptationSet ").count(), 1, "{sound}");
        assert!(
            sound.contains(r#"<AdaptationSet id="0" contentType="audio" mimeType="audio/mp4""#),
            "{sound}"
        );
    }
}
