//! Hostile plugins, through the real `PluginHost` API: components of the `validator` world that
//! loop forever, burn fuel, bomb memory or tables, trap, return lying strings or reach for files,
//! environment, sockets and the wall clock. Each call must end in a contained [`PluginError`]
//! (or a harmless verdict) whose text names plugin, version, world and cause, and after each one
//! the reference validator, on the same engine and instance pool, must still answer.
//!
//! The fixtures live in `tests/hostile/`. Most are plain core modules (`(module ...)`) holding
//! just the misbehaviour; [`component`] wraps them in the validator world's component boilerplate
//! (the same shape as `tests/fixtures.wat`). `wasi-probe.wat` is a whole component because it
//! imports WASI interfaces.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mediahost_runtime::{
    PluginError, PluginFailure, PluginHost, Runtime, RuntimeOptions, UploadInfo, Verdict,
};

/// Every fixture in `tests/hostile/`; [`every_fixture_has_a_test`] keeps this list honest.
const FIXTURES: &[&str] = &[
    "accept",
    "big-initial-memory",
    "huge-reason",
    "infinite-loop",
    "memory-bomb",
    "start-loop",
    "table-bomb",
    "traps",
    "wasi-probe",
];

/// The version every hostile manifest declares, so error texts can be checked for it.
const VERSION: &str = "6.6.6";

/// One engine and instance pool for every test, as in production: a hostile call must not
/// damage what the next call, of any plugin, runs on.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeOptions::default()).unwrap())
}

/// The reference validator (built from `plugins/validator`), loaded on the shared runtime.
fn good_host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let wasm = std::fs::read(mediahost_testkit::build_plugin("validator")).unwrap();
        let manifest = std::fs::read_to_string(
            mediahost_testkit::repo_root().join("plugins/validator/plugin.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        support::install_files(dir.path(), "validator", &manifest, "validator.wasm", &wasm);
        // The component is compiled at load; the folder is not needed afterwards.
        runtime().load(dir.path(), &BTreeMap::new()).unwrap()
    })
}

/// The host keeps serving: the reference validator still accepts a good upload and still
/// rejects a bad one (so it really ran, rather than being skipped).
#[track_caller]
fn assert_still_serving() {
    let host = good_host();
    let verdict = host.check_upload(&upload(Some("holiday.mp4"), Some(1_000)));
    assert!(matches!(verdict, Ok(Verdict::Accept)), "{verdict:?}");
    match host.check_upload(&upload(Some("setup.exe"), Some(1_000))) {
        Ok(Verdict::Reject(r)) => assert_eq!(r.status, 422),
        other => panic!("the reference validator should reject an .exe, got {other:?}"),
    }
}

fn upload(filename: Option<&str>, declared_size: Option<u64>) -> UploadInfo {
    UploadInfo {
        tenant: "acme".into(),
        video_id: "v1".into(),
        filename: filename.map(Into::into),
        declared_size,
        content_type: Some("video/mp4".into()),
        metadata: vec![("title".into(), "Holiday".into())],
    }
}

/// Calls `call` (`check-upload`, else `check-head` with one byte) with a plain upload; the
/// result and how long the call took.
fn timed_call(host: &PluginHost, call: &str) -> (Result<Verdict, PluginError>, Duration) {
    let started = Instant::now();
    let result = match call {
        "check-upload" => host.check_upload(&upload(None, None)),
        _ => host.check_head(&upload(None, None), b"x"),
    };
    (result, started.elapsed())
}

/// Limits of a hostile plugin's manifest.
#[derive(Clone, Copy)]
struct Limits {
    timeout_ms: u64,
    fuel: u64,
    memory_bytes: u64,
}

/// Generous everywhere except where a test tightens one limit.
const LOOSE: Limits = Limits {
    timeout_ms: 10_000,
    fuel: 1_000_000_000_000_000,
    memory_bytes: 16 << 20,
};

