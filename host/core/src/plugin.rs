//! Plugin worlds and bindings: which plugins run for whom, in what order, with which settings,
//! limits and failure policy.
//!
//! A [`Binding`] names one loaded plugin and says how to call it. Bindings form an ordered chain
//! per [`World`] ([`Chains`]), in two scopes ([`BindingSet`]):
//!
//! - **global**, set by the operator in the config file (`[plugins.bindings]`);
//! - **per tenant**, set in the config file (`[plugins.tenants.<tenant>]`) or through
//!   `PUT /v1/tenants/{tenant}/bindings`.
//!
//! A tenant's effective chain for a world is the global chain followed by the tenant's own. The
//! operator's policy comes first because the router world keeps "first plan wins" and the
//! validator world "first rejection wins": a tenant can add checks, never bypass the operator's.
//! When no global bindings are configured at all, the global chain is every loaded plugin of the
//! world in name order with the world's default policy, which is how plugins ran before
//! bindings existed.
//!
//! These are plain data, shared by the config file, the metadata store, the API and the runtime
//! (which resolves plugin names and applies each binding per call).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The plugin worlds this host knows.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Upload validation (`check-upload`, `check-head`).
    Validator,
    /// Key/value metadata from the probed source (`extract`).
    MetadataExtractor,
    /// Rendition ladder, priority, storage class and edge group (`route`).
    Router,
    /// Request and response hooks at the edge (`on-request`, `on-response`).
    EdgeTransform,
}

impl World {
    /// Every world, in the order they appear in documents and answers.
    pub const ALL: [World; 4] = [
        World::Validator,
        World::MetadataExtractor,
        World::Router,
        World::EdgeTransform,
    ];

    /// The WIT name of the world.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Validator => "validator",
            World::MetadataExtractor => "metadata-extractor",
            World::Router => "router",
            World::EdgeTransform => "edge-transform",
        }
    }

    /// What a binding of this world does on failure unless it says otherwise: the worlds that
    /// guard something (uploads, playback requests) refuse, the advisory ones step aside.
    pub fn default_policy(self) -> FailurePolicy {
        match self {
            World::Validator | World::EdgeTransform => FailurePolicy::FailClosed,
            World::MetadataExtractor | World::Router => FailurePolicy::FailOpen,
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A world name that is not one of the WIT spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown plugin world {0:?}: expected validator, metadata-extractor, router or edge-transform"
)]
pub struct UnknownWorld(pub String);

impl FromStr for World {
    type Err = UnknownWorld;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        World::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| UnknownWorld(s.to_owned()))
    }
}

/// What happens when a bound plugin fails (traps, overruns a limit, answers with an error, or
/// is not loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// The failure propagates: an upload is refused, a transcode job fails for good.
    FailClosed,
    /// The plugin is skipped (logged and counted in `mediahost_plugin_skipped_total`) and the
    /// chain goes on without it.
    FailOpen,
}

