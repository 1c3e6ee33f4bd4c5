//! The edge-token decisions, free of any WIT type so they can be unit-tested natively.
//!
//! A token is `<exp>.<sig>`: `exp` is the last second it is valid (seconds since the Unix epoch,
//! decimal) and `sig` the lower-case hex HMAC-SHA256, keyed with the `secret` setting, of
//! `<scope>\n<exp>`. The scope is the request path up to and including the first occurrence of
//! the `scope_marker` setting (`/hls/` by default), or the whole path when the marker is absent:
//! one token for `/v1/videos/abc/hls/` opens that video's master playlist, media playlists and
//! segments, and nothing of any other video. The newline keeps scope and expiry apart.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The query parameter carrying the token.
pub const PARAM: &str = "token";

/// The plugin's settings, parsed once per call from the `config` import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// HMAC key (`secret`); required.
    pub secret: Vec<u8>,
    /// Path prefixes served without a token (`public_prefixes`, comma-separated).
    pub public_prefixes: Vec<String>,
    /// Where a token's scope ends (`scope_marker`); `None` signs whole paths.
    pub scope_marker: Option<String>,
    /// Headers added to every response (`add_headers`, `Name: value; Name: value`), names
    /// lower-cased.
    pub add_headers: Vec<(String, String)>,
}

impl Settings {
    /// Builds the settings from a key lookup (the `config` import's `get`). A missing secret or
    /// a malformed header list is an error naming the key.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let value = |key: &str| {
            get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let secret = value("secret")
            .ok_or("secret is not set; every request would be refused")?
            .into_bytes();
        let public_prefixes = value("public_prefixes")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut add_headers = Vec::new();
        for entry in value("add_headers").iter().flat_map(|v| v.split(';')) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (name, value) = entry
                .split_once(':')
                .filter(|(n, _)| !n.trim().is_empty())
                .ok_or_else(|| format!("add_headers entry {entry:?} is not `Name: value`"))?;
            add_headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        Ok(Self {
            secret,
            public_prefixes,
            scope_marker: value("scope_marker"),
            add_headers,
        })
    }
}

/// Why a request was refused; the Display is the message of the 403 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No `token` parameter.
    Missing,
    /// Not `<exp>.<64 hex digits>`.
    Malformed,
    /// The signature does not match this path's scope and expiry (forged, or for another
    /// video).
    Invalid,
    /// `exp` is in the past.
    Expired,
    /// A `.` or `..` segment (plain or percent-encoded): refused rather than guessing how the
    /// server would resolve it, since it could leave the token's scope.
    DotSegment,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Denial::Missing => "a token is required",
            Denial::Malformed => "the token is malformed",
            Denial::Invalid => "the token is not valid for this path",
            Denial::Expired => "the token has expired",
            Denial::DotSegment => "the path has dot segments",
        })
    }
}

/// The part of `path` a token covers; see the module docs.
pub fn scope<'a>(settings: &Settings, path: &'a str) -> &'a str {
    match settings
        .scope_marker
        .as_deref()
        .and_then(|m| Some(m.len() + path.find(m)?))
    {
        Some(end) => &path[..end],
        None => path,
    }
}

fn mac(secret: &[u8], scope: &str, exp: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(scope.as_bytes());
    mac.update(b"\n");
    mac.update(exp.as_bytes());
    mac
}

/// The token for `path` valid until `exp` inclusive: what the API hands out in playback URLs.
pub fn token(settings: &Settings, path: &str, exp: u64) -> String {
    let exp = exp.to_string();
    let sig = mac(&settings.secret, scope(settings, path), &exp).finalize();
    let hex: String = sig
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{exp}.{hex}")
}

/// The value of the `token` parameter in `query`, if any.
pub fn token_of(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(PARAM)?.strip_prefix('='))
}

/// Whether `path` is served without a token. A path with dot segments never is.
pub fn is_public(settings: &Settings, path: &str) -> bool {
    !has_dot_segments(path)
        && settings
            .public_prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()))
}

fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    })
}

