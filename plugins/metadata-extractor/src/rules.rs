//! The extractor's derivations, free of any WIT type so they can be unit-tested natively.

/// What a stream carries (the WIT `stream-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
    /// Anything else.
    Other,
}

/// The parts of a probed stream the rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// What it carries.
    pub kind: Kind,
    /// Coded width in pixels.
    pub width: Option<u32>,
    /// Coded height in pixels.
    pub height: Option<u32>,
    /// Display rotation in degrees.
    pub rotation: Option<i32>,
    /// Transfer characteristic (`smpte2084`, `arib-std-b67`, ...).
    pub color_transfer: Option<String>,
    /// ISO 639 language tag.
    pub language: Option<String>,
}

/// Transfer characteristics of HDR video: PQ (HDR10, Dolby Vision) and HLG.
const HDR_TRANSFERS: [&str; 2] = ["smpte2084", "arib-std-b67"];

/// Derives the metadata of a source from its streams, as `(key, value)` pairs sorted by key.
///
/// Keys about the picture come from the first video stream with a known size, as displayed
/// (after rotation), and are left out when there is none:
/// - `orientation`: `landscape`, `portrait` or `square`;
/// - `aspect_ratio`: the displayed width:height reduced (1920x1080 turned by 90° is `9:16`);
/// - `hdr`: `true` for PQ or HLG transfer, else `false`;
/// - `resolution_class`: `sd`, `hd` (720p), `fhd` (1080p) or `uhd` (2160p), by the picture's
///   long and short sides, so a portrait 1080x1920 and a 1920x800 scope picture are both `fhd`.
///
/// Always: `audio_only` (`true` when there is audio but no video). When any audio stream names
/// a language (other than `und`): `languages`, those languages in stream order without repeats.
pub fn extract(streams: &[Stream]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| out.push((k.to_owned(), v));

    let has_video = streams.iter().any(|s| s.kind == Kind::Video);
    let has_audio = streams.iter().any(|s| s.kind == Kind::Audio);
    put("audio_only", (has_audio && !has_video).to_string());

    let mut languages: Vec<String> = Vec::new();
    for lang in streams
        .iter()
        .filter(|s| s.kind == Kind::Audio)
        .filter_map(|s| s.language.as_deref())
        .map(|l| l.trim().to_ascii_lowercase())
        .filter(|l| !l.is_empty() && l != "und")
    {
        if !languages.contains(&lang) {
            languages.push(lang);
        }
    }
    if !languages.is_empty() {
        put("languages", languages.join(","));
    }

    let picture = streams
        .iter()
        .filter(|s| s.kind == Kind::Video)
        .find_map(|s| Some((s, displayed(s.width?, s.height?, s.rotation)?)));
    if let Some((stream, (w, h))) = picture {
        put("orientation", orientation(w, h).to_owned());
        put("aspect_ratio", aspect_ratio(w, h));
        let hdr = stream
            .color_transfer
            .as_deref()
            .is_some_and(|t| HDR_TRANSFERS.contains(&t.trim().to_ascii_lowercase().as_str()));
        put("hdr", hdr.to_string());
        put("resolution_class", resolution_class(w, h).to_owned());
    }
    out.sort();
    out
}

/// The displayed size: width and height swap when the picture is turned a quarter (90° or 270°,
/// in either direction). `None` for a zero size.
pub fn displayed(width: u32, height: u32, rotation: Option<i32>) -> Option<(u32, u32)> {
    if width == 0 || height == 0 {
        return None;
    }
    let quarter = matches!(rotation.unwrap_or(0).rem_euclid(360), 90 | 270);
    Some(if quarter {
        (height, width)
    } else {
        (width, height)
    })
}

/// `landscape`, `portrait` or `square` for a displayed size.
pub fn orientation(width: u32, height: u32) -> &'static str {
    match width.cmp(&height) {
        std::cmp::Ordering::Greater => "landscape",
        std::cmp::Ordering::Less => "portrait",
        std::cmp::Ordering::Equal => "square",
    }
}

