//! `mediahost plugin ...`: the plugin author's tools. `check` finds which world a component
//! implements and runs that world's conformance cases; `run` calls it once with a JSON input and
//! prints the answer and what the call used.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use mediahost_runtime::call_input::CallInput;
use mediahost_runtime::conformance::run_case;
use mediahost_runtime::{
    Budget, CallSettings, Limits, Manifest, Runtime, RuntimeOptions, SingleComponent,
};

include!(concat!(env!("OUT_DIR"), "/conformance_cases.rs"));

/// Check and try plugin components.
#[derive(Debug, Subcommand)]
pub enum Plugin {
    /// Detect which world a component implements and run that world's conformance cases.
    Check(Check),
    /// Call a component once with a JSON input; print its answer and what the call used.
    Run(Run),
}

impl Plugin {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        // Plugin calls are synchronous and bounded by their limits; off the async threads, as
        // WASI's blocking streams (a guest writing to stderr) must not run on one.
        tokio::task::spawn_blocking(move || match self {
            Plugin::Check(cmd) => cmd.run(),
            Plugin::Run(cmd) => cmd.run(),
        })
        .await?
    }
}

/// The component and how to call it.
#[derive(Debug, Args)]
pub struct Target {
    /// The component (`.wasm`).
    component: PathBuf,
    /// The plugin's `plugin.toml`: its world, name, limits and `[config]` defaults apply.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// A setting the plugin's `config` import returns, over the manifest's; may be repeated.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,
    /// Wall-time limit per call, in milliseconds (default: the manifest's, else the world's).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Fuel limit per call (default: the manifest's, else the world's).
    #[arg(long)]
    fuel: Option<u64>,
    /// Linear-memory limit per call, in MiB (default: the manifest's, else the world's).
    #[arg(long)]
    memory_mib: Option<u64>,
}

fn key_value(arg: &str) -> Result<(String, String), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?} is not KEY=VALUE"))?;
    if key.trim().is_empty() {
        return Err(format!("{arg:?} has an empty key"));
    }
    Ok((key.trim().to_owned(), value.to_owned()))
}

impl Target {
    /// Compiles the component (checked against the manifest's world, if any) and settles the
    /// limits and settings of its calls.
    fn load(&self) -> anyhow::Result<(SingleComponent, CallSettings)> {
        let manifest = match &self.manifest {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Some(Manifest::parse(&text).with_context(|| format!("in {}", path.display()))?)
            }
            None => None,
        };
        let bytes = std::fs::read(&self.component)
            .with_context(|| format!("cannot read {}", self.component.display()))?;
        let defaults = RuntimeOptions::default();
        let memory_cap = self
            .memory_mib
            .map(|mib| mib.saturating_mul(1 << 20))
            .into_iter()
            .chain(manifest.as_ref().map(|m| m.limits.memory_bytes))
            .fold(defaults.max_memory_bytes, u64::max);
        let runtime = Runtime::new(RuntimeOptions {
            // Calls run one after the other, each store dropped before the next.
            max_instances: 1,
            max_memory_bytes: memory_cap,
            ..defaults
        })?;
        let component = runtime
            .compile_single(&bytes, manifest.as_ref().map(|m| m.world))
            .with_context(|| format!("{} cannot be used as a plugin", self.component.display()))?;
        let world = component.world();
        let mut limits = manifest
            .as_ref()
            .map(|m| m.limits)
            .unwrap_or_else(|| Limits::for_world(world));
        if let Some(ms) = self.timeout_ms {
            limits.timeout_ms = ms;
        }
        if let Some(fuel) = self.fuel {
            limits.fuel = fuel;
        }
        if let Some(mib) = self.memory_mib {
            limits.memory_bytes = mib.saturating_mul(1 << 20);
        }
        let mut config: BTreeMap<String, String> = manifest
            .as_ref()
            .map(|m| m.config.clone())
            .unwrap_or_default();
        config.extend(self.config.iter().cloned());
        let name = match &manifest {
            Some(m) => m.name.clone(),
            None => self
                .component
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into()),
        };
        let settings = CallSettings {
            name,
            version: manifest.map_or_else(|| "(no manifest)".into(), |m| m.version),
            limits,
            config,
        };
        Ok((component, settings))
    }
}

/// Arguments of `plugin check`.
#[derive(Debug, Args)]
pub struct Check {
    #[command(flatten)]
    target: Target,
}

