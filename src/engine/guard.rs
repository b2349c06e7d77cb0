//! Panics inside a backend call (rustic_core's restore unwraps on a missing
//! pack) become that call's error, never a crash of the run.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::traits::{BackendError, BackendResult};

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// A panic caught, with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Panicked {
    pub message: String,
}

/// Runs `f`, turning a panic into a [`Panicked`].
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked {
        message: panic_message(payload.as_ref()),
    })
}

/// Runs a backend call so that a panic comes back as [`BackendError::Panicked`].
pub fn guarded<T>(call: impl FnOnce() -> BackendResult<T>) -> BackendResult<T> {
    catch_panic(call).unwrap_or_else(|panic| Err(BackendError::Panicked(panic.message)))
}
