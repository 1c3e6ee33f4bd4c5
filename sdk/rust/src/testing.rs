//! A stand-in for the host in native unit tests (every target but wasm32).
//!
//! The traits' methods are plain Rust functions, so a test calls them directly; what they read
//! through [`config`](crate::config) and write through [`log`](crate::log) goes to the
//! [`TestHost`] the test installed on its thread. Tests run on separate threads, so they do not
//! see each other's settings or lines.
//!
//! ```
//! use mediahost_sdk::{config, log, testing::TestHost};
//!
//! let host = TestHost::new().with_config("max_size", "100");
//! assert_eq!(config::parse::<u64>("max_size"), Ok(Some(100)));
//! log::warn!("too big: {}", 200);
//! assert_eq!(host.messages(), ["too big: 200"]);
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use crate::log::Level;

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// Its text.
    pub message: String,
}

#[derive(Default)]
struct State {
    config: BTreeMap<String, String>,
    logs: Vec<LogLine>,
}

thread_local! {
    /// The installed host of this thread, if any.
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// The host as a plugin sees it in a native test: settings the test chose, and a record of the
/// lines the plugin logged. Installed on the current thread by [`TestHost::new`], removed when
/// dropped.
pub struct TestHost {
    /// The state lives in a thread-local, so the handle must stay on its thread.
    _not_send: PhantomData<*const ()>,
}

impl TestHost {
    /// Installs an empty host on this thread (replacing any earlier one): no settings, no lines.
    #[allow(clippy::new_without_default)] // installing state is an action, not a default value
    pub fn new() -> Self {
        STATE.with(|s| *s.borrow_mut() = Some(State::default()));
        Self {
            _not_send: PhantomData,
        }
    }

    /// Sets a setting, builder style.
    pub fn with_config(self, key: &str, value: &str) -> Self {
        self.set_config(key, value);
        self
    }

    /// Sets a setting, as a manifest default or operator override would.
    pub fn set_config(&self, key: &str, value: &str) {
        with_state(|s| {
            s.config.insert(key.to_owned(), value.to_owned());
        });
    }

    /// Removes a setting.
    pub fn remove_config(&self, key: &str) {
        with_state(|s| {
            s.config.remove(key);
        });
    }

    /// Every line logged since the host was installed (or last [`take_logs`](Self::take_logs)).
    pub fn logs(&self) -> Vec<LogLine> {
        with_state(|s| s.logs.clone())
    }

    /// The logged lines' texts, without their levels.
    pub fn messages(&self) -> Vec<String> {
        with_state(|s| s.logs.iter().map(|l| l.message.clone()).collect())
    }

    /// Returns the logged lines and forgets them.
    pub fn take_logs(&self) -> Vec<LogLine> {
        with_state(|s| std::mem::take(&mut s.logs))
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        STATE.with(|s| *s.borrow_mut() = None);
    }
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| {
        let mut state = s.borrow_mut();
        f(state.get_or_insert_with(State::default))
    })
}

/// Serves [`config::get`](crate::config::get) natively.
pub(crate) fn config_get(key: &str) -> Option<String> {
    STATE.with(|s| s.borrow().as_ref()?.config.get(key).cloned())
}

/// Serves [`config::get_all`](crate::config::get_all) natively; sorted by key like the host's.
pub(crate) fn config_get_all() -> Vec<(String, String)> {
    STATE.with(|s| {
        s.borrow()
            .as_ref()
            .map(|state| state.config.clone().into_iter().collect())
            .unwrap_or_default()
    })
}

/// Serves [`log::log`](crate::log::log) natively: recorded by the installed host, else printed
/// to stderr so a test without a host still shows what the plugin said.
pub(crate) fn record_log(level: Level, message: &str) {
    STATE.with(|s| match s.borrow_mut().as_mut() {
        Some(state) => state.logs.push(LogLine {
            level,
            message: message.to_owned(),
        }),
        None => eprintln!("[plugin {level:?}] {message}"),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, log};

    #[test]
    fn records_lines_and_serves_settings_until_dropped() {
        let host = TestHost::new().with_config("b", "2").with_config("a", "1");
        assert_eq!(
            config::get_all(),
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        host.remove_config("a");
        assert_eq!(config::get("a"), None);
        log::info!("hello {}", 1);
        log::log(Level::Error, "bad");
        assert_eq!(
            host.take_logs(),
            [
                LogLine {
                    level: Level::Info,
                    message: "hello 1".into()
                },
                LogLine {
                    level: Level::Error,
                    message: "bad".into()
                },
            ]
        );
        assert!(host.logs().is_empty());
        drop(host);
        assert_eq!(config::get("b"), None);
    }

    #[test]
    fn a_new_host_starts_empty() {
        let first = TestHost::new().with_config("k", "v");
        log::info!("x");
        drop(first);
        let second = TestHost::new();
        assert_eq!(config::get("k"), None);
        assert!(second.logs().is_empty());
    }
}