impl Check {
    fn run(self) -> anyhow::Result<()> {
        let (component, settings) = self.target.load()?;
        let world = component.world();
        println!(
            "{}: {} world (sha256 {})",
            self.target.component.display(),
            world,
            &component.sha256()[..16]
        );
        println!("limits: {}", limits_text(&settings.limits));
        let cases: Vec<_> = CASES
            .iter()
            .filter(|(w, _, _)| *w == world.as_str())
            .collect();
        println!();
        println!(
            "{:<32} {:<6} {:>10} {:>12} {:>10}",
            "CASE", "RESULT", "WALL", "FUEL", "MEMORY"
        );
        let mut failed = 0;
        for (_, name, json) in &cases {
            let outcome = run_case(&component, &settings, name, json);
            let (wall, fuel, memory) = match &outcome.budget {
                Some(b) => (
                    duration_text(b),
                    b.fuel_used.to_string(),
                    bytes_text(b.peak_memory_bytes),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let result = if outcome.passed() { "pass" } else { "FAIL" };
            println!("{name:<32} {result:<6} {wall:>10} {fuel:>12} {memory:>10}");
            if !outcome.passed() {
                failed += 1;
                println!("    {}", outcome.description);
                for failure in &outcome.failures {
                    println!("    - {failure}");
                }
            }
        }
        println!();
        println!(
            "{} cases: {} passed, {failed} failed",
            cases.len(),
            cases.len() - failed
        );
        anyhow::ensure!(
            failed == 0,
            "{failed} of {} {world} conformance cases failed",
            cases.len()
        );
        Ok(())
    }
}

/// Arguments of `plugin run`.
#[derive(Debug, Args)]
pub struct Run {
    #[command(flatten)]
    target: Target,
    /// The call as JSON (see `host/runtime/src/call_input.rs`), or `-` for standard input.
    #[arg(long)]
    input: PathBuf,
    /// Print one JSON object (`world`, `function`, `output` or `error`, `budget`) instead of text.
    #[arg(long)]
    json: bool,
}

impl Run {
    fn run(self) -> anyhow::Result<()> {
        let stdin = self.input.as_os_str() == "-";
        let label = if stdin {
            "the standard input".to_owned()
        } else {
            self.input.display().to_string()
        };
        let text = if stdin {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the input from standard input")?;
            text
        } else {
            std::fs::read_to_string(&self.input)
                .with_context(|| format!("cannot read {}", self.input.display()))?
        };
        let input: CallInput = serde_json::from_str(&text).with_context(|| {
            format!(
                "{label} is not a call in mediahost's JSON form (e.g. {{\"check-upload\": {{\"info\": {{..}}}}}})"
            )
        })?;
        let (component, settings) = self.target.load()?;
        let report = component.call(&settings, &input)?;
        let budget = &report.budget;
        if self.json {
            let mut out = serde_json::json!({
                "world": component.world().as_str(),
                "function": input.function(),
                "budget": budget,
            });
            match &report.result {
                Ok(output) => out["output"] = serde_json::to_value(output)?,
                Err(e) => out["error"] = e.to_string().into(),
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("{} {}", component.world(), input.function());
            match &report.result {
                Ok(output) => println!("output: {}", serde_json::to_string_pretty(output)?),
                Err(e) => println!("error: {e}"),
            }
            println!(
                "used: {} of {} ms wall time, {} of {} fuel, {} of {} linear memory",
                duration_text(budget),
                budget.timeout_ms,
                budget.fuel_used,
                budget.fuel_limit,
                bytes_text(budget.peak_memory_bytes),
                bytes_text(budget.memory_limit_bytes)
            );
            for frame in &budget.backtrace {
                println!("  at {frame}");
            }
        }
        if let Err(e) = report.result {
            anyhow::bail!("the call failed: {}", e.cause);
        }
        Ok(())
    }
}

fn limits_text(limits: &Limits) -> String {
    format!(
        "{} ms wall time, {} fuel, {} linear memory per call",
        limits.timeout_ms,
        limits.fuel,
        bytes_text(limits.memory_bytes)
    )
}

fn duration_text(budget: &Budget) -> String {
    format!("{:.3} ms", budget.wall_time_us as f64 / 1000.0)
}

fn bytes_text(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_key_value_pairs() {
        assert_eq!(key_value("secret=a=b"), Ok(("secret".into(), "a=b".into())));
        assert!(key_value("novalue").is_err());
        assert!(key_value("=x").is_err());
    }

    #[test]
    fn the_kit_is_embedded_for_every_world() {
        for world in [
            "validator",
            "metadata-extractor",
            "router",
            "edge-transform",
        ] {
            assert!(CASES.iter().any(|(w, _, _)| *w == world), "{world}");
        }
    }
}