fn fixture_text(fixture: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hostile")
        .join(format!("{fixture}.wat"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The component of a fixture: a whole component as is, a core module wrapped in the validator
/// world's exports (types, `canon lift` of `check-upload` and `check-head`).
fn component(fixture: &str) -> Vec<u8> {
    let text = fixture_text(fixture);
    let component = if text.contains("(component") {
        text
    } else {
        mediahost_testkit::validator_component(&text.replacen("(module", "(core module $m", 1))
    };
    wat::parse_str(&component).unwrap_or_else(|e| panic!("fixture {fixture}: {e}"))
}

/// The plugin name a fixture is installed under.
fn name(fixture: &str) -> String {
    format!("hostile-{fixture}")
}

/// Loads one fixture as plugin `hostile-<fixture>` on the shared runtime (or on `runtime`).
fn hostile_on(runtime: &Runtime, fixture: &str, limits: Limits) -> PluginHost {
    let Limits {
        timeout_ms,
        fuel,
        memory_bytes,
    } = limits;
    let manifest = format!(
        "name = \"{}\"\nversion = \"{VERSION}\"\nworld = \"validator\"\ncomponent = \"plugin.wasm\"\n\
         [limits]\ntimeout_ms = {timeout_ms}\nfuel = {fuel}\nmemory_bytes = {memory_bytes}\n",
        name(fixture)
    );
    let dir = tempfile::tempdir().unwrap();
    support::install_files(
        dir.path(),
        fixture,
        &manifest,
        "plugin.wasm",
        &component(fixture),
    );
    runtime.load(dir.path(), &BTreeMap::new()).unwrap()
}

fn hostile(fixture: &str, limits: Limits) -> PluginHost {
    hostile_on(runtime(), fixture, limits)
}

/// Unwraps the failure of a hostile call and checks its text names plugin, version, world and
/// `cause`: `plugin <name> <version> (validator world, tenant acme) <cause>`.
#[track_caller]
fn failure(fixture: &str, result: Result<Verdict, PluginError>) -> PluginError {
    let err = match result {
        Err(err) => err,
        Ok(verdict) => panic!("{fixture}: expected a plugin error, got {verdict:?}"),
    };
    // Shown with `--nocapture`: what an operator would read.
    eprintln!("{err}");
    assert_eq!(err.plugin, name(fixture));
    assert_eq!(err.version, VERSION);
    assert_eq!(err.tenant, "acme");
    assert_eq!(
        summary(&err),
        format!(
            "plugin {} {VERSION} (validator world, tenant acme) {}",
            name(fixture),
            err.cause
        )
    );
    // Every call that ran reports what it used, after the cause.
    let budget = err
        .budget
        .as_ref()
        .expect("a call that ran reports its budget");
    assert_eq!(err.to_string(), format!("{}; used {budget}", summary(&err)));
    err
}

/// An error's text without its budget figures (which vary from run to run).
fn summary(err: &PluginError) -> String {
    let text = err.to_string();
    text.split("; used ").next().unwrap().to_owned()
}

#[test]
fn every_fixture_has_a_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wat"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, FIXTURES, "tests/hostile/*.wat and FIXTURES differ");
    let source = include_str!("hostile.rs");
    for fixture in FIXTURES {
        let uses = source.matches(&format!("\"{fixture}\"")).count();
        // One mention is the FIXTURES entry itself.
        assert!(uses > 1, "fixture {fixture} is used by no test");
    }
}

#[test]
fn an_infinite_loop_stops_at_the_time_limit() {
    let timeout_ms = 100;
    let host = hostile(
        "infinite-loop",
        Limits {
            timeout_ms,
            ..LOOSE
        },
    );
    let bound = Duration::from_millis(3 * timeout_ms + 50);
    // check-upload: `loop { br }`; check-head: a 2^32-iteration counted loop.
    for call in ["check-upload", "check-head"] {
        let (result, elapsed) = timed_call(&host, call);
        eprintln!("{call} returned after {elapsed:?}");
        let err = failure("infinite-loop", result);
        assert_eq!(err.cause, PluginFailure::Timeout { timeout_ms }, "{call}");
        assert_eq!(
            summary(&err),
            "plugin hostile-infinite-loop 6.6.6 (validator world, tenant acme) exceeded its 100 ms time limit"
        );
        assert!(
            elapsed >= Duration::from_millis(timeout_ms) && elapsed < bound,
            "{call} returned after {elapsed:?}; expected between {timeout_ms} ms and {bound:?}"
        );
        // The budget report shows the deadline reached, and where the guest was stopped.
        let budget = err.budget.as_ref().unwrap();
        assert_eq!(budget.timeout_ms, timeout_ms);
        assert!(budget.wall_time_us >= timeout_ms * 1000, "{budget:?}");
        assert!(
            budget.fuel_used > 0 && budget.fuel_used < budget.fuel_limit,
            "{budget:?}"
        );
        assert!(
            !budget.backtrace.is_empty(),
            "no guest backtrace: {budget:?}"
        );
        assert!(err.to_string().contains(" of 100 ms, fuel "), "{err}");
        assert_still_serving();
    }
}

#[test]
fn a_tight_loop_runs_out_of_fuel_long_before_its_time_limit() {
    let fuel = 100_000;
    let host = hostile(
        "infinite-loop",
        Limits {
            fuel,
            timeout_ms: 30_000,
            ..LOOSE
        },
    );
    for call in ["check-upload", "check-head"] {
        let (result, elapsed) = timed_call(&host, call);
        let err = failure("infinite-loop", result);
        assert_eq!(err.cause, PluginFailure::OutOfFuel { fuel }, "{call}");
        assert_eq!(
            summary(&err),
            "plugin hostile-infinite-loop 6.6.6 (validator world, tenant acme) ran out of fuel (limit 100000)"
        );
        assert!(elapsed < Duration::from_secs(5), "{call} took {elapsed:?}");
        assert_still_serving();
    }
}

#[test]
fn a_start_function_that_never_returns_is_bounded_too() {
    let host = hostile(
        "start-loop",
        Limits {
            timeout_ms: 100,
            ..LOOSE
        },
    );
    let started = Instant::now();
    let err = failure("start-loop", host.check_upload(&upload(None, None)));
    assert_eq!(err.cause, PluginFailure::Timeout { timeout_ms: 100 });
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(350), "{elapsed:?}");
    assert_still_serving();

    let host = hostile(
        "start-loop",
        Limits {
            fuel: 10_000,
            ..LOOSE
        },
    );
    let err = failure("start-loop", host.check_upload(&upload(None, None)));
    assert_eq!(err.cause, PluginFailure::OutOfFuel { fuel: 10_000 });
    assert_still_serving();
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let memory_bytes = 4 << 20;
    let host = hostile(
        "memory-bomb",
        Limits {
            memory_bytes,
            ..LOOSE
        },
    );
    // check-upload grows 1 MiB at a time; check-head asks for ~4 GiB at once.
    for (call, result) in [
        ("check-upload", host.check_upload(&upload(None, None))),
        ("check-head", host.check_head(&upload(None, None), b"x")),
    ] {
        let err = failure("memory-bomb", result);
        // The budget report: what was granted, against the cap, and the growth refused.
        let budget = err.budget.as_ref().unwrap();
        assert_eq!(budget.memory_limit_bytes, memory_bytes, "{call}");
        let refused = budget.refused_memory_bytes.expect("the refused growth");
        assert!(refused > memory_bytes, "{call}: {budget:?}");
        assert!(
            budget.peak_memory_bytes <= memory_bytes,
            "{call}: {budget:?}"
        );
        if call == "check-upload" {
            // Grown 1 MiB at a time from one page: the peak is the last step under the cap.
            assert!(
                budget.peak_memory_bytes + (1 << 20) > memory_bytes,
                "{budget:?}"
            );
            assert!(
                err.to_string()
                    .contains("peak memory 3.06 MiB of 4 MiB (refused growth to 4.06 MiB)"),
                "{err}"
            );
        } else {
            // One grow of ~4 GiB from one page: nothing beyond the first page was granted.
            assert_eq!(budget.peak_memory_bytes, 64 << 10, "{budget:?}");
        }
        assert_eq!(
            err.cause,
            PluginFailure::Memory {
                limit_bytes: 4 << 20
            }
        );
        assert_eq!(
            summary(&err),
            "plugin hostile-memory-bomb 6.6.6 (validator world, tenant acme) exceeded its 4194304 byte memory limit"
        );
        assert_still_serving();
    }
}

#[test]
fn a_huge_initial_memory_is_refused_at_instantiation() {
    // The module declares 64 MiB of memory; its limit is 1 MiB.
    let host = hostile(
        "big-initial-memory",
        Limits {
            memory_bytes: 1 << 20,
            ..LOOSE
        },
    );
    let err = failure("big-initial-memory", host.check_upload(&upload(None, None)));
    assert_eq!(
        err.cause,
        PluginFailure::Memory {
            limit_bytes: 1 << 20
        }
    );
    assert_still_serving();
}

#[test]
fn unreachable_and_stack_overflow_are_traps() {
    let host = hostile("traps", LOOSE);
    let err = failure("traps", host.check_upload(&upload(None, None)));
    assert!(
        matches!(&err.cause, PluginFailure::Trap { trap, detail: None } if trap.contains("unreachable")),
        "{err:?}"
    );
    assert_eq!(
        summary(&err),
        "plugin hostile-traps 6.6.6 (validator world, tenant acme) trapped: wasm trap: wasm `unreachable` instruction executed"
    );
    assert_still_serving();

    let err = failure("traps", host.check_head(&upload(None, None), b"x"));
    assert!(
        matches!(&err.cause, PluginFailure::Trap { trap, .. } if trap.contains("call stack exhausted")),
        "{err:?}"
    );
    assert_still_serving();
}

#[test]
fn a_table_bomb_is_contained() {
    let host = hostile("table-bomb", LOOSE);
    // Growing 1000 elements at a time and one grow by a million both meet the host's typed
    // 20,000-element cap (the instance pool's table slots are sized to match it).
    let err = failure("table-bomb", host.check_upload(&upload(None, None)));
    assert_eq!(err.cause, PluginFailure::Table { limit: 20_000 });
    assert_still_serving();

    let err = failure("table-bomb", host.check_head(&upload(None, None), b"x"));
    assert_eq!(err.cause, PluginFailure::Table { limit: 20_000 });
    assert_eq!(
        summary(&err),
        "plugin hostile-table-bomb 6.6.6 (validator world, tenant acme) exceeded its 20000 element table limit"
    );
    assert_still_serving();
}

#[test]
fn lying_return_values_are_contained() {
    let host = hostile("huge-reason", LOOSE);
    // The fixture's mode comes in as the declared size; see huge-reason.wat.
    let call = |mode: u64| host.check_upload(&upload(None, Some(mode)));

    for (mode, what, needle) in [
        (1, "a 1 GiB reason in a 64 KiB memory", "out of bounds"),
        (2, "a reason pointer that wraps around", "out of bounds"),
        (4, "a reason that is not UTF-8", "utf-8"),
        (5, "a verdict case that does not exist", "discriminant"),
    ] {
        let started = Instant::now();
        let err = failure("huge-reason", call(mode));
        let PluginFailure::Other(message) = &err.cause else {
            panic!("{what}: expected an `Other` failure, got {err:?}");
        };
        assert!(
            message.to_lowercase().contains(needle),
            "{what}: {needle:?} not in {message:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{what}");
        assert_still_serving();
    }

    // A legitimately large reason, inside the plugin's memory, is read (the host's copy is
    // bounded by the plugin's memory limit, 16 MiB here) and cut to 1 KiB before it reaches
    // logs or clients.
    match call(3) {
        Ok(Verdict::Reject(r)) => {
            assert_eq!(r.status, 413);
            assert_eq!(r.reason, format!("{} [truncated]", "A".repeat(1024)));
        }
        other => panic!("expected an 8 MiB rejection, got {other:?}"),
    }
    assert_still_serving();
}

#[test]
fn nothing_is_granted_to_a_plugin_that_asks_for_files_env_sockets_or_time() {
    let host = hostile("wasi-probe", LOOSE);
    match host.check_upload(&upload(Some("a.mp4"), None)) {
        Ok(Verdict::Reject(r)) => {
            assert_eq!(r.status, 403);
            // No preopened directory (so no path can be opened), no environment variable, TCP
            // refused with `access-denied` (index 1 of wasi:sockets' error-code), and a wall
            // clock frozen at the epoch.
            assert_eq!(r.reason, "dirs=0 env=0 tcp=denied:1 clock=0");
        }
        other => panic!("expected the probe's report, got {other:?}"),
    }
    assert_still_serving();
}

#[test]
fn a_hung_plugin_holding_every_slot_makes_others_fail_fast_not_queue() {
    // A runtime of its own with a single instance slot.
    let runtime = Runtime::new(RuntimeOptions {
        max_instances: 1,
        ..RuntimeOptions::default()
    })
    .unwrap();
    let hung = hostile_on(
        &runtime,
        "infinite-loop",
        Limits {
            timeout_ms: 1_000,
            ..LOOSE
        },
    );
    let neighbour = hostile_on(&runtime, "accept", LOOSE);
    assert!(matches!(
        neighbour.check_upload(&upload(None, None)),
        Ok(Verdict::Accept)
    ));

    let (entered, wait) = std::sync::mpsc::channel();
    let hung_call = std::thread::spawn(move || {
        entered.send(()).unwrap();
        hung.check_upload(&upload(None, None))
    });
    wait.recv().unwrap();
    // Give the hung call time to take the slot.
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let err = failure("accept", neighbour.check_upload(&upload(None, None)));
    assert_eq!(err.cause, PluginFailure::Busy(1));
    assert_eq!(
        summary(&err),
        "plugin hostile-accept 6.6.6 (validator world, tenant acme) could not run: all 1 instance slots are busy"
    );
    // Failing fast: well before the hung call's 1 s limit frees the slot.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");

    let err = failure("infinite-loop", hung_call.join().unwrap());
    assert_eq!(err.cause, PluginFailure::Timeout { timeout_ms: 1_000 });
    // The slot is back.
    assert!(matches!(
        neighbour.check_upload(&upload(None, None)),
        Ok(Verdict::Accept)
    ));
    assert_still_serving();
}
