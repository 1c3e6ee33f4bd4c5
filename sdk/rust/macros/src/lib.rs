//! The export macros behind `mediahost_sdk::export_*!`. Use those, not this crate.
//!
//! Why a proc macro: the export glue (the component's `check-upload`, `route`, ... functions
//! and the custom section describing the world) must be generated in the plugin's own crate.
//! Generated inside the SDK, every plugin would link the descriptions of all four worlds and
//! the componentizer would then demand all four worlds' exports. `wit_bindgen::generate!` takes
//! WIT text only as a literal, so this macro embeds the repository's `wit/` at its own build
//! time and writes the literal into the plugin's crate. The WIT's shared interfaces are mapped
//! (`with`) onto the SDK's types, so a plugin sees one `UploadInfo`, one `log`, one `config`.

use proc_macro::{TokenStream, TokenTree};

/// The WIT package `mediahost:plugin`, one file per section as in `wit/`.
const WIT_FILES: [&str; 6] = [
    include_str!("../../../../wit/types.wit"),
    include_str!("../../../../wit/host.wit"),
    include_str!("../../../../wit/validator.wit"),
    include_str!("../../../../wit/metadata-extractor.wit"),
    include_str!("../../../../wit/router.wit"),
    include_str!("../../../../wit/edge-transform.wit"),
];

/// `__export_world!("<world>" <Type>)`: binds `Type`, which implements the SDK trait of
/// `<world>`, as the component's exports.
#[proc_macro]
pub fn __export_world(input: TokenStream) -> TokenStream {
    let mut tokens = input.into_iter();
    let Some(TokenTree::Literal(world)) = tokens.next() else {
        return compile_error("expected a world name and a type");
    };
    let world = world.to_string();
    let world = world.trim_matches('"');
    let ty = tokens.collect::<TokenStream>().to_string();
    if ty.trim().is_empty() {
        return compile_error("expected the type to export after the world name");
    }
    let ty = ty.trim();
    let Some(glue) = world_glue(world, ty) else {
        return compile_error(&format!("unknown world {world}"));
    };
    // `with` must name exactly the interfaces the world uses: log, config and its type
    // interface.
    let types = match world {
        "validator" => "types",
        "edge-transform" => "http",
        _ => "media",
    };
    let with: String = ["log", "config", types]
        .iter()
        .map(|i| {
            format!("\"mediahost:plugin/{i}@0.1.0\": ::mediahost_sdk::__private::bindings::{i},")
        })
        .collect();
    let module = world.replace('-', "_");
    let code = format!(
        r#"
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unsafe_code, missing_docs, unused, clippy::all)]
        mod __mediahost_sdk_export_{module} {{
            use super::*;
            ::mediahost_sdk::__private::wit_bindgen::generate!({{
                inline: {wit:?},
                world: "{world}",
                runtime_path: "::mediahost_sdk::__private::wit_bindgen::rt",
                with: {{ {with} }},
            }});
            {glue}
            export!({ty});
        }}
        "#,
        wit = package_text(),
    );
    code.parse()
        .unwrap_or_else(|e| compile_error(&format!("{e}")))
}

/// The whole package as one WIT document: every file declares the same package, so the
/// declaration is kept once.
fn package_text() -> String {
    let mut text = String::from("package mediahost:plugin@0.1.0;\n");
    for file in WIT_FILES {
        for line in file.lines() {
            if !line.trim_start().starts_with("package ") {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

/// `impl Guest for Type` forwarding each export to the SDK trait.
fn world_glue(world: &str, ty: &str) -> Option<String> {
    let sdk = "::mediahost_sdk";
    let body = match world {
        "validator" => format!(
            "fn check_upload(info: {sdk}::UploadInfo) -> {sdk}::Verdict {{
                <{ty} as {sdk}::Validator>::check_upload(info)
            }}
            fn check_head(info: {sdk}::UploadInfo, head: Vec<u8>) -> {sdk}::Verdict {{
                <{ty} as {sdk}::Validator>::check_head(info, head)
            }}"
        ),
        "metadata-extractor" => format!(
            "fn extract(input: {sdk}::ExtractInput) -> Result<Vec<(String, String)>, String> {{
                <{ty} as {sdk}::MetadataExtractor>::extract(input)
            }}"
        ),
        "router" => format!(
            "fn route(input: {sdk}::RouteInput) -> Result<{sdk}::RoutePlan, String> {{
                <{ty} as {sdk}::Router>::route(input)
            }}"
        ),
        "edge-transform" => format!(
            "fn on_request(req: {sdk}::RequestHead) -> {sdk}::RequestAction {{
                <{ty} as {sdk}::EdgeTransform>::on_request(req)
            }}
            fn on_response(
                req: {sdk}::RequestHead,
                resp: {sdk}::ResponseHead,
                body: Option<Vec<u8>>,
            ) -> {sdk}::ResponseUpdate {{
                <{ty} as {sdk}::EdgeTransform>::on_response(req, resp, body)
            }}"
        ),
        _ => return None,
    };
    Some(format!("impl Guest for {ty} {{ {body} }}"))
}

fn compile_error(message: &str) -> TokenStream {
    format!("compile_error!({:?});", format!("mediahost-sdk: {message}"))
        .parse()
        .expect("a compile_error! invocation parses")
}