impl FailurePolicy {
    /// `fail-closed` or `fail-open`, as config files and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "fail-closed",
            FailurePolicy::FailOpen => "fail-open",
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-binding overrides of the limits in the plugin's manifest; each one optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Wall-clock budget of one call, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Fuel (roughly, wasm instructions) for one call, instantiation included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Cap on the instance's linear memory, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

impl LimitOverrides {
    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One plugin in a chain, and how to call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Binding {
    /// The plugin's name (from its `plugin.toml`); it must be loaded and of the chain's world.
    pub plugin: String,
    /// Whether a failure of this plugin refuses (`fail-closed`) or is skipped (`fail-open`).
    pub on_failure: FailurePolicy,
    /// Settings overlaid on the manifest's `[config]` and `[plugins.config.<name>]`: what the
    /// `config` import returns during this binding's calls, and only theirs.
    pub config: BTreeMap<String, String>,
    /// Limit overrides for this binding's calls.
    #[serde(skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
    /// Keep the input of each failed call as a JSON file that `mediahost plugin run --input`
    /// replays (under `<data_dir>/plugin-failures/<plugin>/`), to debug a production failure
    /// on a developer's machine. Off by default: inputs may hold user metadata.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub record_failures: bool,
}

impl Binding {
    /// A binding of `plugin` with the world's default policy, no settings and no overrides:
    /// what the implicit global chain runs.
    pub fn implicit(plugin: &str, world: World) -> Self {
        Self {
            plugin: plugin.to_owned(),
            on_failure: world.default_policy(),
            config: BTreeMap::new(),
            limits: LimitOverrides::default(),
            record_failures: false,
        }
    }
}

/// A binding as written in a config file or a request body: `on_failure` may be left out, and
/// then takes the default of the world whose chain holds the binding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSpec {
    /// See [`Binding::plugin`].
    pub plugin: String,
    /// See [`Binding::on_failure`]; `None` means the world's default.
    #[serde(default)]
    pub on_failure: Option<FailurePolicy>,
    /// See [`Binding::config`]. Scalars are accepted and kept as their text.
    #[serde(default, deserialize_with = "scalar_map")]
    pub config: BTreeMap<String, String>,
    /// See [`Binding::limits`].
    #[serde(default)]
    pub limits: LimitOverrides,
    /// See [`Binding::record_failures`].
    #[serde(default)]
    pub record_failures: bool,
}

impl BindingSpec {
    /// The binding this spec describes in a chain of `world`.
    pub fn into_binding(self, world: World) -> Binding {
        Binding {
            plugin: self.plugin,
            on_failure: self.on_failure.unwrap_or(world.default_policy()),
            config: self.config,
            limits: self.limits,
            record_failures: self.record_failures,
        }
    }
}

/// Parses the JSON of one world's chain (a list of binding objects), filling in defaults.
pub fn parse_chain(world: World, json: &str) -> Result<Vec<Binding>, serde_json::Error> {
    let specs: Vec<BindingSpec> = serde_json::from_str(json)?;
    Ok(specs.into_iter().map(|s| s.into_binding(world)).collect())
}

/// One scope's ordered chain of bindings per world. Written in TOML as
/// `[[plugins.bindings.validator]]` tables and in JSON as `{"validator": [...], ...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(from = "RawChains")]
pub struct Chains {
    /// `validator` bindings, in call order.
    pub validator: Vec<Binding>,
    /// `metadata-extractor` bindings, in call order.
    #[serde(rename = "metadata-extractor")]
    pub metadata_extractor: Vec<Binding>,
    /// `router` bindings, in call order (the first plan wins).
    pub router: Vec<Binding>,
    /// `edge-transform` bindings, in call order.
    #[serde(rename = "edge-transform")]
    pub edge_transform: Vec<Binding>,
}

/// [`Chains`] as written: a world's default policy is filled in once the world is known.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawChains {
    #[serde(default)]
    validator: Vec<BindingSpec>,
    #[serde(default)]
    metadata_extractor: Vec<BindingSpec>,
    #[serde(default)]
    router: Vec<BindingSpec>,
    #[serde(default)]
    edge_transform: Vec<BindingSpec>,
}

impl From<RawChains> for Chains {
    fn from(raw: RawChains) -> Self {
        let resolve = |specs: Vec<BindingSpec>, world| {
            specs.into_iter().map(|s| s.into_binding(world)).collect()
        };
        Self {
            validator: resolve(raw.validator, World::Validator),
            metadata_extractor: resolve(raw.metadata_extractor, World::MetadataExtractor),
            router: resolve(raw.router, World::Router),
            edge_transform: resolve(raw.edge_transform, World::EdgeTransform),
        }
    }
}

impl Chains {
    /// The chain of `world`.
    pub fn get(&self, world: World) -> &[Binding] {
        match world {
            World::Validator => &self.validator,
            World::MetadataExtractor => &self.metadata_extractor,
            World::Router => &self.router,
            World::EdgeTransform => &self.edge_transform,
        }
    }

    /// The chain of `world`, to change.
    pub fn get_mut(&mut self, world: World) -> &mut Vec<Binding> {
        match world {
            World::Validator => &mut self.validator,
            World::MetadataExtractor => &mut self.metadata_extractor,
            World::Router => &mut self.router,
            World::EdgeTransform => &mut self.edge_transform,
        }
    }

    /// Every world with its chain, in [`World::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (World, &[Binding])> {
        World::ALL.into_iter().map(|w| (w, self.get(w)))
    }

    /// True when no world has a binding.
    pub fn is_empty(&self) -> bool {
        self.iter().all(|(_, chain)| chain.is_empty())
    }
}

/// Every binding a process knows: the global scope and each tenant's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingSet {
    /// The operator's chains; `None` when no global bindings are configured, which makes the
    /// global chain of each world every loaded plugin of it in name order.
    pub global: Option<Chains>,
    /// Each tenant's own chains, keyed by tenant id (the `tenant` plugins see in their input).
    pub tenants: BTreeMap<String, Chains>,
}

/// What one call of a world runs for one tenant: the global part, then the tenant's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveChain {
    /// The global bindings of the world; `None`: every loaded plugin of the world, in name
    /// order, with the world's default policy.
    pub global: Option<Vec<Binding>>,
    /// The tenant's own bindings of the world, run after the global ones.
    pub tenant: Vec<Binding>,
}

