//! Embeds the conformance kit (`plugin-tests/<world>/*.json` at the repository root) into the
//! binary, so `mediahost plugin check` works from any folder.

use std::path::PathBuf;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let kit = manifest_dir.join("../../plugin-tests");
    // A folder makes cargo rerun the script when any file below it changes.
    println!("cargo:rerun-if-changed={}", kit.display());
    let mut cases = Vec::new();
    for world in [
        "validator",
        "metadata-extractor",
        "router",
        "edge-transform",
    ] {
        let dir = kit.join(world);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read the conformance kit {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a folder entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = path
                    .file_stem()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned();
                let path = path.canonicalize().expect("an existing file");
                cases.push((world, name, path));
            }
        }
    }
    // Sorted, so the binary does not depend on the order of directory listings.
    cases.sort();
    let mut code = String::from(
        "/// The conformance kit: (world, case name, case JSON), sorted by world and name.\n\
         pub const CASES: &[(&str, &str, &str)] = &[\n",
    );
    for (world, name, path) in cases {
        code.push_str(&format!(
            "    ({world:?}, {name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out.join("conformance_cases.rs"), code).expect("write the embedded kit");
}
