//! The crate's errors: [`RuntimeError`] when building the engine or loading plugins,
//! [`PluginError`] when a call into a plugin fails.

use std::path::PathBuf;

use crate::budget::Budget;
use crate::manifest::{ManifestError, World};

/// Building the runtime or loading the plugin folder failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// The plugin folder exists but cannot be listed.
    #[error("cannot read plugin folder {}: {source}", path.display())]
    ReadDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One plugin could not be loaded; nothing is loaded then, so a typo never silently
    /// disables a check.
    #[error("cannot load plugin {}: {source}", plugin_label(name.as_deref(), folder))]
    Plugin {
        /// The plugin's folder.
        folder: PathBuf,
        /// The name from its manifest, once that was read.
        name: Option<String>,
        /// What went wrong.
        source: LoadError,
    },
    /// Two folders declare the same plugin name.
    #[error("plugin name {name:?} is used by both {} and {}", first.display(), second.display())]
    DuplicateName {
        /// The shared name.
        name: String,
        /// The first folder declaring it.
        first: PathBuf,
        /// The second folder declaring it.
        second: PathBuf,
    },
    /// The plugin folder cannot be watched for hot reload.
    #[error("cannot watch the plugin folder {0}")]
    Watch(String),
}

fn plugin_label(name: Option<&str>, folder: &std::path::Path) -> String {
    match name {
        Some(name) => format!("{name} (folder {})", folder.display()),
        None => format!("in folder {}", folder.display()),
    }
}

/// Why one plugin folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `plugin.toml` could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `plugin.toml` is malformed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component is not valid WebAssembly or fails to compile.
    #[error("cannot compile {}: {message}", path.display())]
    Compile {
        /// The component file.
        path: PathBuf,
        /// wasmtime's explanation.
        message: String,
    },
    /// The component does not fit its declared world (missing export, wrong signature, or an
    /// import the host does not grant).
    #[error("component does not fit the {world} world: {message}")]
    World {
        /// The declared world.
        world: World,
        /// wasmtime's explanation.
        message: String,
    },
    /// The manifest asks for more than the host allows.
    #[error("{0}")]
    Limits(String),
}

/// A call into a plugin failed: it trapped, ran out of time, fuel or memory, answered with an
/// error, or could not run. Whether that refuses the request or skips the plugin is the
/// binding's failure policy; an error reaching the caller is one that failed closed.
///
/// Reads as `plugin <name> <version> (<world> world, tenant <tenant>) <cause>; used <budget>`.
/// The report is boxed (one pointer travels in every `Result`) and its fields read through
/// `Deref`: `err.plugin`, `err.cause`, `err.budget`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct PluginError(Box<PluginErrorReport>);

impl From<PluginErrorReport> for PluginError {
    fn from(report: PluginErrorReport) -> Self {
        Self(Box::new(report))
    }
}

impl std::ops::Deref for PluginError {
    type Target = PluginErrorReport;

    fn deref(&self) -> &PluginErrorReport {
        &self.0
    }
}

/// What a [`PluginError`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginErrorReport {
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's version; empty when it never ran (not loaded).
    pub version: String,
    /// The world that was called.
    pub world: World,
    /// The tenant the call was made for (the tenant id plugins see); empty for calls that
    /// belong to no tenant.
    pub tenant: String,
    /// What happened.
    pub cause: PluginFailure,
    /// What the call used of each limit; `None` when the plugin never ran.
    pub budget: Option<Budget>,
}

impl std::fmt::Display for PluginErrorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PluginErrorReport {
    fn describe(&self) -> String {
        let version = if self.version.is_empty() {
            String::new()
        } else {
            format!(" {}", self.version)
        };
        let tenant = if self.tenant.is_empty() {
            "no tenant".to_owned()
        } else {
            format!("tenant {}", self.tenant)
        };
        let budget = self
            .budget
            .as_ref()
            .map(|b| format!("; used {b}"))
            .unwrap_or_default();
        format!(
            "plugin {}{version} ({} world, {tenant}) {}{budget}",
            self.plugin, self.world, self.cause
        )
    }
}

/// What went wrong in a plugin call; the Display reads as the end of a sentence about the plugin.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PluginFailure {
    /// The epoch deadline passed.
    #[error("exceeded its {timeout_ms} ms time limit")]
    Timeout {
        /// The limit from the manifest.
        timeout_ms: u64,
    },
    /// The fuel budget was used up.
    #[error("ran out of fuel (limit {fuel})")]
    OutOfFuel {
        /// The limit from the manifest.
        fuel: u64,
    },
    /// Linear memory would have grown past the cap.
    #[error("exceeded its {limit_bytes} byte memory limit")]
    Memory {
        /// The limit from the manifest.
        limit_bytes: u64,
    },
    /// A table would have grown past the host's cap.
    #[error("exceeded its {limit} element table limit")]
    Table {
        /// The host's cap.
        limit: u64,
    },
    /// The guest trapped (a Rust panic shows up as `unreachable`); `detail` holds the tail of
    /// what the guest wrote to stderr, such as the panic message.
    #[error("trapped: {trap}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Trap {
        /// wasmtime's description of the trap.
        trap: String,
        /// The end of the guest's stderr, if it wrote anything.
        detail: Option<String>,
    },
    /// The plugin ran to completion but answered with its own error (the `err` case of a WIT
    /// `result`), such as a malformed setting it refuses to guess about.
    #[error("returned an error: {0}")]
    Returned(String),
    /// The plugin's answer breaks the WIT contract (a rendition name that is no safe folder
    /// name, a header with a line break, ...); the host refuses to use it.
    #[error("returned an invalid answer: {0}")]
    Invalid(String),
    /// The binding names a plugin that is not loaded, or is loaded for another world.
    #[error("could not run: {0}")]
    Unavailable(String),
    /// Every pooled instance slot is in use.
    #[error("could not run: all {0} instance slots are busy")]
    Busy(u32),
    /// Anything else wasmtime reported.
    #[error("failed: {0}")]
    Other(String),
}

/// A binding that cannot work with the plugins loaded: refused at start-up (config file) and
/// by `PUT /v1/tenants/{tenant}/bindings` (422).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BindingError {
    /// No plugin of this name is loaded.
    #[error("plugin {plugin:?} bound in the {world} chain is not loaded")]
    NotLoaded {
        /// The plugin named by the binding.
        plugin: String,
        /// The chain it was bound in.
        world: World,
    },
    /// The plugin implements another world.
    #[error(
        "plugin {plugin:?} implements the {actual} world and cannot be bound in the {world} chain"
    )]
    WrongWorld {
        /// The plugin named by the binding.
        plugin: String,
        /// The chain it was bound in.
        world: World,
        /// The world it implements.
        actual: World,
    },
    /// A limit override is zero or beyond what the host allows.
    #[error("plugin {plugin:?} bound in the {world} chain: {message}")]
    Limits {
        /// The plugin named by the binding.
        plugin: String,
        /// The chain it was bound in.
        world: World,
        /// Which limit and why.
        message: String,
    },
}