/// Checks the request's token at time `now` (seconds since the Unix epoch).
/// Signatures already checked in this instance: `<scope>\n<token>` of every token whose HMAC
/// verified. A viewer sends one token with every segment of a video, so with reused instances
/// (`instances = "reused"`) each token's HMAC is computed once per instance, not per request.
/// Sound because an instance keeps one set of settings (one secret) for its whole life, and
/// the key holds the signature itself: a forged token never matches a verified one. Expiry is
/// checked on every request.
#[derive(Debug, Default)]
pub struct Verified {
    tokens: std::collections::HashSet<String>,
}

impl Verified {
    /// Tokens remembered at most; the set starts over when full (a rare, cheap reset).
    pub const CAPACITY: usize = 4096;

    fn contains(&self, key: &str) -> bool {
        self.tokens.contains(key)
    }

    fn insert(&mut self, key: String) {
        if self.tokens.len() >= Self::CAPACITY {
            self.tokens.clear();
        }
        self.tokens.insert(key);
    }
}

/// [`check_with`] without memory of earlier checks.
pub fn check(settings: &Settings, path: &str, query: Option<&str>, now: u64) -> Result<(), Denial> {
    check_with(settings, path, query, now, &mut Verified::default())
}

/// Whether a request for `path` with `query` may pass at `now`: public, or carrying an
/// unexpired token signed for its scope. Signatures in `verified` are not computed again.
pub fn check_with(
    settings: &Settings,
    path: &str,
    query: Option<&str>,
    now: u64,
    verified: &mut Verified,
) -> Result<(), Denial> {
    if has_dot_segments(path) {
        return Err(Denial::DotSegment);
    }
    if is_public(settings, path) {
        return Ok(());
    }
    let token = token_of(query).ok_or(Denial::Missing)?;
    let (exp, sig) = token.split_once('.').ok_or(Denial::Malformed)?;
    let exp_ok = !exp.is_empty() && exp.len() <= 20 && exp.bytes().all(|b| b.is_ascii_digit());
    let expires: u64 = exp_ok
        .then(|| exp.parse().ok())
        .flatten()
        .ok_or(Denial::Malformed)?;
    let scope = scope(settings, path);
    let key = format!("{scope}\n{token}");
    if !verified.contains(&key) {
        let sig = decode_hex(sig)
            .filter(|s| s.len() == 32)
            .ok_or(Denial::Malformed)?;
        // Constant-time comparison.
        mac(&settings.secret, scope, exp)
            .verify_slice(&sig)
            .map_err(|_| Denial::Invalid)?;
        verified.insert(key);
    }
    if expires < now {
        return Err(Denial::Expired);
    }
    Ok(())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The 403 answer's body, in the host's error shape.
pub fn forbidden_body(denial: Denial) -> Vec<u8> {
    // The messages are fixed ASCII without quotes or backslashes, so no escaping is needed.
    format!("{{\"error\":{{\"code\":\"forbidden\",\"message\":\"{denial}\"}}}}").into_bytes()
}

/// Sets each configured header, replacing any of the same name.
pub fn add_headers(settings: &Settings, headers: &mut Vec<(String, String)>) {
    for (name, value) in &settings.add_headers {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
}

/// Whether a request path names an HLS playlist.
pub fn is_playlist(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".m3u8")
}

/// Appends `token=<token>` to every URI of an HLS playlist: each URI line (segments, media
/// playlists) and each `URI="..."` attribute of a tag (keys, maps, media, i-frame playlists).
/// Line endings and everything else stay as they are.
pub fn rewrite_playlist(text: &str, token: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        if body.trim().is_empty() {
            out.push_str(line);
        } else if body.starts_with('#') {
            out.push_str(&rewrite_uri_attributes(body, token));
            out.push_str(ending);
        } else {
            out.push_str(&with_token(body.trim(), token));
            out.push_str(ending);
        }
    }
    out
}

