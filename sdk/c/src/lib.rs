//! The C plugin SDK: C bindings for a mediahost world, and the build that turns C sources into
//! a component the host loads.
//!
//! Flow of [`build`]: the WIT package (embedded from the repository's `wit/` when this crate is
//! compiled) → `wit-bindgen-c` writes `<world>.h` and `<world>.c` (types, the `log`/`config`
//! imports, the export glue and `cabi_realloc`) into a scratch folder → `clang
//! --target=wasm32-wasi -mexec-model=reactor -O2` compiles the author's sources with them against
//! wasi-libc → the world's description is embedded into the core module as a custom section →
//! `wit-component` turns the module into a component, with the WASI preview1 reactor adapter
//! linked in when the module imports WASI (stdio, for example).
//!
//! Why: clang, wasi-libc and lld are ordinary Debian packages, and wit-bindgen-c and
//! wit-component as libraries keep the exact versions pinned in `Cargo.lock` (wit-component is
//! the release wit-bindgen-c is built on), so no separately installed `wit-bindgen` or
//! `wasm-tools` binary has to match. The generated files are also committed under `include/`
//! for authors to read; a test keeps them equal to what [`bindings`] produces.

use std::path::{Path, PathBuf};
use std::process::Command;

use wit_component::StringEncoding;
use wit_parser::Resolve;

/// The WIT package `mediahost:plugin`, one file per section as in `wit/`.
const WIT_FILES: [(&str, &str); 6] = [
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("validator.wit", include_str!("../../../wit/validator.wit")),
    (
        "metadata-extractor.wit",
        include_str!("../../../wit/metadata-extractor.wit"),
    ),
    ("router.wit", include_str!("../../../wit/router.wit")),
    (
        "edge-transform.wit",
        include_str!("../../../wit/edge-transform.wit"),
    ),
];

/// The worlds a plugin can implement.
pub const WORLDS: [&str; 4] = [
    "validator",
    "metadata-extractor",
    "router",
    "edge-transform",
];

/// Something the SDK could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The world name is none of [`WORLDS`].
    #[error("unknown world {0:?}; the worlds are {worlds}", worlds = WORLDS.join(", "))]
    UnknownWorld(String),
    /// The embedded WIT does not parse (a broken checkout).
    #[error("the WIT package does not parse: {0}")]
    Wit(String),
    /// wit-bindgen-c failed.
    #[error("cannot generate the C bindings: {0}")]
    Bindings(String),
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// clang could not be started.
    #[error(
        "cannot run {clang}: {source} (install clang, lld, wasi-libc and libclang-rt-14-dev-wasm32; scripts/setup does)"
    )]
    ClangMissing {
        /// The compiler that was tried.
        clang: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// clang failed; its diagnostics follow.
    #[error("clang failed ({status}):\n{stderr}")]
    Compile {
        /// clang's exit status.
        status: std::process::ExitStatus,
        /// What clang printed.
        stderr: String,
    },
    /// The compiled module does not make a component of the world (a missing export, a wrong
    /// signature, an import the world does not allow).
    #[error("cannot turn the module into a {world} component: {message}")]
    Componentize {
        /// The world.
        world: String,
        /// wit-component's explanation.
        message: String,
    },
}

/// The WIT package parsed, and the id of `world` in it.
fn resolve(world: &str) -> Result<(Resolve, wit_parser::WorldId), Error> {
    if !WORLDS.contains(&world) {
        return Err(Error::UnknownWorld(world.to_owned()));
    }
    // Every file declares the same package; as one document it is declared once.
    let mut text = String::from("package mediahost:plugin@0.1.0;\n");
    for (_, file) in WIT_FILES {
        for line in file
            .lines()
            .filter(|l| !l.trim_start().starts_with("package "))
        {
            text.push_str(line);
            text.push('\n');
        }
    }
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("mediahost-plugin.wit", &text)
        .map_err(|e| Error::Wit(format!("{e:#}")))?;
    let id = resolve
        .select_world(&[package], Some(world))
        .map_err(|e| Error::Wit(format!("{e:#}")))?;
    Ok((resolve, id))
}

