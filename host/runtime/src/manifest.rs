//! `plugin.toml`: what a plugin folder declares about its component.
//!
//! ```toml
//! name = "validator"
//! version = "0.1.0"
//! world = "validator"
//! component = "validator.wasm"   # relative to the manifest's folder
//! instances = "fresh"             # or "reused": see `Instances`
//!
//! [limits]                        # each one optional; see `Limits::for_world`
//! timeout_ms = 100
//! fuel = 10_000_000
//! memory_bytes = 16_777_216
//!
//! [config]                        # defaults, overlaid by the operator's settings
//! max_size = "10737418240"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The file every plugin folder holds.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// A parsed `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawManifest")]
pub struct Manifest {
    /// Unique among the loaded plugins; operators bind and configure plugins by it.
    pub name: String,
    /// The plugin's own version, shown in errors and the admin API.
    pub version: String,
    /// The WIT world the component implements.
    pub world: World,
    /// Path of the component, relative to the manifest's folder.
    pub component: PathBuf,
    /// Per-call resource limits; those the file leaves out come from [`Limits::for_world`].
    pub limits: Limits,
    /// Whether calls may run in an instance an earlier call of the same tenant used.
    pub instances: Instances,
    /// Default settings, returned by the `config` import unless the operator overrides them.
    /// Scalars are accepted and kept as their text (`max_size = 1000` is `"1000"`).
    pub config: BTreeMap<String, String>,
}

/// `plugin.toml` as written: the limits' defaults depend on the world, so they are filled in
/// after the whole file is read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    version: String,
    world: World,
    component: PathBuf,
    #[serde(default)]
    instances: Instances,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default, deserialize_with = "scalar_map")]
    config: BTreeMap<String, String>,
}

/// `[limits]` as written; an absent key takes the world's default.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    timeout_ms: Option<u64>,
    fuel: Option<u64>,
    memory_bytes: Option<u64>,
}

impl From<RawManifest> for Manifest {
    fn from(raw: RawManifest) -> Self {
        let defaults = Limits::for_world(raw.world);
        let limits = Limits {
            timeout_ms: raw.limits.timeout_ms.unwrap_or(defaults.timeout_ms),
            fuel: raw.limits.fuel.unwrap_or(defaults.fuel),
            memory_bytes: raw.limits.memory_bytes.unwrap_or(defaults.memory_bytes),
        };
        Self {
            name: raw.name,
            version: raw.version,
            world: raw.world,
            component: raw.component,
            instances: raw.instances,
            limits,
            config: raw.config,
        }
    }
}

pub use mediahost_core::World;

/// `instances`: what a call runs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instances {
    /// A fresh instance for every call (the default): nothing a call leaves in memory is seen
    /// by the next.
    #[default]
    Fresh,
    /// An instance kept from an earlier successful call of the same tenant, with the same
    /// settings and limits, when one is idle (a fresh one otherwise). For plugins on hot paths
    /// (edge transforms) whose author keeps no per-request state in globals, or only state
    /// that may outlive a request (a parsed key, a cache). Each call still gets its own full
    /// limits; an instance is dropped after any failure.
    Reused,
}

/// Limits applied to every call of a plugin, each in a fresh instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call, enforced by the engine's epoch deadline.
    pub timeout_ms: u64,
    /// Fuel (roughly, wasm instructions) for one call including instantiation.
    pub fuel: u64,
    /// Cap on the instance's linear memory.
    pub memory_bytes: u64,
}

impl Limits {
    /// The limits of a plugin of `world` whose manifest leaves them out. Every world gets the
    /// same fuel and memory; the wall-clock budget follows where the call sits: 50 ms for the
    /// worlds called once per upload or video (a runaway plugin cannot stall it for long), 10 ms
    /// for `edge-transform`, which runs on every playback request.
    pub fn for_world(world: World) -> Self {
        let timeout_ms = match world {
            World::Validator | World::MetadataExtractor | World::Router => 50,
            World::EdgeTransform => 10,
        };
        Self {
            timeout_ms,
            fuel: 1_000_000_000,
            memory_bytes: 64 << 20,
        }
    }
}

impl Default for Limits {
    /// The validator world's defaults; see [`Limits::for_world`].
    fn default() -> Self {
        Self::for_world(World::Validator)
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {MANIFEST_FILE}: {0}")]
pub struct ManifestError(String);

impl Manifest {
    /// Parses and checks the text of a `plugin.toml`.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError(e.to_string()))?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), ManifestError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            // Names appear in config keys, metrics labels and URLs, so keep them plain.
            return Err(ManifestError(format!(
                "name {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'",
                self.name
            )));
        }
        if self.version.trim().is_empty() {
            return Err(ManifestError("version is empty".into()));
        }
        if self.component.as_os_str().is_empty() {
            return Err(ManifestError("component is empty".into()));
        }
        let Limits {
            timeout_ms,
            fuel,
            memory_bytes,
        } = self.limits;
        if timeout_ms == 0 || fuel == 0 || memory_bytes == 0 {
            return Err(ManifestError(
                "limits.timeout_ms, limits.fuel and limits.memory_bytes must be above 0".into(),
            ));
        }
        Ok(())
    }
}

