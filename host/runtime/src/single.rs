//! One component outside any plugin folder, called once at a time: what the plugin author's
//! tools (`mediahost plugin check`, `mediahost plugin run`) need.
//!
//! [`Runtime::compile_single`] compiles the bytes, finds which world they implement by trying
//! each world's typed `*Pre` (the same check a plugin folder's load does), and
//! [`SingleComponent::call`] runs one [`CallInput`] in a fresh store under the given limits,
//! through the same call path as plugin folders (`Runtime::call`: limits, classification of
//! failures, metrics), reporting what the call used as a [`Budget`]: wall time, fuel, peak
//! linear memory and, on failure, the guest backtrace.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::Component;

use crate::bindings::edge_transform::EdgeTransformPre;
use crate::bindings::metadata_extractor::MetadataExtractorPre;
use crate::bindings::router::RouterPre;
use crate::bindings::validator::ValidatorPre;
use crate::budget::Budget;
use crate::call_input::{CallInput, CallOutput};
use crate::engine::Runtime;
use crate::error::PluginError;
use crate::host::{self, HostState, PluginMeta};
use crate::manifest::{Limits, World};
use crate::plugin::CallOutcome;

/// Why a component cannot be called as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum SingleError {
    /// The bytes are no component wasmtime can compile.
    #[error("cannot compile the component: {0}")]
    Compile(String),
    /// The component imports something the host does not provide.
    #[error("the component needs imports the host does not provide: {0}")]
    Imports(String),
    /// The component fits none of the worlds; the reason each one gave.
    #[error("the component implements none of the plugin worlds:{}", reasons.iter().map(|(w, r)| format!("\n  {w}: {r}")).collect::<String>())]
    NoWorld {
        /// Each world and why the component does not fit it.
        reasons: Vec<(World, String)>,
    },
    /// The component fits the world it was expected to implement only partly.
    #[error("the component does not implement the {world} world: {reason}")]
    NotWorld {
        /// The expected world.
        world: World,
        /// Why it does not fit.
        reason: String,
    },
    /// The component fits several worlds and none was named.
    #[error("the component implements several worlds ({}); name the one to use", worlds.iter().map(|w| w.as_str()).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        /// The worlds it fits.
        worlds: Vec<World>,
    },
    /// The call is for another world than the component's.
    #[error(
        "{function} is a function of the {input_world} world, but the component implements {world}"
    )]
    WrongWorld {
        /// The function asked for.
        function: &'static str,
        /// Its world.
        input_world: World,
        /// The component's world.
        world: World,
    },
    /// The host side of the call could not be set up (a broken build of the host).
    #[error("cannot set up the host side of the call: {0}")]
    Setup(String),
}

/// A compiled component checked against its world, ready to call.
pub struct SingleComponent {
    /// Owns the engine that compiled the component (and the epoch ticker its deadlines need).
    runtime: Runtime,
    /// The world's typed pre-instance.
    pre: SinglePre,
    /// Hex SHA-256 of the component bytes.
    sha256: String,
}

enum SinglePre {
    Validator(ValidatorPre<HostState>),
    MetadataExtractor(MetadataExtractorPre<HostState>),
    Router(RouterPre<HostState>),
    EdgeTransform(EdgeTransformPre<HostState>),
}

/// Who the plugin is during a call, and what it may use.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// Name shown in errors and log lines.
    pub name: String,
    /// Version shown in errors.
    pub version: String,
    /// The call's limits.
    pub limits: Limits,
    /// What the `config` import returns.
    pub config: BTreeMap<String, String>,
}

/// A call's answer (or failure) and what it used.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// What the plugin returned, or how the call failed (its error carries the budget too).
    pub result: Result<CallOutput, PluginError>,
    /// What the call used of each limit.
    pub budget: Budget,
}

impl CallOutcome for CallOutput {}

