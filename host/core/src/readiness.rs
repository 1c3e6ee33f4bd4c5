//! Readiness (`GET /readyz` on every role): the backends a process depends on, each asked
//! whether it answers now.
//!
//! The process that composes the roles knows which backends it opened (the metadata database,
//! the job queue, object storage, Redis), so it registers one named check per backend and hands
//! the same [`Readiness`] to each role's listener. Checks run concurrently; each bounds its own
//! wait (a backend that hangs must not hang the probe), and the report names every failing one,
//! so an operator sees which backend took the process out of rotation. Liveness (`/healthz`)
//! consults none of this: a database outage makes a process unready, not a restart candidate.

use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What one check answers: `Err` carries the reason, shown to the operator.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One named backend check.
type Check = (&'static str, Arc<dyn Fn() -> CheckFuture + Send + Sync>);

/// The backends a process checks for readiness, in registration order.
#[derive(Clone, Default)]
pub struct Readiness {
    /// Shared by every role of the process; cheap to clone.
    checks: Arc<Vec<Check>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|(name, _)| name))
            .finish()
    }
}

/// The outcome of asking every backend once.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Whether every check passed.
    pub ready: bool,
    /// `{"status": "ready"|"unavailable", "checks": {name: "ok" | {"error": …}}, "failing": [name…]}`.
    pub body: Value,
}

impl Readiness {
    /// Adds the check `name` (e.g. `database`), replacing an earlier one of that name.
    pub fn with_check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: Arc<dyn Fn() -> CheckFuture + Send + Sync> =
            Arc::new(move || Box::pin(check()) as CheckFuture);
        let checks = Arc::make_mut(&mut self.checks);
        checks.retain(|(n, _)| *n != name);
        checks.push((name, check));
        self
    }

    /// The names of the checks, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.checks.iter().map(|(name, _)| *name).collect()
    }

    /// Runs every check at once and reports each.
    pub async fn report(&self) -> Report {
        let results = futures::future::join_all(
            self.checks
                .iter()
                .map(|(name, check)| async move { (*name, check().await) }),
        )
        .await;
        let failing: Vec<&str> = results
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(name, _)| *name)
            .collect();
        let checks: serde_json::Map<String, Value> = results
            .into_iter()
            .map(|(name, result)| {
                let outcome = match result {
                    Ok(()) => json!("ok"),
                    Err(e) => json!({ "error": e }),
                };
                (name.to_owned(), outcome)
            })
            .collect();
        let ready = failing.is_empty();
        Report {
            ready,
            body: json!({
                "status": if ready { "ready" } else { "unavailable" },
                "checks": checks,
                "failing": failing,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_each_failing_backend() {
        let readiness = Readiness::default()
            .with_check("database", || async { Ok(()) })
            .with_check("redis", || async { Err("connection refused".to_owned()) })
            .with_check("queue", || async { Ok(()) });
        let report = futures::executor::block_on(readiness.report());
        assert!(!report.ready);
        assert_eq!(report.body["status"], "unavailable");
        assert_eq!(report.body["checks"]["database"], "ok");
        assert_eq!(
            report.body["checks"]["redis"]["error"],
            "connection refused"
        );
        assert_eq!(report.body["failing"], json!(["redis"]));
        assert_eq!(readiness.names(), ["database", "redis", "queue"]);
    }

    #[test]
    fn a_check_registered_twice_is_replaced_and_all_passing_is_ready() {
        let readiness = Readiness::default()
            .with_check("database", || async { Err("down".to_owned()) })
            .with_check("database", || async { Ok(()) });
        let report = futures::executor::block_on(readiness.report());
        assert!(report.ready);
        assert_eq!(
            report.body,
            json!({"status": "ready", "checks": {"database": "ok"}, "failing": []})
        );
    }
}
