//! The router's decisions, free of any WIT type so they can be unit-tested natively.

/// A tenant's service tier, which caps the ladder's top rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Up to 720p.
    Free,
    /// Up to 1080p.
    Pro,
}

impl Tier {
    /// The tallest rung (short side, in pixels) the tier may get.
    pub fn max_rung(self) -> u32 {
        match self {
            Tier::Free => 720,
            Tier::Pro => 1080,
        }
    }

    fn parse(key: &str, value: &str) -> Result<Self, String> {
        match value.trim() {
            "free" => Ok(Tier::Free),
            "pro" => Ok(Tier::Pro),
            other => Err(format!("{key} {other:?} is neither \"free\" nor \"pro\"")),
        }
    }
}

/// The plugin's settings for one call, read through the `config` import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The calling tenant's tier: `tier.<tenant-id>`, else `default_tier`, else free.
    pub tier: Tier,
    /// `storage_class`, default `standard`.
    pub storage_class: String,
    /// `edge_group`, default `default`.
    pub edge_group: String,
}

impl Settings {
    /// Reads the settings for `tenant` from a key lookup (the `config` import's `get`). Only
    /// this tenant's `tier.<tenant>` key is consulted, so one tenant's tier never applies to
    /// another. A malformed tier is an error naming the key: guessing would silently change
    /// what a tenant pays for.
    pub fn for_tenant(tenant: &str, get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let value = |key: &str| {
            get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let own_key = format!("tier.{tenant}");
        let tier = match (value(&own_key), value("default_tier")) {
            (Some(v), _) => Tier::parse(&own_key, &v)?,
            (None, Some(v)) => Tier::parse("default_tier", &v)?,
            (None, None) => Tier::Free,
        };
        Ok(Self {
            tier,
            storage_class: value("storage_class").unwrap_or_else(|| "standard".to_owned()),
            edge_group: value("edge_group").unwrap_or_else(|| "default".to_owned()),
        })
    }
}

/// The parts of the source the plan depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Source {
    /// Displayed size of the first video stream (rotation applied), if there is one.
    pub picture: Option<(u32, u32)>,
    /// Duration in seconds, if known.
    pub duration_s: Option<f64>,
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    /// `<short side>p`, e.g. `720p`.
    pub name: String,
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
    /// Audio bitrate in kbit/s.
    pub audio_kbps: u32,
}

/// The plan: the WIT `route-plan` in plain types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Best first; empty means the host's default ladder.
    pub ladder: Vec<Rung>,
    /// Job priority.
    pub priority: i32,
    /// Storage class.
    pub storage_class: String,
    /// Edge group.
    pub edge_group: String,
}

/// The full ladder: short side in pixels, video and audio kbit/s.
pub const LADDER: [(u32, u32, u32); 4] = [
    (1080, 5000, 128),
    (720, 2800, 128),
    (480, 1400, 96),
    (360, 800, 96),
];

/// Plans a video.
pub fn plan(settings: &Settings, source: &Source) -> Plan {
    Plan {
        ladder: source
            .picture
            .map(|(w, h)| ladder(settings.tier, w, h))
            .unwrap_or_default(),
        priority: priority(source.duration_s),
        storage_class: settings.storage_class.clone(),
        edge_group: settings.edge_group.clone(),
    }
}

/// The rungs for a displayed `width`x`height` source: every rung of [`LADDER`] the tier allows
/// and the source reaches (never upscaling), sized along the picture's short side with the
/// source's aspect ratio (so a portrait source gets portrait rungs). A source below the lowest
/// rung gets one rung at its own size, at the lowest rung's bitrates.
pub fn ladder(tier: Tier, width: u32, height: u32) -> Vec<Rung> {
    if width == 0 || height == 0 {
        return Vec::new();
    }
    let short = width.min(height);
    let mut rungs: Vec<Rung> = LADDER
        .iter()
        .filter(|(side, _, _)| *side <= tier.max_rung() && *side <= short)
        .map(|&(side, video_kbps, audio_kbps)| rung(side, width, height, video_kbps, audio_kbps))
        .collect();
    if rungs.is_empty() {
        let (_, video_kbps, audio_kbps) = LADDER[LADDER.len() - 1];
        rungs.push(rung(even(short), width, height, video_kbps, audio_kbps));
    }
    rungs
}

