//! The plugin's settings for the current call: its manifest's `[config]` defaults overlaid by
//! the operator's settings. Values are text; [`parse`] and [`require`] read them as typed values
//! and name the key when a value is malformed, so an operator's typo becomes a clear error
//! instead of a silently different decision.
//!
//! In native tests the values come from the thread's [`TestHost`](crate::testing::TestHost)
//! (no values when no test host is installed).

use std::fmt;
use std::str::FromStr;

/// The value of `key`, if set.
pub fn get(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::mediahost::plugin::config::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::config_get(key);
}

/// Every key/value pair, sorted by key.
pub fn get_all() -> Vec<(String, String)> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::mediahost::plugin::config::get_all();
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::config_get_all();
}

/// The value of `key` with surrounding whitespace removed; `None` when it is absent or blank,
/// which plugins conventionally read as "not restricted" or "use the default".
pub fn get_trimmed(key: &str) -> Option<String> {
    get(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `key` parsed as a `T`; `Ok(None)` when it is absent or blank.
pub fn parse<T>(key: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    get_trimmed(key)
        .map(|value| {
            value.parse().map_err(|e: T::Err| ConfigError::Invalid {
                key: key.to_owned(),
                reason: e.to_string(),
                value,
            })
        })
        .transpose()
}

/// `key` parsed as a `T`; an error when it is absent, blank or malformed.
pub fn require<T>(key: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    parse(key)?.ok_or_else(|| ConfigError::Missing {
        key: key.to_owned(),
    })
}

/// A setting the plugin cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A required key is absent or blank.
    Missing {
        /// The key.
        key: String,
    },
    /// A value does not parse as the type the plugin expects.
    Invalid {
        /// The key.
        key: String,
        /// The value as set.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { key } => write!(f, "setting {key} is required but not set"),
            ConfigError::Invalid { key, value, reason } => {
                write!(f, "setting {key} = {value:?} is invalid: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

// The test host stands in for the real one on native targets only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::TestHost;

    #[test]
    fn typed_reads_name_the_key() {
        let _host = TestHost::new()
            .with_config("limit", " 42 ")
            .with_config("bad", "ten")
            .with_config("blank", "  ");
        assert_eq!(parse::<u64>("limit"), Ok(Some(42)));
        assert_eq!(parse::<u64>("blank"), Ok(None));
        assert_eq!(parse::<u64>("absent"), Ok(None));
        let err = parse::<u64>("bad").unwrap_err();
        assert!(err.to_string().contains("bad = \"ten\""), "{err}");
        assert_eq!(require::<u64>("limit"), Ok(42));
        assert_eq!(
            require::<u64>("blank").unwrap_err().to_string(),
            "setting blank is required but not set"
        );
        assert_eq!(get_trimmed("limit").as_deref(), Some("42"));
        assert_eq!(get("blank").as_deref(), Some("  "));
    }
}
