//! Signed playback URLs: `?exp=<unix seconds>&sig=<hex HMAC-SHA256>`, per-tenant secret.
//!
//! Design: one signature covers a whole video. The MAC is computed over `"<video id>/<exp>"`,
//! so the same `exp`/`sig` pair is valid on the master playlist and on every file under
//! `/v1/videos/{id}/hls/`. HLS players resolve the relative URIs in playlists without carrying
//! the playlist's query over, so the origin rewrites every URI of a playlist it serves through a
//! signed URL to carry the same `exp`/`sig` (see [`sign_playlist`]), and every segment URL of
//! the DASH manifest likewise ([`sign_mpd`]). Signatures never cover
//! another video: the id is part of the MAC input.
//!
//! A signed response is marked `Cache-Control: public`, so shared caches (the edge) may keep it;
//! they key it by the full URL, signature included.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mac(secret: &str, video_id: &str, exp: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{video_id}/{exp}").as_bytes());
    mac
}

/// The hex signature of `video_id` valid until `exp` (unix seconds).
pub(crate) fn sign(secret: &str, video_id: &str, exp: u64) -> String {
    hex::encode(mac(secret, video_id, exp).finalize().into_bytes())
}

/// The query string (`exp=…&sig=…`) that makes URLs under `video_id` playable until `exp`.
pub(crate) fn query(secret: &str, video_id: &str, exp: u64) -> String {
    format!("exp={exp}&sig={}", sign(secret, video_id, exp))
}

/// 403 for a signature that was not made for this video with its tenant's secret.
pub(crate) fn forged() -> ApiError {
    ApiError::InvalidSignature(
        "the URL signature is not valid for this video (forged, altered, or signed for \
         another video or with a rotated secret); ask the API for a fresh \
         `playback.signed_hls` URL"
            .into(),
    )
}

/// Checks `exp`/`sig` for `video_id` at `now`: 403 `invalid_signature` when expired, malformed
/// or not made with this tenant's secret for this video. The MAC is compared in constant time.
pub(crate) fn verify(
    secret: &str,
    video_id: &str,
    exp: &str,
    sig: &str,
    now: u64,
) -> Result<(), ApiError> {
    let exp_value: u64 = exp.parse().map_err(|_| {
        ApiError::InvalidSignature(format!(
            "malformed signed URL: `exp` must be unix seconds, got {exp:?}"
        ))
    })?;
    let bytes = hex::decode(sig).map_err(|_| forged())?;
    mac(secret, video_id, exp_value)
        .verify_slice(&bytes)
        .map_err(|_| forged())?;
    // Expiry is reported only for genuine signatures, so a forger learns nothing from it.
    if exp_value < now {
        return Err(ApiError::InvalidSignature(format!(
            "the signed URL expired {} s ago (exp={exp_value}); ask the API for a fresh \
             `playback.signed_hls` URL",
            now - exp_value
        )));
    }
    Ok(())
}