fn rung(side: u32, width: u32, height: u32, video_kbps: u32, audio_kbps: u32) -> Rung {
    // The long side keeps the source's aspect ratio, rounded to the nearest even number.
    let scaled = |long: u32, short: u32| even_round(u64::from(side) * u64::from(long), short);
    let (w, h) = if width >= height {
        (scaled(width, height), side)
    } else {
        (side, scaled(height, width))
    };
    Rung {
        name: format!("{side}p"),
        width: w,
        height: h,
        video_kbps,
        audio_kbps,
    }
}

/// `num / den` rounded to the nearest even integer (at least 2).
fn even_round(num: u64, den: u32) -> u32 {
    let den = u64::from(den);
    let halves = (num + den) / (2 * den);
    u32::try_from(halves * 2).unwrap_or(u32::MAX - 1).max(2)
}

/// `v` rounded down to an even number (at least 2).
fn even(v: u32) -> u32 {
    (v & !1).max(2)
}

/// Short clips first: under a minute 10, under ten minutes 5, else (or unknown) 0.
pub fn priority(duration_s: Option<f64>) -> i32 {
    match duration_s {
        Some(d) if d < 60.0 => 10,
        Some(d) if d < 600.0 => 5,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(tenant: &str, pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::for_tenant(tenant, |k| map.get(k).cloned())
    }

    fn sizes(rungs: &[Rung]) -> Vec<(&str, u32, u32, u32)> {
        rungs
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.height, r.video_kbps))
            .collect()
    }

    #[test]
    fn tiers_come_from_the_tenants_own_key_or_the_default() {
        let cfg = [("tier.acme", "pro"), ("default_tier", "free")];
        assert_eq!(settings("acme", &cfg).unwrap().tier, Tier::Pro);
        assert_eq!(settings("globex", &cfg).unwrap().tier, Tier::Free);
        // A tenant whose id starts like another's does not share its key.
        assert_eq!(settings("acme2", &cfg).unwrap().tier, Tier::Free);
        assert_eq!(settings("x", &[]).unwrap().tier, Tier::Free);
        assert_eq!(
            settings("x", &[("default_tier", "pro")]).unwrap().tier,
            Tier::Pro
        );
        let err = settings("acme", &[("tier.acme", "gold")]).unwrap_err();
        assert!(err.contains("tier.acme") && err.contains("gold"), "{err}");
        let s = settings("x", &[]).unwrap();
        assert_eq!(
            (s.storage_class.as_str(), s.edge_group.as_str()),
            ("standard", "default")
        );
    }

    #[test]
    fn ladders_by_tier_and_source() {
        assert_eq!(
            sizes(&ladder(Tier::Pro, 1920, 1080)),
            [
                ("1080p", 1920, 1080, 5000),
                ("720p", 1280, 720, 2800),
                ("480p", 854, 480, 1400),
                ("360p", 640, 360, 800)
            ]
        );
        assert_eq!(
            sizes(&ladder(Tier::Free, 1920, 1080)),
            [
                ("720p", 1280, 720, 2800),
                ("480p", 854, 480, 1400),
                ("360p", 640, 360, 800)
            ]
        );
        assert_eq!(
            sizes(&ladder(Tier::Pro, 854, 480)),
            [("480p", 854, 480, 1400), ("360p", 640, 360, 800)]
        );
        // 4:3 and portrait sources keep their shape.
        assert_eq!(
            sizes(&ladder(Tier::Free, 640, 480))[1],
            ("360p", 480, 360, 800)
        );
        assert_eq!(
            sizes(&ladder(Tier::Pro, 1080, 1920))[0..2],
            [("1080p", 1080, 1920, 5000), ("720p", 720, 1280, 2800)]
        );
        // Below the lowest rung: one rung at the source's own size.
        assert_eq!(
            sizes(&ladder(Tier::Pro, 320, 240)),
            [("240p", 320, 240, 800)]
        );
        assert!(ladder(Tier::Pro, 0, 0).is_empty());
    }

    #[test]
    fn priorities_favour_short_clips() {
        assert_eq!(priority(Some(12.0)), 10);
        assert_eq!(priority(Some(60.0)), 5);
        assert_eq!(priority(Some(599.9)), 5);
        assert_eq!(priority(Some(3600.0)), 0);
        assert_eq!(priority(None), 0);
    }

    #[test]
    fn no_picture_means_the_default_ladder() {
        let s = settings("x", &[("storage_class", "archive")]).unwrap();
        let p = plan(
            &s,
            &Source {
                picture: None,
                duration_s: Some(30.0),
            },
        );
        assert!(p.ladder.is_empty());
        assert_eq!((p.priority, p.storage_class.as_str()), (10, "archive"));
    }
}
