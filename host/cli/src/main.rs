//! The `mediahost` binary: a thin clap dispatch into the crates that do the work.

mod commands;
mod https;

use clap::Parser;
use std::io::IsTerminal;

/// jemalloc rather than glibc's malloc: an upload's body arrives in freshly allocated
/// buffers of a few hundred KiB, freed on other threads once written and hashed, which glibc
/// spreads over per-thread arenas and keeps faulting in anew; jemalloc with one arena
/// (`.cargo/config.toml`) reuses them: ~6 MiB less peak RSS under the ingest bench and 2-6%
/// less CPU per uploaded GiB (BENCHMARKS.md, "Session 15").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = commands::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for people at a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    let result = runtime.block_on(cli.run());
    // A blocking task still running (a transcode noticing its stop request between frames)
    // gets a moment to end; the process does not wait on it beyond that.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if let Err(e) = result {
        // One line, with the causes: `error: <what>: <why>`.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
