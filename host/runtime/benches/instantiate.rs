//! Instantiate + call latency of the reference validator's `check-upload`, with a fresh `Store`
//! and instance per call as production does (`cargo bench -p mediahost-runtime --bench instantiate`).
//!
//! Three variants, all calling the component built from `plugins/validator` with the same
//! accepted upload:
//! - `plugin_host/pooling`: the real path, `PluginHost::check_upload`. The runtime always uses
//!   wasmtime's pooling allocator and has no switch for on-demand allocation, so:
//! - `plain/pooling` and `plain/on_demand`: a plain wasmtime `Engine` + `Linker` set up here like
//!   the runtime's (epoch interruption, fuel, the same pool sizes, a WASI context granting
//!   nothing with stderr captured and a frozen wall clock, a memory limiter, the manifest's fuel
//!   and deadline) except for the instance allocator. `plain/pooling` against
//!   `plugin_host/pooling` shows what the runtime adds on top of wasmtime.
//!
//! Criterion reports means and medians; after it, when run by `cargo bench`, a plain loop times
//! 10,000 calls of each variant and prints real percentiles (p50, p90, p99, p99.9, max).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use mediahost_runtime::bindings::validator::mediahost::plugin::{config, log, types};
use mediahost_runtime::bindings::validator::{Validator, ValidatorPre};
use mediahost_runtime::{PluginHost, UploadInfo, Verdict};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// The reference manifest's limits (`plugins/validator/plugin.toml`).
const FUEL: u64 = 10_000_000;
const MEMORY_BYTES: usize = 16 << 20;
/// 100 ms in the runtime's 5 ms epoch ticks, plus one (what `Runtime::deadline_ticks` gives).
const DEADLINE_TICKS: u64 = 21;
/// Calls timed per variant for the percentile table.
const SAMPLES: usize = 10_000;
/// Untimed calls first, so the pool's slots and the caches are warm.
const WARMUP: usize = 1_000;

fn upload() -> UploadInfo {
    UploadInfo {
        tenant: "acme".into(),
        video_id: "0190b6f2-7c1e-7d3a-9a5e-5f1d2c3b4a59".into(),
        filename: Some("holiday.mp4".into()),
        declared_size: Some(5_000_000),
        content_type: Some("video/mp4".into()),
        metadata: vec![("title".into(), "Holiday".into())],
    }
}

fn validator_wasm() -> PathBuf {
    mediahost_testkit::build_plugin("validator")
}

/// The real path: the reference plugin folder loaded by `PluginHost`.
fn plugin_host() -> PluginHost {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("validator");
    std::fs::create_dir_all(&folder).unwrap();
    let root = mediahost_testkit::repo_root();
    std::fs::copy(
        root.join("plugins/validator/plugin.toml"),
        folder.join("plugin.toml"),
    )
    .unwrap();
    std::fs::copy(validator_wasm(), folder.join("validator.wasm")).unwrap();
    PluginHost::load(dir.path(), &BTreeMap::new()).unwrap()
}

/// What a `Store` holds in the plain harness: the same pieces as the runtime's `HostState`.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    config: Arc<BTreeMap<String, String>>,
    _stderr: MemoryOutputPipe,
}

struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl State {
    fn new(config: Arc<BTreeMap<String, String>>) -> Self {
        let stderr = MemoryOutputPipe::new(8192);
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenWallClock)
            .stderr(stderr.clone())
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(MEMORY_BYTES)
                .table_elements(100_000)
                .trap_on_grow_failure(true)
                .build(),
            config,
            _stderr: stderr,
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for State {}

impl log::Host for State {
    fn log(&mut self, _level: log::Level, _message: String) {}
}

impl config::Host for State {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
    fn get_all(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A plain engine, linker and `ValidatorPre`, configured like the runtime's except for the
/// allocator.
struct Plain {
    engine: Engine,
    pre: ValidatorPre<State>,
    config: Arc<BTreeMap<String, String>>,
}

impl Plain {
    fn new(pooling: bool) -> Self {
        let mut config = Config::new();
        config.epoch_interruption(true).consume_fuel(true);
        if pooling {
            // The runtime's pool for its default 128 instances (see `engine.rs`).
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(128)
                .total_core_instances(128 * 8)
                .total_memories(128 * 2)
                .total_tables(128 * 8)
                .max_memory_size(256 << 20);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        } else {
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
        }
        let engine = Engine::new(&config).unwrap();
        let component = Component::from_file(&engine, validator_wasm()).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        Validator::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
        let pre = ValidatorPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        // The reference manifest's defaults.
        let settings = [
            ("max_size", "10737418240"),
            (
                "allowed_extensions",
                "mp4,mov,mkv,webm,m4v,avi,ts,m2ts,mts,flv,ogv,mpg,mpeg",
            ),
            ("sniff", "false"),
        ];
        let config = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            engine,
            pre,
            config: Arc::new(config),
        }
    }

    /// One production-shaped call: fresh store, limits, instantiate, call, drop.
    fn check_upload(&self, info: &UploadInfo) -> Verdict {
        let mut store = Store::new(&self.engine, State::new(self.config.clone()));
        store.limiter(|s| &mut s.limits);
        store.set_fuel(FUEL).unwrap();
        store.set_epoch_deadline(DEADLINE_TICKS);
        let validator = self.pre.instantiate(&mut store).unwrap();
        validator.call_check_upload(&mut store, info).unwrap()
    }
}

type Call = Box<dyn Fn(&UploadInfo) -> Verdict>;

fn variants() -> Vec<(&'static str, Call)> {
    let host = plugin_host();
    let pooled = Plain::new(true);
    let on_demand = Plain::new(false);
    vec![
        (
            "plugin_host/pooling",
            Box::new(move |info: &UploadInfo| host.check_upload(info).unwrap()),
        ),
        (
            "plain/pooling",
            Box::new(move |info: &UploadInfo| pooled.check_upload(info)),
        ),
        (
            "plain/on_demand",
            Box::new(move |info: &UploadInfo| on_demand.check_upload(info)),
        ),
    ]
}

fn criterion_benches(c: &mut Criterion, variants: &[(&'static str, Call)]) {
    let info = upload();
    let mut group = c.benchmark_group("instantiate_and_call");
    for (name, call) in variants {
        assert!(matches!(call(&info), Verdict::Accept), "{name}");
        group.bench_function(*name, |b| b.iter(|| call(black_box(&info))));
    }
    group.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Times `SAMPLES` calls of each variant one by one and prints a percentile table (µs).
fn percentiles(variants: &[(&'static str, Call)]) {
    let info = upload();
    println!();
    println!("instantiate + call, {SAMPLES} calls per variant after {WARMUP} warm-up calls (µs):");
    println!("| variant | p50 | p90 | p99 | p99.9 | max | mean |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, call) in variants {
        for _ in 0..WARMUP {
            black_box(call(&info));
        }
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let started = Instant::now();
            black_box(call(black_box(&info)));
            samples.push(started.elapsed());
        }
        let mean = samples.iter().sum::<Duration>() / SAMPLES as u32;
        samples.sort_unstable();
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            micros(percentile(&samples, 50.0)),
            micros(percentile(&samples, 90.0)),
            micros(percentile(&samples, 99.0)),
            micros(percentile(&samples, 99.9)),
            micros(samples[SAMPLES - 1]),
            micros(mean),
        );
    }
}

fn main() {
    let variants = variants();
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &variants);
    c.final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and there a quick
    // criterion pass is all that is wanted.
    if std::env::args().any(|a| a == "--bench") {
        percentiles(&variants);
    }
}
