//! Bindings at call time: which plugins a call of a world runs for a tenant, with which settings
//! and limits, and what a failure does ([`FailurePolicy`]).
//!
//! The host keeps one [`BindingSet`] (set by the caller: loaded from the config file and the
//! metadata DB, refreshed by a sync loop, changed by the admin API). Each world call takes the
//! effective chain of the tenant named in its input (global bindings, then the tenant's), looks
//! each binding's plugin up in the current plugin set and runs it:
//!
//! - settings: the manifest's `[config]`, overlaid by `[plugins.config.<name>]`, overlaid by the
//!   binding's `config`, so one tenant's settings never reach another tenant's calls;
//! - limits: the manifest's, with the binding's overrides;
//! - a failure (trap, limit, `err` answer, invalid answer, plugin not loaded): `fail-closed`
//!   returns the [`PluginError`]; `fail-open` logs it, counts it in
//!   `mediahost_plugin_skipped_total{plugin,world,tenant}` and goes on without the plugin.

use std::collections::BTreeMap;
use std::sync::Arc;

use mediahost_core::{Binding, BindingSet, Chains, FailurePolicy};
use wasmtime::Store;

use crate::call_input::CallInput;
use crate::engine::{Runtime, RuntimeOptions};
use crate::error::{BindingError, PluginError, PluginErrorReport, PluginFailure};
use crate::host::{CallSettings, HostState, PluginMeta};
use crate::manifest::{Limits, World};
use crate::plugin::{CallOutcome, Loaded, PluginHost};
use crate::record::record_failure;
use crate::warm::Instantiate;

const MIB: u64 = 1 << 20;

/// One binding of a call's chain, resolved against the plugin set the call runs on.
pub(crate) struct Step<'a, P: Instantiate> {
    /// How to call the plugin.
    pub binding: Binding,
    /// The loaded plugin, or why the binding cannot run.
    pub plugin: Result<&'a Loaded<P>, String>,
}

impl PluginHost {
    /// Replaces every binding (start-up and the periodic refresh from the metadata DB). Calls
    /// already running keep the chain they started with.
    pub fn set_bindings(&self, bindings: BindingSet) {
        *self
            .inner
            .bindings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(bindings);
    }

    /// Replaces one tenant's bindings (`tenant` is its id), leaving the others as they are.
    pub fn set_tenant_bindings(&self, tenant: &str, chains: Chains) {
        let mut guard = self
            .inner
            .bindings
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut next = BindingSet::clone(&guard);
        if chains.is_empty() {
            next.tenants.remove(tenant);
        } else {
            next.tenants.insert(tenant.to_owned(), chains);
        }
        *guard = Arc::new(next);
    }

    /// The bindings calls run with now.
    pub fn bindings(&self) -> Arc<BindingSet> {
        self.inner
            .bindings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks `chains` against the plugins loaded now: every bound plugin must be loaded and of
    /// the world it is bound in, and every limit override above zero and within what the
    /// engine allows. Used on the config file's bindings at start-up and on every
    /// `PUT /v1/tenants/{tenant}/bindings`.
    pub fn check_bindings(&self, chains: &Chains) -> Result<(), BindingError> {
        let snapshot = self.snapshot();
        let max_memory = snapshot
            .runtime
            .as_ref()
            .map_or(RuntimeOptions::default().max_memory_bytes, |r| {
                r.options().max_memory_bytes
            });
        for (world, chain) in chains.iter() {
            for binding in chain {
                let plugin = binding.plugin.clone();
                let serving = snapshot
                    .entries
                    .iter()
                    .filter_map(|e| e.serving.as_ref())
                    .find(|s| s.meta.name == binding.plugin);
                match serving {
                    None => return Err(BindingError::NotLoaded { plugin, world }),
                    Some(s) if s.meta.world != world => {
                        return Err(BindingError::WrongWorld {
                            plugin,
                            world,
                            actual: s.meta.world,
                        });
                    }
                    Some(_) => {}
                }
                let limits = binding.limits;
                let message =
                    if [limits.timeout_ms, limits.fuel, limits.memory_mib].contains(&Some(0)) {
                        Some(
                            "limits.timeout_ms, limits.fuel and limits.memory_mib must be above 0"
                                .to_owned(),
                        )
                    } else if limits
                        .memory_mib
                        .is_some_and(|mib| mib.saturating_mul(MIB) > max_memory)
                    {
                        Some(format!(
                            "limits.memory_mib is {} but the host allows at most {} MiB",
                            limits.memory_mib.unwrap_or_default(),
                            max_memory / MIB
                        ))
                    } else {
                        None
                    };
                if let Some(message) = message {
                    return Err(BindingError::Limits {
                        plugin,
                        world,
                        message,
                    });
                }
            }
        }
        Ok(())
    }

    /// The chain a call of `world` runs for `tenant`, resolved against `loaded` (that world's
    /// plugins in the call's snapshot).
    pub(crate) fn steps<'a, P: Instantiate>(
        &self,
        loaded: &'a [Loaded<P>],
        world: World,
        tenant: Option<&str>,
    ) -> Vec<Step<'a, P>> {
        let chain = self.bindings().effective(tenant, world);
        let global = match chain.global {
            Some(bindings) => bindings,
            // No global bindings configured: every loaded plugin, as before bindings existed.
            None => loaded
                .iter()
                .map(|p| Binding::implicit(&p.meta.name, world))
                .collect(),
        };
        global
            .into_iter()
            .chain(chain.tenant)
            .map(|binding| {
                let plugin = loaded
                    .iter()
                    .find(|p| p.meta.name == binding.plugin)
                    .ok_or_else(|| self.why_not_loaded(&binding.plugin, world));
                Step { binding, plugin }
            })
            .collect()
    }

    /// Why a bound plugin is missing from its world's list: another world has it, or nothing.
    fn why_not_loaded(&self, plugin: &str, world: World) -> String {
        let other = self
            .snapshot()
            .entries
            .iter()
            .filter_map(|e| e.serving.as_ref())
            .find(|s| s.meta.name == plugin)
            .map(|s| s.meta.world);
        match other {
            Some(actual) => format!("the plugin implements the {actual} world, not {world}"),
            None => "the plugin is not loaded".to_owned(),
        }
    }
}