/// The C bindings of `world`: `(file name, contents)` of `<world>.h` and `<world>.c`, with
/// `-` in the world's name written as `_`.
pub fn bindings(world: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let (mut resolve, id) = resolve(world)?;
    let opts = wit_bindgen_c::Opts {
        // The world's description is embedded by `build` directly; no object file to link.
        no_object_file: true,
        ..Default::default()
    };
    let mut files = wit_bindgen_core::Files::default();
    opts.build()
        .generate(&mut resolve, id, &mut files)
        .map_err(|e| Error::Bindings(format!("{e:#}")))?;
    Ok(files
        .iter()
        .map(|(name, contents)| (name.to_owned(), contents.to_vec()))
        .collect())
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The world the plugin implements.
    pub world: String,
    /// The plugin's C sources.
    pub sources: Vec<PathBuf>,
    /// Extra include folders (`-I`).
    pub include_dirs: Vec<PathBuf>,
    /// Where to write the component.
    pub output: PathBuf,
    /// The C compiler: `clang` unless the `CC_WASM32` variable or the caller says otherwise.
    pub clang: String,
    /// Extra compiler flags (`-DNAME=value`, `-Wall`, ...).
    pub cflags: Vec<String>,
}

impl BuildOptions {
    /// Building `sources` into `output` for `world`, with the default compiler.
    pub fn new(world: &str, sources: Vec<PathBuf>, output: PathBuf) -> Self {
        Self {
            world: world.to_owned(),
            sources,
            include_dirs: Vec::new(),
            output,
            clang: std::env::var("CC_WASM32").unwrap_or_else(|_| "clang".into()),
            cflags: Vec::new(),
        }
    }
}

/// Compiles the plugin and writes its component to `options.output`.
pub fn build(options: &BuildOptions) -> Result<(), Error> {
    let scratch = tempfile::tempdir().map_err(|source| Error::Io {
        what: "cannot create a scratch folder in",
        path: std::env::temp_dir(),
        source,
    })?;
    let mut glue = Vec::new();
    for (name, contents) in bindings(&options.world)? {
        let path = scratch.path().join(&name);
        write(&path, &contents)?;
        if name.ends_with(".c") {
            glue.push(path);
        }
    }
    // The glue references a symbol of the object file wit-bindgen-c would write to carry the
    // world's description; that description is embedded after linking instead (see
    // `componentize`), so the symbol only needs to exist.
    let anchor = scratch.path().join("component_type.c");
    let stem = options.world.replace('-', "_");
    write(
        &anchor,
        format!("void __component_type_object_force_link_{stem}(void) {{}}\n").as_bytes(),
    )?;
    glue.push(anchor);
    let module = scratch.path().join("module.wasm");
    let mut clang = Command::new(&options.clang);
    clang
        .args([
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-O2",
            "-Wl,--strip-debug",
        ])
        .arg("-I")
        .arg(scratch.path());
    for dir in &options.include_dirs {
        clang.arg("-I").arg(dir);
    }
    clang
        .args(&options.cflags)
        .args(&options.sources)
        .args(&glue)
        .arg("-o")
        .arg(&module);
    let output = clang.output().map_err(|source| Error::ClangMissing {
        clang: options.clang.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Compile {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let module = std::fs::read(&module).map_err(|source| Error::Io {
        what: "cannot read the compiled module",
        path: module,
        source,
    })?;
    let component = componentize(&options.world, module)?;
    write(&options.output, &component)
}

/// Embeds `world`'s description into a core module and encodes it as a component.
pub fn componentize(world: &str, mut module: Vec<u8>) -> Result<Vec<u8>, Error> {
    let (resolve, id) = resolve(world)?;
    let fail = |e: anyhow::Error| Error::Componentize {
        world: world.to_owned(),
        message: format!("{e:#}"),
    };
    wit_component::embed_component_metadata(&mut module, &resolve, id, StringEncoding::UTF8, false)
        .map_err(fail)?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .map_err(fail)?
        // Only linked in when the module imports WASI preview1 (stdio, clocks, ...).
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .map_err(fail)?
        .encode()
        .map_err(fail)
}

fn write(path: &Path, contents: &[u8]) -> Result<(), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            what: "cannot create",
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, contents).map_err(|source| Error::Io {
        what: "cannot write",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_world_has_a_header_and_glue() {
        for world in WORLDS {
            let names: Vec<String> = bindings(world).unwrap().into_iter().map(|f| f.0).collect();
            let stem = world.replace('-', "_");
            assert_eq!(names, [format!("{stem}.c"), format!("{stem}.h")]);
        }
    }

    #[test]
    fn an_unknown_world_is_named() {
        let err = bindings("transcoder").unwrap_err().to_string();
        assert!(
            err.contains("\"transcoder\"") && err.contains("validator"),
            "{err}"
        );
    }
}