impl BindingSet {
    /// The chain a call of `world` runs for `tenant` (a tenant id; `None` for calls that belong
    /// to no tenant, which run the global chain only).
    pub fn effective(&self, tenant: Option<&str>, world: World) -> EffectiveChain {
        EffectiveChain {
            global: self.global.as_ref().map(|g| g.get(world).to_vec()),
            tenant: tenant
                .and_then(|t| self.tenants.get(t))
                .map(|c| c.get(world).to_vec())
                .unwrap_or_default(),
        }
    }
}

/// Deserializes a table of scalars into strings, so settings may be written as numbers and
/// booleans while the `config` import stays string-typed.
fn scalar_map<'de, D>(de: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(de)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(s) => s,
                Scalar::Integer(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, text)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_parse_and_print_their_wit_names() {
        for world in World::ALL {
            assert_eq!(world.as_str().parse::<World>(), Ok(world));
            assert_eq!(world.to_string(), world.as_str());
        }
        let err = "metadata_extractor".parse::<World>().unwrap_err();
        assert!(err.to_string().contains("metadata_extractor"), "{err}");
    }

    #[test]
    fn a_left_out_policy_takes_the_world_default() {
        let chains: Chains = serde_json::from_str(
            r#"{"validator": [{"plugin": "v"}],
                "metadata-extractor": [{"plugin": "m"}],
                "router": [{"plugin": "r", "on_failure": "fail-closed"}],
                "edge-transform": [{"plugin": "e"}]}"#,
        )
        .unwrap();
        assert_eq!(chains.validator[0].on_failure, FailurePolicy::FailClosed);
        assert_eq!(
            chains.metadata_extractor[0].on_failure,
            FailurePolicy::FailOpen
        );
        assert_eq!(chains.router[0].on_failure, FailurePolicy::FailClosed);
        assert_eq!(
            chains.edge_transform[0].on_failure,
            FailurePolicy::FailClosed
        );
    }

    #[test]
    fn bindings_round_trip_through_json_with_explicit_policies() {
        let chains: Chains = serde_json::from_str(
            r#"{"validator": [{"plugin": "v", "config": {"max_size": 100, "sniff": true},
                               "limits": {"timeout_ms": 20, "memory_mib": 8}}]}"#,
        )
        .unwrap();
        let b = &chains.validator[0];
        assert_eq!(b.config["max_size"], "100");
        assert_eq!(b.config["sniff"], "true");
        assert_eq!(b.limits.timeout_ms, Some(20));
        assert_eq!(b.limits.fuel, None);
        let json = serde_json::to_value(&chains).unwrap();
        assert_eq!(json["validator"][0]["on_failure"], "fail-closed");
        assert_eq!(json["router"], serde_json::json!([]));
        let again: Chains = serde_json::from_value(json).unwrap();
        assert_eq!(again, chains);
        let one = serde_json::to_string(&chains.validator).unwrap();
        assert_eq!(
            parse_chain(World::Validator, &one).unwrap(),
            chains.validator
        );
    }

    #[test]
    fn unknown_worlds_keys_and_policies_are_refused_by_name() {
        for (json, needle) in [
            (r#"{"validators": []}"#, "validators"),
            (r#"{"validator": [{"plugin": "v", "colour": 1}]}"#, "colour"),
            (
                r#"{"validator": [{"plugin": "v", "on_failure": "ignore"}]}"#,
                "ignore",
            ),
            (
                r#"{"validator": [{"plugin": "v", "limits": {"memory": 1}}]}"#,
                "memory",
            ),
        ] {
            let err = serde_json::from_str::<Chains>(json).unwrap_err();
            assert!(err.to_string().contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn the_effective_chain_is_global_then_tenant() {
        let chains = |name: &str| Chains {
            validator: vec![Binding::implicit(name, World::Validator)],
            ..Chains::default()
        };
        let mut set = BindingSet::default();
        set.tenants.insert("a".into(), chains("tenant-a"));
        let implicit = set.effective(Some("a"), World::Validator);
        assert_eq!(implicit.global, None);
        assert_eq!(implicit.tenant[0].plugin, "tenant-a");
        assert!(set.effective(Some("b"), World::Validator).tenant.is_empty());
        assert!(set.effective(Some("a"), World::Router).tenant.is_empty());

        set.global = Some(chains("operator"));
        let both = set.effective(Some("a"), World::Validator);
        assert_eq!(both.global.unwrap()[0].plugin, "operator");
        assert_eq!(set.effective(None, World::Router).global, Some(vec![]));
    }
}