fn rewrite_uri_attributes(tag: &str, token: &str) -> String {
    const ATTR: &str = "URI=\"";
    let mut out = String::with_capacity(tag.len());
    let mut rest = tag;
    while let Some(at) = rest.find(ATTR) {
        let start = at + ATTR.len();
        let Some(len) = rest[start..].find('"') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&with_token(&rest[start..start + len], token));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

fn with_token(uri: &str, token: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{PARAM}={token}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings() -> Settings {
        let map: BTreeMap<&str, &str> = [
            ("secret", "s3cret"),
            ("public_prefixes", "/healthz, /public/"),
            ("scope_marker", "/hls/"),
            ("add_headers", "X-Served-By: mediahost; X-Foo: bar:baz;"),
        ]
        .into();
        Settings::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap()
    }

    const MASTER: &str = "/v1/videos/abc/hls/master.m3u8";
    const NOW: u64 = 1_700_000_000;

    fn query(token: &str) -> Option<String> {
        Some(format!("a=1&token={token}"))
    }

    #[test]
    fn verified_tokens_skip_the_mac_but_not_the_checks() {
        let s = settings();
        let mut verified = Verified::default();
        let good = token(&s, MASTER, NOW + 60);
        let check = |path: &str, token: &str, now: u64, verified: &mut Verified| {
            check_with(&s, path, query(token).as_deref(), now, verified)
        };
        assert_eq!(check(MASTER, &good, NOW, &mut verified), Ok(()));
        assert_eq!(verified.tokens.len(), 1);
        let segment = "/v1/videos/abc/hls/720p/seg_00001.m4s";
        assert_eq!(
            check(segment, &good, NOW, &mut verified),
            Ok(()),
            "same scope"
        );
        assert_eq!(verified.tokens.len(), 1, "one entry per scope and token");
        // A remembered token still expires, and never opens another video.
        assert_eq!(
            check(MASTER, &good, NOW + 61, &mut verified),
            Err(Denial::Expired)
        );
        let other = "/v1/videos/xyz/hls/master.m3u8";
        assert_eq!(
            check(other, &good, NOW, &mut verified),
            Err(Denial::Invalid)
        );
        // A forged signature with a verified token's expiry is checked, and refused.
        let forged = format!("{}.{}", NOW + 60, "0".repeat(64));
        assert_eq!(
            check(MASTER, &forged, NOW, &mut verified),
            Err(Denial::Invalid)
        );
        for n in 0..Verified::CAPACITY + 1 {
            let t = token(&s, MASTER, NOW + 100 + n as u64);
            assert_eq!(check(MASTER, &t, NOW, &mut verified), Ok(()));
        }
        assert!(verified.tokens.len() <= Verified::CAPACITY, "bounded");
    }

    #[test]
    fn parses_settings() {
        let s = settings();
        assert_eq!(s.secret, b"s3cret");
        assert_eq!(s.public_prefixes, ["/healthz", "/public/"]);
        assert_eq!(
            s.add_headers,
            [
                ("x-served-by".to_owned(), "mediahost".to_owned()),
                ("x-foo".to_owned(), "bar:baz".to_owned())
            ]
        );
        let err = Settings::from_lookup(|_| None).unwrap_err();
        assert!(err.contains("secret"), "{err}");
        let err = Settings::from_lookup(|k| {
            Some(if k == "add_headers" { "oops" } else { "x" }.to_owned())
        })
        .unwrap_err();
        assert!(err.contains("add_headers"), "{err}");
    }

    #[test]
    fn a_token_opens_its_videos_hls_tree_until_it_expires() {
        let s = settings();
        let t = token(&s, MASTER, NOW + 60);
        assert_eq!(scope(&s, MASTER), "/v1/videos/abc/hls/");
        let q = query(&t);
        assert_eq!(check(&s, MASTER, q.as_deref(), NOW), Ok(()));
        assert_eq!(
            check(
                &s,
                "/v1/videos/abc/hls/720p/seg_00001.m4s",
                q.as_deref(),
                NOW + 60
            ),
            Ok(())
        );
        assert_eq!(
            check(&s, MASTER, q.as_deref(), NOW + 61),
            Err(Denial::Expired)
        );
        assert_eq!(
            check(&s, "/v1/videos/xyz/hls/master.m3u8", q.as_deref(), NOW),
            Err(Denial::Invalid)
        );
        // Without the marker, the whole path is signed.
        assert_eq!(
            check(&s, "/v1/videos/abc/download", q.as_deref(), NOW),
            Err(Denial::Invalid)
        );
        let other_key = Settings {
            secret: b"other".to_vec(),
            ..settings()
        };
        assert_eq!(
            check(&other_key, MASTER, q.as_deref(), NOW),
            Err(Denial::Invalid)
        );
    }

    #[test]
    fn refuses_missing_malformed_and_tampered_tokens() {
        let s = settings();
        let t = token(&s, MASTER, NOW + 60);
        assert_eq!(check(&s, MASTER, None, NOW), Err(Denial::Missing));
        assert_eq!(
            check(&s, MASTER, Some("tokens=1"), NOW),
            Err(Denial::Missing)
        );
        for bad in ["", "123", "abc.def", "123.zz", ".00", "123.00"] {
            assert_eq!(
                check(&s, MASTER, query(bad).as_deref(), NOW),
                Err(Denial::Malformed),
                "{bad}"
            );
        }
        // Moving the expiry breaks the signature.
        let (_, sig) = t.split_once('.').unwrap();
        let later = format!("{}.{sig}", NOW + 3600);
        assert_eq!(
            check(&s, MASTER, query(&later).as_deref(), NOW),
            Err(Denial::Invalid)
        );
    }

    #[test]
    fn public_prefixes_skip_the_check_but_dot_segments_never_do() {
        let s = settings();
        assert_eq!(check(&s, "/healthz", None, NOW), Ok(()));
        assert_eq!(check(&s, "/public/logo.png", None, NOW), Ok(()));
        assert_eq!(
            check(&s, "/public/../v1/videos/abc/hls/master.m3u8", None, NOW),
            Err(Denial::DotSegment)
        );
        let t = token(&s, MASTER, NOW + 60);
        let escape = "/v1/videos/abc/hls/%2E%2E/%2e%2e/xyz/hls/master.m3u8";
        assert_eq!(
            check(&s, escape, query(&t).as_deref(), NOW),
            Err(Denial::DotSegment)
        );
    }

    #[test]
    fn forbidden_body_is_the_error_shape() {
        assert_eq!(
            String::from_utf8(forbidden_body(Denial::Expired)).unwrap(),
            r#"{"error":{"code":"forbidden","message":"the token has expired"}}"#
        );
    }

    #[test]
    fn adds_headers_replacing_same_names() {
        let mut h = vec![
            ("X-Foo".to_owned(), "old".to_owned()),
            ("etag".to_owned(), "1".to_owned()),
        ];
        add_headers(&settings(), &mut h);
        let names: Vec<&str> = h
            .iter()
            .map(|(n, v)| if n == "x-foo" { v.as_str() } else { n.as_str() })
            .collect();
        assert_eq!(names, ["etag", "x-served-by", "bar:baz"]);
    }

    #[test]
    fn rewrites_every_playlist_uri() {
        let master = "#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\r\n\
                      #EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\r\n720p/index.m3u8\r\n\r\n\
                      #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"720p/iframes.m3u8?x=1\"\r\n";
        assert_eq!(
            rewrite_playlist(master, "9.ab"),
            "#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8?token=9.ab\"\r\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\r\n720p/index.m3u8?token=9.ab\r\n\r\n\
             #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"720p/iframes.m3u8?x=1&token=9.ab\"\r\n"
        );
        let media =
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4.0,\nseg_00001.m4s\n#EXT-X-ENDLIST";
        assert_eq!(
            rewrite_playlist(media, "T"),
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?token=T\"\n#EXTINF:4.0,\nseg_00001.m4s?token=T\n#EXT-X-ENDLIST"
        );
        assert!(is_playlist("/a/MASTER.M3U8"));
        assert!(!is_playlist("/a/seg.ts"));
    }
}
