//! Domain types and configuration shared by every mediahost crate.
//!
//! Nothing here does I/O beyond reading the config file: the store, queue, blob and runtime
//! crates speak in these types, and the API turns them into JSON. Keeping them in one leaf crate
//! is what lets dependencies point down only (cli → api / workers → platform → core).

pub mod config;
pub mod http_range;
pub mod media;
pub mod plugin;
pub mod quota;
pub mod readiness;
pub mod trace;
pub mod video;

pub use config::{Config, redact_url};
pub use media::{MediaInfo, StreamInfo};
pub use plugin::{Binding, BindingSet, Chains, FailurePolicy, LimitOverrides, World};
pub use quota::{Quota, Usage};
pub use readiness::Readiness;
pub use trace::TraceParent;
pub use video::{Progress, Rendition, Tenant, Video, VideoStatus};