/// Deserializes a table of scalars into strings, so manifest authors may write numbers and
/// booleans naturally while the `config` import stays string-typed.
fn scalar_map<'de, D>(de: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = BTreeMap::<String, toml::Value>::deserialize(de)?;
    raw.into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "config.{key} must be a string, number or boolean, not {}",
                        other.type_str()
                    )));
                }
            };
            Ok((key, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
        name = "validator"
        version = "0.1.0"
        world = "validator"
        component = "validator.wasm"

        [limits]
        timeout_ms = 100
        fuel = 10_000_000
        memory_bytes = 16_777_216

        [config]
        max_size = "10737418240"
        sniff = false
        retries = 3
    "#;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::parse(FULL).unwrap();
        assert_eq!(m.name, "validator");
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.world, World::Validator);
        assert_eq!(m.component, PathBuf::from("validator.wasm"));
        assert_eq!(
            m.limits,
            Limits {
                timeout_ms: 100,
                fuel: 10_000_000,
                memory_bytes: 16 << 20
            }
        );
        assert_eq!(m.config["max_size"], "10737418240");
        assert_eq!(m.config["sniff"], "false");
        assert_eq!(m.config["retries"], "3");
    }

    #[test]
    fn limits_and_config_are_optional() {
        let m = Manifest::parse(
            "name = \"a\"\nversion = \"1\"\nworld = \"validator\"\ncomponent = \"a.wasm\"",
        )
        .unwrap();
        assert_eq!(m.limits, Limits::default());
        assert!(m.config.is_empty());
        let partial = Manifest::parse(
            "name = \"a\"\nversion = \"1\"\nworld = \"validator\"\ncomponent = \"a.wasm\"\n\
             [limits]\ntimeout_ms = 5",
        )
        .unwrap();
        assert_eq!(partial.limits.timeout_ms, 5);
        assert_eq!(partial.limits.fuel, Limits::default().fuel);
    }

    #[test]
    fn parses_the_new_worlds_with_their_default_limits() {
        let cases = [
            ("metadata-extractor", World::MetadataExtractor, 50),
            ("router", World::Router, 50),
            ("edge-transform", World::EdgeTransform, 10),
            ("validator", World::Validator, 50),
        ];
        for (name, world, timeout_ms) in cases {
            let m = Manifest::parse(&format!(
                "name = \"p\"\nversion = \"1\"\nworld = \"{name}\"\ncomponent = \"p.wasm\""
            ))
            .unwrap();
            assert_eq!(m.world, world);
            assert_eq!(world.as_str(), name);
            assert_eq!(world.to_string(), name);
            assert_eq!(m.limits, Limits::for_world(world));
            assert_eq!(m.limits.timeout_ms, timeout_ms);
        }
        // A partial [limits] keeps the world's default for what it leaves out.
        let m = Manifest::parse(
            "name = \"p\"\nversion = \"1\"\nworld = \"edge-transform\"\ncomponent = \"p.wasm\"\n\
             [limits]\nfuel = 5",
        )
        .unwrap();
        assert_eq!((m.limits.timeout_ms, m.limits.fuel), (10, 5));
        // World names are the WIT spellings only.
        for wrong in ["metadata_extractor", "MetadataExtractor", "edge"] {
            let text = format!(
                "name = \"p\"\nversion = \"1\"\nworld = \"{wrong}\"\ncomponent = \"p.wasm\""
            );
            assert!(Manifest::parse(&text).is_err(), "{wrong}");
        }
    }

    #[test]
    fn the_reference_manifests_of_every_world_parse() {
        let cases = [
            ("validator", World::Validator),
            ("metadata-extractor", World::MetadataExtractor),
            ("router", World::Router),
            ("edge-token", World::EdgeTransform),
        ];
        for (folder, world) in cases {
            let path = format!(
                "{}/../../plugins/{folder}/plugin.toml",
                env!("CARGO_MANIFEST_DIR")
            );
            let m = Manifest::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!((m.name.as_str(), m.world), (folder, world), "{path}");
        }
    }

    #[test]
    fn refuses_bad_manifests() {
        let base = "version = \"1\"\nworld = \"validator\"\ncomponent = \"a.wasm\"\n";
        let cases = [
            (format!("name = \"Bad Name\"\n{base}"), "name"),
            (format!("name = \"a\"\n{base}[limits]\nfuel = 0"), "above 0"),
            (format!("name = \"a\"\n{base}[config]\nx = [1]"), "config.x"),
            (format!("name = \"a\"\n{base}colour = \"red\""), "colour"),
            (base.to_owned(), "name"),
            (
                "name = \"a\"\nversion = \"1\"\nworld = \"router-x\"\ncomponent = \"a.wasm\""
                    .to_owned(),
                "router-x",
            ),
        ];
        for (text, needle) in cases {
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn the_reference_validator_manifest_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../plugins/validator/plugin.toml"
        );
        let m = Manifest::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!((m.name.as_str(), m.world), ("validator", World::Validator));
        assert_eq!(m.config["sniff"], "false");
    }
}
