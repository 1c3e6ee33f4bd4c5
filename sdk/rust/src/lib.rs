//! Write mediahost plugins in Rust.
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2`: the `.wasm` cargo writes is already a
//! WebAssembly component the host loads. This crate gives it:
//!
//! - the WIT types of `mediahost:plugin@0.1.0` (`wit/` in the repository), re-exported at the
//!   crate root ([`UploadInfo`], [`Verdict`], [`RouteInput`], [`RequestHead`], ...);
//! - one trait per world ([`Validator`], [`MetadataExtractor`], [`Router`], [`EdgeTransform`])
//!   and one macro that exports a type implementing it ([`export_validator!`],
//!   [`export_metadata_extractor!`], [`export_router!`], [`export_edge_transform!`]);
//! - the two host imports, made comfortable: [`log`] (`log::info!("...")`) and [`config`]
//!   (typed reads that name the key when a value is malformed);
//! - [`testing::TestHost`]: plain `cargo test` on the developer's machine runs the plugin's
//!   trait methods natively, with config values the test sets and log lines it can inspect.
//!
//! ```
//! use mediahost_sdk::{Rejection, UploadInfo, Validator, Verdict, config, log};
//!
//! struct OnlyMp4;
//!
//! impl Validator for OnlyMp4 {
//!     fn check_upload(info: UploadInfo) -> Verdict {
//!         let ext = config::get("extension").unwrap_or_else(|| "mp4".into());
//!         match info.filename.as_deref() {
//!             Some(name) if !name.ends_with(&format!(".{ext}")) => {
//!                 log::info!("refused {name}");
//!                 Verdict::Reject(Rejection { status: 422, reason: format!("only .{ext} files") })
//!             }
//!             _ => Verdict::Accept,
//!         }
//!     }
//!     fn check_head(_info: UploadInfo, _head: Vec<u8>) -> Verdict {
//!         Verdict::Accept
//!     }
//! }
//!
//! mediahost_sdk::export_validator!(OnlyMp4);
//! ```
//!
//! How it fits together: this crate generates (with `wit-bindgen`) the imports every world
//! shares: `log`, `config` and the type-only interfaces. The export macros generate each world's
//! exports in the plugin's own crate, mapped onto these types, so a plugin links the
//! description of exactly the world it implements. On targets other than wasm32 the imports
//! are served by [`testing`] instead of the host.

#![warn(missing_docs)]

pub mod config;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// The generated imports. The world is defined here (not in `wit/`) because the host has no
/// world that only imports: it lists every interface a plugin may import or take types from.
#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        inline: r#"
            package mediahost:sdk;

            world imports {
                import mediahost:plugin/log@0.1.0;
                import mediahost:plugin/config@0.1.0;
                import mediahost:plugin/types@0.1.0;
                import mediahost:plugin/media@0.1.0;
                import mediahost:plugin/http@0.1.0;
            }
        "#,
        path: "../../wit",
        world: "mediahost:sdk/imports",
        additional_derives: [PartialEq],
        generate_all,
    });
}

pub use bindings::mediahost::plugin::http::{
    RequestAction, RequestHead, Response, ResponseHead, ResponseUpdate,
};
pub use bindings::mediahost::plugin::media::{
    ExtractInput, MediaInfo, RenditionSpec, RouteInput, RoutePlan, StreamInfo, StreamKind,
};
pub use bindings::mediahost::plugin::types::{Rejection, UploadInfo, Verdict};

/// Upload validation (world `validator`): runs when an upload starts and again on its first
/// bytes. Export an implementation with [`export_validator!`].
pub trait Validator {
    /// Called when an upload is created, before any byte is stored.
    fn check_upload(info: UploadInfo) -> Verdict;
    /// Called once the first bytes (up to 64 KiB) have arrived: magic-byte sniffing.
    fn check_head(info: UploadInfo, head: Vec<u8>) -> Verdict;
}

/// Metadata extraction (world `metadata-extractor`): key/value pairs stored with the video.
/// Export an implementation with [`export_metadata_extractor!`].
pub trait MetadataExtractor {
    /// Derives metadata from the probed source, its first bytes and the uploader's metadata.
    /// `Err` is a reason the host logs and reports as a plugin failure.
    fn extract(input: ExtractInput) -> Result<Vec<(String, String)>, String>;
}

/// Routing (world `router`): the rendition ladder, job priority, storage class and edge group
/// of a video. Export an implementation with [`export_router!`].
pub trait Router {
    /// Plans the video. `Err` is a reason the host logs and reports as a plugin failure.
    fn route(input: RouteInput) -> Result<RoutePlan, String>;
}

/// Edge transforms (world `edge-transform`): hooks on every playback request the edge serves.
/// Export an implementation with [`export_edge_transform!`].
pub trait EdgeTransform {
    /// Before the edge serves a request: let it through (possibly changed) or answer it here.
    fn on_request(req: RequestHead) -> RequestAction;
    /// Before the edge sends a response: change its head and, for manifests, its body (`body`
    /// is given only for manifests).
    fn on_response(req: RequestHead, resp: ResponseHead, body: Option<Vec<u8>>) -> ResponseUpdate;
}

/// Exports a type implementing [`Validator`] as the component's `validator` world. Once per
/// plugin crate, at module level.
#[macro_export]
macro_rules! export_validator {
    ($ty:ty) => {
        $crate::__private::__export_world!("validator" $ty);
    };
}

/// Exports a type implementing [`MetadataExtractor`] as the component's `metadata-extractor`
/// world. Once per plugin crate, at module level.
#[macro_export]
macro_rules! export_metadata_extractor {
    ($ty:ty) => {
        $crate::__private::__export_world!("metadata-extractor" $ty);
    };
}

/// Exports a type implementing [`Router`] as the component's `router` world. Once per plugin
/// crate, at module level.
#[macro_export]
macro_rules! export_router {
    ($ty:ty) => {
        $crate::__private::__export_world!("router" $ty);
    };
}

/// Exports a type implementing [`EdgeTransform`] as the component's `edge-transform` world.
/// Once per plugin crate, at module level.
#[macro_export]
macro_rules! export_edge_transform {
    ($ty:ty) => {
        $crate::__private::__export_world!("edge-transform" $ty);
    };
}

/// What the export macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use mediahost_sdk_macros::__export_world;
    pub use wit_bindgen;

    /// The generated interfaces the export glue maps the world's imports and types onto.
    pub mod bindings {
        pub use crate::bindings::mediahost::plugin::{config, http, log, media, types};
    }
}