/// Runs one step of a chain: `call` on an instance of the plugin (fresh, or warm for plugins
/// that reuse instances) under the binding's limits and settings, then `check` on the answer. `Ok(Some(_))` is a usable answer; `Ok(None)` means the
/// plugin failed and its binding is fail-open (logged and counted); `Err` means it failed and
/// its binding is fail-closed. A failure of a binding with `record_failures` also keeps the
/// call's input, as `input()` describes it, for `mediahost plugin run` (see `record`).
pub(crate) fn run_step<P: Instantiate, R: CallOutcome, T>(
    runtime: &Runtime,
    step: &Step<'_, P>,
    world: World,
    tenant: &str,
    call: impl FnOnce(&P::Instance, &mut Store<HostState>) -> wasmtime::Result<R>,
    check: impl FnOnce(R) -> Result<T, PluginFailure>,
    input: impl FnOnce() -> CallInput,
) -> Result<Option<T>, PluginError> {
    let binding = &step.binding;
    let result = match &step.plugin {
        Err(why) => Err(PluginError::from(PluginErrorReport {
            plugin: binding.plugin.clone(),
            version: String::new(),
            world,
            tenant: tenant.to_owned(),
            cause: PluginFailure::Unavailable(why.clone()),
            budget: None,
        })),
        Ok(plugin) => {
            let settings = CallSettings {
                tenant: tenant.to_owned(),
                limits: limits_for(&plugin.meta, binding),
                config: config_for(&plugin.meta, binding),
            };
            runtime
                .call_loaded(plugin, settings, call)
                .and_then(|(answer, budget)| {
                    check(answer).map_err(|cause| {
                        PluginError::from(PluginErrorReport {
                            plugin: plugin.meta.name.clone(),
                            version: plugin.meta.version.clone(),
                            world,
                            tenant: tenant.to_owned(),
                            cause,
                            budget: Some(budget),
                        })
                    })
                })
        }
    };
    if let (Err(error), true, Some(dir)) = (
        &result,
        binding.record_failures,
        runtime.options().failure_dir.as_deref(),
    ) && let Some(file) = record_failure(dir, &binding.plugin, &input())
    {
        tracing::info!(plugin = %binding.plugin, tenant, file = %file.display(), %error, "failed call's input recorded; replay it with `mediahost plugin run`");
    }
    match result {
        Ok(answer) => Ok(Some(answer)),
        Err(error) => match binding.on_failure {
            FailurePolicy::FailClosed => Err(error),
            FailurePolicy::FailOpen => {
                tracing::warn!(
                    plugin = %binding.plugin,
                    world = %world,
                    tenant,
                    %error,
                    "plugin failed; skipped (fail-open)"
                );
                metrics::counter!(
                    "mediahost_plugin_skipped_total",
                    "plugin" => binding.plugin.clone(),
                    "world" => world.as_str(),
                    "tenant" => tenant.to_owned()
                )
                .increment(1);
                Ok(None)
            }
        },
    }
}

/// The manifest's limits with the binding's overrides.
fn limits_for(meta: &PluginMeta, binding: &Binding) -> Limits {
    let o = binding.limits;
    Limits {
        timeout_ms: o.timeout_ms.unwrap_or(meta.limits.timeout_ms),
        fuel: o.fuel.unwrap_or(meta.limits.fuel),
        memory_bytes: o
            .memory_mib
            .map_or(meta.limits.memory_bytes, |mib| mib.saturating_mul(MIB)),
    }
}

/// The plugin's settings with the binding's on top; shared as is when the binding adds none.
fn config_for(meta: &PluginMeta, binding: &Binding) -> Arc<BTreeMap<String, String>> {
    if binding.config.is_empty() {
        return meta.config.clone();
    }
    let mut config = BTreeMap::clone(&meta.config);
    config.extend(binding.config.iter().map(|(k, v)| (k.clone(), v.clone())));
    Arc::new(config)
}
