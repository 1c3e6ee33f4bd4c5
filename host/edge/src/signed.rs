//! Cache keys of signed playback URLs, and the signatures this edge has seen the origin accept.
//!
//! One signature (`exp` and `sig`, see the api's `signing` module) covers a whole video, and
//! every viewer holds a different one. Keying a segment by its whole URL would keep one copy
//! per viewer and make segments pushed ahead of any viewer (`EdgeControl.Push`) unreachable.
//! So media files (segments, init files, images: everything but playlists, whose bytes embed
//! the signature) are keyed by their URL without `exp` and `sig`, and served from the cache
//! only to a request whose signature the origin accepted for that video:
//! - learned from any `200` the origin gave to a URL carrying it (a player fetches the master
//!   playlist first, so a viewer's segments are hits without an extra round trip);
//! - or remembered by the cached object itself, when it was fetched with that very signature
//!   (so an edge restarted while the origin is down still serves what it holds on disk);
//! - else asked of the origin with a `HEAD` of the requested URL (`verify`).
//!
//! A verdict is kept until the URL's `exp`, and at most [`VERDICT_TTL`], so a rotated
//! playback secret stops opening cached objects within that time. A media URL without a
//! signature never reads the cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Longest time an accepted signature is trusted without asking the origin again.
pub(crate) const VERDICT_TTL: Duration = Duration::from_secs(300);

/// Most verdicts kept: beyond it expired ones are dropped, and if none has, all of them
/// (each costs one `HEAD` to learn again).
const MAX_VERDICTS: usize = 100_000;

/// The signature of a signed playback URL and the cache key it maps to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Signature {
    /// The path and query without `exp` and `sig`: a media object's cache key.
    pub key: String,
    /// `<video>/<exp>/<sig>`: the key of [`Verdicts`], and what an object fetched with
    /// this signature remembers.
    pub verdict: String,
    /// `exp`, unix seconds.
    pub exp: u64,
}

impl Signature {
    /// The signature of a request for `path` (a playback file of `video`) with `query`;
    /// `None` unless it carries both `exp` (unix seconds) and `sig`.
    pub fn of(path: &str, video: &str, query: Option<&str>) -> Option<Self> {
        let (mut exp, mut sig) = (None, None);
        let mut rest: Vec<&str> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("exp", value)) => exp = Some(value),
                Some(("sig", value)) => sig = Some(value),
                _ => rest.push(pair),
            }
        }
        let (exp, sig) = (exp?.parse::<u64>().ok()?, sig?);
        let key = if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", rest.join("&"))
        };
        Some(Self {
            key,
            verdict: format!("{video}/{exp}/{sig}"),
            exp,
        })
    }
}

/// Signatures the origin accepted, by `<video>/<exp>/<sig>`, each with when to forget it
/// (unix seconds).
#[derive(Debug, Default)]
pub(crate) struct Verdicts {
    accepted: Mutex<HashMap<String, u64>>,
}

impl Verdicts {
    /// Whether `signature` was accepted and is still trusted at `now` (unix seconds).
    pub fn accepts(&self, signature: &Signature, now: u64) -> bool {
        let accepted = self.accepted.lock().expect("verdicts lock");
        accepted
            .get(&signature.verdict)
            .is_some_and(|&until| now < until)
    }

    /// Records that the origin accepted `signature` at `now`.
    pub fn accept(&self, signature: &Signature, now: u64) {
        let until = signature.exp.min(now + VERDICT_TTL.as_secs());
        let mut accepted = self.accepted.lock().expect("verdicts lock");
        if accepted.len() >= MAX_VERDICTS {
            accepted.retain(|_, &mut until| now < until);
            if accepted.len() >= MAX_VERDICTS {
                accepted.clear();
            }
        }
        accepted.insert(signature.verdict.clone(), until);
    }

    /// Forgets every verdict: after a purge, the origin is asked again (a deleted video's
    /// signatures must not open objects pushed or cached since).
    pub fn clear(&self) {
        self.accepted.lock().expect("verdicts lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT: &str = "/v1/videos/v/hls/720p/seg_00001.m4s";

    fn signed(query: &str) -> Signature {
        Signature::of(SEGMENT, "v", Some(query)).expect("signed")
    }

    #[test]
    fn keys_drop_only_the_signature() {
        let plain = signed("exp=200&sig=ab");
        assert_eq!(plain.key, SEGMENT);
        assert_eq!((plain.verdict.as_str(), plain.exp), ("v/200/ab", 200));
        let other = signed("sig=cd&probe=1&exp=300");
        assert_eq!(other.key, format!("{SEGMENT}?probe=1"));
        assert_eq!(other.verdict, "v/300/cd");
        for query in [None, Some("exp=1"), Some("sig=ab"), Some("exp=x&sig=ab")] {
            assert_eq!(Signature::of(SEGMENT, "v", query), None, "{query:?}");
        }
    }

    #[test]
    fn verdicts_last_until_exp_or_the_ttl_and_a_clear() {
        let verdicts = Verdicts::default();
        let soon = signed("exp=1010&sig=ab");
        assert!(!verdicts.accepts(&soon, 1000));
        verdicts.accept(&soon, 1000);
        assert!(verdicts.accepts(&soon, 1009));
        assert!(!verdicts.accepts(&soon, 1010), "past exp");
        let late = signed("exp=99999&sig=ab");
        verdicts.accept(&late, 1000);
        assert!(verdicts.accepts(&late, 1000 + VERDICT_TTL.as_secs() - 1));
        assert!(!verdicts.accepts(&late, 1000 + VERDICT_TTL.as_secs()));
        assert!(
            !verdicts.accepts(&signed("exp=99999&sig=cd"), 1000),
            "another signature"
        );
        verdicts.clear();
        assert!(!verdicts.accepts(&late, 1001));
    }
}
