//! Log lines into the host's structured logs, tagged there with the plugin's name.
//!
//! ```
//! use mediahost_sdk::log::{self, Level};
//!
//! let (name, reason) = ("setup.exe", "not a video");
//! log::info!("rejected {name}: {reason}");
//! log::log(Level::Warn, "plain text");
//! ```
//!
//! The host keeps at most 64 lines of 4 KiB per call; log what an operator needs, not traces.
//! In native tests the lines go to the thread's [`TestHost`](crate::testing::TestHost) (or to
//! stderr when no test host is installed).

pub use crate::bindings::mediahost::plugin::log::Level;

/// Logs `message` at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::mediahost::plugin::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_log(level, message);
}

/// Logs a formatted message at `trace` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __log_trace {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Trace, &format!($($arg)*)) };
}

/// Logs a formatted message at `debug` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __log_debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &format!($($arg)*)) };
}

/// Logs a formatted message at `info` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __log_info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Logs a formatted message at `warn` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __log_warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// Logs a formatted message at `error` level.
#[macro_export]
#[doc(hidden)]
macro_rules! __log_error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &format!($($arg)*)) };
}

pub use crate::__log_debug as debug;
pub use crate::__log_error as error;
pub use crate::__log_info as info;
pub use crate::__log_trace as trace;
pub use crate::__log_warn as warn;
