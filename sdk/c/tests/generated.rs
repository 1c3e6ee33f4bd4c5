//! The committed C bindings under `sdk/c/include/` are what the WIT generates today, so authors
//! reading them read the contract the build tool compiles against.

use std::path::Path;

#[test]
fn committed_bindings_match_the_wit() {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    for world in mediahost_plugin_c::WORLDS {
        for (name, generated) in mediahost_plugin_c::bindings(world).unwrap() {
            let path = include.join(&name);
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == generated,
                "{} is out of date with wit/; regenerate with \
                 `cargo run -p mediahost-plugin-c -- bindings --out-dir sdk/c/include`",
                path.display()
            );
        }
    }
}
