//! HTTP range and conditional requests (RFC 9110 §13–14) for playback files: shared by the
//! origin (api) and the edge, so both answer `Range`, `If-None-Match` and `If-Modified-Since`
//! alike.

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to send for a `Range` header against an object of a known size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// The whole object (no `Range`, a form we do not serve such as several ranges, or a
    /// failed `If-Range`): 200.
    Full,
    /// One satisfiable byte range: 206.
    Partial(Range<u64>),
    /// No byte of the range exists: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header value for an object of `size` bytes. Malformed values and
/// units other than bytes are ignored (the whole object is sent), as the RFC allows; so are
/// multi-range requests, which players do not make for segments.
pub fn parse_range(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ranged::Full;
    };
    if spec.contains(',') || size == 0 {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // `bytes=-N`: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => Ranged::Unsatisfiable,
            Some(n) => Ranged::Partial(size.saturating_sub(n)..size),
            None => Ranged::Full,
        },
        // `bytes=A-`: from A to the end.
        (false, true) => match number(first) {
            Some(a) if a >= size => Ranged::Unsatisfiable,
            Some(a) => Ranged::Partial(a..size),
            None => Ranged::Full,
        },
        // `bytes=A-B`: inclusive, B clamped to the end.
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => Ranged::Full,
            (Some(a), Some(_)) if a >= size => Ranged::Unsatisfiable,
            (Some(a), Some(b)) => Ranged::Partial(a..b.min(size - 1) + 1),
            _ => Ranged::Full,
        },
        (true, true) => Ranged::Full,
    }
}

/// A strong entity tag, quoted, from the store's tag (some stores quote theirs, some do not).
pub fn entity_tag(store_tag: &str) -> String {
    format!("\"{}\"", store_tag.trim_matches('"'))
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as for GET) or is `*`.
pub fn none_match(header: &str, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    header.trim() == "*" || header.split(',').any(|t| opaque(t) == opaque(etag))
}

/// HTTP dates have one-second resolution; comparisons must drop the sub-second part.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Whether `If-Modified-Since` says the client's copy is current.
pub fn not_modified_since(header: &str, last_modified: SystemTime) -> bool {
    httpdate::parse_http_date(header.trim())
        .map(|since| whole_seconds(last_modified) <= since)
        .unwrap_or(false)
}

/// Whether an `If-Range` value still describes the object, so its `Range` may be honoured.
pub fn if_range_holds(header: &str, etag: &str, last_modified: SystemTime) -> bool {
    let header = header.trim();
    if header.starts_with('"') {
        return header == etag;
    }
    httpdate::parse_http_date(header)
        .map(|date| date == whole_seconds(last_modified))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        let r = |h: &str| parse_range(Some(h), 100);
        assert_eq!(r("bytes=0-0"), Ranged::Partial(0..1));
        assert_eq!(r("bytes=99-99"), Ranged::Partial(99..100));
        assert_eq!(r("bytes=10-"), Ranged::Partial(10..100));
        assert_eq!(r("bytes=90-1000"), Ranged::Partial(90..100));
        assert_eq!(r("bytes=-10"), Ranged::Partial(90..100));
        assert_eq!(r("bytes=-1000"), Ranged::Partial(0..100));
        assert_eq!(r("bytes=100-"), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=100-200"), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Ranged::Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=-",
            "0-1",
        ] {
            assert_eq!(r(ignored), Ranged::Full, "{ignored}");
        }
        assert_eq!(parse_range(None, 100), Ranged::Full);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Ranged::Full);
    }

    #[test]
    fn conditionals() {
        let etag = entity_tag("abc");
        assert_eq!(etag, "\"abc\"");
        assert_eq!(entity_tag("\"abc\""), etag);
        assert!(none_match("\"abc\"", &etag));
        assert!(none_match("\"x\", W/\"abc\"", &etag));
        assert!(none_match("*", &etag));
        assert!(!none_match("\"abd\"", &etag));

        let modified = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let date = httpdate::fmt_http_date(modified);
        assert!(not_modified_since(&date, modified));
        let earlier = httpdate::fmt_http_date(modified - Duration::from_secs(5));
        assert!(!not_modified_since(&earlier, modified));
        assert!(!not_modified_since("yesterday", modified));

        assert!(if_range_holds(&etag, &etag, modified));
        assert!(!if_range_holds("\"old\"", &etag, modified));
        assert!(if_range_holds(&date, &etag, modified));
        assert!(!if_range_holds(&earlier, &etag, modified));
    }
}
