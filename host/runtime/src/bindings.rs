//! The one place where Rust bindings are generated from `wit/`.
//!
//! Every other module (and every crate above this one) uses these types, so a change of the WIT
//! contract shows up as compile errors here and nowhere else. Later worlds (metadata-extractor,
//! router, edge-transform) get their own `bindgen!` in a sibling module of this file.

/// World `validator`: upload checks at creation and on the first bytes.
// Generated items carry the WIT doc comments where the WIT has them; the rest (accessors,
// `*Pre` helpers) are wasmtime's boilerplate and documented in wasmtime's `bindgen!` docs.
#[allow(missing_docs)]
pub mod validator {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "validator",
    });
}
