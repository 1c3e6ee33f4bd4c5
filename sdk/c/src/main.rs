//! `mediahost-plugin-c`: builds C plugins into components, and writes the C bindings of a world.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mediahost_plugin_c::{BuildOptions, WORLDS, bindings, build};

/// Build mediahost plugins written in C.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile C sources (with the world's bindings) into a component.
    Build {
        /// The world the plugin implements: validator, metadata-extractor, router or
        /// edge-transform.
        #[arg(long)]
        world: String,
        /// Where to write the component.
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// Extra include folder; may be repeated.
        #[arg(short = 'I', value_name = "DIR")]
        include: Vec<PathBuf>,
        /// Extra compiler flag (`--cflag=-DDEBUG`); may be repeated.
        #[arg(long = "cflag", value_name = "FLAG", allow_hyphen_values = true)]
        cflags: Vec<String>,
        /// The C compiler targeting wasm32-wasi.
        #[arg(long, env = "CC_WASM32", default_value = "clang")]
        clang: String,
        /// The plugin's C sources.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
    },
    /// Write `<world>.h` and `<world>.c` of one world (or all) into a folder.
    Bindings {
        /// The world; every world when left out.
        #[arg(long)]
        world: Option<String>,
        /// The folder to write into.
        #[arg(long)]
        out_dir: PathBuf,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        // One line with the causes, like the `mediahost` binary.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build {
            world,
            output,
            include,
            cflags,
            clang,
            sources,
        } => {
            let options = BuildOptions {
                include_dirs: include,
                cflags,
                clang,
                ..BuildOptions::new(&world, sources, output.clone())
            };
            build(&options)?;
            println!("wrote {} ({world} component)", output.display());
        }
        Command::Bindings { world, out_dir } => {
            let worlds = match &world {
                Some(world) => vec![world.as_str()],
                None => WORLDS.to_vec(),
            };
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("cannot create {}", out_dir.display()))?;
            for world in worlds {
                for (name, contents) in bindings(world)? {
                    let path = out_dir.join(name);
                    std::fs::write(&path, contents)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!("wrote {}", path.display());
                }
            }
        }
    }
    Ok(())
}
