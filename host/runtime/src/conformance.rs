//! Conformance cases: inputs any plugin of a world must handle, and what is expected of its
//! answer whatever the plugin decides. The kit lives in `plugin-tests/<world>/*.json`, one case
//! per file:
//!
//! ```json
//! {
//!   "description": "an upload without a file name or size",
//!   "config": {},
//!   "input": {"check-upload": {"info": {...}}},
//!   "expect": ["completes", "well-formed", "deterministic"]
//! }
//! ```
//!
//! `input` is a call in the JSON form of [`crate::call_input`]; `config` (optional) is laid
//! over the plugin's own settings for this case. Expectations:
//! - `completes`: the call returns: no trap, and within its time, fuel and memory limits;
//! - `well-formed`: the answer is one the host uses as it is ([`well_formed`]): a rejection's
//!   status is 4xx and its reason not empty and at most 1 KiB, a plan's renditions have safe
//!   names and even sizes, headers are valid, statuses within 100..=599, metadata keys not empty;
//! - `deterministic`: the same input twice gives the same answer (a fresh instance each time,
//!   so only hidden inputs such as randomness or the clock could change it).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::budget::Budget;
use crate::call_input::{CallInput, CallOutput};
use crate::single::{CallSettings, SingleComponent, SingleError};
use crate::{RequestAction, Verdict};

/// One conformance case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case is about, shown when it fails.
    pub description: String,
    /// Settings laid over the plugin's own for this case.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The call.
    pub input: CallInput,
    /// What the answer must satisfy.
    pub expect: Vec<Expectation>,
}

/// What a case checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expectation {
    /// Returns without trap, within its limits.
    Completes,
    /// The answer is one the host uses as it is.
    WellFormed,
    /// The same input twice gives the same answer.
    Deterministic,
}

/// How one case went.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The case's name (its file name without `.json`).
    pub name: String,
    /// Its description.
    pub description: String,
    /// Every expectation that failed, with why; empty when the case passed.
    pub failures: Vec<String>,
    /// What the first call used; `None` when the case could not run.
    pub budget: Option<Budget>,
}

impl CaseOutcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs the case `name` (its JSON text `json`) against `component` with `settings`.
pub fn run_case(
    component: &SingleComponent,
    settings: &CallSettings,
    name: &str,
    json: &str,
) -> CaseOutcome {
    let mut outcome = CaseOutcome {
        name: name.to_owned(),
        description: String::new(),
        failures: Vec::new(),
        budget: None,
    };
    let case: Case = match serde_json::from_str(json) {
        Ok(case) => case,
        Err(e) => {
            outcome
                .failures
                .push(format!("the case does not parse: {e}"));
            return outcome;
        }
    };
    outcome.description.clone_from(&case.description);
    let mut settings = settings.clone();
    settings.config.extend(case.config.clone());
    let call = |outcome: &mut CaseOutcome| -> Option<CallOutput> {
        match component.call(&settings, &case.input) {
            Ok(report) => {
                outcome.budget.get_or_insert(report.budget.clone());
                match report.result {
                    Ok(output) => Some(output),
                    Err(e) => {
                        if case.expect.contains(&Expectation::Completes) {
                            outcome.failures.push(format!("completes: {}", e.cause));
                        } else {
                            outcome
                                .failures
                                .push(format!("the call failed: {}", e.cause));
                        }
                        None
                    }
                }
            }
            Err(e @ SingleError::WrongWorld { .. }) => {
                outcome
                    .failures
                    .push(format!("the case does not apply: {e}"));
                None
            }
            Err(e) => {
                outcome
                    .failures
                    .push(format!("the call could not run: {e}"));
                None
            }
        }
    };
    let Some(first) = call(&mut outcome) else {
        return outcome;
    };
    if case.expect.contains(&Expectation::WellFormed)
        && let Err(why) = well_formed(&first)
    {
        outcome.failures.push(format!("well-formed: {why}"));
    }
    if case.expect.contains(&Expectation::Deterministic)
        && let Some(second) = call(&mut outcome)
        && second != first
    {
        outcome.failures.push(format!(
            "deterministic: a second call answered {} after {}",
            json_of(&second),
            json_of(&first)
        ));
    }
    outcome
}

fn json_of(output: &CallOutput) -> String {
    let text = serde_json::to_string(output).unwrap_or_default();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Whether the host can use `output` as it is; `Err` says what it would refuse or change.
pub fn well_formed(output: &CallOutput) -> Result<(), String> {
    match output {
        CallOutput::Verdict(Verdict::Accept) => Ok(()),
        CallOutput::Verdict(Verdict::Reject(r)) => {
            if !(400..=499).contains(&r.status) {
                return Err(format!(
                    "rejection status {} is not 4xx (the host would answer 422)",
                    r.status
                ));
            }
            if r.reason.trim().is_empty() {
                return Err("the rejection has no reason for the client".into());
            }
            if r.reason.len() > crate::validator::MAX_REASON_BYTES {
                return Err(format!(
                    "the rejection reason is {} bytes (the host cuts it to {})",
                    r.reason.len(),
                    crate::validator::MAX_REASON_BYTES
                ));
            }
            Ok(())
        }
        CallOutput::Metadata(Ok(pairs)) => match pairs.iter().find(|(k, _)| k.trim().is_empty()) {
            Some(_) => Err("a metadata key is empty".into()),
            None => Ok(()),
        },
        CallOutput::Plan(Ok(plan)) => crate::router::check_plan(plan),
        CallOutput::Metadata(Err(reason)) | CallOutput::Plan(Err(reason)) => {
            if reason.trim().is_empty() {
                Err("the error has no reason".into())
            } else {
                Ok(())
            }
        }
        CallOutput::RequestAction(RequestAction::Continue(head)) => {
            crate::edge_transform::check_headers(&head.headers)
        }
        CallOutput::RequestAction(RequestAction::Respond(resp)) => {
            crate::edge_transform::check_status(resp.status)
                .and_then(|()| crate::edge_transform::check_headers(&resp.headers))
        }
        CallOutput::ResponseUpdate(update) => {
            crate::edge_transform::check_status(update.head.status)
                .and_then(|()| crate::edge_transform::check_headers(&update.head.headers))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rejection, RoutePlan};

    #[test]
    fn well_formed_answers() {
        let reject = |status, reason: &str| {
            CallOutput::Verdict(Verdict::Reject(Rejection {
                status,
                reason: reason.into(),
            }))
        };
        assert_eq!(well_formed(&reject(413, "too big")), Ok(()));
        assert!(well_formed(&reject(503, "x")).unwrap_err().contains("4xx"));
        assert!(well_formed(&reject(422, " ")).is_err());
        assert!(well_formed(&reject(422, &"x".repeat(2000))).is_err());
        let plan = CallOutput::Plan(Ok(RoutePlan {
            renditions: vec![],
            priority: 0,
            storage_class: "standard".into(),
            edge_group: "default".into(),
        }));
        assert_eq!(well_formed(&plan), Ok(()));
        assert!(well_formed(&CallOutput::Plan(Err(String::new()))).is_err());
        let pairs = CallOutput::Metadata(Ok(vec![(String::new(), "v".into())]));
        assert!(well_formed(&pairs).is_err());
    }
}