impl Runtime {
    /// Compiles `bytes` and checks them against `world`, or, when `None`, finds the one world
    /// they implement.
    pub fn compile_single(
        &self,
        bytes: &[u8],
        world: Option<World>,
    ) -> Result<SingleComponent, SingleError> {
        let component = Component::from_binary(self.engine(), bytes)
            .map_err(|e| SingleError::Compile(format!("{e:#}")))?;
        let linker = self
            .linker()
            .map_err(|e| SingleError::Setup(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| SingleError::Imports(format!("{e:#}")))?;
        let fit = |world: World| -> Result<SinglePre, String> {
            let reason = |e: wasmtime::Error| format!("{e:#}");
            Ok(match world {
                World::Validator => {
                    SinglePre::Validator(ValidatorPre::new(pre.clone()).map_err(reason)?)
                }
                World::MetadataExtractor => SinglePre::MetadataExtractor(
                    MetadataExtractorPre::new(pre.clone()).map_err(reason)?,
                ),
                World::Router => SinglePre::Router(RouterPre::new(pre.clone()).map_err(reason)?),
                World::EdgeTransform => {
                    SinglePre::EdgeTransform(EdgeTransformPre::new(pre.clone()).map_err(reason)?)
                }
            })
        };
        let pre = match world {
            Some(world) => fit(world).map_err(|reason| SingleError::NotWorld { world, reason })?,
            None => {
                let mut fits = Vec::new();
                let mut reasons = Vec::new();
                for world in [
                    World::Validator,
                    World::MetadataExtractor,
                    World::Router,
                    World::EdgeTransform,
                ] {
                    match fit(world) {
                        Ok(pre) => fits.push((world, pre)),
                        Err(reason) => reasons.push((world, reason)),
                    }
                }
                match fits.len() {
                    0 => return Err(SingleError::NoWorld { reasons }),
                    1 => fits.remove(0).1,
                    _ => {
                        let worlds = fits.into_iter().map(|(w, _)| w).collect();
                        return Err(SingleError::Ambiguous { worlds });
                    }
                }
            }
        };
        Ok(SingleComponent {
            runtime: self.clone(),
            pre,
            sha256: hex::encode(Sha256::digest(bytes)),
        })
    }
}

impl SingleComponent {
    /// The world the component implements.
    pub fn world(&self) -> World {
        match self.pre {
            SinglePre::Validator(_) => World::Validator,
            SinglePre::MetadataExtractor(_) => World::MetadataExtractor,
            SinglePre::Router(_) => World::Router,
            SinglePre::EdgeTransform(_) => World::EdgeTransform,
        }
    }

    /// Hex SHA-256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Calls the component once, in a fresh instance, under `settings`' limits.
    pub fn call(
        &self,
        settings: &CallSettings,
        input: &CallInput,
    ) -> Result<CallReport, SingleError> {
        if input.world() != self.world() {
            return Err(SingleError::WrongWorld {
                function: input.function(),
                input_world: input.world(),
                world: self.world(),
            });
        }
        let meta = Arc::new(PluginMeta {
            name: settings.name.clone(),
            version: settings.version.clone(),
            world: self.world(),
            limits: settings.limits,
            instances: crate::manifest::Instances::Fresh,
            config: Arc::new(settings.config.clone()),
            sha256: self.sha256.clone(),
        });
        let call = host::CallSettings {
            tenant: String::new(),
            limits: settings.limits,
            config: meta.config.clone(),
        };
        Ok(
            match self
                .runtime
                .call(&meta, call, |store| self.invoke(store, input))
            {
                Ok((output, budget)) => CallReport {
                    result: Ok(output),
                    budget,
                },
                Err(error) => CallReport {
                    budget: error.budget.clone().unwrap_or_default(),
                    result: Err(error),
                },
            },
        )
    }

    fn invoke(
        &self,
        store: &mut Store<HostState>,
        input: &CallInput,
    ) -> wasmtime::Result<CallOutput> {
        Ok(match (&self.pre, input) {
            (SinglePre::Validator(pre), CallInput::CheckUpload { info }) => {
                let instance = pre.instantiate(&mut *store)?;
                CallOutput::Verdict(instance.call_check_upload(store, info)?)
            }
            (SinglePre::Validator(pre), CallInput::CheckHead { info, head }) => {
                let instance = pre.instantiate(&mut *store)?;
                CallOutput::Verdict(instance.call_check_head(store, info, &head.0)?)
            }
            (SinglePre::MetadataExtractor(pre), CallInput::Extract { input }) => {
                let instance = pre.instantiate(&mut *store)?;
                CallOutput::Metadata(instance.call_extract(store, input)?)
            }
            (SinglePre::Router(pre), CallInput::Route { input }) => {
                let instance = pre.instantiate(&mut *store)?;
                CallOutput::Plan(instance.call_route(store, input)?)
            }
            (SinglePre::EdgeTransform(pre), CallInput::OnRequest { req }) => {
                let instance = pre.instantiate(&mut *store)?;
                CallOutput::RequestAction(instance.call_on_request(store, req)?)
            }
            (SinglePre::EdgeTransform(pre), CallInput::OnResponse { req, resp, body }) => {
                let instance = pre.instantiate(&mut *store)?;
                let body = body.as_ref().map(|b| b.0.as_slice());
                CallOutput::ResponseUpdate(instance.call_on_response(store, req, resp, body)?)
            }
            // `call` checked the worlds match, and each world's functions are listed above.
            _ => unreachable!("the input's world was checked against the component's"),
        })
    }
}
