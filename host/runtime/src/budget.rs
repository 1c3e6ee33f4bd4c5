//! The budget report of one plugin call: what it used of each limit, and where it stopped.
//!
//! Every call produces a [`Budget`]. A failed call carries it in its
//! [`PluginError`](crate::PluginError), so "exceeded its 50 ms time limit" comes with the
//! figures that show how close the other limits were; every call, failed or not, feeds the
//! per-plugin metrics with it ([`record`]). It is serialisable so tools (`mediahost plugin
//! run`) can print it as JSON.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manifest::Limits;

/// What one call used of each limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Wall time the call took (instantiation included), in microseconds.
    pub wall_time_us: u64,
    /// The call's wall-time limit (epoch deadline), in milliseconds.
    pub timeout_ms: u64,
    /// Fuel the call consumed.
    pub fuel_used: u64,
    /// The call's fuel limit.
    pub fuel_limit: u64,
    /// Largest linear memory the instance was granted, in bytes (the largest of its memories
    /// when it has several, as a C component with the WASI adapter does).
    pub peak_memory_bytes: u64,
    /// The call's linear-memory cap, in bytes.
    pub memory_limit_bytes: u64,
    /// The size a refused memory growth asked for, when the cap stopped the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_memory_bytes: Option<u64>,
    /// The guest's call stack where it stopped, innermost frame first (`module!function`), when
    /// wasmtime captured one (traps, timeouts, fuel and memory exhaustion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backtrace: Vec<String>,
}

impl Budget {
    /// A report of a call under `limits` that ran for `elapsed`, used `fuel_used` and peaked at
    /// `peak_memory_bytes`.
    pub(crate) fn new(
        limits: Limits,
        elapsed: Duration,
        fuel_used: u64,
        peak_memory_bytes: u64,
    ) -> Self {
        Self {
            wall_time_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            timeout_ms: limits.timeout_ms,
            fuel_used,
            fuel_limit: limits.fuel,
            peak_memory_bytes,
            memory_limit_bytes: limits.memory_bytes,
            refused_memory_bytes: None,
            backtrace: Vec::new(),
        }
    }

    /// The frames of the wasm backtrace attached to `error`, if wasmtime captured one.
    pub(crate) fn with_backtrace(mut self, error: &wasmtime::Error) -> Self {
        if let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
            self.backtrace = trace
                .frames()
                .iter()
                .map(|frame| {
                    let module = frame.module().name().unwrap_or("<module>");
                    match frame.func_name() {
                        Some(name) => format!("{module}!{name}"),
                        None => format!("{module}!<function {}>", frame.func_index()),
                    }
                })
                .collect();
        }
        self
    }
}

/// `wall time 1.2 ms of 50 ms, fuel 5120 of 1000000, peak memory 1.06 MiB of 16 MiB`, then the
/// refused growth and the innermost guest frame when there are some.
impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wall time {} of {} ms, fuel {} of {}, peak memory {} of {}",
            micros(self.wall_time_us),
            self.timeout_ms,
            self.fuel_used,
            self.fuel_limit,
            bytes(self.peak_memory_bytes),
            bytes(self.memory_limit_bytes),
        )?;
        if let Some(refused) = self.refused_memory_bytes {
            write!(f, " (refused growth to {})", bytes(refused))?;
        }
        if let Some(frame) = self.backtrace.first() {
            write!(f, ", stopped in {frame}")?;
        }
        Ok(())
    }
}

fn micros(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else {
        format!("{:.1} ms", us as f64 / 1000.0)
    }
}

fn bytes(n: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let scaled = |unit: u64, name: &str| {
        if n.is_multiple_of(unit) {
            format!("{} {name}", n / unit)
        } else {
            format!("{:.2} {name}", n as f64 / unit as f64)
        }
    };
    match n {
        n if n >= GIB => scaled(GIB, "GiB"),
        n if n >= MIB => scaled(MIB, "MiB"),
        n if n >= KIB => scaled(KIB, "KiB"),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_used_of_limit() {
        let mut b = Budget {
            wall_time_us: 101_300,
            timeout_ms: 100,
            fuel_used: 5_120,
            fuel_limit: 1_000_000,
            peak_memory_bytes: (3 << 20) + (64 << 10),
            memory_limit_bytes: 4 << 20,
            refused_memory_bytes: None,
            backtrace: vec![],
        };
        assert_eq!(
            b.to_string(),
            "wall time 101.3 ms of 100 ms, fuel 5120 of 1000000, peak memory 3.06 MiB of 4 MiB"
        );
        b.wall_time_us = 42;
        b.refused_memory_bytes = Some((4 << 20) + (64 << 10));
        b.backtrace = vec!["guest!bomb".into(), "guest!main".into()];
        assert_eq!(
            b.to_string(),
            "wall time 42 µs of 100 ms, fuel 5120 of 1000000, peak memory 3.06 MiB of 4 MiB \
             (refused growth to 4.06 MiB), stopped in guest!bomb"
        );
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 << 10), "64 KiB");
        assert_eq!(bytes(2 << 30), "2 GiB");
    }

    #[test]
    fn serialises_for_tools() {
        let b = Budget {
            timeout_ms: 50,
            ..Budget::default()
        };
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["timeout_ms"], 50);
        assert!(json.get("backtrace").is_none());
        assert_eq!(serde_json::from_value::<Budget>(json).unwrap(), b);
    }
}