/// Rewrites every URI in an HLS playlist (URI lines and `URI="…"` attributes) to carry `query`,
/// so a player that loaded the playlist through a signed URL fetches everything it names with
/// the same signature.
pub(crate) fn sign_playlist(playlist: &str, query: &str) -> String {
    let with_query = |uri: &str| {
        let sep = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{sep}{query}")
    };
    let mut out = String::with_capacity(playlist.len() + 64);
    for line in playlist.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            out.push_str(line);
        } else if !trimmed.starts_with('#') {
            out.push_str(&with_query(trimmed));
        } else if let Some(start) = line.find("URI=\"") {
            let value_start = start + "URI=\"".len();
            match line[value_start..].find('"') {
                Some(len) => {
                    out.push_str(&line[..value_start]);
                    out.push_str(&with_query(&line[value_start..value_start + len]));
                    out.push_str(&line[value_start + len..]);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Attributes of a DASH manifest holding URLs (segment templates and lists).
const MPD_URL_ATTRIBUTES: [&str; 4] = ["initialization", "media", "sourceURL", "index"];

/// Rewrites every segment URL of a DASH manifest (`initialization`, `media`, `sourceURL` and
/// `index` attributes) to carry `query`, XML-escaped, so a player that loaded the manifest
/// through a signed URL fetches every segment with the same signature. `BaseURL` stays as it
/// is: players resolve the templates against it and keep the templates' queries.
pub(crate) fn sign_mpd(mpd: &str, query: &str) -> String {
    let query = query.replace('&', "&amp;");
    let mut out = String::with_capacity(mpd.len() + 256);
    let mut rest = mpd;
    while let Some((at, name_len)) = next_url_attribute(rest) {
        let value_start = at + name_len + "=\"".len();
        let Some(len) = rest[value_start..].find('"') else {
            break;
        };
        let value = &rest[value_start..value_start + len];
        out.push_str(&rest[..value_start]);
        out.push_str(value);
        out.push_str(if value.contains('?') { "&amp;" } else { "?" });
        out.push_str(&query);
        rest = &rest[value_start + len..];
    }
    out.push_str(rest);
    out
}

/// Where the next URL attribute (` name="`) of [`MPD_URL_ATTRIBUTES`] starts in `text` (at its
/// name), and the name's length.
fn next_url_attribute(text: &str) -> Option<(usize, usize)> {
    MPD_URL_ATTRIBUTES
        .iter()
        .filter_map(|name| {
            text.find(&format!(" {name}=\""))
                .map(|at| (at + 1, name.len()))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_and_message(e: ApiError) -> String {
        match e {
            ApiError::InvalidSignature(m) => m,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn valid_expired_forged_and_other_video() {
        let sig = sign("s3cret", "vid1", 1000);
        assert!(verify("s3cret", "vid1", "1000", &sig, 999).is_ok());
        assert!(verify("s3cret", "vid1", "1000", &sig, 1000).is_ok());
        let expired = code_and_message(verify("s3cret", "vid1", "1000", &sig, 1001).unwrap_err());
        assert!(expired.contains("expired"), "{expired}");
        let other = code_and_message(verify("s3cret", "vid2", "1000", &sig, 0).unwrap_err());
        assert!(other.contains("not valid"), "{other}");
        let moved_exp = code_and_message(verify("s3cret", "vid1", "2000", &sig, 0).unwrap_err());
        assert!(moved_exp.contains("not valid"), "{moved_exp}");
        let rotated = code_and_message(verify("other", "vid1", "1000", &sig, 0).unwrap_err());
        assert!(rotated.contains("not valid"), "{rotated}");
        let junk = code_and_message(verify("s3cret", "vid1", "1000", "zz", 0).unwrap_err());
        assert!(junk.contains("not valid"), "{junk}");
        let bad_exp = code_and_message(verify("s3cret", "vid1", "soon", &sig, 0).unwrap_err());
        assert!(bad_exp.contains("malformed"), "{bad_exp}");
    }

    #[test]
    fn manifests_carry_the_signature_on_every_segment_url() {
        let mpd = r#"<MPD><BaseURL>../hls/</BaseURL><SegmentTemplate timescale="90000" initialization="360p/init.mp4" media="360p/seg_$Number%05d$.m4s" startNumber="0"/><SegmentURL media="a.m4s?x=1"/></MPD>"#;
        assert_eq!(
            sign_mpd(mpd, "exp=1&sig=ab"),
            r#"<MPD><BaseURL>../hls/</BaseURL><SegmentTemplate timescale="90000" initialization="360p/init.mp4?exp=1&amp;sig=ab" media="360p/seg_$Number%05d$.m4s?exp=1&amp;sig=ab" startNumber="0"/><SegmentURL media="a.m4s?x=1&amp;exp=1&amp;sig=ab"/></MPD>"#
        );
    }

    #[test]
    fn playlists_carry_the_signature_on_every_uri() {
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8\n";
        assert_eq!(
            sign_playlist(master, "exp=1&sig=ab"),
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8?exp=1&sig=ab\n"
        );
        let media =
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4.0,\nseg_00001.m4s\n\n#EXT-X-ENDLIST\n";
        assert_eq!(
            sign_playlist(media, "exp=1&sig=ab"),
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?exp=1&sig=ab\"\n#EXTINF:4.0,\nseg_00001.m4s?exp=1&sig=ab\n\n#EXT-X-ENDLIST\n"
        );
    }
}