/// `width:height` reduced by their greatest common divisor.
pub fn aspect_ratio(width: u32, height: u32) -> String {
    let g = gcd(width, height).max(1);
    format!("{}:{}", width / g, height / g)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The class of a picture by its long and short sides: reaching either side of a class's
/// reference size (3840x2160, 1920x1080, 1280x720) puts it in that class.
pub fn resolution_class(width: u32, height: u32) -> &'static str {
    let (long, short) = (width.max(height), width.min(height));
    if long >= 3840 || short >= 2160 {
        "uhd"
    } else if long >= 1920 || short >= 1080 {
        "fhd"
    } else if long >= 1280 || short >= 720 {
        "hd"
    } else {
        "sd"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(width: u32, height: u32, rotation: Option<i32>, transfer: Option<&str>) -> Stream {
        Stream {
            kind: Kind::Video,
            width: Some(width),
            height: Some(height),
            rotation,
            color_transfer: transfer.map(Into::into),
            language: None,
        }
    }

    fn audio(language: Option<&str>) -> Stream {
        Stream {
            kind: Kind::Audio,
            width: None,
            height: None,
            rotation: None,
            color_transfer: None,
            language: language.map(Into::into),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_plain_1080p_clip() {
        let out = extract(&[video(1920, 1080, None, Some("bt709")), audio(Some("eng"))]);
        assert_eq!(
            out,
            pairs(&[
                ("aspect_ratio", "16:9"),
                ("audio_only", "false"),
                ("hdr", "false"),
                ("languages", "eng"),
                ("orientation", "landscape"),
                ("resolution_class", "fhd"),
            ])
        );
    }

    #[test]
    fn rotation_turns_the_picture() {
        for rot in [90, 270, -90, 450] {
            assert_eq!(
                displayed(1920, 1080, Some(rot)),
                Some((1080, 1920)),
                "{rot}"
            );
        }
        for rot in [0, 180, -180, 360] {
            assert_eq!(
                displayed(1920, 1080, Some(rot)),
                Some((1920, 1080)),
                "{rot}"
            );
        }
        assert_eq!(displayed(0, 1080, None), None);
        let out = extract(&[video(1920, 1080, Some(90), None)]);
        assert!(out.contains(&("orientation".into(), "portrait".into())));
        assert!(out.contains(&("aspect_ratio".into(), "9:16".into())));
        assert!(out.contains(&("resolution_class".into(), "fhd".into())));
    }

    #[test]
    fn orientation_ratio_and_class() {
        assert_eq!(orientation(500, 500), "square");
        assert_eq!(aspect_ratio(500, 500), "1:1");
        assert_eq!(aspect_ratio(1280, 720), "16:9");
        assert_eq!(aspect_ratio(640, 480), "4:3");
        assert_eq!(aspect_ratio(1366, 768), "683:384");
        assert_eq!(resolution_class(640, 360), "sd");
        assert_eq!(resolution_class(1280, 720), "hd");
        assert_eq!(resolution_class(1920, 800), "fhd");
        assert_eq!(resolution_class(1080, 1920), "fhd");
        assert_eq!(resolution_class(3840, 1600), "uhd");
        assert_eq!(resolution_class(4096, 2160), "uhd");
    }

    #[test]
    fn hdr_is_pq_or_hlg() {
        let hdr = |t: Option<&str>| {
            extract(&[video(3840, 2160, None, t)])
                .into_iter()
                .find(|(k, _)| k == "hdr")
                .unwrap()
                .1
        };
        assert_eq!(hdr(Some("smpte2084")), "true");
        assert_eq!(hdr(Some("arib-std-b67")), "true");
        assert_eq!(hdr(Some("bt709")), "false");
        assert_eq!(hdr(None), "false");
    }

    #[test]
    fn audio_only_and_languages() {
        let out = extract(&[
            audio(Some("eng")),
            audio(Some("FRA")),
            audio(Some("eng")),
            audio(Some("und")),
            audio(None),
        ]);
        assert_eq!(
            out,
            pairs(&[("audio_only", "true"), ("languages", "eng,fra")])
        );
        assert_eq!(extract(&[]), pairs(&[("audio_only", "false")]));
    }
}
