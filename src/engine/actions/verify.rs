//! `verify-repo`: the backend's full check, each problem judged on its own.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::{Found, Step};
use crate::engine::actions::{Action, Origin};
use crate::engine::attribution::{Attribution, Incident, IncidentKind};
use crate::engine::brief::{brief, without_backtrace};
use crate::engine::checker::RestoreAttempt;
use crate::engine::exec::Engine;
use crate::engine::guard::guarded;
use crate::engine::record::{ActionParams, ActionRecord};
use crate::engine::store::FailureKind;
use crate::engine::traits::ClientId;

impl Engine {
    /// The backend's full check. Each problem it finds is judged on its own
    /// (a pack missing that no fault deleted is unexpected even when another
    /// pack's corruption is explained); problems explained by the same fault
    /// make one failure, the unexpected ones another.
    pub(super) fn verify_repo(&self, client: ClientId, origin: Origin) -> Step {
        let started = Instant::now();
        let check = match guarded(|| self.server.verify_repo()) {
            Ok(check) if check.healthy => return Step::ok().detail("problems", json!(0)),
            Ok(check) => check,
            Err(error) => return Step::backend_error(error),
        };
        let problems = check.problems.len();
        let kind = IncidentKind::Failure(FailureKind::RepositoryCheck);
        let mut groups: BTreeMap<Option<String>, Vec<(String, Attribution)>> = BTreeMap::new();
        for problem in check.problems {
            let attribution = self.faults.explain(&Incident {
                client,
                origin,
                kind,
                started,
                ended: Instant::now(),
                unreadable: problem.unreadable,
            });
            groups
                .entry(attribution.explained_by.clone())
                .or_default()
                .push((problem.text, attribution));
        }
        // Unexpected problems (the `None` group) come first.
        let mut failures = Vec::new();
        for (explained_by, found) in groups {
            let summary = format!(
                "repository check found {} problem(s){}: {}",
                found.len(),
                if problems > found.len() {
                    format!(" of {problems}")
                } else {
                    String::new()
                },
                brief(&found[0].0)
            );
            let details = found
                .iter()
                .map(|(text, attribution)| match &attribution.note {
                    Some(note) => format!("{} — {note}", without_backtrace(text)),
                    None => without_backtrace(text).to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let unreadable = found
                .iter()
                .map(|(_, a)| a.unreadable.clone())
                .collect::<Option<Vec<_>>>()
                .map(|sets| sets.into_iter().flatten().collect());
            failures.push(Found {
                failure: self.checker.failure(
                    client,
                    None,
                    origin,
                    FailureKind::RepositoryCheck,
                    summary,
                    details,
                ),
                attribution: Some(Attribution {
                    explained_by,
                    unreadable,
                    note: None,
                }),
            });
        }
        let mut step = Step::failure(failures[0].failure.summary.clone());
        step.failures = failures;
        step.detail("problems", json!(problems))
    }
    /// Runs the full repository check as one of the final checks (after a
    /// fault damaged data, so no injected damage goes unreported).
    pub fn final_verify_repo(&self, client: ClientId) -> ActionRecord {
        self.exec_attempt(
            client,
            Action::VerifyRepo,
            &ActionParams::default(),
            RestoreAttempt::Last,
        )
    }
}
