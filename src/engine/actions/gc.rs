//! `run-gc`, and every other GC (the console's key, GC faults): through the Server.

use super::Step;
use crate::engine::exec::Engine;
use crate::engine::guard::guarded;
use crate::engine::traits::{BackendResult, GcDone, GcOptions};

impl Engine {
    /// Garbage-collects on the server now (the console's key, a GC fault),
    /// counted with the GCs of `run-gc` actions.
    pub fn gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        let done = guarded(|| self.server.run_gc(options))?;
        self.stats.record_gc();
        Ok(done)
    }
    pub(super) fn run_gc(&self) -> Step {
        match self.gc(&GcOptions::default()) {
            Ok(done) => {
                let mut step = Step::ok();
                step.details = done.details;
                step
            }
            Err(error) => Step::backend_error(error),
        }
    }
}
