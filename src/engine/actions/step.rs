//! The result of one repetition of an action, as the actions build it and
//! the engine records it.

use super::super::checker::CheckerError;
use super::super::stats::{Effects, Outcome};
use super::super::store::{Failure, FailureKind};
use std::time::Instant;

use super::super::traits::{BackendError, ClientId, Details, ErrorClass, SnapshotId, WriteEffect};
use crate::engine::attribution::Attribution;
use crate::engine::brief::brief;

/// The result of one repetition of an action.
#[derive(Debug, Default)]
pub(in crate::engine) struct Step {
    pub(in crate::engine) outcome: Option<Outcome>,
    pub(in crate::engine) snapshot: Option<SnapshotId>,
    pub(in crate::engine) details: Details,
    pub(in crate::engine) message: Option<String>,
    pub(in crate::engine) error_class: Option<ErrorClass>,
    /// The client whose disturbed process held the error's call up, and
    /// when that process started ([`BackendError::HeldUp`]): attribution
    /// judges the error as that client's, from then.
    pub(in crate::engine) held_up: Option<(ClientId, Instant)>,
    pub(in crate::engine) effects: Effects,
    pub(in crate::engine) failures: Vec<Found>,
}

/// A verification failure a step found, with the verdict on it when the
/// step made it (a check's findings are judged one by one, then grouped).
#[derive(Debug)]
pub(in crate::engine) struct Found {
    pub(in crate::engine) failure: Failure,
    pub(in crate::engine) attribution: Option<Attribution>,
}

impl Step {
    pub(in crate::engine) fn ok() -> Self {
        Step {
            outcome: Some(Outcome::Ok),
            ..Step::default()
        }
    }
    pub(in crate::engine) fn no_op(reason: impl Into<String>) -> Self {
        Step {
            outcome: Some(Outcome::NoOp),
            message: Some(reason.into()),
            ..Step::default()
        }
    }
    pub(in crate::engine) fn error(error: impl std::fmt::Display, class: ErrorClass) -> Self {
        Step {
            outcome: Some(Outcome::Error),
            message: Some(brief(&error.to_string())),
            error_class: Some(class),
            ..Step::default()
        }
    }
    pub(in crate::engine) fn checker_error(error: CheckerError) -> Self {
        match error {
            CheckerError::Backend(error) => Step::backend_error(error),
            error => {
                let class = error.class();
                Step::error(error, class)
            }
        }
    }
    pub(in crate::engine) fn backend_error(error: BackendError) -> Self {
        match error {
            BackendError::NothingToDo(why) => Step::no_op(why),
            BackendError::HeldUp { by, since, .. } => Step {
                held_up: Some((by, since)),
                ..Step::error(&error, error.class())
            },
            error => {
                let class = error.class();
                Step::error(error, class)
            }
        }
    }
    pub(in crate::engine) fn failure(summary: String) -> Self {
        Step {
            outcome: Some(Outcome::Failure),
            message: Some(summary),
            ..Step::default()
        }
    }
    pub(in crate::engine) fn detail(mut self, key: &str, value: serde_json::Value) -> Self {
        self.details.insert(key.to_owned(), value);
        self
    }
    pub(in crate::engine) fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Ok)
    }
    /// The run ended without this step (see
    /// [`Engine::abandon_in_flight`](crate::engine::Engine::abandon_in_flight)):
    /// it killed the step's process or stopped the server under it, so an
    /// error the step met, a restore that failed included, is the run's own
    /// doing. What the step saw whole stands: a restore that came back
    /// different, a snapshot missing from a listing that succeeded (being
    /// cut off makes data missing, never wrong).
    pub(in crate::engine) fn abandon(&mut self) {
        self.failures
            .retain(|found| found.failure.kind != FailureKind::RestoreFailed);
        let erred = match self.outcome() {
            Outcome::Error => true,
            Outcome::Failure => self.failures.is_empty(),
            Outcome::Ok | Outcome::NoOp => false,
        };
        if erred {
            self.outcome = Some(Outcome::Error);
            // Snapstorm's own: no fault explains it (see attribution).
            self.error_class = Some(ErrorClass::Local);
            self.message = Some(format!(
                "abandoned at the run's end: {}",
                self.message.as_deref().unwrap_or("cut off")
            ));
        }
    }
}

pub(in crate::engine) fn writer_step(result: std::io::Result<WriteEffect>) -> Step {
    match result {
        Ok(WriteEffect::Done(details)) => {
            let mut step = Step::ok();
            step.details = details;
            step
        }
        Ok(WriteEffect::NoOp(reason)) => Step::no_op(reason),
        Err(error) => Step::error(error, ErrorClass::Local),
    }
}
