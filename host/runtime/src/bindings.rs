//! The one place where Rust bindings are generated from `wit/`.
//!
//! Every other module (and every crate above this one) uses these types, so a change of the WIT
//! contract shows up as compile errors here and nowhere else.
//!
//! wasmtime's `bindgen!` takes one world per invocation, so there is one submodule per world.
//! The interfaces several worlds share (`log`, `config`, `types`, `media`) are generated once,
//! in [`validator`] and [`metadata_extractor`], and the other worlds map them there with `with`:
//! a shared type is then one Rust type whichever world it crosses, and the host implements
//! `log` and `config` once (`host.rs`).

// Every generated type also derives serde's traits, for the JSON form of calls (`call_input.rs`):
// fields keep their Rust names (`video_id`), variants theirs (`Accept`, `Reject`).
//
// Generated items carry the WIT doc comments where the WIT has them; the rest (accessors,
// `*Pre` helpers) are wasmtime's boilerplate and documented in wasmtime's `bindgen!` docs.

/// World `validator`: upload checks at creation and on the first bytes. Owns the generated
/// `log`, `config` and `types` interfaces.
#[allow(missing_docs)]
pub mod validator {
    wasmtime::component::bindgen!({
        path: "../../wit",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        world: "validator",
    });
}

/// World `metadata-extractor`: key/value metadata from the probed source. Owns the generated
/// `media` interface.
#[allow(missing_docs)]
pub mod metadata_extractor {
    wasmtime::component::bindgen!({
        path: "../../wit",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        world: "metadata-extractor",
        with: {
            "mediahost:plugin/log": crate::bindings::validator::mediahost::plugin::log,
            "mediahost:plugin/config": crate::bindings::validator::mediahost::plugin::config,
        },
    });
}

/// World `router`: rendition ladder, priority, storage class and edge group of a video.
#[allow(missing_docs)]
pub mod router {
    wasmtime::component::bindgen!({
        path: "../../wit",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        world: "router",
        with: {
            "mediahost:plugin/log": crate::bindings::validator::mediahost::plugin::log,
            "mediahost:plugin/config": crate::bindings::validator::mediahost::plugin::config,
            "mediahost:plugin/media": crate::bindings::metadata_extractor::mediahost::plugin::media,
        },
    });
}

/// World `edge-transform`: request and response hooks at the edge. Owns the generated `http`
/// interface.
#[allow(missing_docs)]
pub mod edge_transform {
    wasmtime::component::bindgen!({
        path: "../../wit",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        world: "edge-transform",
        with: {
            "mediahost:plugin/log": crate::bindings::validator::mediahost::plugin::log,
            "mediahost:plugin/config": crate::bindings::validator::mediahost::plugin::config,
        },
    });
}

pub use edge_transform::mediahost::plugin::http;
pub use metadata_extractor::mediahost::plugin::media;
pub use validator::mediahost::plugin::{config, log, types};
